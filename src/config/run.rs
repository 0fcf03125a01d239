//! The configuration of one run (a trial): what `uorch launch RUN.yaml` executes.
//! Later stages add their sections here; every field is used by some code path.

use super::defaults::*;
pub use super::encoder::EncoderConfig;
use super::encoder::Feature;
pub use super::finetune::FinetuneConfig;
use super::finetune::{Integration, Placement, Strategy};
use super::{Checks, Validate, DEFAULT_OUTPUT_ROOT};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Run name; the run's folder is `<output_root>/<name>`.
    pub name: String,
    /// Where run folders are created (relative paths: from the working folder).
    #[serde(default = "default_output_root")]
    pub output_root: PathBuf,
    /// Seed for every random number generator of the run.
    #[serde(default)]
    pub seed: u64,
    /// CPU threads libtorch uses per process for intra-op work; 0 = its default.
    #[serde(default)]
    pub cpu_threads: u32,
    /// The timeline store the run trains on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<DataConfig>,
    /// The user encoder's shape.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoder: Option<EncoderConfig>,
    /// Self-supervised encoder pretraining (runs when present).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pretrain: Option<PretrainConfig>,
    /// USER-LLM finetuning on a task (runs when present, after pretraining).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finetune: Option<FinetuneConfig>,
    /// Workers and collectives.
    #[serde(default)]
    pub dist: DistConfig,
    /// A sweep trial's axis values (set by the sweep controller; shown as
    /// the HParams dashboard's columns).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub trial: std::collections::BTreeMap<String, String>,
    /// The experiment a sweep trial belongs to (set by the sweep controller).
    /// A sweep's one HParams experiment record is at its log root, so its
    /// trials write only their sessions; a plain run writes its own record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experiment: Option<String>,
    /// Record the run as a session of TensorBoard's HParams dashboard (a
    /// sweep's shared pretraining runs are not trials, so they do not).
    #[serde(default = "d_true", skip_serializing_if = "is_true")]
    pub hparams_session: bool,
}

