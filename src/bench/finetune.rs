//! `uorch bench finetune`: training throughput of each finetuning strategy
//! (Full, LoRA, Enc, Proj) with cross-attention on the real data and LLM, one
//! process, the same batches for every strategy; ratios against Full (the
//! strategy every other framework can run) in the same invocation, and MFU on
//! a GPU. Step = forward + backward + ZeRO-2 AdamW (one shard).

use crate::config::RunConfig;
use crate::data::catalog::Catalog;
use crate::data::store::Store;
use crate::model::tokenizer::Tokenizer;
use crate::model::userllm::{Part, Strategy};
use crate::model::{assemble, cost};
use crate::task::ask::Asker;
use crate::task::ask::TaskSpec;
use crate::task::examples;
use crate::train::finetune;
use crate::train::zero::{self, ZeroStage};
use anyhow::Result;
use std::path::Path;
use std::time::Instant;
use tch::Device;

pub struct Row {
    pub strategy: Strategy,
    pub trainable: i64,
    pub optimizer_mib: f64,
    pub examples_per_s: f64,
    pub tokens_per_s: f64,
    pub step_ms: f64,
    /// Model FLOPs per step (3 x forward: forward, and backward at twice its cost).
    pub flops_per_step: f64,
}

/// A favorite-genre run config for the bench (cross-attention every 3rd layer, window 50).
fn config(store: &Path, model: &Path, strategy: Strategy, batch: usize) -> Result<RunConfig> {
    Ok(serde_json::from_value(serde_json::json!({
        "name": "bench",
        "data": {"store": store, "window": 50, "stride": 25},
        "encoder": {"dim": 64, "layers": 2, "heads": 4},
        "finetune": {"model": model, "cross_attention_layers": "every_3", "strategy": strategy, "steps": 1, "batch_size": batch},
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
    tch::no_grad(|| {
        for (n, v) in m.vs.variables() {
            let _ = if n.ends_with("norm.weight") {
                v.shallow_clone().fill_(1.0)
            } else {
                v.shallow_clone().normal_(0.0, 0.02)
            };
        }
    });
    Ok(m)
}

pub fn run(
    store_dir: &Path,
    model_dir: &Path,
    steps: usize,
    batch: usize,
    device: Device,
    random_init: bool,
) -> Result<Vec<Row>> {
    let store = Store::open(store_dir)?;
    let cat = Catalog::of_store(&store);
    let tok = Tokenizer::from_dir(model_dir)?;
    let mut rows = Vec::new();
    for strategy in [Strategy::Full, Strategy::Lora, Strategy::Enc, Strategy::Proj] {
        let cfg = config(store_dir, model_dir, strategy, batch)?;
        let model = assemble::for_run(&cfg, &store, llm(model_dir, device, random_init)?)?;
        let spec = TaskSpec::from_config(&cfg)?;
        let d = cfg.data.as_ref().expect("bench config has data");
        let train = examples::training(&store, spec.task, d.window, d.stride)?;
        let trainable: Vec<_> =
            model.named_parameters().into_iter().filter(|(n, _)| Part::of(n).trains(strategy)).collect();
        let mut opt = zero::optimizer(ZeroStage::Two, &trainable, None, 25 << 20, 0.0)?;
        let asker = Asker::new(&model, &tok, &cat, spec.clone())?;
        model.set_training(true);
        let mut tokens = 0i64;
        let mut flops = 0.0;
        let mut step = |i: usize, count: bool| -> Result<()> {
            let idx: Vec<usize> = (0..batch).map(|k| (i * batch + k) % train.len()).collect();
            let b = finetune::make_batch(&asker, &store, &train, &idx, device)?;
            finetune::forward_backward(&model, &asker, &b, b.answer_tokens as f64, device)?;
            opt.after_backward()?;
            opt.step(1e-4, 1.0)?;
            if count {
                let t = b.tokens.size();
                tokens += t[0] * t[1];
                flops +=
                    cost::TRAINING_PER_FORWARD * t[0] as f64 * cost::user_llm(&model, t[1] as f64, d.window as f64);
            }
            Ok(())
        };
        step(0, false)?; // warm-up
        if device.is_cuda() {
            tch::Cuda::synchronize(0);
        }
        let t0 = Instant::now();
        for i in 1..=steps {
            step(i, true)?;
        }
        if device.is_cuda() {
            tch::Cuda::synchronize(0);
        }
        let secs = t0.elapsed().as_secs_f64();
        rows.push(Row {
            strategy,
            trainable: trainable.iter().map(|(_, t)| t.numel() as i64).sum(),
            optimizer_mib: opt.state_bytes() as f64 / (1 << 20) as f64,
            examples_per_s: (steps * batch) as f64 / secs,
            tokens_per_s: tokens as f64 / secs,
            step_ms: secs * 1000.0 / steps as f64,
            flops_per_step: flops / steps as f64,
        });
    }
    Ok(rows)
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
    s
}
