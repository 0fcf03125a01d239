//! `uorch env`.

use crate::env_report;
use anyhow::Result;
use clap::Args;

#[derive(Args)]
pub struct EnvArgs {
    /// Machine-readable JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(a: EnvArgs) -> Result<()> {
    let report = env_report::collect();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", env_report::render(&report));
    }
    Ok(())
}
