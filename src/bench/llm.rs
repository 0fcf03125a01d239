//! LLM training-step throughput: forward + backward + AdamW on a randomly
//! initialised Llama of a named shape, tokens per second and model FLOPs
//! utilisation, beside Hugging Face transformers doing the same step in the
//! same run when a Python with torch + transformers is given.
//!
//! FLOPs per token = 6 × (matmul parameters incl. the LM head) + 6 × 2 ×
//! layers × seq × hidden (the attention scores), the count the reference
//! figures in shared/ENVIRONMENT.md use.

use crate::model::llama::{Llama, LlamaConfig};
use anyhow::{bail, Result};
use std::path::Path;
use std::process::Command;
use std::time::Instant;
use tch::{nn, nn::OptimizerConfig, Device, Kind, Tensor};

#[derive(Debug, Clone)]
pub struct Shape {
    pub name: &'static str,
    pub config: LlamaConfig,
    pub batch: i64,
    pub seq: i64,
}

fn config(
    hidden: usize,
    inter: usize,
    layers: usize,
    heads: usize,
    kv: usize,
    vocab: usize,
    tied: bool,
) -> LlamaConfig {
    serde_json::from_value(serde_json::json!({
        "model_type": "llama", "hidden_size": hidden, "intermediate_size": inter, "num_hidden_layers": layers,
        "num_attention_heads": heads, "num_key_value_heads": kv, "vocab_size": vocab,
        "tie_word_embeddings": tied, "rope_theta": 100000.0, "max_position_embeddings": 4096, "rms_norm_eps": 1e-5
    }))
    .expect("valid config")
}

/// The benchmark shapes: SmolLM2-135M and a Llama-3.2-1B-like model.
pub fn shape(name: &str, device: Device) -> Result<Shape> {
    let gpu = device.is_cuda();
    Ok(match name {
        "smollm2-135m" => Shape {
            name: "smollm2-135m",
            config: config(576, 1536, 30, 9, 3, 49152, true),
            batch: if gpu { 32 } else { 4 },
            seq: if gpu { 512 } else { 256 },
        },
        "llama-1b" => Shape {
            name: "llama-1b",
            config: config(2048, 8192, 16, 32, 8, 128_256, true),
            batch: if gpu { 16 } else { 1 },
            seq: if gpu { 1024 } else { 256 },
        },
        other => bail!("unknown shape {other:?} (smollm2-135m, llama-1b)"),
    })
}

pub fn flops_per_token(c: &LlamaConfig, seq: i64) -> f64 {
    let embed = (c.vocab_size * c.hidden_size) as f64;
    let non_embedding = c.parameter_count() as f64 - embed - if c.tie_word_embeddings { 0.0 } else { embed };
    let matmul = non_embedding + embed; // the LM head multiplies by a vocab x hidden matrix either way
    6.0 * matmul + 12.0 * (c.num_hidden_layers as f64) * seq as f64 * c.hidden_size as f64
}

pub struct Result_ {
    pub who: String,
    pub tokens_per_s: f64,
    pub step_ms: f64,
}

/// Our training step: fp32 weights and AdamW; the forward in the model's dtype.
pub fn run_ours(s: &Shape, device: Device, steps: usize, warmup: usize) -> Result<Result_> {
    tch::manual_seed(0);
    let model = Llama::new(s.config.clone(), device, Kind::Float);
    tch::no_grad(|| {
        for (name, v) in model.vs.variables() {
            if name.ends_with("norm.weight") {
                let _ = v.shallow_clone().fill_(1.0);
            } else {
                let _ = v.shallow_clone().normal_(0.0, 0.02);
            }
        }
    });
    let mut opt = nn::AdamW::default().build(&model.vs, 1e-4)?;
    let ids = Tensor::randint(s.config.vocab_size as i64, [s.batch, s.seq + 1], (Kind::Int64, device));
    let input = ids.narrow(1, 0, s.seq);
    let target = ids.narrow(1, 1, s.seq);
    let mut step = || {
        // bf16 autocast on GPU (fp32 master weights), f32 on CPU.
        let loss = crate::torch_runtime::with_autocast(device, || {
            let logits = model.forward(&input, None);
            logits
                .view([-1, s.config.vocab_size as i64])
                .to_kind(Kind::Float)
                .cross_entropy_for_logits(&target.reshape([-1]))
        });
        opt.zero_grad();
        loss.backward();
        opt.step();
    };
    for _ in 0..warmup {
        step();
    }
    if device.is_cuda() {
        tch::Cuda::synchronize(0);
    }
    let t = Instant::now();
    for _ in 0..steps {
        step();
    }
    if device.is_cuda() {
        tch::Cuda::synchronize(0);
    }
    let secs = t.elapsed().as_secs_f64();
    Ok(Result_ {
        who: "uorch (tch)".into(),
        tokens_per_s: (s.batch * s.seq) as f64 * steps as f64 / secs,
        step_ms: secs * 1000.0 / steps as f64,
    })
}

