//! Encoder pretraining, data parallel: every rank builds the same encoder,
//! takes rank 0's parameters, trains on its shard of the training windows,
//! sums gradients across ranks (the loss is normalised by the global number of
//! targets, so N ranks at batch B follow 1 rank at batch N·B), clips, and
//! steps AdamW. Rank 0 logs, checkpoints, evaluates and writes metrics.

use super::adamw::AdamW;
use super::batches::{encoder_shape, eval_batch, train_batch, window_targets};
use super::checkpoint::{self, TrainState};
use super::ddp;
use super::metrics::{popularity_scores, ranks, summarize, RankingMetrics};
use super::schedule::lr_at;
use super::worker::Worker;
use crate::config::run::{EncoderConfig, PretrainConfig};
use crate::config::RunConfig;
use crate::data::split::{epoch_batches, eval_cases, steps_per_epoch, training_windows, Sharding, Split, WindowSpec};
use crate::data::store::Store;
use crate::model::encoder::UserEncoder;
use crate::tb::EventWriter;
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::io::Write;
use std::path::Path;
use std::time::Instant;
use tch::{nn, Tensor};

/// What decides the trajectory: a checkpoint resumes only a run with the same hash.
pub fn config_hash(cfg: &RunConfig, enc: &EncoderConfig, p: &PretrainConfig) -> String {
    let key = serde_json::json!({
        "seed": cfg.seed, "data": cfg.data, "encoder": enc,
        "batch_size": p.batch_size, "grad_accum": p.grad_accum, "lr": p.lr, "weight_decay": p.weight_decay,
        "warmup_steps": p.warmup_steps, "steps": p.steps, "grad_clip": p.grad_clip,
    });
    crate::fsutil::config_digest(&key, 16)
}

#[derive(Debug, Serialize)]
pub struct Outcome {
    pub steps: u64,
    pub final_loss: f64,
    pub interrupted: bool,
    pub encoder: Option<RankingMetrics>,
    pub popularity: Option<RankingMetrics>,
}

pub const METRICS_FILE: &str = "metrics.json";
pub const TRAIN_LOG: &str = "train_log.jsonl";

