//! One decoder layer: pre-norm self-attention, then pre-norm SwiGLU MLP, each
//! added residually. [`DecoderLayer::forward_with`] runs a caller's block
//! between the two (where USER-LLM's gated cross-attention goes).

use super::attention::{LayerCache, SelfAttention};
use super::config::LlamaConfig;
use super::linear::Linear;
use super::mlp::Mlp;
use super::rms_norm::RmsNorm;
use super::rope::Rope;
use tch::{nn, Tensor};

#[derive(Debug)]
pub struct DecoderLayer {
    pub input_layernorm: RmsNorm,
    pub self_attn: SelfAttention,
    pub post_attention_layernorm: RmsNorm,
    pub mlp: Mlp,
}

impl DecoderLayer {
    pub fn new(p: nn::Path, c: &LlamaConfig) -> Self {
        Self {
            input_layernorm: RmsNorm::new(&p / "input_layernorm", c.hidden_size, c.rms_norm_eps),
            self_attn: SelfAttention::new(&p / "self_attn", c),
            post_attention_layernorm: RmsNorm::new(&p / "post_attention_layernorm", c.hidden_size, c.rms_norm_eps),
            mlp: Mlp::new(&p / "mlp", c),
        }
    }

    /// The layer's linear maps (the ones LoRA can adapt), attention then MLP.
    pub fn linears(&self) -> [&Linear; 7] {
        let (a, m) = (&self.self_attn, &self.mlp);
        [&a.q_proj, &a.k_proj, &a.v_proj, &a.o_proj, &m.gate_proj, &m.up_proj, &m.down_proj]
    }

    pub fn linears_mut(&mut self) -> [&mut Linear; 7] {
        let (a, m) = (&mut self.self_attn, &mut self.mlp);
        [&mut a.q_proj, &mut a.k_proj, &mut a.v_proj, &mut a.o_proj, &mut m.gate_proj, &mut m.up_proj, &mut m.down_proj]
    }

    /// `(batch, seq, hidden)` → same.
    pub fn forward(&self, x: &Tensor, rope: &Rope, start: i64, cache: Option<&mut LayerCache>) -> Tensor {
        self.forward_with(x, rope, start, cache, None, |h| h)
    }

    /// As [`forward`](Self::forward), with `between` applied to the hidden
    /// states after self-attention and before the MLP.
    pub fn forward_with(
        &self,
        x: &Tensor,
        rope: &Rope,
        start: i64,
        cache: Option<&mut LayerCache>,
        valid: Option<&Tensor>,
        between: impl FnOnce(Tensor) -> Tensor,
    ) -> Tensor {
        let h = x + self.self_attn.forward(&self.input_layernorm.forward(x), rope, start, cache, valid);
        let h = between(h);
        &h + self.mlp.forward(&self.post_attention_layernorm.forward(&h))
    }
}
