//! The controller of `uorch launch EXPERIMENT.yaml`: plan the trials on this
//! machine's GPUs (or CPU slots), hold the experiment folder, run what is not
//! complete, and report the results.

use super::plan::{self, Plan};
use super::run::{self, Outcome};
use super::{describe, layout, lock, report};
use crate::launch::gpus;
use crate::launch::signals::interrupt_counter;
use crate::launch::Topology;
use anyhow::Result;
use std::path::Path;
use std::time::Duration;

/// The experiment's plan for this machine, and its description.
pub fn plan(file: &Path, overrides: &[String]) -> Result<(Plan, String)> {
    let plan = plan::build(file, overrides, gpus::detected().len())?;
    let text = describe(&plan);
    Ok((plan, text))
}

/// What `--dry-run` adds: every trial with its axis values.
pub fn trials_text(plan: &Plan) -> String {
    let mut s = String::from("trials:\n");
    for t in &plan.trials {
        let axes: Vec<String> = t.axes.iter().map(|(a, l)| format!("{a}={l}")).collect();
        s += &format!("  {:<40} {:<40} results from {}\n", t.name, axes.join(" "), t.stage);
    }
    s
}

/// Run the plan's incomplete stages; machine 0 then prints the results.
pub fn run(plan: &Plan, topo: Topology, max_restarts: usize) -> Result<Outcome> {
    let given_port = (topo.master_port != 0).then_some(topo.master_port);
    let slurm_job = std::env::var("SLURM_JOB_ID").ok().and_then(|j| j.parse().ok());
    let first_port = gpus::stage_port(given_port, slurm_job, &plan.dir.to_string_lossy(), 0);
    let topo = Topology { master_port: first_port, ..topo }.resolve()?;
    let _lock = if topo.node_rank == 0 { Some(lock(plan)?) } else { None };
    if topo.node_rank == 0 {
        plan.write()?;
    }
    let interrupts = interrupt_counter()?;
    let o = run::Options {
        exe: std::env::current_exe()?,
        gpus: gpus::detected(),
        nnodes: topo.nnodes,
        node_rank: topo.node_rank,
        master_addr: topo.master_addr.clone(),
        given_port,
        slurm_job,
        max_restarts,
        progress_every: Duration::from_secs(
            std::env::var("UORCH_PROGRESS_S").ok().and_then(|s| s.parse().ok()).unwrap_or(20),
        ),
    };
    let outcome = run::run(plan, &o, interrupts)?;
    if topo.node_rank == 0 {
        println!();
        print!("{}", report(plan)?);
        println!(
            "results: {} and {}",
            layout::results_csv(&plan.dir).display(),
            layout::results_md(&plan.dir).display()
        );
        println!("TensorBoard: {}", crate::paths::tensorboard_command(&layout::runs(&plan.dir)));
    }
    Ok(outcome)
}
