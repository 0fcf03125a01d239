//! `uorch report EXPERIMENT_DIR`.

use crate::report;
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct ReportArgs {
    /// An experiment folder (`uorch launch EXPERIMENT.yaml` made it).
    dir: PathBuf,
    /// Where report.md and plots/ go (default: the experiment folder).
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn run(a: ReportArgs) -> Result<()> {
    let out = a.out.unwrap_or_else(|| a.dir.clone());
    let w = report::write(&a.dir, &out)?;
    let count = |v: report::claims::Verdict| w.claims.iter().filter(|c| c.verdict == Some(v)).count();
    use report::claims::Verdict::*;
    println!(
        "report written to {} with {} plots (PNG and SVG) in {}; claims: {} supported, {} contradicted, {} inconclusive, {} not checked",
        w.report.display(),
        w.figures.len() / 2,
        out.join(report::PLOTS_DIR).display(),
        count(Supported),
        count(Contradicted),
        count(Inconclusive),
        w.claims.iter().filter(|c| c.verdict.is_none()).count()
    );
    println!(
        "TensorBoard: the plots as images and the claims as text in run `report` of {}",
        w.tensorboard.parent().unwrap_or(&w.tensorboard).display()
    );
    Ok(())
}
