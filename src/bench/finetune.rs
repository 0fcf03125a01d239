//! `uorch bench finetune`: training throughput of each finetuning strategy
//! (Full, LoRA, Enc, Proj) with cross-attention and a Perceiver on the real
//! data and LLM, one process, the same batches for every strategy; ratios
//! against Full in the same invocation, and MFU on a GPU. Step = forward +
//! backward + ZeRO-2 AdamW (one shard) with gradient clipping.
//!
//! With `reference`, a Python with torch, transformers and peft runs the same
//! steps in Hugging Face transformers + PEFT (`benches/finetune_reference.py`)
//! from the same initial weights on the same batches, which this module
//! writes for it; the losses of the two show they train the same model.

use crate::config::RunConfig;
use crate::data::catalog::Catalog;
use crate::data::store::Store;
use crate::model::tokenizer::Tokenizer;
use crate::model::userllm::{Part, Strategy, UserLlm, UserLlmConfig};
use crate::model::{assemble, cost};
use crate::task::ask::Asker;
use crate::task::ask::TaskSpec;
use crate::task::examples;
use crate::train::finetune;
use crate::train::zero::{self, ZeroStage};
use anyhow::{Context, Result};
use std::path::Path;
use std::time::Instant;
use tch::Device;

pub const STRATEGIES: [Strategy; 4] = [Strategy::Full, Strategy::Lora, Strategy::Enc, Strategy::Proj];
const LR: f64 = 1e-4;
const MAX_NORM: f64 = 1.0;

pub struct Options<'a> {
    pub store: &'a Path,
    pub model: &'a Path,
    /// Timed steps (after one warm-up step).
    pub steps: usize,
    pub batch: usize,
    pub device: Device,
    /// Random weights of the model's shape (no reference then: it loads the folder's weights).
    pub random_init: bool,
    /// A Python with torch, transformers and peft, for the reference.
    pub reference: Option<&'a Path>,
    /// Where the reference's inputs go (`<dir>/<strategy>/`).
    pub dir: &'a Path,
}

/// The same steps in transformers + PEFT.
pub struct Reference {
    pub examples_per_s: f64,
    pub step_ms: f64,
    pub losses: Vec<f64>,
}

pub struct Row {
    pub strategy: Strategy,
    pub trainable: i64,
    pub optimizer_mib: f64,
    pub examples_per_s: f64,
    pub tokens_per_s: f64,
    pub step_ms: f64,
    /// Model FLOPs per step (3 x forward: forward, and backward at twice its cost).
    pub flops_per_step: f64,
    /// Every step's loss, the warm-up's first.
    pub losses: Vec<f64>,
    pub reference: Option<Reference>,
}

/// A favorite-genre run config for the bench: cross-attention every 3rd
/// layer reading a 16-latent Perceiver over a window of 50; no dropout, so
/// that a reference can take the very same steps.
fn config(store: &Path, model: &Path, strategy: Strategy, batch: usize) -> Result<RunConfig> {
    Ok(serde_json::from_value(serde_json::json!({
        "name": "bench",
        "data": {"store": store, "window": 50, "stride": 25},
        "encoder": {"dim": 64, "layers": 2, "heads": 4, "dropout": 0.0},
        "finetune": {"model": model, "cross_attention_layers": "every_3", "strategy": strategy, "steps": 1, "batch_size": batch,
                     "perceiver": {"latents": 16, "layers": 2, "heads": 4}},
    }))?)
}

/// The LLM of `model_dir`, or with `random_init` one of its shape with
/// random weights (throughput does not depend on the values; a GPU host then
/// needs only `config.json` and `tokenizer.json`).
fn llm(model_dir: &Path, device: Device, random_init: bool) -> Result<crate::model::llama::Llama> {
    if !random_init {
        return crate::model::llama::load::load(model_dir, device, tch::Kind::Float);
    }
    let m =
        crate::model::llama::Llama::new(crate::model::llama::LlamaConfig::load(model_dir)?, device, tch::Kind::Float);
    let vars: std::collections::BTreeMap<_, _> = m.vs.variables().into_iter().collect();
    tch::no_grad(|| {
        for (n, v) in vars {
            let _ = if n.ends_with("norm.weight") {
                v.shallow_clone().fill_(1.0)
            } else {
                v.shallow_clone().normal_(0.0, 0.02)
            };
        }
    });
    Ok(m)
}

