//! A run's folder, `<output_root>/<name>`: the one place that names its files.
//!
//! ```text
//! config.yaml                      the resolved config the run executes (workers read it)
//! env.json                         `uorch env` of the machine that launched it
//! events.out.tfevents.*            TensorBoard events: HParams session, config and env text,
//!                                  training scalars, results and samples (in the run folder
//!                                  itself, so TensorBoard names the run after the folder)
//! train_log.jsonl                  pretraining, one line per step: step, loss, lr, grad_norm, elapsed_s
//! metrics.json                     pretraining's final loss and test metrics (its presence = done)
//! checkpoints/                     pretraining checkpoints
//!   step-00001500/                   one complete checkpoint (the newest `keep_checkpoints` stay)
//!     model.safetensors                parameters (f32)
//!     optimizer.safetensors            AdamW moments and step
//!     state.json                       step, config hash, world size, loss, SHA-256 of each file,
//!                                      validation score (finetuning with `valid_examples`)
//!   .step-00001500.tmp/              a checkpoint being written (never read; replaced)
//! finetune_log.jsonl               finetuning, one line per step (as train_log.jsonl)
//! finetune_baselines.json          baselines evaluated before finetuning (reused on resume)
//! finetune_baseline_predictions.jsonl  their answer to each test question, with `who`
//! finetune_checkpoints/            finetuning checkpoints, laid out as checkpoints/ except:
//!   step-N/model.safetensors         the trained tensors only
//!   step-N/optimizer-rank-R.safetensors  rank R's optimizer shard
//! finetune_validation.json         each checkpoint's score on the validation questions
//! finetune_weights.safetensors     everything but the frozen base LLM (the finetuned model)
//! finetune_predictions.jsonl       the finetuned model's answer to every test question
//! finetune_metrics.json            finetuning results against the baselines (its presence = done)
//! restarts.jsonl                   each elastic restart (`--max-restarts`): when, which rank, why
//! .lock                            held (flock) by the launcher running the run; says its pid and host
//! ```
//!
//! Every file is written to a temporary name and renamed, so a crash never
//! leaves a half file that a resume or a sweep would trust.

use crate::config::{emit, RunConfig};
use crate::fsutil::write_atomic;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// Names inside one checkpoint folder (`step-N/`).
pub mod checkpoint {
    pub const MODEL: &str = "model.safetensors";
    pub const OPTIMIZER: &str = "optimizer.safetensors";
    pub const STATE: &str = "state.json";

    /// One rank's optimizer shard (finetuning).
    pub fn optimizer_shard(rank: usize) -> String {
        format!("optimizer-rank-{rank}.safetensors")
    }

    /// The folder of the checkpoint after `step` steps.
    pub fn step_dir(step: u64) -> String {
        format!("step-{step:08}")
    }

    /// The staging folder of that checkpoint while it is written.
    pub fn staging_dir(step: u64) -> String {
        format!(".step-{step:08}.tmp")
    }

    /// The step of a complete checkpoint folder's name.
    pub fn step_of(name: &str) -> Option<u64> {
        name.strip_prefix("step-")?.parse().ok()
    }
}

pub const CONFIG_FILE: &str = "config.yaml";
pub const ENV_FILE: &str = "env.json";
/// Where uorch before 2026-12-04 kept a run's TensorBoard events (the run
/// then showed as `<name>/tb`); such a run folder is refused, not mixed.
pub const LEGACY_TB_DIR: &str = "tb";

/// The two training stages a run folder can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageFiles {
    Pretrain,
    Finetune,
}

impl StageFiles {
    /// One JSON line per optimizer step.
    pub fn log(self) -> &'static str {
        match self {
            StageFiles::Pretrain => "train_log.jsonl",
            StageFiles::Finetune => "finetune_log.jsonl",
        }
    }

    /// Final metrics; the stage is complete when this file exists.
    pub fn metrics(self) -> &'static str {
        match self {
            StageFiles::Pretrain => "metrics.json",
            StageFiles::Finetune => "finetune_metrics.json",
        }
    }

    pub fn checkpoints(self) -> &'static str {
        match self {
            StageFiles::Pretrain => "checkpoints",
            StageFiles::Finetune => "finetune_checkpoints",
        }
    }
}

