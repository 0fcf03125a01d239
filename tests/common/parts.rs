//! A tiny USER-LLM's parts for the model tests.

use tch::{Device, Kind, Tensor};
use uorch::model::encoder::{EncoderShape, Feature};
use uorch::model::llama::{Llama, LlamaConfig};
use uorch::model::lora::LoraConfig;
use uorch::model::userllm::{Integration, PerceiverConfig, ProjectionKind, Strategy, UserLlmConfig};
use uorch::model::xattn::Placement;

pub fn tiny_llm(seed: i64) -> Llama {
    let c: LlamaConfig = serde_json::from_value(serde_json::json!({
        "model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 4,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 50, "tie_word_embeddings": true
    }))
    .unwrap();
    tch::manual_seed(seed);
    let m = Llama::new(c, Device::Cpu, Kind::Float);
    // In name order, so the same seed gives the same weights.
    let mut vars: Vec<(String, Tensor)> = m.vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    tch::no_grad(|| {
        for (n, v) in vars {
            let _ = if n.ends_with("norm.weight") {
                v.shallow_clone().fill_(1.0)
            } else {
                v.shallow_clone().normal_(0.0, 0.1)
            };
        }
    });
    m
}

pub fn shape() -> EncoderShape {
    EncoderShape {
        features: vec![(Feature::Item, 20), (Feature::Rating, 5)],
        dim: 16,
        layers: 1,
        heads: 2,
        ffn_mult: 2,
        max_len: 6,
        dropout: 0.0,
    }
}

pub fn cfg(integration: Integration, strategy: Strategy, perceiver: bool) -> UserLlmConfig {
    UserLlmConfig {
        integration,
        cross_attention_layers: Placement::Named("upper_half".into()),
        perceiver: perceiver.then_some(PerceiverConfig { latents: 3, layers: 1, heads: 2, keys: Default::default() }),
        projection: ProjectionKind::Mlp,
        strategy,
        lora: LoraConfig { rank: 4, alpha: 8.0, ..Default::default() },
    }
}

pub fn inputs() -> (Tensor, Vec<Tensor>) {
    let tokens = Tensor::from_slice(&[1i64, 7, 3, 9, 2, 4, 4, 8]).view([2, 4]);
    let items = Tensor::from_slice(&[1i64, 5, 9, 0, 0, 0, 3, 3, 12, 19, 20, 2]).view([2, 6]);
    let ratings = Tensor::from_slice(&[1i64, 2, 3, 0, 0, 0, 5, 4, 3, 2, 1, 1]).view([2, 6]);
    (tokens, vec![items, ratings])
}