/// Gates opened (tanh 0.5) and LoRA's B drawn small: at their initial zeros
/// the first loss would be the bare LLM's whatever the encoder, Perceiver,
/// cross-attention and adapters compute, and agreeing on it would show
/// nothing about them. Neither changes the work a step does.
fn open_up(model: &UserLlm) {
    // By name: a VarStore's map iterates in a different order in every process.
    let vars: std::collections::BTreeMap<_, _> = model.vs.variables().into_iter().collect();
    tch::no_grad(|| {
        for (name, v) in vars {
            if name.ends_with(".alpha") {
                let _ = v.shallow_clone().fill_(0.5);
            } else if name.ends_with(".lora_B") {
                let _ = v.shallow_clone().normal_(0.0, 0.02);
            }
        }
    });
}

pub fn run(o: &Options) -> Result<Vec<Row>> {
    let store = Store::open(o.store)?;
    let cat = Catalog::of_store(&store);
    let tok = Tokenizer::from_dir(o.model)?;
    let reference = match o.reference {
        Some(_) if o.random_init => {
            eprintln!("--random-init: no reference (it loads {}'s weights)", o.model.display());
            None
        }
        Some(p) if o.device.is_cuda() => {
            eprintln!("the reference runs on the CPU only: skipped on {:?} ({})", o.device, p.display());
            None
        }
        Some(p) if !super::python_imports(p, "torch, transformers, peft") => {
            eprintln!("no torch + transformers + peft at {}: reference skipped (make bench-setup)", p.display());
            None
        }
        other => other,
    };
    let mut rows = Vec::new();
    for strategy in STRATEGIES {
        let cfg = config(o.store, o.model, strategy, o.batch)?;
        let model = assemble::for_run(&cfg, &store, llm(o.model, o.device, o.random_init)?)?;
        open_up(&model);
        let spec = TaskSpec::from_config(&cfg)?;
        let d = cfg.data.as_ref().expect("bench config has data");
        let train = examples::training(&store, spec.task, d.window, d.stride)?;
        let trainable: Vec<_> =
            model.named_parameters().into_iter().filter(|(n, _)| Part::of(n).trains(strategy)).collect();
        let mut opt = zero::optimizer(ZeroStage::Two, &trainable, None, 25 << 20, 0.0)?;
        let asker = Asker::new(&model, &tok, &cat, spec.clone())?;
        let batches = (0..=o.steps)
            .map(|i| {
                let idx: Vec<usize> = (0..o.batch).map(|k| (i * o.batch + k) % train.len()).collect();
                finetune::make_batch(&asker, &store, &train, &idx, o.device)
            })
            .collect::<Result<Vec<_>>>()?;
        let ref_dir = o.dir.join(format!("{strategy:?}").to_lowercase());
        if reference.is_some() {
            write_reference_inputs(&ref_dir, &model, &asker, &batches)?;
        }
        model.set_training(true);
        let (mut tokens, mut flops, mut losses) = (0i64, 0.0, Vec::new());
        let mut t0 = Instant::now();
        for (i, b) in batches.iter().enumerate() {
            let sum = finetune::forward_backward(&model, &asker, b, b.answer_tokens as f64, o.device)?;
            opt.after_backward()?;
            opt.step(LR, MAX_NORM)?;
            losses.push(sum / b.answer_tokens as f64);
            if i == 0 {
                // The warm-up step is not timed.
                if o.device.is_cuda() {
                    tch::Cuda::synchronize(0);
                }
                t0 = Instant::now();
                continue;
            }
            let t = b.tokens.size();
            tokens += t[0] * t[1];
            flops += cost::TRAINING_PER_FORWARD * t[0] as f64 * cost::user_llm(&model, t[1] as f64, d.window as f64);
        }
        if o.device.is_cuda() {
            tch::Cuda::synchronize(0);
        }
        let secs = t0.elapsed().as_secs_f64();
        let steps = o.steps;
        let trainable_count: i64 = trainable.iter().map(|(_, t)| t.numel() as i64).sum();
        let optimizer_mib = opt.state_bytes() as f64 / (1 << 20) as f64;
        let f = cfg.finetune.as_ref().expect("bench config has finetune");
        let user_side = user_side_args(&model, &UserLlmConfig::from_finetune(f));
        // Free this model's memory before the reference loads its own.
        drop(opt);
        drop(asker);
        drop(trainable);
        drop(model);
        let reference = match reference {
            Some(python) => Some(run_reference(python, &ref_dir, o, strategy, &cfg, user_side)?),
            None => None,
        };
        rows.push(Row {
            strategy,
            trainable: trainable_count,
            optimizer_mib,
            examples_per_s: (steps * o.batch) as f64 / secs,
            tokens_per_s: tokens as f64 / secs,
            step_ms: secs * 1000.0 / steps as f64,
            flops_per_step: flops / steps as f64,
            losses,
            reference,
        });
    }
    Ok(rows)
}

