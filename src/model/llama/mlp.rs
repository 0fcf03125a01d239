//! The SwiGLU feed-forward block: `down(silu(gate(x)) · up(x))`.

use super::config::LlamaConfig;
use super::linear::Linear;
use tch::{nn, Tensor};

#[derive(Debug)]
pub struct Mlp {
    pub gate_proj: Linear,
    pub up_proj: Linear,
    pub down_proj: Linear,
}

impl Mlp {
    pub fn new(p: nn::Path, c: &LlamaConfig) -> Self {
        Self {
            gate_proj: Linear::new(&p / "gate_proj", c.hidden_size, c.intermediate_size, false),
            up_proj: Linear::new(&p / "up_proj", c.hidden_size, c.intermediate_size, false),
            down_proj: Linear::new(&p / "down_proj", c.intermediate_size, c.hidden_size, false),
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        self.down_proj.forward(&(self.gate_proj.forward(x).silu() * self.up_proj.forward(x)))
    }
}
