//! Encoder pretraining, data parallel: every rank builds the same encoder,
//! takes rank 0's parameters, trains on its shard of the training windows,
//! sums gradients across ranks (the loss is normalised by the global number of
//! targets, so N ranks at batch B follow 1 rank at batch N·B), clips, and
//! steps AdamW. Rank 0 logs, checkpoints, evaluates and writes metrics. The
//! run follows the shared skeleton ([`super::skeleton`]).

use super::adamw::AdamW;
use super::checkpoint::{self, TrainState};
use super::ddp;
use super::metrics::{self, PretrainMetrics};
use super::pace::{Pace, Work};
use super::skeleton::{Loop, Stage};
use super::step_time::{self, Phase};
use super::worker::Worker;
use crate::config::run::{EncoderConfig, PretrainConfig};
use crate::config::RunConfig;
use crate::data::split::{eval_cases, training_windows, Split, Window, WindowSpec};
use crate::data::store::Store;
use crate::model::batches::{encoder_shape, eval_batch, train_batch, window_targets};
use crate::model::encoder::{Feature, UserEncoder};
use crate::rundir::{RunDir, StageFiles};
use crate::task::ranking::{popularity_scores, ranks, summarize, RankingMetrics};
use crate::tb::EventWriter;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
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

/// How pretraining ended on this rank.
pub struct Outcome {
    pub steps: u64,
    pub final_loss: f64,
    pub interrupted: bool,
}

/// Pretraining as the skeleton runs it: the encoder, its optimizer, this
/// rank's shard of the training windows.
pub(crate) struct Pretraining<'a> {
    p: &'a PretrainConfig,
    w: &'a Worker,
    store: &'a Store,
    window: usize,
    windows: Vec<Window>,
    encoder: UserEncoder,
    features: Vec<Feature>,
    named: Vec<(String, Tensor)>,
    params: Vec<Tensor>,
    buckets: Vec<Vec<usize>>,
    opt: AdamW,
    root: PathBuf,
    hash: String,
    micro: Vec<Vec<usize>>,
    /// The prepared step's windows, targets and training FLOPs.
    work: Work,
    /// The encoder's parameters that cost FLOPs per position ([`crate::model::cost`]).
    costed_parameters: f64,
}

impl Stage for Pretraining<'_> {
    const FILES: StageFiles = StageFiles::Pretrain;
    const PREFIX: &'static str = "";
    const TAG: &'static str = "pretrain";
    const WORLD_REASON: &'static str = "the data order would change";
    const SEED_SALT: i64 = 0;

    fn load(&mut self, dir: &Path) -> Result<()> {
        checkpoint::load(dir, &self.named, &mut self.opt)
    }

    /// Rank 0 writes the weights and optimizer (the same on every rank); the
    /// others confirm that they see its checkpoint folder, which a resume reads.
    fn save(&mut self, step: u64, loss: f64, valid: Option<f64>) -> Result<()> {
        let state = TrainState {
            step,
            config_hash: self.hash.clone(),
            world_size: self.w.world,
            loss,
            files: Default::default(),
            valid,
        };
        let (model, optimizer) = (checkpoint::model_tensors(&self.named), checkpoint::optimizer_tensors(&self.opt));
        let mine: Vec<(&str, &[(String, Tensor)])> = if self.w.rank == 0 {
            vec![(checkpoint::MODEL, &model), (checkpoint::OPTIMIZER, &optimizer)]
        } else {
            vec![]
        };
        checkpoint::save_together(self.w, &self.root, state, self.p.keep_checkpoints, &mine)
    }

    fn prepare(&mut self, micro: Vec<Vec<usize>>) -> Result<f64> {
        let local: i64 = micro.iter().flatten().map(|&i| window_targets(&self.windows[i], self.window)).sum();
        // Each target is one position the encoder reads.
        self.work = Work {
            examples: micro.iter().map(Vec::len).sum::<usize>() as f64,
            tokens: local as f64,
            flops: crate::model::cost::encoder_training(self.costed_parameters, local as f64),
        };
        self.micro = micro;
        Ok(local as f64)
    }

    fn work(&self) -> Work {
        self.work
    }

    fn step(&mut self, global: f64, lr: f64) -> Result<(f64, f64)> {
        let mut loss_sum = 0.0;
        for batch in std::mem::take(&mut self.micro).iter().filter(|b| !b.is_empty()) {
            let ws: Vec<_> = batch.iter().map(|&i| &self.windows[i]).collect();
            let b = {
                let _building = step_time::phase(Phase::Data);
                train_batch(self.store, &ws, &self.features, self.window, self.w.device)
            };
            let (sum, _) = crate::torch_runtime::with_autocast(self.w.device, || {
                self.encoder.pretrain_loss_sum(&b.inputs, &b.targets, true)
            });
            (&sum / global).backward();
            loss_sum += sum.double_value(&[]);
        }
        let group = self.w.group.as_ref();
        let grad_norm =
            ddp::apply_gradients(group, &self.params, &self.named, &self.buckets, self.p.grad_clip, &mut self.opt, lr)?;
        Ok((loss_sum, grad_norm))
    }

    fn log(
        &mut self,
        done: u64,
        loss: f64,
        lr: f64,
        grad_norm: f64,
        pace: &Pace,
        tb: Option<&mut EventWriter>,
    ) -> Result<()> {
        if tb.is_some() {
            eprintln!(
                "step {done}/{} loss {loss:.4} lr {lr:.2e} grad-norm {grad_norm:.3} {}",
                self.p.steps,
                pace.line()
            );
        }
        Ok(())
    }
}

