//! The metrics files a finished stage leaves in its run folder
//! (`metrics.json`, `finetune_metrics.json`; see [`crate::rundir`]), typed:
//! the stages write them, the launcher's summary and the sweep read them.

use crate::config::finetune::{Integration, Strategy};
use crate::data::tasks::Task;
use crate::task::evaluate::Evaluated;
use crate::task::ranking::RankingMetrics;
use anyhow::{Context, Result};
use serde::{Deserialize, Deserializer, Serialize};
use std::path::Path;

/// `metrics.json`: pretraining's result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PretrainMetrics {
    pub steps: u64,
    /// NaN (written as null) when no step ran in this process.
    #[serde(deserialize_with = "nan_if_null")]
    pub final_loss: f64,
    /// The encoder's next-item metrics on the test split.
    pub encoder: RankingMetrics,
    /// Item popularity on the same cases.
    pub popularity: RankingMetrics,
    /// Elastic restarts of the workers during the launch that finished it.
    #[serde(default)]
    pub restarts: usize,
}

/// `finetune_metrics.json`: finetuning's result against the baselines.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FinetuneMetrics {
    pub task: Task,
    pub integration: Integration,
    pub strategy: Strategy,
    pub steps: u64,
    pub trainable_parameters: i64,
    pub parameters: i64,
    pub optimizer_state_bytes_per_rank: i64,
    /// DDP (0) or the ZeRO stage (1, 2).
    #[serde(default)]
    pub zero_stage: u8,
    /// Rank 0's resident-memory high-water mark over the step loop, in bytes
    /// (host memory; 0 where unknown).
    #[serde(default)]
    pub training_peak_memory_bytes: i64,
    /// That mark less what was resident when the loop began: what training
    /// added (gradients, optimizer state, activations).
    #[serde(default)]
    pub training_added_memory_bytes: i64,
    pub world_size: usize,
    #[serde(deserialize_with = "nan_if_null")]
    pub final_loss: f64,
    /// `tanh(gate)` per cross-attention layer.
    pub gates: Vec<(usize, f64)>,
    /// The model before finetuning (unless `before_finetuning: false`), the
    /// finetuned model, then the baselines.
    pub results: Vec<Evaluated>,
    /// Elastic restarts of the workers during the launch that finished it.
    #[serde(default)]
    pub restarts: usize,
    /// Each checkpoint's score on the validation questions, by step.
    #[serde(default)]
    pub validation: Vec<Validation>,
    /// The step whose weights were tested and written (the best validated
    /// checkpoint's; the last step's without validation).
    #[serde(default)]
    pub selected_step: u64,
}

/// A checkpoint's score on the validation questions (`finetune_validation.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Validation {
    pub step: u64,
    pub metric: String,
    pub value: f64,
    /// Its 95% bootstrap interval.
    pub ci: [f64; 2],
    pub questions: usize,
}

/// JSON has no NaN: serde_json writes it as null; read null back as NaN.
fn nan_if_null<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// Write a metrics file (pretty JSON, atomically).
pub fn write(path: &Path, metrics: &impl Serialize) -> Result<()> {
    crate::fsutil::write_atomic(path, serde_json::to_string_pretty(metrics)?.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// Read a metrics file.
pub fn read<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("{}: not a metrics file of this uorch", path.display()))
}
