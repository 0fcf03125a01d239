//! Soft prompt: the user embeddings are prepended to the token embeddings as
//! extra positions; the decoder is unchanged, and the outputs of the user
//! positions are dropped. Padded history slots are moved before the real ones
//! and masked out of attention, so the text reads exactly the user's own
//! tokens, right before it, whatever the padding.

use super::{none, DecoderInput, Mode};
use tch::{Kind, Tensor};

pub struct SoftPrompt;

impl Mode for SoftPrompt {
    fn decoder_input(&self, embeds: &Tensor, user: &Tensor, mask: &Tensor, continuing: bool) -> DecoderInput {
        if continuing {
            // The user positions (and their validity) are already in the cache.
            return DecoderInput { hidden: embeds.shallow_clone(), user: none(embeds), skip: 0, valid: None };
        }
        // Padding first, each row's real slots in their order after it (a
        // stable sort of the mask), so the real ones sit next to the text.
        let order = mask.to_kind(Kind::Int64).argsort_stable(true, 1, false);
        let mask = mask.gather(1, &order, false);
        let user = user.gather(1, &order.unsqueeze(-1).expand_as(user), false);
        let user_in = (user * mask.unsqueeze(-1).to_kind(Kind::Float)).to_kind(embeds.kind());
        let (b, t) = (embeds.size()[0], embeds.size()[1]);
        let text = Tensor::ones([b, t], (Kind::Bool, embeds.device()));
        DecoderInput {
            hidden: Tensor::cat(&[&user_in, embeds], 1),
            user: none(embeds),
            skip: mask.size()[1],
            valid: Some(Tensor::cat(&[&mask.to_kind(Kind::Bool), &text], 1)),
        }
    }

    fn extra_positions(&self, user: f64) -> f64 {
        user
    }
}
