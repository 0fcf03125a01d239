//! A tiny Llama folder for tests: 2 layers, 32 wide, SmolLM2's vocabulary
//! and tokenizer (copied from the set-up's import), weights drawn from a
//! fixed seed, so the same folder comes out in every process.

use crate::model::llama::{Llama, LlamaConfig};
use anyhow::{Context, Result};
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// Write the tiny model into `dir`: `config.json`, `tokenizer.json` (from
/// `tokenizer`) and `model.safetensors`. Draws from libtorch's global
/// generator: callers that share it hold their lock.
pub fn write_tiny_model(dir: &Path, tokenizer: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let config = serde_json::json!({"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 49152, "tie_word_embeddings": true, "eos_token_id": 2});
    std::fs::write(dir.join("config.json"), config.to_string())?;
    std::fs::copy(tokenizer, dir.join("tokenizer.json"))
        .with_context(|| format!("{}: the tokenizer to copy (make setup imports it)", tokenizer.display()))?;
    let c: LlamaConfig = serde_json::from_value(config)?;
    tch::manual_seed(0);
    let m = Llama::new(c, Device::Cpu, Kind::Float);
    // In name order: `variables()` is a hash map, whose order changes from one
    // process to the next, and the weights must not.
    let mut vars: Vec<(String, Tensor)> = m.vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    let vars: Vec<(String, Tensor)> = vars
        .into_iter()
        .map(|(n, t)| {
            let v = if n.ends_with("norm.weight") { t.ones_like() } else { t.randn_like() * 0.05 };
            (n, v)
        })
        .collect();
    crate::model::weights::save_tensors(&dir.join("model.safetensors"), &vars)?;
    Ok(())
}
