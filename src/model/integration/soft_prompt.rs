//! Soft prompt: the user embeddings are prepended to the token embeddings as
//! extra positions (padded history positions as zero vectors); the decoder is
//! unchanged, and the outputs of the user positions are dropped.

use super::{none, DecoderInput, Mode};
use tch::{Kind, Tensor};

pub struct SoftPrompt;

impl Mode for SoftPrompt {
    fn decoder_input(&self, embeds: &Tensor, user: &Tensor, mask: &Tensor, continuing: bool) -> DecoderInput {
        if continuing {
            // The user positions are already in the cache.
            return DecoderInput { hidden: embeds.shallow_clone(), user: none(embeds), skip: 0 };
        }
        let user_in = (user * mask.unsqueeze(-1).to_kind(Kind::Float)).to_kind(embeds.kind());
        DecoderInput { hidden: Tensor::cat(&[&user_in, embeds], 1), user: none(embeds), skip: user.size()[1] }
    }

    fn extra_positions(&self, user: f64) -> f64 {
        user
    }
}