const HF_REFERENCE: &str = r#"
import json, sys, time, torch
from transformers import LlamaConfig, LlamaForCausalLM
cfg, batch, seq, steps, warmup, device = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
torch.manual_seed(0)
model = LlamaForCausalLM(LlamaConfig(**cfg, attn_implementation="sdpa")).to(device)
opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.startswith("cuda"))
ids = torch.randint(cfg["vocab_size"], (batch, seq + 1), device=device)
def step():
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.startswith("cuda")):
        out = model(input_ids=ids[:, :-1], labels=None)
    loss = torch.nn.functional.cross_entropy(out.logits.reshape(-1, cfg["vocab_size"]).float(), ids[:, 1:].reshape(-1))
    opt.zero_grad(); loss.backward(); opt.step()
for _ in range(warmup): step()
if device.startswith("cuda"): torch.cuda.synchronize()
t = time.perf_counter()
for _ in range(steps): step()
if device.startswith("cuda"): torch.cuda.synchronize()
print((time.perf_counter() - t))
"#;

/// The same step in Hugging Face transformers (eager), if `python` can import it.
pub fn run_reference(python: &Path, s: &Shape, device: Device, steps: usize, warmup: usize) -> Result<Option<Result_>> {
    if !super::python_imports(python, "torch, transformers") {
        return Ok(None);
    }
    let c = &s.config;
    let cfg = serde_json::json!({
        "hidden_size": c.hidden_size, "intermediate_size": c.intermediate_size, "num_hidden_layers": c.num_hidden_layers,
        "num_attention_heads": c.num_attention_heads, "num_key_value_heads": c.kv_heads(), "vocab_size": c.vocab_size,
        "tie_word_embeddings": c.tie_word_embeddings, "rope_theta": c.rope_theta, "max_position_embeddings": c.max_position_embeddings,
        "rms_norm_eps": c.rms_norm_eps,
    });
    let dev = match device {
        Device::Cuda(i) => format!("cuda:{i}"),
        _ => "cpu".into(),
    };
    let threads = tch::get_num_threads().to_string();
    let o = Command::new(python)
        .args([
            "-c",
            HF_REFERENCE,
            &cfg.to_string(),
            &s.batch.to_string(),
            &s.seq.to_string(),
            &steps.to_string(),
            &warmup.to_string(),
            &dev,
        ])
        .env("OMP_NUM_THREADS", &threads)
        .output()?;
    if !o.status.success() {
        bail!("transformers reference failed: {}", String::from_utf8_lossy(&o.stderr));
    }
    let secs: f64 = String::from_utf8_lossy(&o.stdout).trim().lines().last().unwrap_or("").parse()?;
    Ok(Some(Result_ {
        who: "HF transformers eager".into(),
        tokens_per_s: (s.batch * s.seq) as f64 * steps as f64 / secs,
        step_ms: secs * 1000.0 / steps as f64,
    }))
}

/// Peak dense bf16 rate used for MFU on a GPU (measured on the H200).
pub use crate::gpu_info::H200_PEAK_TFLOPS;

pub fn report(s: &Shape, rows: &[Result_], device: Device) -> String {
    let fpt = flops_per_token(&s.config, s.seq);
    let mut out = format!(
        "{} ({:.0}M parameters), batch {} x seq {}, {} ({:.2} GFLOP/token):\n",
        s.name,
        s.config.parameter_count() as f64 / 1e6,
        s.batch,
        s.seq,
        if device.is_cuda() { "GPU" } else { "CPU f32" },
        fpt / 1e9
    );
    let ours = rows.first().map(|r| r.tokens_per_s).unwrap_or(1.0);
    for r in rows {
        let mfu = if device.is_cuda() {
            format!("{:5.1}%", 100.0 * r.tokens_per_s * fpt / (H200_PEAK_TFLOPS * 1e12))
        } else {
            "    -".into()
        };
        out.push_str(&format!(
            "  {:<24} {:>12.0} tokens/s {:>9.1} ms/step  MFU {}  uorch speed-up {:.2}x\n",
            r.who,
            r.tokens_per_s,
            r.step_ms,
            mfu,
            ours / r.tokens_per_s
        ));
    }
    out
}
