//! USER-LLM assembly: cross-attention leaves the LLM unchanged at
//! initialisation, strategies freeze exactly what they say, LoRA merges.

use tch::{nn, Device, Tensor};
use uorch::model::userllm::{Integration, Part, Strategy, UserLlm};
use uorch::train::adamw::AdamW;

use crate::common::parts::{cfg, inputs, shape, tiny_llm};

#[test]
fn cross_attention_at_initialisation_gives_exactly_the_base_llm_logits() {
    let _rng = crate::common::torch_rng();
    let (tokens, feats) = inputs();
    for perceiver in [false, true] {
        let m =
            UserLlm::new(tiny_llm(1), shape(), &cfg(Integration::CrossAttention, Strategy::Enc, perceiver)).unwrap();
        // The wrapped LLM on its own is the base model.
        let base = tch::no_grad(|| m.llm.forward(&tokens, None));
        assert_eq!(m.gates(), vec![(2, 0.0), (3, 0.0)]);
        let got = tch::no_grad(|| m.forward(&tokens, &feats, false));
        let diff = (&got - &base).abs().max().double_value(&[]);
        assert!(got.equal(&base), "logits differ at initialisation by {diff}");
        // Opening a gate changes them: the user embeddings reach the LLM.
        let _ = tch::no_grad(|| m.xattn[&3].alpha.shallow_clone().fill_(0.5));
        let opened = tch::no_grad(|| m.forward(&tokens, &feats, false));
        assert!((opened - &base).abs().max().double_value(&[]) > 1e-4);
    }
}

#[test]
fn soft_prompt_prepends_user_tokens_and_returns_text_positions() {
    let _rng = crate::common::torch_rng();
    let (tokens, feats) = inputs();
    let m = UserLlm::new(tiny_llm(2), shape(), &cfg(Integration::SoftPrompt, Strategy::Enc, true)).unwrap();
    let out = tch::no_grad(|| m.forward(&tokens, &feats, false));
    assert_eq!(out.size(), vec![2, 4, 50]);
    let base = tch::no_grad(|| m.llm.forward(&tokens, None));
    assert!((out - base).abs().max().double_value(&[]) > 1e-4, "the soft prompt must change the logits");
}

/// Two AdamW steps on a loss that touches every part.
fn train_two_steps(m: &UserLlm) {
    let (tokens, feats) = inputs();
    let named = m.named_parameters();
    let trainable: Vec<(String, Tensor)> = named
        .iter()
        .filter(|(n, _)| Part::of(n).trains(m.strategy))
        .map(|(n, t)| (n.clone(), t.shallow_clone()))
        .collect();
    let mut opt = AdamW::new(0.01);
    for x in m.xattn.values() {
        let _ = tch::no_grad(|| x.alpha.shallow_clone().fill_(0.3));
    }
    for _ in 0..2 {
        let logits = m.forward(&tokens, &feats, true);
        let loss = logits.view([-1, 50]).cross_entropy_for_logits(&tokens.reshape([-1]));
        loss.backward();
        opt.step(&trainable, 1e-2);
        for (_, t) in &named {
            let mut g = t.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
    }
}

#[test]
fn each_strategy_leaves_frozen_tensors_bitwise_unchanged_and_moves_the_rest() {
    let _rng = crate::common::torch_rng();
    for strategy in [Strategy::Full, Strategy::Lora, Strategy::Enc, Strategy::Proj] {
        let m = UserLlm::new(tiny_llm(3), shape(), &cfg(Integration::CrossAttention, strategy, true)).unwrap();
        let before: Vec<(String, Tensor)> =
            m.named_parameters().into_iter().map(|(n, t)| (n, t.detach().copy())).collect();
        train_two_steps(&m);
        let after = m.named_parameters();
        let mut moved = std::collections::BTreeSet::new();
        for ((name, b), (_, a)) in before.iter().zip(&after) {
            let part = Part::of(name);
            if part.trains(strategy) {
                if !a.equal(b) {
                    moved.insert(part);
                }
            } else {
                assert!(a.equal(b), "{strategy:?}: frozen {name} changed");
            }
        }
        let expected: std::collections::BTreeSet<Part> =
            [Part::Llm, Part::Lora, Part::Encoder, Part::Perceiver, Part::Projection, Part::CrossAttention]
                .into_iter()
                .filter(|p| p.trains(strategy))
                .collect();
        assert_eq!(moved, expected, "{strategy:?}");
        let (trainable, total) = m.parameter_counts();
        assert!(trainable > 0 && trainable <= total);
    }
}

#[test]
fn merged_lora_weights_give_the_adapted_outputs() {
    let _rng = crate::common::torch_rng();
    let (tokens, feats) = inputs();
    let mut m = UserLlm::new(tiny_llm(4), shape(), &cfg(Integration::CrossAttention, Strategy::Lora, false)).unwrap();
    // B = 0: the adapted model is still the base model.
    let plain = tch::no_grad(|| m.llm.forward(&tokens, None));
    // Give the adapters a non-zero B so they matter.
    tch::no_grad(|| {
        for (n, t) in m.vs.variables() {
            if n.ends_with("lora_B") {
                let _ = t.shallow_clone().normal_(0.0, 0.05);
            }
        }
    });
    let adapted = tch::no_grad(|| m.forward(&tokens, &feats, false));
    assert!((&adapted - &plain).abs().max().double_value(&[]) > 1e-4);
    m.merge_lora();
    let merged = tch::no_grad(|| m.forward(&tokens, &feats, false));
    let diff = (merged - adapted).abs().max().double_value(&[]);
    assert!(diff < 1e-5, "{diff}");
    let _ = nn::VarStore::new(Device::Cpu);
}

#[test]
fn loading_weights_of_another_configuration_names_the_missing_tensor() {
    let _rng = crate::common::torch_rng();
    // Weights saved from a model with a Perceiver, loaded into one without
    // and back: extra tensors and missing ones are both errors.
    let with = UserLlm::new(tiny_llm(5), shape(), &cfg(Integration::CrossAttention, Strategy::Enc, true)).unwrap();
    let without = UserLlm::new(tiny_llm(5), shape(), &cfg(Integration::CrossAttention, Strategy::Enc, false)).unwrap();
    let d = tempfile::tempdir().unwrap();
    let (a, b) = (d.path().join("with.safetensors"), d.path().join("without.safetensors"));
    uorch::model::weights::save_tensors(&a, &with.trained_weights()).unwrap();
    uorch::model::weights::save_tensors(&b, &without.trained_weights()).unwrap();
    let e = with.load_weights(&b, &with.trained_weights()).unwrap_err().to_string();
    assert!(e.contains("no tensor perceiver") && e.contains("another configuration"), "{e}");
    let e = without.load_weights(&a, &without.trained_weights()).unwrap_err().to_string();
    assert!(e.contains("is not part of this model"), "{e}");
    assert_eq!(with.load_weights(&a, &with.trained_weights()).unwrap(), with.trained_weights().len());
}
