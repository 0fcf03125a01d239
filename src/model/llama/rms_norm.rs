//! RMSNorm: `x / sqrt(mean(x²) + eps) · weight`, computed in f32.

use tch::{nn, Kind, Tensor};

#[derive(Debug)]
pub struct RmsNorm {
    pub weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    pub fn new(p: nn::Path, dim: usize, eps: f64) -> Self {
        Self { weight: p.var("weight", &[dim as i64], nn::Init::Const(1.0)), eps }
    }

    /// `(..., dim)` → same shape and dtype.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let kind = x.kind();
        let xf = x.to_kind(Kind::Float);
        let inv = (xf.pow_tensor_scalar(2).mean_dim(-1, true, Kind::Float) + self.eps).rsqrt();
        (xf * inv).to_kind(kind) * &self.weight
    }
}
