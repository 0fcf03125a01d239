//! Loading model folders: every tensor must be present, expected and of the
//! right shape, and errors name the tensor.

use safetensors::tensor::TensorView;
use safetensors::Dtype;
use std::path::Path;
use tch::{Device, Kind};
use uorch::model::llama::load::load;
use uorch::model::llama::{Llama, LlamaConfig};

const CONFIG: &str = r#"{"model_type": "llama", "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 2,
  "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 11, "tie_word_embeddings": true, "rope_theta": 10000.0}"#;

/// Write a folder with the tiny model's tensors, edited by `edit`.
fn folder(dir: &Path, edit: impl FnOnce(&mut Vec<(String, Vec<usize>)>)) {
    std::fs::write(dir.join("config.json"), CONFIG).unwrap();
    let c: LlamaConfig = serde_json::from_str(CONFIG).unwrap();
    let model = Llama::new(c, Device::Cpu, Kind::Float);
    let mut specs: Vec<(String, Vec<usize>)> =
        model.vs.variables().into_iter().map(|(n, t)| (n, t.size().iter().map(|&d| d as usize).collect())).collect();
    specs.sort();
    edit(&mut specs);
    let data: Vec<(String, Vec<usize>, Vec<u8>)> = specs
        .into_iter()
        .map(|(n, s)| {
            let count: usize = s.iter().product();
            let bytes = (0..count).flat_map(|i| (i as f32 * 0.01).to_le_bytes()).collect();
            (n, s, bytes)
        })
        .collect();
    let views: Vec<(String, TensorView)> =
        data.iter().map(|(n, s, b)| (n.clone(), TensorView::new(Dtype::F32, s.clone(), b).unwrap())).collect();
    safetensors::serialize_to_file(views, None, &dir.join("model.safetensors")).unwrap();
}

fn load_err(dir: &Path) -> String {
    load(dir, Device::Cpu, Kind::Float).err().unwrap().to_string()
}

#[test]
fn a_complete_folder_loads_and_its_parameter_count_matches_the_config() {
    let _rng = crate::common::torch_rng();
    let d = tempfile::tempdir().unwrap();
    folder(d.path(), |_| {});
    let m = load(d.path(), Device::Cpu, Kind::Float).unwrap();
    let total: i64 = m.vs.variables().values().map(|t| t.numel() as i64).sum();
    assert_eq!(total as u64, m.config.parameter_count());
    let w = m.layers[1].mlp.up_proj.weight.double_value(&[0, 3]);
    assert!((w - 0.03).abs() < 1e-7, "{w}");
}

#[test]
fn missing_unexpected_and_misshaped_tensors_are_named() {
    let _rng = crate::common::torch_rng();
    let d = tempfile::tempdir().unwrap();
    folder(d.path(), |s| s.retain(|(n, _)| n != "model.layers.1.self_attn.k_proj.weight"));
    assert!(load_err(d.path()).contains("missing tensors: model.layers.1.self_attn.k_proj.weight"));

    let d = tempfile::tempdir().unwrap();
    folder(d.path(), |s| s.push(("model.layers.7.mlp.up_proj.weight".into(), vec![16, 8])));
    assert!(
        load_err(d.path()).contains("unexpected tensors the model has no place for: model.layers.7.mlp.up_proj.weight")
    );

    let d = tempfile::tempdir().unwrap();
    folder(d.path(), |s| {
        for (n, shape) in s.iter_mut() {
            if n == "model.norm.weight" {
                *shape = vec![1, 8];
            }
        }
    });
    let e = load_err(d.path());
    assert!(e.contains("tensor model.norm.weight has shape [1, 8] but the model expects [8]"), "{e}");
}

#[test]
fn sharded_checkpoints_load_through_their_index() {
    let _rng = crate::common::torch_rng();
    let d = tempfile::tempdir().unwrap();
    folder(d.path(), |_| {});
    // Split the single file into two shards with an index.
    let bytes = std::fs::read(d.path().join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<String> = st.names().into_iter().map(|s| s.to_string()).collect();
    names.sort();
    let (a, b) = names.split_at(names.len() / 2);
    let mut map = serde_json::Map::new();
    for (file, part) in [("model-00001-of-00002.safetensors", a), ("model-00002-of-00002.safetensors", b)] {
        let views: Vec<(String, TensorView)> = part.iter().map(|n| (n.clone(), st.tensor(n).unwrap())).collect();
        safetensors::serialize_to_file(views, None, &d.path().join(file)).unwrap();
        for n in part {
            map.insert(n.clone(), serde_json::json!(file));
        }
    }
    std::fs::remove_file(d.path().join("model.safetensors")).unwrap();
    std::fs::write(d.path().join("model.safetensors.index.json"), serde_json::json!({"weight_map": map}).to_string())
        .unwrap();
    load(d.path(), Device::Cpu, Kind::Float).unwrap();
}