/// The reference's inputs: the initial weights of what uorch adds to the LLM
/// (`init.safetensors`) and every step's batch (`batches.safetensors`, `<step>.tokens` ...).
fn write_reference_inputs(dir: &Path, model: &UserLlm, asker: &Asker, batches: &[finetune::Batch]) -> Result<()> {
    let init: Vec<_> = model.vs.variables().into_iter().collect();
    crate::model::weights::save_tensors(&dir.join("init.safetensors"), &init)?;
    let all: Vec<_> = batches.iter().enumerate().flat_map(|(i, b)| b.named_tensors(asker, &format!("{i}."))).collect();
    let cpu: Vec<_> = all.into_iter().map(|(n, t)| (n, t.to_device(Device::Cpu))).collect();
    crate::model::weights::save_tensors(&dir.join("batches.safetensors"), &cpu)?;
    Ok(())
}

fn run_reference(
    python: &Path,
    dir: &Path,
    o: &Options,
    strategy: Strategy,
    cfg: &RunConfig,
    user_side: serde_json::Value,
) -> Result<Reference> {
    let f = cfg.finetune.as_ref().expect("bench config has finetune");
    let mut args = serde_json::json!({
        "dir": dir, "model": o.model, "strategy": strategy, "steps": o.steps, "lr": LR, "max_norm": MAX_NORM,
        "threads": tch::get_num_threads(), "lora": f.lora,
    });
    merge(&mut args, user_side);
    eprintln!("{strategy:?}: transformers + PEFT reference ...");
    let v = super::reference_json(python, "finetune_reference.py", &args)?;
    let secs = v["seconds"].as_f64().context("reference: no seconds")?;
    let losses: Vec<f64> =
        v["losses"].as_array().context("reference: no losses")?.iter().filter_map(|x| x.as_f64()).collect();
    Ok(Reference { examples_per_s: (o.steps * o.batch) as f64 / secs, step_ms: secs * 1000.0 / o.steps as f64, losses })
}

/// What `benches/userllm_reference.py`'s `UserSide` needs to build the user
/// side of `model`, built from `cfg` (encoder, Perceiver, projection,
/// cross-attention layers).
pub(crate) fn user_side_args(model: &UserLlm, cfg: &UserLlmConfig) -> serde_json::Value {
    let shape = &model.encoder.shape;
    serde_json::json!({
        "features": shape.features.iter().map(|(f, v)| (f.name(), *v)).collect::<Vec<_>>(),
        "encoder": {"dim": shape.dim, "layers": shape.layers, "heads": shape.heads, "ffn_mult": shape.ffn_mult,
                    "max_len": shape.max_len, "dropout": shape.dropout},
        "perceiver": cfg.perceiver, "projection": cfg.projection, "xattn_layers": model.xattn.keys().collect::<Vec<_>>(),
    })
}

