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
    let mode = m.integration.mode();
    if !mode.reads_user() {
        return llm(&m.llm.config, text);
    }
    let sum = |prefix: &str| -> f64 {
        m.vs.variables()
            .iter()
            .filter(|(k, _)| k.starts_with(prefix) && !k.contains(".head.") && !k.contains(".embed."))
            .map(|(_, t)| t.numel() as f64)
            .sum()
    };
    let latents = m.perceiver.as_ref().map(|p| p.latents() as f64);
    let user = latents.unwrap_or(history);
    // The Perceiver projects the history (keys, values) and its latents (queries, feed-forward).
    let encoder = 2.0 * sum("encoder.") * history
        + latents.map(|k| 2.0 * sum("perceiver.") * (history + k)).unwrap_or(0.0)
        + 2.0 * sum("projection.") * user;
    let h = m.llm.config.hidden_size as f64;
    llm(&m.llm.config, text + mode.extra_positions(user)) + mode.block_flops(m.xattn.len(), h, text, user) + encoder
}