pub fn run(cfg: &RunConfig, w: &Worker) -> Result<Outcome> {
    let p = cfg.pretrain.as_ref().context("no pretrain section")?;
    let d = cfg.data.as_ref().context("pretrain needs a data section")?;
    let enc_cfg = cfg.encoder.clone().unwrap_or_default();
    let store = Store::open(&d.store)?;
    let run_dir = cfg.run_dir();
    let lead = w.rank == 0;

    let features = enc_cfg.features.clone();
    let shape = encoder_shape(&store, &enc_cfg, d.window);
    tch::manual_seed(cfg.seed as i64);
    let vs = nn::VarStore::new(w.device);
    let encoder = UserEncoder::new(&(vs.root() / "encoder"), shape);
    let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let params: Vec<Tensor> = named.iter().map(|(_, t)| t.shallow_clone()).collect();
    let mut opt = AdamW::new(p.weight_decay);
    let hash = config_hash(cfg, &enc_cfg, p);

    let mut start = 0u64;
    if let Some((dir, state)) = checkpoint::latest(&checkpoint::pretrain_root(&run_dir))? {
        if state.config_hash != hash {
            bail!(
                "{} was written by a run with a different configuration (hash {} vs {hash}): use a new run name, or delete {} to start over",
                dir.display(),
                state.config_hash,
                checkpoint::pretrain_root(&run_dir).display()
            );
        }
        if state.world_size != w.world {
            bail!("{} was written with {} workers, this run has {}: the data order would change; resume with the same --nproc", dir.display(), state.world_size, w.world);
        }
        checkpoint::load(&dir, &named, &mut opt)?;
        start = state.step;
        if lead {
            eprintln!("resuming from {} (step {start})", dir.display());
        }
    }
    let buckets = ddp::buckets(&params, cfg.dist.bucket_mb << 20);
    if let Some(pg) = &w.group {
        ddp::broadcast_parameters(pg, &params, &buckets)?;
    }

    let windows = training_windows(&store, WindowSpec { length: d.window, stride: d.stride });
    if windows.is_empty() {
        bail!("{}: no training windows (every user has fewer than 4 interactions?)", d.store.display());
    }
    let micro_per_epoch = steps_per_epoch(windows.len(), w.world, p.batch_size) as u64;
    let shard = Sharding { world: w.world, rank: w.rank, batch_size: p.batch_size, seed: cfg.seed, shuffle: true };
    let mut epoch_cache: Option<(u64, Vec<Vec<usize>>)> = None;

    let mut tb = if lead { Some(EventWriter::create(&run_dir.join("tb"))?) } else { None };
    let mut log = if lead {
        Some(std::fs::OpenOptions::new().create(true).append(true).open(run_dir.join(TRAIN_LOG))?)
    } else {
        None
    };
    let mut last_loss = f64::NAN;
    let mut clock = Instant::now();
    let began = Instant::now();
    let mut window_count = 0i64;
    let mut target_count = 0i64;
    let mut interrupted = false;
    let save = |step: u64, loss: f64, opt: &AdamW| -> Result<()> {
        if lead {
            let state =
                TrainState { step, config_hash: hash.clone(), world_size: w.world, loss, files: Default::default() };
            checkpoint::save(&checkpoint::pretrain_root(&run_dir), &named, opt, state, p.keep_checkpoints)?;
        }
        Ok(())
    };

    for step in start..p.steps {
        tch::manual_seed((cfg.seed as i64) ^ ((step as i64) << 8) ^ w.rank as i64);
        let lr = lr_at(step, p.steps, p.warmup_steps, p.lr);
        // This step's micro-batches, and the global number of targets.
        let mut micro = Vec::with_capacity(p.grad_accum);
        for a in 0..p.grad_accum as u64 {
            let m = step * p.grad_accum as u64 + a;
            let (epoch, idx) = (m / micro_per_epoch, (m % micro_per_epoch) as usize);
            if epoch_cache.as_ref().map(|(e, _)| *e) != Some(epoch) {
                epoch_cache = Some((epoch, epoch_batches(windows.len(), shard, epoch)));
            }
            micro.push(epoch_cache.as_ref().expect("filled").1[idx].clone());
        }
        let local: i64 = micro.iter().flatten().map(|&i| window_targets(&windows[i], d.window)).sum();
        let (stop, counts) = w.stop_and_sum(&[local as f64])?;
        if stop {
            save(step, last_loss, &opt)?;
            interrupted = true;
            break;
        }
        let global = counts[0].max(1.0);
        let mut loss_sum = 0.0;
        for batch in &micro {
            if batch.is_empty() {
                continue;
            }
            let ws: Vec<_> = batch.iter().map(|&i| &windows[i]).collect();
            let b = train_batch(&store, &ws, &features, d.window, w.device);
            let (sum, _) = crate::torch_runtime::with_autocast(w.device, || {
                encoder.pretrain_loss_sum(&b.inputs, &b.targets, true)
            });
            let loss = &sum / global;
            loss.backward();
            loss_sum += sum.double_value(&[]);
            window_count += ws.len() as i64;
            target_count += b.count;
        }
        let grad_norm = ddp::apply_gradients(w.group.as_ref(), &params, &named, &buckets, p.grad_clip, &mut opt, lr)?;
        last_loss = w.sum(&[loss_sum])?[0] / global;
        if let Some(f) = &mut log {
            writeln!(
                f,
                "{}",
                serde_json::json!({"step": step + 1, "loss": last_loss, "lr": lr, "grad_norm": grad_norm, "elapsed_s": began.elapsed().as_secs_f64()})
            )?;
        }
        let done = step + 1;
        if done % p.log_every == 0 || done == p.steps {
            let counts = w.sum(&[window_count as f64, target_count as f64])?;
            let secs = clock.elapsed().as_secs_f64().max(1e-9);
            if let Some(tb) = &mut tb {
                let (seq_s, tok_s) = (counts[0] / secs, counts[1] / secs);
                tb.scalars(
                    done as i64,
                    &[
                        ("pretrain/loss", last_loss as f32),
                        ("pretrain/lr", lr as f32),
                        ("pretrain/grad_norm", grad_norm as f32),
                        ("pretrain/sequences_per_s", seq_s as f32),
                        ("pretrain/tokens_per_s", tok_s as f32),
                    ],
                )?;
                eprintln!("step {done}/{} loss {last_loss:.4} lr {lr:.2e} grad-norm {grad_norm:.3} {seq_s:.0} seq/s {tok_s:.0} tok/s", p.steps);
            }
            clock = Instant::now();
            window_count = 0;
            target_count = 0;
        }
        if p.checkpoint_every > 0 && done % p.checkpoint_every == 0 && done < p.steps {
            save(done, last_loss, &opt)?;
        }
    }
    let steps_done = if interrupted {
        checkpoint::latest(&checkpoint::pretrain_root(&run_dir))?.map(|(_, s)| s.step).unwrap_or(0)
    } else {
        p.steps
    };
    if interrupted {
        return Ok(Outcome { steps: steps_done, final_loss: last_loss, interrupted, encoder: None, popularity: None });
    }
    if start < p.steps {
        save(p.steps, last_loss, &opt)?;
    } else if let Some((_, s)) = checkpoint::latest(&checkpoint::pretrain_root(&run_dir))? {
        last_loss = s.loss;
    }
    // Every rank's parameters, to see that the ranks trained in lockstep.
    eprintln!("rank {} of {}: parameters {}", w.rank, w.world, checkpoint::digest(&named));
    // Evaluation on the held-out last interactions (rank 0), popularity by the same code.
    let (enc_m, pop_m) = if lead {
        let (e, pop) = evaluate(&encoder, &store, &features, d.window, p.eval_batch_size, w.device);
        let out = serde_json::json!({"steps": p.steps, "final_loss": last_loss, "encoder": e, "popularity": pop});
        crate::fsutil::write_atomic(&run_dir.join(METRICS_FILE), serde_json::to_string_pretty(&out)?.as_bytes())?;
        if let Some(tb) = &mut tb {
            for (who, m) in [("encoder", &e), ("popularity", &pop)] {
                tb.scalars(
                    p.steps as i64,
                    &[
                        (&format!("eval/{who}/recall@1"), m.recall_1 as f32),
                        (&format!("eval/{who}/recall@5"), m.recall_5 as f32),
                        (&format!("eval/{who}/recall@10"), m.recall_10 as f32),
                        (&format!("eval/{who}/ndcg@10"), m.ndcg_10 as f32),
                    ],
                )?;
            }
            tb.flush()?;
        }
        (Some(e), Some(pop))
    } else {
        (None, None)
    };
    if let Some(pg) = &w.group {
        pg.barrier()?.wait()?;
    }
    Ok(Outcome { steps: p.steps, final_loss: last_loss, interrupted: false, encoder: enc_m, popularity: pop_m })
}

