//! A Llama-family model's `config.json` (the Hugging Face fields we use).

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::path::Path;

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct RopeScaling {
    #[serde(alias = "type")]
    pub rope_type: String,
    #[serde(default)]
    pub factor: f64,
    #[serde(default)]
    pub low_freq_factor: f64,
    #[serde(default)]
    pub high_freq_factor: f64,
    #[serde(default)]
    pub original_max_position_embeddings: usize,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct LlamaConfig {
    #[serde(default = "default_model_type")]
    pub model_type: String,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    #[serde(default)]
    pub head_dim: Option<usize>,
    pub vocab_size: usize,
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    #[serde(default = "default_theta")]
    pub rope_theta: f64,
    #[serde(default)]
    pub rope_scaling: Option<RopeScaling>,
    #[serde(default = "default_max_pos")]
    pub max_position_embeddings: usize,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Qwen2 has biases on Q, K and V.
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default)]
    pub bos_token_id: Option<i64>,
    #[serde(default)]
    pub eos_token_id: Option<serde_json::Value>,
    /// `generation_config.json`'s `eos_token_id` beside `config.json`, when
    /// it has one: what Hugging Face `generate` stops at (Llama-3-Instruct's
    /// `<|eot_id|>` is only there).
    #[serde(skip)]
    pub generation_eos_token_id: Option<serde_json::Value>,
}

/// A token id or a list of them.
fn ids(v: &serde_json::Value) -> Option<Vec<i64>> {
    match v {
        serde_json::Value::Number(n) => n.as_i64().map(|i| vec![i]),
        serde_json::Value::Array(a) => a.iter().map(|x| x.as_i64()).collect(),
        _ => None,
    }
}

fn default_model_type() -> String {
    "llama".into()
}
fn default_eps() -> f64 {
    1e-6
}
fn default_theta() -> f64 {
    10000.0
}
fn default_max_pos() -> usize {
    2048
}

impl LlamaConfig {
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let mut c: Self =
            serde_json::from_str(&text).with_context(|| format!("{}: not a Llama-family config", path.display()))?;
        if c.model_type == "qwen2" {
            c.attention_bias = true;
        }
        let gen = dir.join("generation_config.json");
        if gen.exists() {
            let text = std::fs::read_to_string(&gen).with_context(|| format!("cannot read {}", gen.display()))?;
            let v: serde_json::Value =
                serde_json::from_str(&text).with_context(|| format!("{}: not JSON", gen.display()))?;
            c.generation_eos_token_id = match v.get("eos_token_id") {
                None | Some(serde_json::Value::Null) => None,
                Some(id) if ids(id).is_some() => Some(id.clone()),
                Some(other) => {
                    bail!("{}: eos_token_id is {other}, expected a token id or a list of them", gen.display())
                }
            };
        }
        c.validate().with_context(|| format!("{}", path.display()))?;
        Ok(c)
    }

    pub fn validate(&self) -> Result<()> {
        if !matches!(self.model_type.as_str(), "llama" | "qwen2" | "mistral") {
            bail!(
                "model_type {:?} is not a supported Llama-family architecture (llama, qwen2, mistral)",
                self.model_type
            );
        }
        if self.num_attention_heads == 0 || self.num_attention_heads % self.kv_heads() != 0 {
            bail!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                self.num_attention_heads,
                self.kv_heads()
            );
        }
        if self.head_dim() % 2 != 0 {
            bail!("head_dim {} must be even for rotary embeddings", self.head_dim());
        }
        Ok(())
    }

    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    pub fn head_dim(&self) -> usize {
        self.head_dim.unwrap_or(self.hidden_size / self.num_attention_heads)
    }

    /// End-of-sequence ids, as `generate` in transformers takes them:
    /// `generation_config.json`'s when it names any, else `config.json`'s
    /// (either may be one id or a list).
    pub fn eos_ids(&self) -> Vec<i64> {
        self.generation_eos_token_id.as_ref().or(self.eos_token_id.as_ref()).and_then(ids).unwrap_or_default()
    }

    /// Parameters: embeddings, layers, final norm, and an untied head.
    pub fn parameter_count(&self) -> u64 {
        let (h, i, v) = (self.hidden_size as u64, self.intermediate_size as u64, self.vocab_size as u64);
        let q = (self.num_attention_heads * self.head_dim()) as u64;
        let kv = (self.kv_heads() * self.head_dim()) as u64;
        let bias = if self.attention_bias { q + 2 * kv } else { 0 };
        let layer = h * q + 2 * h * kv + q * h + bias + 3 * h * i + 2 * h;
        v * h + self.num_hidden_layers as u64 * layer + h + if self.tie_word_embeddings { 0 } else { v * h }
    }
}

#[cfg(test)]
mod tests {
    use super::LlamaConfig;

    fn folder(gen: Option<&str>) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let config = r#"{"hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1,
            "num_attention_heads": 2, "vocab_size": 32, "eos_token_id": 2}"#;
        std::fs::write(d.path().join("config.json"), config).unwrap();
        if let Some(g) = gen {
            std::fs::write(d.path().join("generation_config.json"), g).unwrap();
        }
        d
    }

    #[test]
    fn generation_config_end_of_sequence_ids_replace_the_configs_as_in_transformers() {
        let eos = |gen| LlamaConfig::load(folder(gen).path()).unwrap().eos_ids();
        assert_eq!(eos(None), [2]);
        assert_eq!(eos(Some(r#"{"eos_token_id": [2, 7, 9]}"#)), [2, 7, 9]);
        assert_eq!(eos(Some(r#"{"eos_token_id": 7}"#)), [7]);
        // Naming none leaves config.json's.
        assert_eq!(eos(Some(r#"{"do_sample": false}"#)), [2]);
        assert_eq!(eos(Some(r#"{"eos_token_id": null}"#)), [2]);
        for bad in [r#"{"eos_token_id": "</s>"}"#, r#"{"eos_token_id": [2, "x"]}"#, "{not json"] {
            let d = folder(Some(bad));
            let e = format!("{:#}", LlamaConfig::load(d.path()).unwrap_err());
            assert!(e.contains("generation_config.json"), "{bad}: {e}");
        }
    }
}