pub fn run(cfg: &RunConfig, w: &Worker) -> Result<Outcome> {
    let p = cfg.pretrain.as_ref().context("no pretrain section")?;
    let d = cfg.data.as_ref().context("pretrain needs a data section")?;
    let enc_cfg = cfg.encoder.clone().unwrap_or_default();
    let store = Store::open(&d.store)?;
    let run = RunDir::of(cfg);

    // Build: the encoder (same seed on every rank), its parameters in name
    // order, the training windows.
    tch::manual_seed(cfg.seed as i64);
    let vs = nn::VarStore::new(w.device);
    let encoder = UserEncoder::new(&(vs.root() / "encoder"), encoder_shape(&store, &enc_cfg, d.window));
    let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let params: Vec<Tensor> = named.iter().map(|(_, t)| t.shallow_clone()).collect();
    let windows = training_windows(&store, WindowSpec { length: d.window, stride: d.stride });
    if windows.is_empty() {
        bail!("{}: no training windows (every user has fewer than 4 interactions?)", d.store.display());
    }
    let hash = config_hash(cfg, &enc_cfg, p);
    let skeleton = Loop {
        worker: w,
        run: run.clone(),
        config_hash: hash.clone(),
        seed: cfg.seed,
        schedule: p.into(),
        examples: windows.len(),
    };
    let costed_parameters = crate::model::cost::costed_parameters(named.iter().map(|(k, t)| (k.as_str(), t)));
    let mut stage = Pretraining {
        p,
        w,
        store: &store,
        window: d.window,
        windows,
        encoder,
        features: enc_cfg.features.clone(),
        buckets: ddp::buckets(&params, cfg.dist.bucket_mb << 20),
        named,
        params,
        opt: AdamW::new(p.weight_decay),
        root: run.checkpoints(StageFiles::Pretrain),
        hash,
        micro: Vec::new(),
        work: Work::default(),
        costed_parameters,
    };

    // Resume, then take rank 0's parameters.
    let start = skeleton.resume(&mut stage)?;
    if let Some(pg) = &w.group {
        ddp::broadcast_parameters(pg, &stage.params, &stage.buckets)?;
    }

    // Step loop.
    let mut tb = if w.rank == 0 { Some(EventWriter::create(run.events())?) } else { None };
    let trained = skeleton.train(&mut stage, start, tb.as_mut())?;
    if trained.interrupted {
        return Ok(Outcome { steps: trained.steps, final_loss: trained.last_loss, interrupted: true });
    }

    // Finish.
    let final_loss = stage.finish(start, trained.last_loss, &run, tb.as_mut())?;
    Ok(Outcome { steps: p.steps, final_loss, interrupted: false })
}

impl Pretraining<'_> {
    /// Every rank's parameter digest (equal when the ranks trained in
    /// lockstep), rank 0's evaluation on the held-out last interactions
    /// (popularity by the same code) into the metrics file and TensorBoard.
    /// Returns the final loss, also of a run that had already finished.
    fn finish(&self, start: u64, last_loss: f64, run: &RunDir, tb: Option<&mut EventWriter>) -> Result<f64> {
        let (p, w) = (self.p, self.w);
        let mut final_loss = last_loss;
        if start >= p.steps {
            if let Some((_, s)) = checkpoint::latest(&self.root)? {
                final_loss = s.loss;
            }
        }
        eprintln!("rank {} of {}: parameters {}", w.rank, w.world, crate::model::weights::digest(&self.named));
        if let Some(tb) = tb {
            let (e, pop) =
                evaluate(&self.encoder, self.store, &self.features, self.window, p.eval_batch_size, w.device);
            let out = PretrainMetrics {
                steps: p.steps,
                final_loss,
                encoder: e.clone(),
                popularity: pop.clone(),
                restarts: w.restart,
            };
            metrics::write(&run.metrics(StageFiles::Pretrain), &out)?;
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
        // Rank 0 may evaluate for longer than a collective may wait.
        w.after_rank0("pretrain")?;
        Ok(final_loss)
    }
}

/// Test-split next-item metrics of the encoder and of item popularity.
pub fn evaluate(
    encoder: &UserEncoder,
    store: &Store,
    features: &[Feature],
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
