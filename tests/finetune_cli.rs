//! The finetuning stage end to end with real worker processes: a tiny Llama
//! (random weights, SmolLM2's real tokenizer) on the real MovieLens-100K,
//! pretraining then favorite-genre finetuning on 2 workers, with every
//! baseline evaluated on the same cases.

mod common;

use common::{project_root, stderr, uorch};
use safetensors::tensor::TensorView;
use safetensors::Dtype;
use std::path::Path;
use tch::{Device, Kind};
use uorch::model::llama::{Llama, LlamaConfig};

/// A 2-layer, 32-wide Llama with SmolLM2's vocabulary and tokenizer.
fn tiny_model(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let config = serde_json::json!({"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 49152, "tie_word_embeddings": true, "eos_token_id": 2});
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    std::fs::copy(project_root().join(".uorch/models/smollm2-135m-instruct/tokenizer.json"), dir.join("tokenizer.json")).unwrap();
    let c: LlamaConfig = serde_json::from_value(config).unwrap();
    tch::manual_seed(0);
    let m = Llama::new(c, Device::Cpu, Kind::Float);
    let data: Vec<(String, Vec<usize>, Vec<u8>)> = m
        .vs
        .variables()
        .into_iter()
        .map(|(n, t)| {
            let t = if n.ends_with("norm.weight") { t.ones_like() } else { t.randn_like() * 0.05 };
            let v = Vec::<f32>::try_from(t.reshape([-1])).unwrap();
            (n, t.size().iter().map(|&d| d as usize).collect(), v.iter().flat_map(|x| x.to_le_bytes()).collect())
        })
        .collect();
    let views: Vec<(String, TensorView)> = data.iter().map(|(n, s, b)| (n.clone(), TensorView::new(Dtype::F32, s.clone(), b).unwrap())).collect();
    safetensors::serialize_to_file(views, None, &dir.join("model.safetensors")).unwrap();
}

#[test]
fn pretrain_then_finetune_on_two_workers_reports_every_baseline() {
    let d = tempfile::tempdir().unwrap();
    let store = d.path().join("ml");
    let o = uorch().args(["data", "prepare"]).arg(project_root().join("assets/ml-100k")).arg("--out").arg(&store).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let model = d.path().join("tiny");
    tiny_model(&model);
    let cfg = d.path().join("ft.yaml");
    std::fs::write(
        &cfg,
        format!(
            "name: ft\noutput_root: {}\nseed: 2\ndata: {{store: {}, window: 20, stride: 20}}\nencoder: {{dim: 16, layers: 1, heads: 2}}\n\
             pretrain: {{steps: 5, batch_size: 8, checkpoint_every: 0}}\n\
             finetune: {{model: {}, cross_attention_layers: [1], perceiver: {{latents: 4, layers: 1, heads: 2}}, steps: 6, batch_size: 4, log_every: 3, eval_examples: 10, text_prompt_window: 3}}\n\
             dist: {{nproc: 2}}\n",
            d.path().join("runs").display(),
            store.display(),
            model.display()
        ),
    )
    .unwrap();
    let o = uorch().arg("launch").arg(&cfg).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("finetuning done"), "{out}");
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(d.path().join("runs/ft/finetune_metrics.json")).unwrap()).unwrap();
    let who: Vec<&str> = m["results"].as_array().unwrap().iter().map(|r| r["who"].as_str().unwrap()).collect();
    assert_eq!(who.len(), 4, "{who:?}");
    assert!(who[0].contains("before finetuning") && who[1].contains("finetuned") && who[2].starts_with("majority") && who[3].starts_with("TextPrompt"));
    for r in m["results"].as_array().unwrap() {
        let a = r["metrics"]["accuracy"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&a));
        assert_eq!(r["cases"], 10);
    }
    // With a Perceiver the LLM reads 4 user tokens; TextPrompt reads more text.
    assert_eq!(m["results"][1]["user_tokens"], 4.0);
    assert!(m["results"][3]["prompt_tokens"].as_f64().unwrap() > m["results"][1]["prompt_tokens"].as_f64().unwrap());
    assert_eq!(m["gates"].as_array().unwrap().len(), 1);
    // The optimizer state is sharded: each of the 2 ranks holds half (rounded up) of 3 f32 values per trainable parameter.
    let trainable = m["trainable_parameters"].as_i64().unwrap();
    assert_eq!(m["optimizer_state_bytes_per_rank"].as_i64().unwrap(), 3 * 4 * ((trainable + 1) / 2));
    // The trained parts are saved: with Enc, exactly the trainable parameters, by name.
    let bytes = std::fs::read(d.path().join("runs/ft/finetune_weights.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let count: usize = st.tensors().iter().map(|(_, v)| v.shape().iter().product::<usize>()).sum();
    assert_eq!(count as i64, trainable);
    assert!(st.names().iter().any(|n| n.starts_with("xattn.1.")) && st.names().iter().all(|n| !n.starts_with("model.")), "{:?}", st.names());
    let log = std::fs::read_to_string(d.path().join("runs/ft/finetune_log.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 6);
}
