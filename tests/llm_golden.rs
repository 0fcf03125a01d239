//! The LLM core against the real implementations: dequantization against the
//! `gguf` Python package, and the imported SmolLM2's tokenizer, logits and
//! greedy continuations against Hugging Face transformers + PyTorch
//! (goldens made by tests/golden/make_goldens.py).

use crate::common::{project_root, stderr, stdout, uorch};
use safetensors::SafeTensors;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};
use uorch::model::generate::{generate, Sampling};
use uorch::model::gguf::Gguf;
use uorch::model::llama::load::load;
use uorch::model::tokenizer::Tokenizer;

fn golden(name: &str) -> PathBuf {
    project_root().join("tests/golden").join(name)
}

/// The SmolLM2 folder that set-up imports with `uorch model import-gguf`.
fn smollm2() -> PathBuf {
    let dir = project_root().join(".uorch/models/smollm2-135m-instruct");
    assert!(dir.join("model.safetensors").exists(), "{} missing: run make setup", dir.display());
    dir
}

fn goldens() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(golden("smollm2.json")).unwrap()).unwrap()
}

fn ids(v: &serde_json::Value) -> Vec<i64> {
    v.as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect()
}

#[test]
fn dequantization_matches_the_gguf_package_for_every_supported_type() {
    let _rng = crate::common::torch_rng();
    let g = Gguf::open(&golden("quants.gguf")).unwrap();
    let bytes = std::fs::read(golden("quants_expected.safetensors")).unwrap();
    let expected = SafeTensors::deserialize(&bytes).unwrap();
    let mut checked = Vec::new();
    for t in &g.tensors {
        let got = g.dequantize(t).unwrap();
        let want: Vec<f32> = expected
            .tensor(&t.name)
            .unwrap()
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(t.torch_shape(), vec![2, 512], "{}", t.name);
        assert_eq!(got.len(), want.len(), "{}", t.name);
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            assert!((a - b).abs() <= 1e-6 * b.abs().max(1.0), "{} value {i}: {a} vs {b}", t.name);
        }
        checked.push(t.name.clone());
    }
    assert_eq!(checked, ["t.F32", "t.F16", "t.BF16", "t.Q8_0", "t.Q4_0", "t.Q4_1", "t.Q4_K", "t.Q6_K"]);
}

#[test]
fn corrupt_and_truncated_gguf_files_are_clear_errors() {
    let _rng = crate::common::torch_rng();
    let d = tempfile::tempdir().unwrap();
    let good = std::fs::read(golden("quants.gguf")).unwrap();
    let cut = d.path().join("cut.gguf");
    std::fs::write(&cut, &good[..good.len() - 100]).unwrap();
    let e = Gguf::open(&cut).err().unwrap().to_string();
    assert!(e.contains("truncated GGUF: tensor t.Q6_K needs bytes"), "{e}");
    let head = d.path().join("head.gguf");
    std::fs::write(&head, &good[..40]).unwrap();
    let e = Gguf::open(&head).err().unwrap().to_string();
    assert!(e.contains("truncated GGUF"), "{e}");
    let junk = d.path().join("junk.gguf");
    std::fs::write(&junk, b"PK\x03\x04 definitely a zip").unwrap();
    assert!(Gguf::open(&junk).err().unwrap().to_string().contains("not a GGUF file"));
    let o = uorch().args(["model", "import-gguf"]).arg(&cut).arg("--out").arg(d.path().join("m")).output().unwrap();
    assert!(!o.status.success() && stderr(&o).contains("truncated GGUF"), "{}", stderr(&o));
    assert!(!d.path().join("m").exists());
}

#[test]
fn tokenizer_ids_and_decoding_match_transformers_exactly() {
    let _rng = crate::common::torch_rng();
    let tok = Tokenizer::from_dir(&smollm2()).unwrap();
    let g = goldens();
    for case in g["tokenize"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        assert_eq!(tok.encode(text).unwrap(), ids(&case["ids"]), "{text:?}");
    }
    for case in g["decode"].as_array().unwrap() {
        assert_eq!(tok.decode(&ids(&case["ids"])).unwrap(), case["text"].as_str().unwrap());
    }
}

/// Tolerance for f32 logits: the same weights and arithmetic, in another
/// order of operations (fused attention, reductions), on CPU.
const LOGIT_TOLERANCE: f64 = 2e-3;

