//! Autoregressive generation with a key/value cache: greedy, or temperature +
//! nucleus (top-p) sampling from a seeded generator (the same draws on any device).

use super::llama::{KvCache, Llama};
use crate::rng::SplitMix64;
use tch::{Kind, Tensor};

#[derive(Debug, Clone, Copy)]
pub struct Sampling {
    /// 0 = greedy.
    pub temperature: f64,
    pub top_p: f64,
    pub seed: u64,
}

impl Sampling {
    pub const GREEDY: Sampling = Sampling { temperature: 0.0, top_p: 1.0, seed: 0 };
}

/// Pick a token from last-position logits `(vocab)`.
fn pick(logits: &Tensor, s: Sampling, rng: &mut SplitMix64) -> i64 {
    if s.temperature <= 0.0 {
        return logits.argmax(-1, false).int64_value(&[]);
    }
    let probs = (logits.to_kind(Kind::Float) / s.temperature).softmax(-1, Kind::Float).to_device(tch::Device::Cpu);
    let probs: Vec<f32> = Vec::<f32>::try_from(&probs).expect("float probabilities");
    let mut order: Vec<usize> = (0..probs.len()).collect();
    order.sort_unstable_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
    // Smallest set of most likely tokens whose mass reaches top_p.
    let mut kept = 0;
    let mut mass = 0.0f64;
    for &i in &order {
        kept += 1;
        mass += probs[i] as f64;
        if mass >= s.top_p {
            break;
        }
    }
    let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * mass;
    let mut acc = 0.0;
    for &i in &order[..kept] {
        acc += probs[i] as f64;
        if u < acc {
            return i as i64;
        }
    }
    order[kept - 1] as i64
}

/// Up to `max_new` tokens after `prompt`, stopping after an end-of-sequence id.
pub fn generate(model: &Llama, prompt: &[i64], max_new: usize, sampling: Sampling, eos: &[i64]) -> Vec<i64> {
    generate_with(model.layers.len(), model.device(), prompt, max_new, sampling, eos, &mut |ids, cache| {
        model.last_logits(&model.hidden_states(&model.embed(ids), Some(cache)))
    })
}

/// As [`generate`], for any model step `(ids (1, seq), cache) → logits (1, seq, vocab)`
/// with `layers` cached layers (e.g. a USER-LLM reading a user's embeddings);
/// only the last position's are read, so a step may return those alone `(1, 1, vocab)`.
pub fn generate_with(
    layers: usize,
    device: tch::Device,
    prompt: &[i64],
    max_new: usize,
    sampling: Sampling,
    eos: &[i64],
    step: &mut dyn FnMut(&Tensor, &mut KvCache) -> Tensor,
) -> Vec<i64> {
    assert!(!prompt.is_empty(), "generation needs at least one prompt token");
    if max_new == 0 {
        return Vec::new();
    }
    tch::no_grad(|| {
        let mut rng = SplitMix64::new(sampling.seed);
        let mut cache = KvCache::new(layers);
        let ids = Tensor::from_slice(prompt).unsqueeze(0).to_device(device);
        let mut logits = step(&ids, &mut cache).select(1, -1).squeeze_dim(0);
        let mut out = Vec::with_capacity(max_new);
        for _ in 0..max_new {
            let next = pick(&logits, sampling, &mut rng);
            out.push(next);
            // No step after the last token: its logits would go unread.
            if eos.contains(&next) || out.len() == max_new {
                break;
            }
            let t = Tensor::from_slice(&[next]).unsqueeze(0).to_device(device);
            logits = step(&t, &mut cache).select(1, -1).squeeze_dim(0);
        }
        out
    })
}
