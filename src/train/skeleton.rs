//! The training-run skeleton that pretraining and finetuning share:
//!
//! 1. build (the stage's own code: model, data, optimizer);
//! 2. [`Loop::resume`]: the newest complete checkpoint, refused when another
//!    config or world size wrote it;
//! 3. [`Loop::train`]: the step loop: per-step seeds, this rank's shard of
//!    micro-batches, the stop flag riding on the step's count all-reduce, the
//!    loss normalised by the global count, one JSON line per step, the
//!    step time split into phases ([`super::step_time`]), TensorBoard at
//!    `log_every` with throughput, memory and that split ([`super::pace`]),
//!    checkpoints at `checkpoint_every`, at the end and on a stop (each
//!    validated first, where the stage validates);
//! 4. finish (the stage's own code: evaluation and metrics).
//!
//! A stage plugs in through [`Stage`].

use super::checkpoint;
use super::pace::{Pace, Work};
use super::schedule::lr_at;
use super::step_time::{self, Phase};
use super::worker::Worker;
use crate::config::finetune::FinetuneConfig;
use crate::config::run::PretrainConfig;
use crate::data::split::{epoch_batches, steps_per_epoch, Sharding};
use crate::rundir::{RunDir, StageFiles};
use crate::tb::EventWriter;
use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::Path;
use std::time::Instant;

/// What a training stage does at each point of the skeleton.
pub trait Stage {
    /// The run-folder files (checkpoints, log) the stage writes.
    const FILES: StageFiles;
    /// How the stage's lines start (`finetune: `).
    const PREFIX: &'static str;
    /// The stage's TensorBoard tags begin `<TAG>/`.
    const TAG: &'static str;
    /// Why a checkpoint of another world size cannot resume the stage.
    const WORLD_REASON: &'static str;
    /// Mixed into the per-step seeds, so stages draw different numbers.
    const SEED_SALT: i64;
    /// Restore the model and optimizer from a verified checkpoint folder.
    fn load(&mut self, checkpoint: &Path) -> Result<()>;
    /// Checkpoint after `step` steps (called on every rank at the same step),
    /// with its validation score where [`validate`](Self::validate) gave one.
    fn save(&mut self, step: u64, loss: f64, valid: Option<f64>) -> Result<()>;
    /// Before a checkpoint at `done` steps (every rank; `tb` on rank 0):
    /// the score of the weights on held-out questions (higher is better) on
    /// rank 0, when the stage validates. The default: it does not.
    fn validate(&mut self, _done: u64, _tb: Option<&mut EventWriter>) -> Result<Option<f64>> {
        Ok(None)
    }
    /// Take this rank's micro-batches (example indices) for the next step;
    /// returns their share of the count the loss is normalised by.
    fn prepare(&mut self, micro: Vec<Vec<usize>>) -> Result<f64>;
    /// What the prepared micro-batches hold (for throughput and MFU).
    fn work(&self) -> Work;
    /// Forward and backward of the prepared micro-batches with the loss
    /// divided by `global`, then the optimizer step at `lr`; returns this
    /// rank's summed loss and the gradient norm. Runs in the
    /// forward/backward phase; the stage marks its data, optimizer and
    /// communication work ([`step_time::phase`]).
    fn step(&mut self, global: f64, lr: f64) -> Result<(f64, f64)>;
    /// At a logging step (every rank; `tb` on rank 0): the stage's own
    /// scalars and a line (the skeleton writes `<TAG>/loss`, `lr`,
    /// `grad_norm` and `pace`'s scalars).
    fn log(
        &mut self,
        done: u64,
        loss: f64,
        lr: f64,
        grad_norm: f64,
        pace: &Pace,
        tb: Option<&mut EventWriter>,
    ) -> Result<()>;
}

/// Whether the checkpoint `dir` (in `root`, with `state`) can resume a run of
/// `hash` on `world` workers.
pub fn resumable<S: Stage>(
    root: &Path,
    dir: &Path,
    state: &checkpoint::TrainState,
    hash: &str,
    world: usize,
) -> Result<()> {
    if state.config_hash != hash {
        bail!(
            "{} was written by a run with a different configuration (hash {} vs {hash}): use a new run name, or delete {} to start over",
            dir.display(),
            state.config_hash,
            root.display()
        );
    }
    if state.world_size != world {
        bail!(
            "{} was written with {} workers, this run has {world}: {}; resume with the same --nproc",
            dir.display(),
            state.world_size,
            S::WORLD_REASON
        );
    }
    Ok(())
}

