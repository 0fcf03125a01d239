//! A linear layer `y = x Wᵀ + b` with Hugging Face's weight layout `(out, in)`,
//! optionally with a LoRA adapter added to its output.

use crate::model::lora::{Lora, LoraConfig};
use tch::{nn, Tensor};

#[derive(Debug)]
pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub lora: Option<Lora>,
}

impl Linear {
    /// Variables `<path>.weight` `(out, in)` and, with `bias`, `<path>.bias` `(out)`.
    pub fn new(p: nn::Path, in_dim: usize, out_dim: usize, bias: bool) -> Self {
        Self::with_init(p, in_dim, out_dim, bias, nn::Init::Const(0.0))
    }

    /// As [`new`](Self::new), with the weight initialised by `init` (biases at 0).
    pub fn with_init(p: nn::Path, in_dim: usize, out_dim: usize, bias: bool, init: nn::Init) -> Self {
        let weight = p.var("weight", &[out_dim as i64, in_dim as i64], init);
        let bias = bias.then(|| p.var("bias", &[out_dim as i64], nn::Init::Const(0.0)));
        Self { weight, bias, lora: None }
    }

    /// Attach a LoRA adapter whose variables live under `p`.
    pub fn add_lora(&mut self, p: nn::Path, cfg: &LoraConfig) {
        let s = self.weight.size();
        self.lora = Some(Lora::new(p, s[1] as usize, s[0] as usize, cfg));
    }

    /// `(..., in)` → `(..., out)`.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let y = x.linear(&self.weight, self.bias.as_ref());
        match &self.lora {
            Some(l) => y + l.forward(x),
            None => y,
        }
    }

    /// Fold the adapter into the weight (for export); the layer then has none.
    pub fn merge_lora(&mut self) {
        if let Some(l) = self.lora.take() {
            tch::no_grad(|| {
                let _ = self.weight.g_add_(&l.delta().to_kind(self.weight.kind()));
            });
        }
    }
}