#[test]
fn last_position_logits_match_transformers_within_tolerance() {
    let _rng = crate::common::torch_rng();
    let model = load(&smollm2(), Device::Cpu, Kind::Float).unwrap();
    let g = goldens();
    let bytes = std::fs::read(golden("smollm2_logits.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    for (i, p) in g["prompts"].as_array().unwrap().iter().enumerate() {
        let want = st.tensor(&format!("prompt{i}")).unwrap();
        let want = Tensor::from_data_size(want.data(), &[want.shape()[0] as i64], Kind::Float);
        let input = Tensor::from_slice(&ids(&p["ids"])).unsqueeze(0);
        let got = tch::no_grad(|| model.forward(&input, None)).select(1, -1).squeeze_dim(0);
        let diff = (&got - &want).abs().max().double_value(&[]);
        assert!(diff < LOGIT_TOLERANCE, "prompt {i}: max |logit difference| {diff}");
        assert_eq!(got.argmax(-1, false).int64_value(&[]), want.argmax(-1, false).int64_value(&[]));
    }
}

#[test]
fn greedy_continuations_with_the_kv_cache_equal_transformers() {
    let _rng = crate::common::torch_rng();
    let dir = smollm2();
    let model = load(&dir, Device::Cpu, Kind::Float).unwrap();
    let g = goldens();
    for p in g["prompts"].as_array().unwrap() {
        let want = ids(&p["greedy_ids"]);
        let got = generate(&model, &ids(&p["ids"]), 16, Sampling::GREEDY, &model.config.eos_ids());
        assert_eq!(got, want, "prompt {:?}", p["text"]);
    }
}

#[test]
fn cli_generate_prints_the_same_continuation_as_transformers() {
    let _rng = crate::common::torch_rng();
    let o = uorch()
        .args(["generate", "--model"])
        .arg(smollm2())
        .args(["--prompt", "The capital of France is", "--max-new-tokens", "8", "--device", "cpu"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), format!("{}\n", goldens()["cli_capital_8"].as_str().unwrap()));
}

#[test]
fn cli_generate_stops_at_an_end_of_sequence_id_only_generation_config_names() {
    let _rng = crate::common::torch_rng();
    let tok = Tokenizer::from_dir(&smollm2()).unwrap();
    let model = load(&smollm2(), Device::Cpu, Kind::Float).unwrap();
    let prompt = "The capital of France is";
    let free = generate(&model, &tok.encode(prompt).unwrap(), 8, Sampling::GREEDY, &[]);
    // The first token after the first that did not come earlier: the stop.
    let stop = (1..free.len()).find(|&i| !free[..i].contains(&free[i])).expect("a new token");
    // The same model, its generation_config.json naming that token (as
    // Llama-3-Instruct's names <|eot_id|>, which its config.json does not).
    let d = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(smollm2()).unwrap().flatten() {
        std::os::unix::fs::symlink(e.path(), d.path().join(e.file_name())).unwrap();
    }
    let gen = d.path().join("generation_config.json");
    std::fs::remove_file(&gen).unwrap();
    std::fs::write(&gen, format!(r#"{{"eos_token_id": [{}]}}"#, free[stop])).unwrap();
    let o = uorch()
        .args(["generate", "--model"])
        .arg(d.path())
        .args(["--prompt", prompt, "--max-new-tokens", "8", "--device", "cpu"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), format!("{}\n", tok.decode(&free[..=stop]).unwrap()));
}

#[test]
fn cached_decoding_equals_a_full_forward_pass() {
    let _rng = crate::common::torch_rng();
    // Prefill in two chunks (the second attends to cached positions through a
    // mask), then one token: the logits equal those of one uncached pass.
    let model = load(&smollm2(), Device::Cpu, Kind::Float).unwrap();
    let tok = Tokenizer::from_dir(&smollm2()).unwrap();
    let all = tok.encode("Rotary positions must continue across cache chunks, or answers drift.").unwrap();
    let t = |s: &[i64]| Tensor::from_slice(s).unsqueeze(0);
    let full = tch::no_grad(|| model.forward(&t(&all), None));
    let mut cache = uorch::model::llama::KvCache::new(model.layers.len());
    let (a, rest) = all.split_at(5);
    let (b, c) = rest.split_at(rest.len() - 1);
    let parts: Vec<Tensor> =
        tch::no_grad(|| [a, b, c].iter().map(|p| model.forward(&t(p), Some(&mut cache))).collect());
    let stitched = Tensor::cat(&parts, 1);
    let diff = (&stitched - &full).abs().max().double_value(&[]);
    assert!(diff < 1e-3, "max difference {diff}");
    assert_eq!(cache.seen, all.len() as i64);
}

#[test]
fn sampling_is_reproducible_per_seed_and_top_p_near_zero_is_greedy() {
    let _rng = crate::common::torch_rng();
    let model = load(&smollm2(), Device::Cpu, Kind::Float).unwrap();
    let prompt = Tokenizer::from_dir(&smollm2()).unwrap().encode("Once upon a time").unwrap();
    let s = |seed| Sampling { temperature: 1.0, top_p: 0.95, seed };
    let a = generate(&model, &prompt, 12, s(7), &[]);
    assert_eq!(a, generate(&model, &prompt, 12, s(7), &[]));
    assert_ne!(a, generate(&model, &prompt, 12, s(8), &[]));
    let narrow = Sampling { temperature: 1.0, top_p: 1e-9, seed: 3 };
    assert_eq!(generate(&model, &prompt, 6, narrow, &[]), generate(&model, &prompt, 6, Sampling::GREEDY, &[]));
}

#[test]
fn model_info_and_tokenize_cli() {
    let _rng = crate::common::torch_rng();
    let o = uorch().args(["model", "info"]).arg(smollm2()).arg("--json").output().unwrap();
    let info: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    // SmolLM2-135M: 30 layers, hidden 576, 9 heads / 3 KV heads, 134,515,008 parameters.
    assert_eq!(
        (info["layers"].as_u64(), info["hidden_size"].as_u64(), info["kv_heads"].as_u64()),
        (Some(30), Some(576), Some(3))
    );
    assert_eq!(info["parameters"], 134_515_008u64);
    let o = uorch()
        .args(["model", "tokenize", "--model"])
        .arg(smollm2())
        .args(["--text", "Hello, world!", "--json"])
        .output()
        .unwrap();
    let want = &goldens()["tokenize"][0]["ids"];
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap(), *want);
}

#[test]
fn import_gguf_refuses_a_strangers_folder_and_replaces_its_own_only_with_force() {
    let d = tempfile::tempdir().unwrap();
    let gguf = project_root().join("assets/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    let import = |out: &Path, extra: &[&str]| {
        uorch().args(["model", "import-gguf"]).arg(&gguf).arg("--out").arg(out).args(extra).output().unwrap()
    };
    let other = d.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("notes.txt"), "mine").unwrap();
    let o = import(&other, &[]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("holds files this command did not write: pass --force"), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(other.join("notes.txt")).unwrap(), "mine");
    // Its own earlier import: kept without --force, replaced with it (nothing left aside).
    let m = d.path().join("m");
    let o = import(&m, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    crate::common::assert_readable_by_all(&m);
    let o = import(&m, &[]);
    assert!(!o.status.success() && stderr(&o).contains("already exists: pass --force"), "{}", stderr(&o));
    let o = import(&m, &["--force"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let names: Vec<String> =
        std::fs::read_dir(d.path()).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names.len(), 2, "only `m` and `other`: {names:?}");
    assert!(m.join("model.safetensors").exists() && m.join("config.json").exists());
}

#[test]
fn the_chat_template_renders_as_jinja2_renders_it_for_transformers() {
    let g: serde_json::Value =
        serde_json::from_slice(&std::fs::read(project_root().join("tests/golden/chat_template.json")).unwrap())
            .unwrap();
    let tok = Tokenizer::from_dir(&smollm2()).unwrap();
    assert!(tok.has_chat_template());
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(smollm2().join("tokenizer_config.json")).unwrap()).unwrap();
    assert_eq!(config["chat_template"], g["chat_template"], "the golden was made from another template");
    for case in g["cases"].as_array().unwrap() {
        let got = tok.chat_prompt(case["user"].as_str().unwrap()).unwrap().unwrap();
        assert_eq!(got, case["rendered"].as_str().unwrap());
    }
    // Its markers are the model's special tokens, one id each.
    let ids = tok.encode("<|im_start|>assistant\n").unwrap();
    assert_eq!(tok.decode(&ids[..1]).unwrap(), "<|im_start|>", "{ids:?}");
    // Without a tokenizer_config.json there is no template, and nothing is rendered.
    let d = tempfile::tempdir().unwrap();
    std::fs::copy(smollm2().join("tokenizer.json"), d.path().join("tokenizer.json")).unwrap();
    assert!(Tokenizer::from_dir(d.path()).unwrap().chat_prompt("hi").unwrap().is_none());
    // A template that does not render names its file.
    std::fs::write(
        d.path().join("tokenizer_config.json"),
        r#"{"chat_template": "{{ raise_exception('no system role') }}"}"#,
    )
    .unwrap();
    let e = format!("{:#}", Tokenizer::from_dir(d.path()).unwrap().chat_prompt("hi").unwrap_err());
    assert!(
        e.contains("tokenizer_config.json: the chat template does not render") && e.contains("no system role"),
        "{e}"
    );
}