/// The step-loop settings of a `pretrain:` or `finetune:` section.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub steps: u64,
    pub grad_accum: usize,
    pub lr: f64,
    pub warmup_steps: u64,
    pub log_every: u64,
    pub checkpoint_every: u64,
    /// Examples per rank per micro-batch.
    pub batch_size: usize,
}

/// Both sections name the loop's settings alike.
macro_rules! schedule_of {
    ($($section:ty),*) => {$(
        impl From<&$section> for Schedule {
            fn from(c: &$section) -> Self {
                Schedule {
                    steps: c.steps,
                    grad_accum: c.grad_accum,
                    lr: c.lr,
                    warmup_steps: c.warmup_steps,
                    log_every: c.log_every,
                    checkpoint_every: c.checkpoint_every,
                    batch_size: c.batch_size,
                }
            }
        }
    )*};
}
schedule_of!(PretrainConfig, FinetuneConfig);

/// One stage's loop on one worker.
pub struct Loop<'a> {
    pub worker: &'a Worker,
    pub run: RunDir,
    /// What decides the trajectory: only a checkpoint with this hash resumes.
    pub config_hash: String,
    pub seed: u64,
    pub schedule: Schedule,
    /// Training examples.
    pub examples: usize,
}

/// How the step loop ended.
pub struct Trained {
    /// Steps completed (with those of earlier runs).
    pub steps: u64,
    /// The last step's loss (NaN when no step ran here).
    pub last_loss: f64,
    /// Stopped on request, checkpointed.
    pub interrupted: bool,
    /// Resident bytes when the step loop began (the memory marks start there).
    pub resident: i64,
}