fn is_true(b: &bool) -> bool {
    *b
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// A store made by `uorch data prepare` (relative paths: from the working folder).
    pub store: PathBuf,
    /// History window length (inputs per training window; history per evaluation case).
    #[serde(default = "d_window")]
    pub window: usize,
    /// Interactions between consecutive training-window ends.
    #[serde(default = "d_window")]
    pub stride: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PretrainConfig {
    /// Optimizer steps.
    pub steps: u64,
    /// Windows per rank per micro-batch.
    #[serde(default = "d_batch")]
    pub batch_size: usize,
    /// Micro-batches accumulated per optimizer step.
    #[serde(default = "d_one")]
    pub grad_accum: usize,
    #[serde(default = "d_lr")]
    pub lr: f64,
    #[serde(default = "d_wd")]
    pub weight_decay: f64,
    /// Linear warm-up steps, then cosine decay to 10% of `lr` at `steps`.
    #[serde(default = "d_warmup")]
    pub warmup_steps: u64,
    /// Clip the global gradient norm to this (0 = off).
    #[serde(default = "d_clip")]
    pub grad_clip: f64,
    #[serde(default = "d_log")]
    pub log_every: u64,
    /// Steps between checkpoints (0 = only at the end and on interruption).
    #[serde(default = "d_ckpt")]
    pub checkpoint_every: u64,
    /// Checkpoints kept (the newest).
    #[serde(default = "d_keep")]
    pub keep_checkpoints: usize,
    /// Evaluation cases per forward pass.
    #[serde(default = "d_eval_batch")]
    pub eval_batch_size: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistConfig {
    /// Worker processes on this machine: a number, `auto` or `gpu`.
    #[serde(default)]
    pub nproc: Nproc,
    /// The data group's backend: `auto` (NCCL on GPUs, Gloo on CPU), `nccl`
    /// or `gloo` (which also takes CUDA tensors, so workers can share a GPU).
    #[serde(default, skip_serializing_if = "Backend::is_auto")]
    pub backend: Backend,
    /// Seconds a collective or the rendezvous may take before it is an error.
    #[serde(default = "d_timeout")]
    pub timeout_s: u64,
    /// Gradient bucket size for the data-parallel all-reduce, in MiB.
    #[serde(default = "d_bucket")]
    pub bucket_mb: usize,
}

impl Default for DistConfig {
    fn default() -> Self {
        Self { nproc: Nproc::default(), backend: Backend::Auto, timeout_s: d_timeout(), bucket_mb: d_bucket() }
    }
}

/// Worker processes per machine, as torchrun's `--nproc-per-node`: a count,
/// `auto` (one per visible GPU; one on a machine without GPUs) or `gpu` (one
/// per visible GPU; an error without). Launching resolves it to a count, so
/// the run folder's config and every worker see the number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Nproc {
    Count(usize),
    Named(String),
}

impl Default for Nproc {
    fn default() -> Self {
        Nproc::Named("auto".into())
    }
}

impl Nproc {
    /// The worker count on a machine with `gpus` visible GPUs.
    pub fn resolve(&self, gpus: usize) -> Result<usize, String> {
        match self {
            Nproc::Count(n) => Ok(*n),
            Nproc::Named(n) if n == "auto" => Ok(gpus.max(1)),
            Nproc::Named(n) if n == "gpu" && gpus > 0 => Ok(gpus),
            Nproc::Named(n) if n == "gpu" => Err("`gpu` needs a visible GPU, and this machine has none".into()),
            Nproc::Named(n) => Err(format!("a worker count, auto or gpu, found {n:?}")),
        }
    }

    /// The count of a resolved config (what the launcher writes for its
    /// workers); `auto` and `gpu` count as one before that.
    pub fn count(&self) -> usize {
        match self {
            Nproc::Count(n) => *n,
            Nproc::Named(_) => 1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    #[default]
    Auto,
    Nccl,
    Gloo,
}

impl Backend {
    pub fn is_auto(&self) -> bool {
        *self == Backend::Auto
    }
}

fn d_window() -> usize {
    50
}
fn d_batch() -> usize {
    32
}
fn d_wd() -> f64 {
    0.01
}
fn d_warmup() -> u64 {
    100
}
fn d_ckpt() -> u64 {
    500
}
fn d_eval_batch() -> usize {
    256
}
fn d_timeout() -> u64 {
    300
}
fn d_bucket() -> usize {
    25
}

fn default_output_root() -> PathBuf {
    PathBuf::from(DEFAULT_OUTPUT_ROOT)
}

/// Upper bound for `cpu_threads`: beyond this a value is a typo, not a machine.
pub const MAX_CPU_THREADS: u32 = 1024;

/// A name usable as one folder name on any file system we run on.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '=' | ','))
}

impl Validate for RunConfig {
    fn validate(&self, checks: &mut Checks) {
        checks.check(
            "name",
            is_valid_name(&self.name),
            format!(
                "a folder name of 1-128 characters from A-Z a-z 0-9 - _ . = , not starting with '.', found {:?}",
                self.name
            ),
        );
        checks.check(
            "cpu_threads",
            self.cpu_threads <= MAX_CPU_THREADS,
            format!("0 (libtorch's default) or 1..={MAX_CPU_THREADS}, found {}", self.cpu_threads),
        );
        checks.check("output_root", !self.output_root.as_os_str().is_empty(), "a non-empty path");
        if let Some(d) = &self.data {
            checks.check("data.window", (1..=4096).contains(&d.window), format!("1..=4096, found {}", d.window));
            checks.check("data.stride", d.stride >= 1, "at least 1");
        }
        if let Some(e) = &self.encoder {
            checks.check(
                "encoder.dim",
                e.dim >= 1 && e.heads >= 1 && e.dim % e.heads == 0,
                format!("a multiple of encoder.heads ({}), found {}", e.heads, e.dim),
            );
            checks.check("encoder.layers", (1..=64).contains(&e.layers), format!("1..=64, found {}", e.layers));
            checks.check("encoder.ffn_mult", (1..=16).contains(&e.ffn_mult), format!("1..=16, found {}", e.ffn_mult));
            checks.check(
                "encoder.dropout",
                (0.0..1.0).contains(&e.dropout),
                format!("0 <= dropout < 1, found {}", e.dropout),
            );
            let mut seen = e.features.clone();
            seen.dedup();
            checks.check(
                "encoder.features",
                !e.features.is_empty() && e.features[0] == Feature::Item && seen.len() == e.features.len(),
                "a list starting with item, without repeats",
            );
        }
        if let Some(p) = &self.pretrain {
            checks.check("pretrain.steps", p.steps >= 1, "at least 1");
            checks.check("pretrain.batch_size", p.batch_size >= 1, "at least 1");
            checks.check("pretrain.grad_accum", p.grad_accum >= 1, "at least 1");
            checks.check("pretrain.lr", p.lr > 0.0 && p.lr < 10.0, format!("0 < lr < 10, found {}", p.lr));
            checks.check(
                "pretrain.weight_decay",
                (0.0..1.0).contains(&p.weight_decay),
                format!("0 <= weight_decay < 1, found {}", p.weight_decay),
            );
            checks.check("pretrain.grad_clip", p.grad_clip >= 0.0, "0 (off) or a positive norm");
            checks.check("pretrain.log_every", p.log_every >= 1, "at least 1");
            checks.check("pretrain.keep_checkpoints", p.keep_checkpoints >= 1, "at least 1");
            checks.check("pretrain.eval_batch_size", p.eval_batch_size >= 1, "at least 1");
            checks.check("pretrain", self.data.is_some(), "a `data` section naming the store to train on");
        }
        if let Some(f) = &self.finetune {
            checks.check(
                "finetune.strategy",
                f.integration != Integration::TextPrompt || matches!(f.strategy, Strategy::Full | Strategy::Lora),
                "full or lora with `integration: text_prompt` (it has no encoder or projection to train)",
            );
            checks.check("finetune.grad_accum", f.grad_accum >= 1, "at least 1");
            checks.check("finetune.keep_checkpoints", f.keep_checkpoints >= 1, "at least 1");
            checks.check(
                "finetune.candidates",
                (2..=100_000).contains(&f.candidates),
                format!("2..=100000, found {}", f.candidates),
            );
            checks.check(
                "finetune.max_new_tokens",
                (2..=4096).contains(&f.max_new_tokens),
                format!("2..=4096, found {}", f.max_new_tokens),
            );
            checks.check("finetune.text_prompt_window", f.text_prompt_window != Some(0), "at least 1");
            checks.check("finetune.steps", f.steps >= 1, "at least 1");
            checks.check("finetune.batch_size", f.batch_size >= 1, "at least 1");
            checks.check("finetune.lr", f.lr > 0.0 && f.lr < 10.0, format!("0 < lr < 10, found {}", f.lr));
            checks.check("finetune.log_every", f.log_every >= 1, "at least 1");
            checks.check("finetune.eval_batch_size", f.eval_batch_size >= 1, "at least 1");
            checks.check("finetune.lora.rank", f.lora.rank >= 1, "at least 1");
            checks.check("finetune", self.data.is_some(), "a `data` section naming the store");
            if let Placement::Named(n) = &f.cross_attention_layers {
                let known = matches!(n.as_str(), "all" | "upper_half" | "lower_half")
                    || n.strip_prefix("every_").and_then(|k| k.parse::<usize>().ok()).is_some_and(|k| k >= 1);
                checks.check(
                    "finetune.cross_attention_layers",
                    known,
                    format!("all, upper_half, lower_half, every_K or a list of layer numbers, found {n:?}"),
                );
            }
        }
        match &self.dist.nproc {
            Nproc::Count(n) => checks.check("dist.nproc", (1..=1024).contains(n), format!("1..=1024, found {n}")),
            named => {
                let known = named.resolve(1).is_ok();
                checks.check("dist.nproc", known, named.resolve(1).err().unwrap_or_default());
            }
        }
        checks.check("dist.timeout_s", self.dist.timeout_s >= 1, "at least 1 second");
        checks.check("dist.bucket_mb", self.dist.bucket_mb >= 1, "at least 1 MiB");
    }
}

impl RunConfig {
    /// The run's folder.
    pub fn run_dir(&self) -> PathBuf {
        self.output_root.join(&self.name)
    }

    /// The input paths the config names that are not there or not readable:
    /// (key, what is wrong), e.g. (`data.store`, `… has no readable manifest.json …`). The
    /// encoder's run (`finetune.encoder_from`) is checked only when
    /// `encoder_from` is true (a sweep's pretraining stage makes it later).
    pub fn missing_paths(&self, encoder_from: bool) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut need = |key: &str, dir: &Path, file: &str, what: &str| {
            if !dir.is_dir() {
                out.push((key.to_string(), format!("{} is not a folder that exists ({what})", dir.display())));
            } else if std::fs::File::open(dir.join(file)).is_err() {
                out.push((key.to_string(), format!("{} has no readable {file} ({what})", dir.display())));
            }
        };
        // A config without stages reads no store.
        if let (Some(d), true) = (&self.data, self.pretrain.is_some() || self.finetune.is_some()) {
            need("data.store", &d.store, "manifest.json", "a store from `uorch data prepare`");
        }
        if let Some(f) = &self.finetune {
            need(
                "finetune.model",
                &f.model,
                "config.json",
                "a Hugging Face model folder, e.g. from `uorch model import-gguf`",
            );
            if let (true, Some(from)) = (encoder_from, &f.encoder_from) {
                need("finetune.encoder_from", from, "config.yaml", "the run folder whose pretrained encoder to use");
            }
        }
        out
    }
}
