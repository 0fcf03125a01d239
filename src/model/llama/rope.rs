//! Rotary position embeddings as Hugging Face Llama applies them: the head
//! vector's two halves are rotated by position-dependent angles
//! (`x·cos + rotate_half(x)·sin`), with the config's theta and, when present,
//! Llama-3 frequency scaling.

use super::config::LlamaConfig;
use tch::{Device, Kind, Tensor};

#[derive(Debug)]
pub struct Rope {
    /// `(max_positions, head_dim)` each, f32.
    cos: Tensor,
    sin: Tensor,
}

/// Inverse frequencies `theta^(-2i/d)`, with Llama-3 scaling applied.
pub fn inv_freq(c: &LlamaConfig) -> Vec<f64> {
    let d = c.head_dim();
    let base: Vec<f64> = (0..d / 2).map(|i| 1.0 / c.rope_theta.powf(2.0 * i as f64 / d as f64)).collect();
    match &c.rope_scaling {
        Some(s) if s.rope_type == "llama3" => {
            let old = s.original_max_position_embeddings as f64;
            let low_wavelen = old / s.low_freq_factor;
            let high_wavelen = old / s.high_freq_factor;
            base.into_iter()
                .map(|f| {
                    let wavelen = 2.0 * std::f64::consts::PI / f;
                    if wavelen < high_wavelen {
                        f
                    } else if wavelen > low_wavelen {
                        f / s.factor
                    } else {
                        let smooth = (old / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
                        (1.0 - smooth) * f / s.factor + smooth * f
                    }
                })
                .collect()
        }
        _ => base,
    }
}

impl Rope {
    pub fn new(c: &LlamaConfig, max_positions: usize, device: Device) -> Self {
        let inv: Vec<f32> = inv_freq(c).into_iter().map(|f| f as f32).collect();
        let inv = Tensor::from_slice(&inv).to_device(device);
        let pos = Tensor::arange(max_positions as i64, (Kind::Float, device));
        let freqs = pos.unsqueeze(1) * inv.unsqueeze(0);
        let emb = Tensor::cat(&[&freqs, &freqs], -1);
        Self { cos: emb.cos(), sin: emb.sin() }
    }

    pub fn max_positions(&self) -> i64 {
        self.cos.size()[0]
    }

    /// Rotate `x` `(batch, heads, seq, head_dim)` for positions `start..start+seq`.
    pub fn apply(&self, x: &Tensor, start: i64) -> Tensor {
        let seq = x.size()[2];
        let kind = x.kind();
        let cos = self.cos.narrow(0, start, seq).to_kind(kind);
        let sin = self.sin.narrow(0, start, seq).to_kind(kind);
        let half = x.size()[3] / 2;
        let x1 = x.narrow(-1, 0, half);
        let x2 = x.narrow(-1, half, half);
        let rotated = Tensor::cat(&[&x2.neg(), &x1], -1);
        x * cos + rotated * sin
    }
}
