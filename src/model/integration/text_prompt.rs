//! TextPrompt, the baseline: no user embeddings; the history is written into
//! the prompt as text, and only the LLM (or its LoRA adapters) can train.

use super::{none, DecoderInput, Mode};
use tch::Tensor;

pub struct TextPrompt;

impl Mode for TextPrompt {
    fn reads_user(&self) -> bool {
        false
    }

    fn history_in_prompt(&self) -> bool {
        true
    }

    fn decoder_input(&self, embeds: &Tensor, _user: &Tensor, _mask: &Tensor, _continuing: bool) -> DecoderInput {
        DecoderInput { hidden: embeds.shallow_clone(), user: none(embeds), skip: 0, valid: None }
    }
}