/// Test-split next-item metrics of the encoder and of item popularity.
pub fn evaluate(
    encoder: &UserEncoder,
    store: &Store,
    features: &[crate::model::encoder::Feature],
    window: usize,
    batch: usize,
    device: tch::Device,
) -> (RankingMetrics, RankingMetrics) {
    let cases = eval_cases(store, Split::Test, window);
    let pop = popularity_scores(store).to_device(device);
    let mut enc_ranks = Vec::new();
    let mut pop_ranks = Vec::new();
    tch::no_grad(|| {
        for chunk in cases.chunks(batch) {
            let refs: Vec<_> = chunk.iter().collect();
            let b = eval_batch(store, &refs, features, window, device);
            let h = encoder.forward(&b.inputs, false);
            let idx = b.last.view([-1, 1, 1]).expand([-1, 1, h.size()[2]], false);
            let last = h.gather(1, &idx, false).squeeze_dim(1);
            let scores = &encoder.head_logits(&last.unsqueeze(1))[0].squeeze_dim(1);
            enc_ranks.extend(ranks(scores, &b.target_items));
            let pop_scores = pop.unsqueeze(0).expand([chunk.len() as i64, -1], false);
            pop_ranks.extend(ranks(&pop_scores, &b.target_items));
        }
    });
    (summarize(&enc_ranks), summarize(&pop_ranks))
}

/// Where a run's pretraining metrics are, if it finished.
pub fn metrics_path(run_dir: &Path) -> std::path::PathBuf {
    run_dir.join(METRICS_FILE)
}