/// `extra`'s keys added to the JSON object `args`.
pub(crate) fn merge(args: &mut serde_json::Value, extra: serde_json::Value) {
    if let (Some(a), serde_json::Value::Object(e)) = (args.as_object_mut(), extra) {
        a.extend(e);
    }
}

/// Largest |uorch − reference| over the first `n` losses.
pub fn loss_gap(ours: &[f64], theirs: &[f64], n: usize) -> f64 {
    ours.iter().zip(theirs).take(n).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max)
}

pub fn report(rows: &[Row], device: Device) -> String {
    let full = rows.iter().find(|r| r.strategy == Strategy::Full).map(|r| r.examples_per_s).unwrap_or(1.0);
    let mut s = format!(
        "  {:<6} {:>11} {:>13} {:>11} {:>10} {:>9} {:>9} {:>6}\n",
        "", "trainable", "optimizer MiB", "examples/s", "tokens/s", "ms/step", "vs Full", "MFU"
    );
    for r in rows {
        let mfu = if device.is_cuda() {
            format!("{:5.1}%", 100.0 * r.flops_per_step / (r.step_ms / 1000.0) / (super::llm::H200_PEAK_TFLOPS * 1e12))
        } else {
            "-".into()
        };
        s.push_str(&format!(
            "  {:<6} {:>11} {:>13.1} {:>11.2} {:>10.0} {:>9.1} {:>8.2}x {:>6}\n",
            format!("{:?}", r.strategy),
            r.trainable,
            r.optimizer_mib,
            r.examples_per_s,
            r.tokens_per_s,
            r.step_ms,
            r.examples_per_s / full,
            mfu
        ));
    }
    if rows.iter().any(|r| r.reference.is_some()) {
        s.push_str(
            "\n  against transformers + PEFT (benches/finetune_reference.py), same initial weights and batches:\n",
        );
        s.push_str(&format!(
            "  {:<6} {:>11} {:>15} {:>9} {:>22} {:>12} {:>12}\n",
            "", "uorch ex/s", "reference ex/s", "speed-up", "first loss (uorch/ref)", "|Δ| first", "max |Δ| all"
        ));
        for r in rows {
            if let Some(x) = &r.reference {
                s.push_str(&format!(
                    "  {:<6} {:>11.2} {:>15.2} {:>8.2}x {:>22} {:>12.1e} {:>12.1e}\n",
                    format!("{:?}", r.strategy),
                    r.examples_per_s,
                    x.examples_per_s,
                    r.examples_per_s / x.examples_per_s,
                    format!("{:.5}/{:.5}", r.losses[0], x.losses.first().copied().unwrap_or(f64::NAN)),
                    loss_gap(&r.losses, &x.losses, 1),
                    loss_gap(&r.losses, &x.losses, usize::MAX),
                ));
            }
        }
    }
    s
}

/// Where `uorch bench finetune --write-golden` records the reference's losses.
pub fn golden_json(rows: &[Row], o: &Options) -> Result<serde_json::Value> {
    let mut losses = serde_json::Map::new();
    for r in rows {
        let x = r.reference.as_ref().context("--write-golden needs the reference (--reference-python)")?;
        losses.insert(format!("{:?}", r.strategy).to_lowercase(), serde_json::json!(x.losses));
    }
    Ok(serde_json::json!({
        "made_by": format!("uorch bench finetune --steps {} --batch {} --reference-python PYTHON --write-golden FILE (benches/finetune_reference.py: transformers + PEFT)", o.steps, o.batch),
        "store": "uorch data prepare assets/ml-100k (default filters)",
        "model": "SmolLM2-135M-Instruct as make setup imports it (.uorch/models/smollm2-135m-instruct)",
        "steps": o.steps,
        "batch": o.batch,
        "reference_losses": losses,
    }))
}