impl Loop<'_> {
    /// Resume from the newest complete checkpoint, if any; returns the step
    /// to start from, which every rank must have found alike.
    pub fn resume<S: Stage>(&self, stage: &mut S) -> Result<u64> {
        let step = self.resume_here(stage)?;
        let w = self.worker;
        let s = w.sum(&[step as f64, (step as f64).powi(2)])?;
        // Equal steps on every rank exactly when (Σ s)² = n Σ s².
        if s[0] * s[0] != w.world as f64 * s[1] {
            bail!(
                "{}rank {} resumes from step {step}, the ranks from step {:.1} on average: the machines see different checkpoint folders; checkpoints need a file system that every machine of the run shares (put output_root on it)",
                S::PREFIX,
                w.rank,
                s[0] / w.world as f64
            );
        }
        Ok(step)
    }

    /// This rank's newest complete checkpoint, loaded; its step (0: none).
    fn resume_here<S: Stage>(&self, stage: &mut S) -> Result<u64> {
        let root = self.run.checkpoints(S::FILES);
        let Some((dir, state)) = checkpoint::latest(&root)? else {
            let n = checkpoint::count(&root);
            if n > 0 && self.worker.rank == 0 {
                eprintln!(
                    "{}no usable checkpoint in {}: all {n} are damaged (the warnings above say how); starting over from step 0",
                    S::PREFIX,
                    root.display()
                );
            }
            return Ok(0);
        };
        resumable::<S>(&root, &dir, &state, &self.config_hash, self.worker.world)?;
        stage.load(&dir)?;
        if self.worker.rank == 0 {
            eprintln!("{}resuming from {} (step {})", S::PREFIX, dir.display(), state.step);
        }
        Ok(state.step)
    }

    /// Run steps `start..steps`; `tb` is rank 0's TensorBoard writer.
    pub fn train<S: Stage>(&self, stage: &mut S, start: u64, mut tb: Option<&mut EventWriter>) -> Result<Trained> {
        let (w, sc) = (self.worker, &self.schedule);
        let lead = w.rank == 0;
        let mut log = if lead {
            cut_log::<S>(&self.run.log(S::FILES), start)?;
            Some(crate::fsutil::append_to(&self.run.log(S::FILES))?)
        } else {
            None
        };
        let per_epoch = steps_per_epoch(self.examples, w.world, sc.batch_size) as u64;
        let shard =
            Sharding { world: w.world, rank: w.rank, batch_size: sc.batch_size, seed: self.seed, shuffle: true };
        let mut epoch: Option<(u64, Vec<Vec<usize>>)> = None;
        let began = Instant::now();
        let mut last_loss = f64::NAN;
        let resident = super::pace::reset_peaks(w.device);
        let mut work = Work::default();
        let _ = step_time::take();
        for step in start..sc.steps {
            let done = step + 1;
            let logging = done % sc.log_every == 0 || done == sc.steps;
            // On a GPU only the step before a logging point synchronises to time its phases.
            step_time::begin(w.device, logging);
            tch::manual_seed((self.seed as i64) ^ ((step as i64) << 8) ^ w.rank as i64 ^ S::SEED_SALT);
            let lr = lr_at(step, sc.steps, sc.warmup_steps, sc.lr);
            let mut micro = Vec::with_capacity(sc.grad_accum);
            for a in 0..sc.grad_accum as u64 {
                let m = step * sc.grad_accum as u64 + a;
                let (e, i) = (m / per_epoch, (m % per_epoch) as usize);
                if epoch.as_ref().map(|(k, _)| *k) != Some(e) {
                    epoch = Some((e, epoch_batches(self.examples, shard, e)));
                }
                micro.push(epoch.as_ref().expect("filled").1[i].clone());
            }
            let local = stage.prepare(micro)?;
            work += stage.work();
            let (stop, counts) = w.stop_and_sum(&[local])?;
            if stop {
                step_time::end();
                stage.save(step, last_loss, None)?;
                if lead {
                    eprintln!("interrupted after step {step}: checkpoint written");
                }
                return Ok(Trained { steps: step, last_loss, interrupted: true, resident });
            }
            let global = counts[0].max(1.0);
            let (loss_sum, grad_norm) = {
                let _computing = step_time::phase(Phase::ForwardBackward);
                stage.step(global, lr)?
            };
            last_loss = w.sum(&[loss_sum])?[0] / global;
            step_time::end();
            if let Some(f) = &mut log {
                let line = serde_json::json!({"step": done, "loss": last_loss, "lr": lr, "grad_norm": grad_norm,
                    "elapsed_s": began.elapsed().as_secs_f64()});
                writeln!(f, "{line}").with_context(|| format!("appending to {}", self.run.log(S::FILES).display()))?;
            }
            if logging {
                let pace = Pace::measure(w, std::mem::take(&mut work))?;
                if let Some(tb) = tb.as_deref_mut() {
                    let mut scalars: Vec<(String, f32)> = [("loss", last_loss), ("lr", lr), ("grad_norm", grad_norm)]
                        .iter()
                        .map(|(k, v)| (format!("{}/{k}", S::TAG), *v as f32))
                        .collect();
                    scalars.extend(pace.scalars(S::TAG));
                    let refs: Vec<(&str, f32)> = scalars.iter().map(|(k, v)| (k.as_str(), *v)).collect();
                    tb.scalars(done as i64, &refs)?;
                }
                stage.log(done, last_loss, lr, grad_norm, &pace, tb.as_deref_mut())?;
            }
            if sc.checkpoint_every > 0 && done % sc.checkpoint_every == 0 && done < sc.steps {
                let valid = stage.validate(done, tb.as_deref_mut())?;
                stage.save(done, last_loss, valid)?;
            }
        }
        if start < sc.steps {
            let valid = stage.validate(sc.steps, tb)?;
            stage.save(sc.steps, last_loss, valid)?;
        }
        Ok(Trained { steps: sc.steps, last_loss, interrupted: false, resident })
    }
}

/// The step log as of the checkpoint resumed from (`start`): the lines of
/// steps after it (a crash came before their checkpoint; they run again) and
/// a line torn by the crash are dropped, in a file replaced whole.
fn cut_log<S: Stage>(path: &std::path::Path, start: u64) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(path) else { return Ok(()) };
    let step = |l: &str| serde_json::from_str::<serde_json::Value>(l).ok()?["step"].as_u64();
    let kept: Vec<&str> = text.lines().filter(|l| step(l).is_some_and(|s| s <= start)).collect();
    let dropped = text.lines().count() - kept.len();
    if dropped == 0 {
        return Ok(());
    }
    let body: String = kept.iter().map(|l| format!("{l}\n")).collect();
    crate::fsutil::write_atomic(path, body.as_bytes()).with_context(|| format!("rewriting {}", path.display()))?;
    eprintln!(
        "{}{}: dropped {dropped} line(s) after step {start}, logged after the checkpoint resumed from",
        S::PREFIX,
        path.display()
    );
    Ok(())
}
