//! The sweep controller: `uorch launch EXPERIMENT.yaml` (a run config with a
//! `sweep:` section) plans the trials and their shared stages, runs them on
//! this machine's GPUs or CPU slots, and reports results; `uorch sweep status
//! DIR` shows where an experiment stands at any time.

pub mod controller;
pub mod decide;
pub mod layout;
pub mod plan;
pub mod results;
pub mod run;
pub mod spec;
pub mod state;

use crate::config::value_name;
use anyhow::Result;
use plan::{Plan, StageKind};

/// What `--dry-run` prints: every stage (shared pretraining first) and trial.
pub fn describe(plan: &Plan) -> String {
    let pre = plan.stages.iter().filter(|s| s.kind == StageKind::Pretrain).count();
    let mut s = format!(
        "experiment `{}` in {}: {} trial(s), {} stage(s) ({} encoder pretraining, shared; {} finetuning)\n",
        plan.experiment,
        plan.dir.display(),
        plan.trials.len(),
        plan.stages.len(),
        pre,
        plan.stages.len() - pre
    );
    let w = plan.stages.iter().map(|s| s.name.len()).max().unwrap_or(0);
    s.push_str("stages (in the order they can start):\n");
    for st in &plan.stages {
        let users = plan.stages.iter().filter(|o| o.needs.contains(&st.name)).count();
        let what = match st.kind {
            StageKind::Pretrain => format!(
                "encoder pretraining, {} steps, {} worker(s); used by {users} finetuning stage(s)",
                st.steps, st.nproc
            ),
            StageKind::Finetune => {
                let f = st.config.as_ref().and_then(|c| c.finetune.as_ref());
                let what = f
                    .map(|f| {
                        format!(
                            "{}, {} integration, {} strategy",
                            value_name(&f.task),
                            value_name(&f.integration),
                            value_name(&f.strategy)
                        )
                    })
                    .unwrap_or_default();
                format!(
                    "finetuning ({what}), {} steps, {} worker(s){}",
                    st.steps,
                    st.nproc,
                    if st.needs.is_empty() { String::new() } else { format!("; needs {}", st.needs.join(", ")) }
                )
            }
        };
        let done = if state::complete(st) { "  [complete]" } else { "" };
        s.push_str(&format!("  {:<w$}  {what}{done}\n", st.name));
    }
    s
}

/// Hold the experiment folder for this controller (a second one on the
/// same folder would run the same stages twice).
pub fn lock(plan: &Plan) -> Result<crate::fsutil::FolderLock> {
    crate::fsutil::lock_folder(&plan.dir, layout::LOCK_FILE)
        .map_err(|e| anyhow::anyhow!("another `uorch launch` is running this experiment: {e:#}"))
}

/// Results table, files and HParams record of a plan, from what is on disk.
pub fn report(plan: &Plan) -> Result<String> {
    let rows = results::rows(plan);
    results::write(plan, &rows)?;
    results::write_hparams(plan, &rows)?;
    Ok(results::summary(plan, &rows))
}
