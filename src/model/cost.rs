//! Forward FLOPs of one example (2 per multiply-add of every matmul), the
//! cost figure reported beside each evaluation and in the efficiency table.
//! Embedding lookups are free; the LM head runs on the last position only
//! (one answer step); attention scores and their weighted sums are counted.

use super::llama::LlamaConfig;
use super::userllm::UserLlm;

/// The decoder over `tokens` positions.
pub fn llm(c: &LlamaConfig, tokens: f64) -> f64 {
    let embed = (c.vocab_size * c.hidden_size) as f64;
    let body = c.parameter_count() as f64 - embed * if c.tie_word_embeddings { 1.0 } else { 2.0 };
    2.0 * body * tokens + 2.0 * embed + 4.0 * c.num_hidden_layers as f64 * tokens * tokens * c.hidden_size as f64
}

/// USER-LLM reading `text` prompt tokens and a history of `history`
/// interactions: encoder (and Perceiver) over the history, the decoder over the
/// text (plus the user tokens of a soft prompt), the cross-attention blocks.
pub fn user_llm(m: &UserLlm, text: f64, history: f64) -> f64 {
    UserLlmCost::of(m).forward(text, history)
}

/// Parameters that cost 2 FLOPs per position: not embedding tables (lookups)
/// nor the pretraining heads (unused by USER-LLM).
fn costs_per_position(name: &str) -> bool {
    !name.contains(".head.") && !name.contains(".embed.")
}

/// A model's parameter counts, taken once, for the cost of many examples
/// (the training loop prices every example it trains on).
pub struct UserLlmCost<'a> {
    m: &'a UserLlm,
    encoder: f64,
    perceiver: f64,
    projection: f64,
}

impl<'a> UserLlmCost<'a> {
    pub fn of(m: &'a UserLlm) -> Self {
        let variables = m.vs.variables();
        let sum = |prefix: &str| -> f64 {
            costed_parameters(variables.iter().filter(|(k, _)| k.starts_with(prefix)).map(|(k, t)| (k.as_str(), t)))
        };
        UserLlmCost { m, encoder: sum("encoder."), perceiver: sum("perceiver."), projection: sum("projection.") }
    }

    /// Forward FLOPs of one example of `text` tokens and `history` interactions.
    pub fn forward(&self, text: f64, history: f64) -> f64 {
        let m = self.m;
        let mode = m.integration.mode();
        if !mode.reads_user() {
            return llm(&m.llm.config, text);
        }
        let latents = m.perceiver.as_ref().map(|p| p.latents() as f64);
        let user = latents.unwrap_or(history);
        // The Perceiver projects the history (keys, values) and its latents (queries, feed-forward).
        let encoder = 2.0 * self.encoder * history
            + latents.map(|k| 2.0 * self.perceiver * (history + k)).unwrap_or(0.0)
            + 2.0 * self.projection * user;
        let h = m.llm.config.hidden_size as f64;
        llm(&m.llm.config, text + mode.extra_positions(user)) + mode.block_flops(m.xattn.len(), h, text, user) + encoder
    }
}

/// How many of the `named` parameters' values cost FLOPs at every position.
pub fn costed_parameters<'t>(named: impl IntoIterator<Item = (&'t str, &'t tch::Tensor)>) -> f64 {
    named.into_iter().filter(|(k, _)| costs_per_position(k)).map(|(_, t)| t.numel() as f64).sum()
}

/// Training FLOPs of `positions` item positions through the user encoder
/// alone (pretraining): forward and backward, 3 forwards by the usual count
/// (2 FLOPs per parameter and position forward; attention not counted, as in
/// the 6·N·tokens rule of thumb, which is exact enough at the encoder's
/// short windows). `parameters`: its [`costed_parameters`].
pub fn encoder_training(parameters: f64, positions: f64) -> f64 {
    2.0 * TRAINING_PER_FORWARD * parameters * positions
}

/// Forward and backward cost 3 forwards (the backward computes gradients
/// for activations and for weights, 2 forwards' worth): the model FLOPs of
/// a training example, as MFU counts them (recomputation not counted).
pub const TRAINING_PER_FORWARD: f64 = 3.0;
