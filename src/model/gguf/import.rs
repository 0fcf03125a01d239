//! `uorch model import-gguf`: a GGUF file → a Hugging Face model folder
//! (`config.json`, `model.safetensors` in f32, `tokenizer.json`,
//! `generation_config.json`), written aside and renamed into place.

use super::{tokenizer, Gguf, TensorInfo};
use anyhow::{bail, Context, Result};
use safetensors::tensor::TensorView;
use safetensors::Dtype;
use serde_json::json;
use std::path::Path;

/// GGUF tensor name → Hugging Face Llama name.
fn hf_name(gguf: &str) -> Option<String> {
    let fixed = match gguf {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => Some("lm_head.weight"),
        _ => None,
    };
    if let Some(f) = fixed {
        return Some(f.to_string());
    }
    let rest = gguf.strip_prefix("blk.")?;
    let (layer, part) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let hf = match part {
        "attn_norm.weight" => "input_layernorm.weight",
        "ffn_norm.weight" => "post_attention_layernorm.weight",
        "attn_q.weight" => "self_attn.q_proj.weight",
        "attn_k.weight" => "self_attn.k_proj.weight",
        "attn_v.weight" => "self_attn.v_proj.weight",
        "attn_output.weight" => "self_attn.o_proj.weight",
        "attn_q.bias" => "self_attn.q_proj.bias",
        "attn_k.bias" => "self_attn.k_proj.bias",
        "attn_v.bias" => "self_attn.v_proj.bias",
        "ffn_gate.weight" => "mlp.gate_proj.weight",
        "ffn_up.weight" => "mlp.up_proj.weight",
        "ffn_down.weight" => "mlp.down_proj.weight",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{hf}"))
}

/// Undo llama.cpp's interleaving of the rotary halves in Q and K rows: GGUF
/// row `h·d + 2i + t` is Hugging Face row `h·d + t·d/2 + i` (head `h`, head
/// size `d`, pair index `i`, half `t`).
pub fn unpermute_rows(w: &[f32], rows: usize, cols: usize, heads: usize) -> Vec<f32> {
    let d = rows / heads;
    let half = d / 2;
    let mut out = vec![0f32; w.len()];
    for h in 0..heads {
        for i in 0..half {
            for t in 0..2 {
                let src = (h * d + 2 * i + t) * cols;
                let dst = (h * d + t * half + i) * cols;
                out[dst..dst + cols].copy_from_slice(&w[src..src + cols]);
            }
        }
    }
    out
}

pub struct Imported {
    pub architecture: String,
    pub parameters: u64,
    pub tensors: usize,
    pub tied_embeddings: bool,
}

fn u(g: &Gguf, key: &str) -> Result<u64> {
    g.require(key)?.as_u64().with_context(|| format!("{}: {key} is not an integer", g.path.display()))
}

pub fn import(path: &Path, out: &Path, force: bool) -> Result<Imported> {
    let g = Gguf::open(path)?;
    let arch = g.require("general.architecture")?.as_str().unwrap_or("").to_string();
    if arch != "llama" && arch != "qwen2" {
        bail!("{}: architecture {arch:?} is not supported (llama, qwen2 are)", path.display());
    }
    crate::fsutil::check_precious_output(out, &[path], force, |p| p.join("config.json").exists())?;
    let key = |k: &str| format!("{arch}.{k}");
    let hidden = u(&g, &key("embedding_length"))?;
    let heads = u(&g, &key("attention.head_count"))?;
    let kv_heads = g.get(&key("attention.head_count_kv")).and_then(|v| v.as_u64()).unwrap_or(heads);
    let layers = u(&g, &key("block_count"))?;
    let tied = g.tensor("output.weight").is_none();
    let embed = g.tensor("token_embd.weight").with_context(|| format!("{}: no token_embd.weight", path.display()))?;
    let vocab = embed.dims[1];
    let head_dim = g.get(&key("rope.dimension_count")).and_then(|v| v.as_u64()).unwrap_or(hidden / heads);
    let mut config = json!({
        "architectures": [if arch == "llama" { "LlamaForCausalLM" } else { "Qwen2ForCausalLM" }],
        "model_type": arch,
        "hidden_size": hidden,
        "intermediate_size": u(&g, &key("feed_forward_length"))?,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "head_dim": head_dim,
        "max_position_embeddings": g.get(&key("context_length")).and_then(|v| v.as_u64()).unwrap_or(2048),
        "rms_norm_eps": g.get(&key("attention.layer_norm_rms_epsilon")).and_then(|v| v.as_f64()).unwrap_or(1e-6),
        "rope_theta": g.get(&key("rope.freq_base")).and_then(|v| v.as_f64()).unwrap_or(10000.0),
        "vocab_size": vocab,
        "tie_word_embeddings": tied,
        "hidden_act": "silu",
        "attention_bias": arch == "qwen2",
        "mlp_bias": false,
        "torch_dtype": "float32",
    });
    for (gk, hk) in [("tokenizer.ggml.bos_token_id", "bos_token_id"), ("tokenizer.ggml.eos_token_id", "eos_token_id")] {
        if let Some(v) = g.get(gk).and_then(|v| v.as_u64()) {
            config[hk] = json!(v);
        }
    }

    // Dequantize every tensor into HF layout.
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    let mut parameters = 0u64;
    for t in &g.tensors {
        let Some(name) = hf_name(&t.name) else {
            if t.name == "rope_freqs.weight" {
                continue; // recomputed from the config's rope settings
            }
            bail!("{}: tensor {} has no Hugging Face equivalent", path.display(), t.name);
        };
        let shape: Vec<usize> = t.torch_shape().iter().map(|&d| d as usize).collect();
        let mut data = g.dequantize(t)?;
        if arch == "llama" {
            data = unpermute(t, data, &shape, heads as usize, kv_heads as usize);
        }
        parameters += t.elements();
        tensors.push((name, shape, data));
    }
    let tok = tokenizer::from_gguf(&g)?;

    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)?;
    let name = out.file_name().context("--out needs a folder name")?.to_string_lossy().into_owned();
    let staging = parent.join(format!(".{name}.partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir(&staging)?;
    let result = (|| -> Result<()> {
        let views: Vec<(String, TensorView)> = tensors
            .iter()
            .map(|(n, s, d)| {
                // SAFETY: f32 slice viewed as its bytes.
                let bytes = unsafe { std::slice::from_raw_parts(d.as_ptr() as *const u8, d.len() * 4) };
                Ok((n.clone(), TensorView::new(Dtype::F32, s.clone(), bytes)?))
            })
            .collect::<Result<_>>()?;
        let meta = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
        safetensors::serialize_to_file(views, Some(meta), &staging.join("model.safetensors"))?;
        crate::fsutil::share(&staging.join("model.safetensors"))?;
        std::fs::write(staging.join("config.json"), serde_json::to_string_pretty(&config)?)?;
        std::fs::write(staging.join("tokenizer.json"), serde_json::to_string(&tok.json)?)?;
        std::fs::write(staging.join("tokenizer_config.json"), serde_json::to_string_pretty(&tok.config)?)?;
        let gen = json!({"bos_token_id": config.get("bos_token_id"), "eos_token_id": config.get("eos_token_id"), "do_sample": false});
        std::fs::write(staging.join("generation_config.json"), serde_json::to_string_pretty(&gen)?)?;
        // An old model (with --force) is moved aside, and removed once the new one is in place.
        crate::fsutil::replace_dir(&staging, out)
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    result?;
    Ok(Imported { architecture: arch, parameters, tensors: tensors.len(), tied_embeddings: tied })
}

fn unpermute(t: &TensorInfo, data: Vec<f32>, shape: &[usize], heads: usize, kv_heads: usize) -> Vec<f32> {
    let groups = if t.name.ends_with("attn_q.weight") {
        heads
    } else if t.name.ends_with("attn_k.weight") {
        kv_heads
    } else {
        return data;
    };
    unpermute_rows(&data, shape[0], shape[1], groups)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpermute_inverts_llama_cpp_row_interleaving() {
        // One head of size 4 over 1 column: GGUF rows are (x0, x2, x1, x3) of HF's (x0, x1, x2, x3).
        assert_eq!(unpermute_rows(&[0.0, 2.0, 1.0, 3.0], 4, 1, 1), vec![0.0, 1.0, 2.0, 3.0]);
        // Two heads of size 2: each (a, b) is its own pair; nothing moves.
        assert_eq!(unpermute_rows(&[1.0, 2.0, 3.0, 4.0], 4, 1, 2), vec![1.0, 2.0, 3.0, 4.0]);
    }

    #[test]
    fn names_map_to_hugging_face_llama() {
        assert_eq!(hf_name("blk.12.attn_q.weight").unwrap(), "model.layers.12.self_attn.q_proj.weight");
        assert_eq!(hf_name("token_embd.weight").unwrap(), "model.embed_tokens.weight");
        assert!(hf_name("blk.x.attn_q.weight").is_none());
    }
}