/// Everything of the finetuned model that is not the base LLM's frozen
/// weights (safetensors, Hugging Face names for the LLM's): the model folder
/// plus this file is the finetuned model.
pub const FINETUNE_WEIGHTS: &str = "finetune_weights.safetensors";
/// The finetuned model's answer to every test question, one JSON per line.
pub const FINETUNE_PREDICTIONS: &str = "finetune_predictions.jsonl";
pub const FINETUNE_BASELINE_PREDICTIONS: &str = "finetune_baseline_predictions.jsonl";
/// Results before finetuning, kept so a resumed run does not redo them.
pub const FINETUNE_BASELINES: &str = "finetune_baselines.json";
/// Each finetuning checkpoint's validation score.
pub const FINETUNE_VALIDATION: &str = "finetune_validation.json";

/// One line per elastic restart of the run's workers.
pub const RESTARTS: &str = "restarts.jsonl";
/// Held (flock) by the launcher running the run.
pub const LOCK: &str = ".lock";

/// A run folder's path, and the path of each file in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir(PathBuf);

impl RunDir {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self(path.into())
    }

    /// The folder of a config's run.
    pub fn of(config: &RunConfig) -> Self {
        Self(config.run_dir())
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn config(&self) -> PathBuf {
        self.0.join(CONFIG_FILE)
    }

    pub fn env(&self) -> PathBuf {
        self.0.join(ENV_FILE)
    }

    pub fn restarts(&self) -> PathBuf {
        self.0.join(RESTARTS)
    }

    /// The TensorBoard log folder of the run: the run folder itself.
    pub fn events(&self) -> &Path {
        &self.0
    }

    /// The log folder of the old layout, when it holds events.
    pub fn legacy_events(&self) -> Option<PathBuf> {
        let old = self.0.join(LEGACY_TB_DIR);
        crate::tb::holds_events(&old).then_some(old)
    }

    pub fn log(&self, stage: StageFiles) -> PathBuf {
        self.0.join(stage.log())
    }

    pub fn metrics(&self, stage: StageFiles) -> PathBuf {
        self.0.join(stage.metrics())
    }

    pub fn checkpoints(&self, stage: StageFiles) -> PathBuf {
        self.0.join(stage.checkpoints())
    }

    pub fn finetune_weights(&self) -> PathBuf {
        self.0.join(FINETUNE_WEIGHTS)
    }

    pub fn finetune_predictions(&self) -> PathBuf {
        self.0.join(FINETUNE_PREDICTIONS)
    }

    pub fn finetune_baseline_predictions(&self) -> PathBuf {
        self.0.join(FINETUNE_BASELINE_PREDICTIONS)
    }

    pub fn finetune_validation(&self) -> PathBuf {
        self.0.join(FINETUNE_VALIDATION)
    }

    pub fn finetune_baselines(&self) -> PathBuf {
        self.0.join(FINETUNE_BASELINES)
    }

    /// Create the folder and record what the run is: its resolved config and
    /// the environment (as `uorch env --json`).
    pub fn create(config: &RunConfig, env: &impl serde::Serialize) -> Result<Self> {
        let dir = Self::of(config);
        std::fs::create_dir_all(dir.path())
            .with_context(|| format!("cannot create run folder {}", dir.path().display()))?;
        let yaml = emit::to_yaml(&serde_json::to_value(config)?, None);
        write_atomic(&dir.config(), yaml.as_bytes()).with_context(|| format!("writing {}", dir.config().display()))?;
        write_atomic(&dir.env(), serde_json::to_string_pretty(env)?.as_bytes())?;
        Ok(dir)
    }
}
