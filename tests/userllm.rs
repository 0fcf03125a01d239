//! USER-LLM assembly: cross-attention leaves the LLM unchanged at
//! initialisation, strategies freeze exactly what they say, LoRA merges.

use tch::{nn, Device, Tensor};
use uorch::model::userllm::{Integration, Strategy, UserLlm};
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

#[test]
fn soft_prompt_output_is_unchanged_when_the_padding_slots_change() {
    let _rng = crate::common::torch_rng();
    let m = UserLlm::new(tiny_llm(3), shape(), &cfg(Integration::SoftPrompt, Strategy::Enc, false)).unwrap();
    let tokens = Tensor::from_slice(&[1i64, 7, 3, 9]).view([1, 4]);
    tch::manual_seed(11);
    let real = Tensor::randn([1, 3, 32], tch::kind::FLOAT_CPU);
    // The same three user tokens with no padding, then 2 and 5 padded slots holding
    // arbitrary values (padding after the real slots, as the encoder's inputs have it).
    let padded = |pad: i64| -> (Tensor, Tensor) {
        let junk = Tensor::randn([1, pad, 32], tch::kind::FLOAT_CPU) * 10.0;
        let mask = Tensor::cat(
            &[Tensor::ones([1, 3], tch::kind::FLOAT_CPU), Tensor::zeros([1, pad], tch::kind::FLOAT_CPU)],
            1,
        );
        (Tensor::cat(&[&real, &junk], 1), mask.ne(0))
    };
    let logits = |(user, mask): (Tensor, Tensor)| tch::no_grad(|| m.forward_with_user(&tokens, &user, &mask, None));
    let bare = logits((real.shallow_clone(), Tensor::ones([1, 3], (tch::Kind::Bool, Device::Cpu))));
    for pad in [2, 5] {
        let got = logits(padded(pad));
        let diff = (&got - &bare).abs().max().double_value(&[]);
        assert!(diff < 1e-5, "{pad} padded slots change the logits by {diff}");
    }
    // Through a key/value cache (as scoring and generation read it) the same holds.
    let (user, mask) = padded(4);
    let mut cache = uorch::model::llama::KvCache::new(m.llm.layers.len());
    let head = tch::no_grad(|| m.forward_with_user(&tokens.narrow(1, 0, 2), &user, &mask, Some(&mut cache)));
    let tail = tch::no_grad(|| m.forward_with_user(&tokens.narrow(1, 2, 2), &user, &mask, Some(&mut cache)));
    let cached = Tensor::cat(&[head, tail], 1);
    let diff = (&cached - &bare).abs().max().double_value(&[]);
    assert!(diff < 1e-5, "cached decoding with padding differs by {diff}");
    // The user tokens are read: other real tokens give other logits.
    let other = logits((real * -1.0, Tensor::ones([1, 3], (tch::Kind::Bool, Device::Cpu))));
    assert!((other - bare).abs().max().double_value(&[]) > 1e-4);
}

/// Two AdamW steps on a loss that touches every part.
fn train_two_steps(m: &UserLlm) {
    let (tokens, feats) = inputs();
    // Every parameter goes to the optimizer: what stays frozen is the model's doing.
    let named = m.named_parameters();
    let trainable: Vec<(String, Tensor)> = named.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect();
    let mut opt = AdamW::new(0.01);
    for x in m.xattn.values() {
        let _ = tch::no_grad(|| x.alpha.shallow_clone().fill_(0.3));
    }
    for _ in 0..2 {
        let logits = m.forward(&tokens, &feats, true);
        let loss = logits.view([-1, 50]).cross_entropy_for_logits(&tokens.reshape([-1]));
        loss.backward();
        opt.step(&trainable, 1e-2).unwrap();
        for (_, t) in &named {
            let mut g = t.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
    }
}

/// What each strategy trains, by the paper's definitions (USER-LLM, section
/// 4): Full updates everything; LoRA adds adapters to the frozen LLM; Enc
/// freezes the LLM; Proj also freezes the encoder. The user-side adapters
/// (Perceiver, projection, cross-attention) always train. Written out here,
/// by name, independently of the model's own `Part::trains`.
fn trains_by_definition(strategy: Strategy, name: &str) -> bool {
    let adapters = ["perceiver.", "projection.", "xattn."].iter().any(|p| name.starts_with(p));
    // The encoder's pretraining heads (next item, features) take no part in finetuning.
    let encoder = name.starts_with("encoder.") && !name.starts_with("encoder.head.");
    let lora = name.starts_with("lora.");
    let llm = !(adapters || lora || name.starts_with("encoder."));
    match strategy {
        Strategy::Full => llm || encoder || adapters,
        Strategy::Lora => lora || encoder || adapters,
        Strategy::Enc => encoder || adapters,
        Strategy::Proj => adapters,
    }
}

#[test]
fn each_strategy_trains_exactly_what_the_papers_definition_says_and_leaves_the_rest_bitwise_unchanged() {
    let _rng = crate::common::torch_rng();
    for strategy in [Strategy::Full, Strategy::Lora, Strategy::Enc, Strategy::Proj] {
        let m = UserLlm::new(tiny_llm(3), shape(), &cfg(Integration::CrossAttention, strategy, true)).unwrap();
        let before: Vec<(String, Tensor)> =
            m.named_parameters().into_iter().map(|(n, t)| (n, t.detach().copy())).collect();
        assert!(before.iter().any(|(n, _)| n.starts_with("lora.")) == (strategy == Strategy::Lora), "{strategy:?}");
        train_two_steps(&m);
        let after = m.named_parameters();
        for ((name, b), (_, a)) in before.iter().zip(&after) {
            if trains_by_definition(strategy, name) {
                assert!(!a.equal(b), "{strategy:?}: {name} should train and did not move");
            } else {
                assert!(a.equal(b), "{strategy:?}: frozen {name} changed");
            }
        }
        // The trainable count is the definition's.
        let want: i64 =
            before.iter().filter(|(n, _)| trains_by_definition(strategy, n)).map(|(_, t)| t.numel() as i64).sum();
        assert_eq!(m.parameter_counts().0, want, "{strategy:?}");
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
