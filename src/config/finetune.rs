//! The `finetune:` section: how USER-LLM is assembled (integration mode,
//! cross-attention placement, Perceiver, projection, LoRA) and trained
//! (strategy, optimizer, evaluation). The model layer builds from these types.

use super::defaults::*;
use crate::data::tasks::Task;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FinetuneConfig {
    /// A Hugging Face model folder (e.g. the imported SmolLM2).
    pub model: PathBuf,
    /// The run folder whose pretraining checkpoint provides the encoder
    /// (default: this run's own; a sweep shares one pretraining run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoder_from: Option<PathBuf>,
    /// favorite-category, next-item or review.
    #[serde(default = "d_task")]
    pub task: Task,
    #[serde(default = "d_integration")]
    pub integration: Integration,
    #[serde(default = "d_layers_placement")]
    pub cross_attention_layers: Placement,
    #[serde(default)]
    pub perceiver: Option<PerceiverConfig>,
    #[serde(default = "d_projection")]
    pub projection: ProjectionKind,
    #[serde(default = "d_strategy")]
    pub strategy: Strategy,
    /// Used with `strategy: lora`.
    #[serde(default)]
    pub lora: LoraConfig,
    pub steps: u64,
    /// Examples per rank per micro-batch.
    #[serde(default = "d_ft_batch")]
    pub batch_size: usize,
    /// Micro-batches accumulated per optimizer step.
    #[serde(default = "d_one")]
    pub grad_accum: usize,
    /// Recompute each decoder layer in backward instead of storing its
    /// activations (less memory, about one more forward per step).
    #[serde(default)]
    pub activation_checkpointing: bool,
    #[serde(default = "d_lr")]
    pub lr: f64,
    #[serde(default)]
    pub weight_decay: f64,
    #[serde(default = "d_ft_warmup")]
    pub warmup_steps: u64,
    #[serde(default = "d_clip")]
    pub grad_clip: f64,
    /// What each rank keeps of the gradients and optimizer state: 0 (DDP),
    /// 1 (optimizer sharded) or 2 (gradients sharded too).
    #[serde(default, skip_serializing_if = "ZeroStage::is_default")]
    pub zero_stage: ZeroStage,
    #[serde(default = "d_log")]
    pub log_every: u64,
    /// Steps between checkpoints (0 = only at the end and on interruption).
    #[serde(default)]
    pub checkpoint_every: u64,
    /// Checkpoints kept: the newest, and the one validation rates best.
    #[serde(default = "d_keep")]
    pub keep_checkpoints: usize,
    /// Test questions: N users drawn uniformly with the run's seed, or all (0).
    #[serde(default = "d_eval_examples")]
    pub eval_examples: usize,
    /// Validation questions (each user's second-to-last interaction; N
    /// users drawn with the seed, 0 = none) answered at every checkpoint:
    /// the checkpoint that answers them best is the one tested (once) and
    /// exported. Without checkpoints before the end there is nothing to
    /// pick, and validation is skipped.
    #[serde(default = "d_valid_examples")]
    pub valid_examples: usize,
    /// Test questions answered together in one forward pass, where that
    /// gives the same answers (closed-set questions with one prompt length).
    #[serde(default = "d_eval_batch")]
    pub eval_batch_size: usize,
    /// Next item: candidates ranked per question (the held-out item + negatives).
    #[serde(default = "d_candidates")]
    pub candidates: usize,
    /// Review: the longest generated (and trained) answer, in tokens.
    #[serde(default = "d_max_new")]
    pub max_new_tokens: usize,
    /// Test questions shown with their answers in TensorBoard's text tab.
    #[serde(default = "d_samples")]
    pub samples: usize,
    /// Also evaluate the model before finetuning on the test questions (of a
    /// TextPrompt model: the zero-shot TextPrompt).
    #[serde(default = "d_true")]
    pub before_finetuning: bool,
    /// Also evaluate the TextPrompt baseline (history as text) on the same cases.
    #[serde(default = "d_true")]
    pub text_prompt_baseline: bool,
    /// Interactions written out for TextPrompt (default: the encoder's
    /// `data.window`, so both see the same history); the oldest are dropped
    /// where the prompt would not fit the LLM's context.
    #[serde(default)]
    pub text_prompt_window: Option<usize>,
    /// How a closed-set answer (a category name, an item title) is scored.
    #[serde(default)]
    pub scoring: Scoring,
    /// Put each question to the LLM through its chat template (as the user's
    /// message, the answer as the assistant's), when the model has one.
    #[serde(default = "d_true")]
    pub chat_template: bool,
}

/// The score of a candidate answer, its end-of-text token included
/// (`finetune.scoring`): without it, and summed, a name that begins another
/// always outscores the longer one, and short names win.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scoring {
    /// Mean log-likelihood per token (the default).
    #[default]
    Mean,
    /// Summed log-likelihood.
    Sum,
}

impl Scoring {
    /// The score of an answer of `tokens` tokens whose log-likelihoods sum to `total`.
    pub fn of(self, total: f64, tokens: usize) -> f64 {
        match self {
            Scoring::Mean => total / tokens.max(1) as f64,
            Scoring::Sum => total,
        }
    }
}

/// How much of the training state each rank keeps (`finetune.zero_stage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub enum ZeroStage {
    /// Everything on every rank (DDP).
    Zero,
    /// Optimizer state and master weights sharded.
    One,
    /// Gradients sharded too, reduced as backward produces them.
    #[default]
    Two,
}

impl ZeroStage {
    /// Stage 2 is left out of dumps and config hashes, so configs written
    /// before the key existed keep their hash (and their checkpoints).
    pub fn is_default(&self) -> bool {
        *self == ZeroStage::Two
    }
}

