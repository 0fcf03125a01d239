//! Gated cross-attention (USER-LLM's main mode): chosen decoder layers get a
//! block whose text queries attend to the user embeddings, its output scaled
//! by `tanh(gate)` (zero at initialisation, so the LLM starts unchanged). The
//! block itself is [`crate::model::xattn::GatedCrossAttention`].

use super::{DecoderInput, Mode};
use crate::config::finetune::Placement;
use tch::Tensor;

pub struct CrossAttention;

impl Mode for CrossAttention {
    fn cross_attention_layers(&self, placement: &Placement, layers: usize) -> Result<Vec<usize>, String> {
        placement.layers(layers)
    }

    fn decoder_input(&self, embeds: &Tensor, user: &Tensor, _mask: &Tensor, _continuing: bool) -> DecoderInput {
        DecoderInput { hidden: embeds.shallow_clone(), user: user.to_kind(embeds.kind()), skip: 0, valid: None }
    }

    /// Per block: q and o projections of the text, k and v of the user
    /// tokens, the attention scores and their weighted sums.
    fn block_flops(&self, blocks: usize, hidden: f64, text: f64, user: f64) -> f64 {
        blocks as f64 * (2.0 * 2.0 * hidden * hidden * (text + user) + 4.0 * text * user * hidden)
    }
}
