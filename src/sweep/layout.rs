//! An experiment's folder, `<output_root>/<name>`: the one place that names its files.
//!
//! ```text
//! experiment.json                  the plan: trials, their axes, stages and what each needs
//! .lock                            held (flock) by the controller running the experiment
//! stages/<stage>.yaml              each stage's resolved run config, what its launcher runs
//! runs/                            the TensorBoard log root: the sweep's HParams experiment,
//!   <trial>/                         each trial's finetuning run folder (laid out as `rundir`
//!                                    says; TensorBoard shows it as `<trial>`)
//!   pretrain/<data>-<hash>/          each pretraining run, shared by the trials that need it
//!                                    (TensorBoard: `pretrain/<data>-<hash>`)
//!   report/                          `uorch report`'s plots as TensorBoard images, its claims as text
//! status/<stage>.json              each stage's state, attempts, wall time and error
//! logs/<stage>.log                 each stage's launcher output, all attempts appended
//! results.csv                      the results table, one row per trial
//! results.md                       the same table as Markdown
//! ```
//!
//! Every file but the logs is written to a temporary name and renamed.

use std::path::{Path, PathBuf};

pub const PLAN_FILE: &str = "experiment.json";
pub const LOCK_FILE: &str = ".lock";
const STAGES_DIR: &str = "stages";
const RUNS_DIR: &str = "runs";
/// The folder under `runs/` of the pretraining runs (no trial may take its name).
pub const PRETRAIN_RUNS: &str = "pretrain";
/// The folder under `runs/` of the report's TensorBoard events (no trial may take its name).
pub const REPORT_RUN: &str = "report";
/// Names under `runs/` that are not trials.
pub const RESERVED: [&str; 2] = [PRETRAIN_RUNS, REPORT_RUN];
const STATUS_DIR: &str = "status";
const LOGS_DIR: &str = "logs";
const CSV_FILE: &str = "results.csv";
const MD_FILE: &str = "results.md";

pub fn plan(dir: &Path) -> PathBuf {
    dir.join(PLAN_FILE)
}

pub fn stages(dir: &Path) -> PathBuf {
    dir.join(STAGES_DIR)
}

pub fn stage_config(dir: &Path, stage: &str) -> PathBuf {
    stages(dir).join(format!("{stage}.yaml"))
}

/// The stage run folders' parent: the `output_root` of every stage config.
pub fn runs(dir: &Path) -> PathBuf {
    dir.join(RUNS_DIR)
}

/// The pretraining stages' run folders' parent.
pub fn pretrain_runs(dir: &Path) -> PathBuf {
    runs(dir).join(PRETRAIN_RUNS)
}

/// The report's TensorBoard log folder (the run `report` of the log root).
pub fn report_run(dir: &Path) -> PathBuf {
    runs(dir).join(REPORT_RUN)
}

pub fn statuses(dir: &Path) -> PathBuf {
    dir.join(STATUS_DIR)
}

pub fn status(dir: &Path, stage: &str) -> PathBuf {
    statuses(dir).join(format!("{stage}.json"))
}

pub fn logs(dir: &Path) -> PathBuf {
    dir.join(LOGS_DIR)
}

pub fn log(dir: &Path, stage: &str) -> PathBuf {
    logs(dir).join(format!("{stage}.log"))
}

pub fn results_csv(dir: &Path) -> PathBuf {
    dir.join(CSV_FILE)
}

pub fn results_md(dir: &Path) -> PathBuf {
    dir.join(MD_FILE)
}
