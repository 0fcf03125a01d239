//! `uorch launch` (a run config, or an experiment's sweep), `uorch sweep
//! status`, and the hidden `uorch worker` that the launcher starts.

use super::config::ConfigSource;
use crate::config::run::Nproc;
use crate::launch::{gpus, run_config, worker as worker_process, Ended, Topology};
use crate::sweep::run::Outcome;
use crate::sweep::{self, controller, plan};
use anyhow::Result;
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct LaunchArgs {
    #[command(flatten)]
    src: ConfigSource,
    /// Print what would run, change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Worker processes on this machine: N, `auto` (one per visible GPU, or
    /// one without GPUs) or `gpu` (sets dist.nproc; `--nproc` is an alias).
    #[arg(long = "nproc-per-node", visible_alias = "nproc", value_name = "N|auto|gpu")]
    nproc: Option<String>,
    /// Machines taking part (one launcher on each).
    #[arg(long, env = "NNODES", default_value_t = 1)]
    nnodes: usize,
    /// This machine's index among them.
    #[arg(long, env = "NODE_RANK", default_value_t = 0)]
    node_rank: usize,
    /// Address of the machine with node rank 0 (it serves the rendezvous).
    #[arg(long, env = "MASTER_ADDR", default_value = "127.0.0.1")]
    master_addr: String,
    /// Rendezvous port (0: a free one; give the same one to every machine).
    #[arg(long, env = "MASTER_PORT", default_value_t = 0)]
    master_port: u16,
    /// When a worker fails, restart every worker from the newest checkpoint,
    /// up to this many times (torchrun's flag; one machine).
    #[arg(long, default_value_t = 0)]
    max_restarts: usize,
}

#[derive(Subcommand)]
pub enum SweepCmd {
    /// Where an experiment stands: every trial's state, metrics and cost
    /// (read from its folder; safe while the sweep runs).
    Status {
        /// The experiment folder (`<output_root>/<name>`).
        dir: PathBuf,
        /// One JSON object on stdout (schema in the README) instead of the table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
pub struct WorkerArgs {
    #[arg(long)]
    config: PathBuf,
}

/// Exit status 130 (as after SIGINT) when the run stopped on request.
const INTERRUPTED: u8 = 130;

pub fn launch(a: LaunchArgs) -> Result<ExitCode> {
    let mut src = a.src;
    if let Some(n) = a.nproc {
        src.overrides.push(format!("dist.nproc={n}"));
    }
    let topo = Topology {
        nproc: 1,
        nnodes: a.nnodes,
        node_rank: a.node_rank,
        master_addr: a.master_addr,
        master_port: a.master_port,
    };
    if plan::is_experiment(&src.file)? {
        return launch_sweep(&src, a.dry_run, topo, a.max_restarts);
    }
    let mut cfg = src.load()?.config;
    let gpus = gpus::detected();
    let workers = gpus::workers(&cfg.dist.nproc, cfg.dist.backend, gpus.len())
        .map_err(|e| anyhow::anyhow!("{}: {e}", src.file.display()))?;
    cfg.dist.nproc = Nproc::Count(workers);
    if a.dry_run {
        print!("{}", run_config::describe(&cfg));
        println!("{}", topo.describe());
        return Ok(ExitCode::SUCCESS);
    }
    match run_config::run(&cfg, topo, a.max_restarts)? {
        Ended::Completed => Ok(ExitCode::SUCCESS),
        Ended::Interrupted => {
            println!("interrupted: checkpoint written; run the same command again to resume");
            Ok(ExitCode::from(INTERRUPTED))
        }
    }
}

/// `uorch launch EXPERIMENT.yaml`: plan the trials, run what is not complete,
/// report the results.
fn launch_sweep(src: &ConfigSource, dry_run: bool, topo: Topology, max_restarts: usize) -> Result<ExitCode> {
    let (plan, description) = controller::plan(&src.file, &src.all())?;
    print!("{description}");
    if dry_run {
        print!("{}", controller::trials_text(&plan));
        println!("{}", topo.describe());
        return Ok(ExitCode::SUCCESS);
    }
    match controller::run(&plan, topo, max_restarts)? {
        Outcome::Interrupted => {
            println!("interrupted: running stages checkpointed; run the same command again to resume");
            Ok(ExitCode::from(INTERRUPTED))
        }
        Outcome::Completed { failed, .. } if failed > 0 => {
            eprintln!(
                "error: {failed} stage(s) failed (see the table and {})",
                crate::sweep::layout::logs(&plan.dir).display()
            );
            Ok(ExitCode::from(1))
        }
        Outcome::Completed { .. } => Ok(ExitCode::SUCCESS),
    }
}

pub fn sweep(cmd: SweepCmd) -> Result<()> {
    let SweepCmd::Status { dir, json } = cmd;
    let plan = plan::Plan::load(&dir)?;
    let rows = sweep::results::rows(&plan);
    if json {
        println!("{}", serde_json::to_string_pretty(&sweep::results::status_json(&plan, &rows))?);
        return Ok(());
    }
    use sweep::state::State;
    let count = |s: State| rows.iter().filter(|r| r.state == s).count();
    println!(
        "experiment `{}` ({} trials): {} done, {} running, {} failed, {} interrupted, {} pending",
        plan.experiment,
        rows.len(),
        count(State::Done),
        count(State::Running),
        count(State::Failed),
        count(State::Interrupted),
        count(State::Pending)
    );
    print!("{}", sweep::results::summary(&plan, &rows));
    Ok(())
}

pub fn worker(a: WorkerArgs) -> Result<ExitCode> {
    Ok(if worker_process::run(&a.config)? { ExitCode::from(worker_process::STOPPED as u8) } else { ExitCode::SUCCESS })
}
