//! LoRA: a frozen linear layer `W` plus a trainable low-rank update,
//! `y = x Wᵀ + (alpha / r) · dropout(x) Aᵀ Bᵀ`, with `A` `(r, in)` random and
//! `B` `(out, r)` zero, so the layer is unchanged until `B` learns.

use tch::{nn, Tensor};

pub use crate::config::finetune::LoraConfig;

/// Names of the linear layers LoRA can adapt.
pub const ADAPTABLE: [&str; 7] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

#[derive(Debug)]
pub struct Lora {
    /// `(rank, in)`.
    pub a: Tensor,
    /// `(out, rank)`.
    pub b: Tensor,
    pub scale: f64,
    pub dropout: f64,
    /// Dropout is applied only while training.
    pub training: std::cell::Cell<bool>,
}

impl Lora {
    pub fn new(p: nn::Path, in_dim: usize, out_dim: usize, cfg: &LoraConfig) -> Self {
        let r = cfg.rank as i64;
        let bound = 1.0 / (in_dim as f64).sqrt();
        let a = p.var("lora_A", &[r, in_dim as i64], nn::Init::Uniform { lo: -bound, up: bound });
        let b = p.var("lora_B", &[out_dim as i64, r], nn::Init::Const(0.0));
        Self { a, b, scale: cfg.alpha / cfg.rank as f64, dropout: cfg.dropout, training: std::cell::Cell::new(false) }
    }

    /// The update `(..., out)` for input `(..., in)`.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let x =
            if self.training.get() && self.dropout > 0.0 { x.dropout(self.dropout, true) } else { x.shallow_clone() };
        x.linear(&self.a, None::<Tensor>).linear(&self.b, None::<Tensor>) * self.scale
    }

    /// `scale · B A`, the dense update to add to `W` when merging.
    pub fn delta(&self) -> Tensor {
        self.b.matmul(&self.a) * self.scale
    }
}
