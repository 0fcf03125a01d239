//! Per-stage status files in the experiment folder (`status/<stage>.json`),
//! written atomically by the controller. A stage is complete when its run
//! folder holds its metrics file: a crash between finishing and recording
//! still counts as done, and nothing complete runs again.

use super::layout;
use super::plan::Stage;
use crate::rundir::RunDir;
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum State {
    #[default]
    Pending,
    Running,
    Done,
    Failed,
    /// Stopped on request after checkpointing; the next run resumes it.
    Interrupted,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Status {
    pub state: State,
    /// Attempts in the latest sweep run (a rerun gives failed stages a fresh budget).
    pub attempts: usize,
    /// Wall time of the attempts, all sweep runs together.
    pub wall_s: f64,
    /// GPUs the stage ran on (0 on CPU).
    pub gpus: usize,
    /// Why it failed: the reason and the last lines of its log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

pub fn read(dir: &Path, stage: &str) -> Status {
    std::fs::read(layout::status(dir, stage)).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
}

pub fn write(dir: &Path, stage: &str, s: &Status) -> Result<()> {
    std::fs::create_dir_all(layout::statuses(dir))?;
    crate::fsutil::write_atomic(&layout::status(dir, stage), &serde_json::to_vec_pretty(s)?)?;
    Ok(())
}

/// The file a finished stage leaves in its run folder.
pub fn metrics_file(stage: &Stage) -> PathBuf {
    RunDir::new(&stage.run_dir).metrics(stage.kind.files())
}

pub fn complete(stage: &Stage) -> bool {
    metrics_file(stage).exists()
}

/// (step, loss, seconds since the stage's training began) from the last line
/// of its training log, for the live view.
pub fn progress(stage: &Stage) -> Option<(u64, f64, f64)> {
    let log = RunDir::new(&stage.run_dir).log(stage.kind.files());
    let text = std::fs::read_to_string(log).ok()?;
    let last: serde_json::Value = serde_json::from_str(text.lines().last()?).ok()?;
    Some((last["step"].as_u64()?, last["loss"].as_f64().unwrap_or(f64::NAN), last["elapsed_s"].as_f64().unwrap_or(0.0)))
}
