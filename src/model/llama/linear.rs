//! A linear layer `y = x Wᵀ + b` with Hugging Face's weight layout `(out, in)`.

use tch::{nn, Tensor};

#[derive(Debug)]
pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
}

impl Linear {
    /// Variables `<path>.weight` `(out, in)` and, with `bias`, `<path>.bias` `(out)`.
    pub fn new(p: nn::Path, in_dim: usize, out_dim: usize, bias: bool) -> Self {
        let weight = p.var("weight", &[out_dim as i64, in_dim as i64], nn::Init::Const(0.0));
        let bias = bias.then(|| p.var("bias", &[out_dim as i64], nn::Init::Const(0.0)));
        Self { weight, bias }
    }

    /// `(..., in)` → `(..., out)`.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.linear(&self.weight, self.bias.as_ref())
    }
}
