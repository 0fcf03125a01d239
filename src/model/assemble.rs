//! A run's USER-LLM assembled from its config and store: the base LLM from
//! `finetune.model`, the encoder shaped by the store's vocabularies, and the
//! integration parts, initialised from the run's seed. Training loads a
//! pretrained encoder into it, serving an export's weights.

use super::batches::encoder_shape;
use super::llama::load::load;
use super::llama::Llama;
use super::userllm::{UserLlm, UserLlmConfig};
use crate::config::finetune::FinetuneConfig;
use crate::config::RunConfig;
use crate::data::store::Store;
use anyhow::{Context, Result};
use tch::{Device, Kind};

/// The base LLM of `finetune.model` (f32).
pub fn load_llm(f: &FinetuneConfig, device: Device) -> Result<Llama> {
    load(&f.model, device, Kind::Float)
}

/// The run's USER-LLM around `llm`, before any training.
pub fn for_run(cfg: &RunConfig, store: &Store, llm: Llama) -> Result<UserLlm> {
    let f = cfg.finetune.as_ref().context("no finetune section")?;
    let d = cfg.data.as_ref().context("finetune needs a data section")?;
    let shape = encoder_shape(store, &cfg.encoder.clone().unwrap_or_default(), d.window);
    tch::manual_seed(cfg.seed as i64 + 1);
    UserLlm::new(llm, shape, &UserLlmConfig::from_finetune(f))
}
