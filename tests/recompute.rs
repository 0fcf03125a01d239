//! Activation checkpointing: recomputed layers give the gradients of the plain
//! forward, dropout included. (The comparison replays the global
//! random-number stream: the test holds `torch_rng` so no other test draws
//! from it meanwhile.)

use crate::common::parts::{cfg, inputs, shape, tiny_llm};
use tch::Tensor;
use uorch::model::userllm::{Integration, Strategy, UserLlm};
use uorch::model::xattn::Placement;

/// Gradients of every trainable tensor after one forward and backward.
/// (Tensors the loss does not reach, e.g. the encoder's pretraining heads, have none.)
fn gradients(m: &UserLlm, checkpointing: bool, seed: i64) -> Vec<(String, Tensor)> {
    let (tokens, feats) = inputs();
    m.activation_checkpointing.set(checkpointing);
    m.set_training(true);
    let named = m.named_parameters();
    for (_, t) in &named {
        let mut g = t.grad();
        if g.defined() {
            let _ = g.zero_();
        }
    }
    tch::manual_seed(seed);
    let logits = m.forward(&tokens, &feats, true);
    let target = Tensor::from_slice(&[7i64, 3, 9, 2, 4, 4, 8, 1]).view([2, 4]);
    logits.reshape([-1, 50]).cross_entropy_for_logits(&target.reshape([-1])).backward();
    m.release_segments();
    named
        .into_iter()
        .filter(|(_, t)| t.requires_grad() && t.grad().defined())
        .map(|(n, t)| (n, t.grad().copy()))
        .collect()
}

#[test]
fn activation_checkpointing_gives_the_same_gradients_with_dropout_replayed() {
    let _rng = crate::common::torch_rng();
    for integration in [Integration::CrossAttention, Integration::SoftPrompt] {
        let mut c = cfg(integration, Strategy::Lora, false);
        // LoRA dropout draws random numbers in every layer: the recomputation must replay them.
        c.lora.dropout = 0.5;
        c.cross_attention_layers = Placement::List(vec![1, 3]);
        let m = UserLlm::new(tiny_llm(3), shape(), &c).unwrap();
        // Open the gates so the cross-attention blocks matter, and move LoRA's
        // B off zero so every adapter tensor gets a gradient.
        tch::no_grad(|| {
            for (n, t) in m.named_parameters() {
                if n.ends_with("alpha") {
                    let _ = t.shallow_clone().fill_(0.7);
                } else if n.ends_with("lora_B") {
                    let _ = t.shallow_clone().normal_(0.0, 0.1);
                }
            }
        });
        let plain = gradients(&m, false, 7);
        let recomputed = gradients(&m, true, 7);
        let names = |g: &[(String, Tensor)]| g.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        assert_eq!(names(&plain), names(&recomputed), "{integration:?}: the same tensors get gradients");
        assert!(
            names(&plain).iter().any(|n| n.contains("lora")) && names(&plain).iter().any(|n| n.starts_with("encoder."))
        );
        let mut nonzero = 0;
        for ((n, a), (_, b)) in plain.iter().zip(&recomputed) {
            let diff = (a - b).abs().max().double_value(&[]);
            let scale = a.abs().max().double_value(&[]).max(1e-6);
            assert!(diff <= 1e-5 * scale, "{integration:?}: {n} differs by {diff} (scale {scale})");
            nonzero += (scale > 1e-6) as usize;
        }
        assert_eq!(nonzero, plain.len(), "{integration:?}: every gradient is non-zero");
        // Dropout matters here: other masks (another seed) give other gradients,
        // so the agreement above needs the recomputation to replay the forward's.
        let other = gradients(&m, false, 8);
        let moved = plain.iter().zip(&other).any(|((_, a), (_, b))| (a - b).abs().max().double_value(&[]) > 1e-4);
        assert!(moved, "{integration:?}: dropout did not change the gradients");
    }
}