impl TryFrom<u8> for ZeroStage {
    type Error = String;
    fn try_from(v: u8) -> Result<Self, String> {
        match v {
            0 => Ok(ZeroStage::Zero),
            1 => Ok(ZeroStage::One),
            2 => Ok(ZeroStage::Two),
            _ => {
                Err(format!("zero_stage is {v}: expected 0 (DDP), 1 (sharded optimizer) or 2 (sharded gradients too)"))
            }
        }
    }
}

impl From<ZeroStage> for u8 {
    fn from(s: ZeroStage) -> u8 {
        match s {
            ZeroStage::Zero => 0,
            ZeroStage::One => 1,
            ZeroStage::Two => 2,
        }
    }
}

fn d_task() -> Task {
    Task::FavoriteCategory
}
fn d_integration() -> Integration {
    Integration::CrossAttention
}
fn d_layers_placement() -> Placement {
    Placement::Named("all".into())
}
fn d_projection() -> ProjectionKind {
    ProjectionKind::Linear
}
fn d_strategy() -> Strategy {
    Strategy::Enc
}
fn d_ft_batch() -> usize {
    8
}
fn d_ft_warmup() -> u64 {
    10
}
fn d_eval_batch() -> usize {
    8
}
fn d_eval_examples() -> usize {
    200
}
fn d_valid_examples() -> usize {
    100
}
fn d_candidates() -> usize {
    20
}
fn d_max_new() -> usize {
    48
}
fn d_samples() -> usize {
    4
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Integration {
    CrossAttention,
    SoftPrompt,
    /// The baseline: no user embeddings, the history is written into the
    /// prompt as text; only the LLM (or its LoRA adapters) can train.
    TextPrompt,
}

/// What trains during finetuning (USER-LLM's strategies).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// LLM, encoder, projection (and Perceiver, cross-attention): everything.
    Full,
    /// LLM frozen except LoRA adapters; encoder, projection, cross-attention train.
    Lora,
    /// LLM frozen; encoder, projection, cross-attention train.
    Enc,
    /// LLM and encoder frozen; projection (and Perceiver, cross-attention) train.
    Proj,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerceiverConfig {
    pub latents: usize,
    pub layers: usize,
    pub heads: usize,
    /// What the latents attend to: the history's positions (`inputs`, the
    /// default, as in the USER-LLM paper's description), or those and the
    /// latents themselves (`inputs_and_latents`, Flamingo's resampler).
    #[serde(default)]
    pub keys: PerceiverKeys,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PerceiverKeys {
    #[default]
    Inputs,
    InputsAndLatents,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProjectionKind {
    Linear,
    /// Linear → GELU → linear.
    Mlp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoraConfig {
    #[serde(default = "d_rank")]
    pub rank: usize,
    #[serde(default = "d_alpha")]
    pub alpha: f64,
    #[serde(default)]
    pub dropout: f64,
    /// Linear layers to adapt, by their Hugging Face names.
    #[serde(default = "d_targets")]
    pub target_modules: Vec<String>,
}

fn d_rank() -> usize {
    8
}
fn d_alpha() -> f64 {
    16.0
}
fn d_targets() -> Vec<String> {
    ["q_proj", "k_proj", "v_proj", "o_proj"].iter().map(|s| s.to_string()).collect()
}

impl Default for LoraConfig {
    fn default() -> Self {
        serde_json::from_str("{}").expect("every LoRA field has a default")
    }
}

/// Which decoder layers get a cross-attention block: `all`, `upper_half`,
/// `lower_half`, `every_K` (layers 0, K, 2K, ...), or an explicit list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Placement {
    Named(String),
    List(Vec<usize>),
}

impl Placement {
    /// The layer indices for a model of `n` layers, or what is wrong.
    pub fn layers(&self, n: usize) -> Result<Vec<usize>, String> {
        let v: Vec<usize> = match self {
            Placement::List(l) => {
                if let Some(bad) = l.iter().find(|&&i| i >= n) {
                    return Err(format!("layer {bad} does not exist (the model has {n}: 0..{})", n - 1));
                }
                let mut l = l.clone();
                l.sort();
                l.dedup();
                l
            }
            Placement::Named(s) => match s.as_str() {
                "all" => (0..n).collect(),
                "upper_half" => (n / 2..n).collect(),
                "lower_half" => (0..n / 2).collect(),
                other => match other.strip_prefix("every_").and_then(|k| k.parse::<usize>().ok()).filter(|&k| k >= 1) {
                    Some(k) => (0..n).step_by(k).collect(),
                    None => {
                        return Err(format!(
                        "{other:?} is not a placement: use all, upper_half, lower_half, every_K or a list of layers"
                    ))
                    }
                },
            },
        };
        if v.is_empty() {
            return Err("no layer selected".into());
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placements_select_the_documented_layers() {
        let p = |s: &str| Placement::Named(s.into());
        assert_eq!(p("upper_half").layers(30).unwrap(), (15..30).collect::<Vec<_>>());
        assert_eq!(p("lower_half").layers(4).unwrap(), vec![0, 1]);
        assert_eq!(p("every_10").layers(30).unwrap(), vec![0, 10, 20]);
        assert_eq!(p("all").layers(3).unwrap(), vec![0, 1, 2]);
        assert_eq!(Placement::List(vec![5, 1, 5]).layers(6).unwrap(), vec![1, 5]);
        assert!(Placement::List(vec![6]).layers(6).unwrap_err().contains("layer 6 does not exist"));
        assert!(p("upper").layers(6).is_err());
        assert!(p("every_0").layers(6).is_err());
    }
}
