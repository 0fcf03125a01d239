//! USER-LLM finetuning on a task (favorite genre/category, next item, review):
//! the pretrained encoder (this run's pretraining checkpoint) feeds the LLM
//! through gated cross-attention or a soft prompt, or the history is text
//! (TextPrompt); the strategy decides what trains. Ranks train data-parallel
//! (DDP, or ZeRO stage 1 or 2: `finetune.zero_stage`), checkpoint, and resume.
//! Rank 0 evaluates the model before and after finetuning and the baselines
//! on the same test questions, with the cost of each.

use super::checkpoint::{self, TrainState};
use super::ddp;
use super::metrics::{self, FinetuneMetrics, Validation};
use super::pace::{Pace, Work};
use super::skeleton::{Loop, Stage};
use super::worker::Worker;
use super::zero::{self, DataParallelOptimizer};
use crate::config::finetune::FinetuneConfig;
use crate::config::{value_name, RunConfig};
use crate::data::catalog::{Catalog, Interaction};
use crate::data::split::Split;
use crate::data::store::Store;
use crate::fsutil;
use crate::model::assemble;
use crate::model::cost::{self, UserLlmCost};
use crate::model::tokenizer::Tokenizer;
use crate::model::userllm::{Part, UserLlm};
use crate::model::weights::{read_tensors, save_tensors};
use crate::rundir::{RunDir, StageFiles};
use crate::task::ask::{Asker, TaskSpec};
use crate::task::baselines::{baselines, Asked};
use crate::task::evaluate::{describe, evaluate_model, headline, samples, Evaluated, FINETUNED};
use crate::task::examples::{self, EvalExample, TrainExample};
use crate::tb::EventWriter;
use crate::torch_runtime::with_threads;
use anyhow::{bail, Context, Result};
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// The run's USER-LLM before finetuning: the base LLM, new integration
/// parts, and (when the integration reads user embeddings, and
/// `pretrained_encoder`) the encoder from the pretraining checkpoint of
/// `finetune.encoder_from` (default: this run's own).
pub fn build(cfg: &RunConfig, store: &Store, device: Device, pretrained_encoder: bool) -> Result<UserLlm> {
    let f = cfg.finetune.as_ref().context("no finetune section")?;
    let model = assemble::for_run(cfg, store, assemble::load_llm(f, device)?)?;
    if pretrained_encoder && f.integration.mode().reads_user() {
        let from = RunDir::new(f.encoder_from.clone().unwrap_or_else(|| cfg.run_dir()));
        let root = from.checkpoints(StageFiles::Pretrain);
        let (dir, state) = checkpoint::latest(&root)?.with_context(|| {
            format!(
                "finetuning needs a pretrained encoder: no pretraining checkpoint in {} (add a pretrain section)",
                root.display()
            )
        })?;
        checkpoint::load_matching(&dir, "encoder.", &model.named_parameters())?;
        eprintln!("finetune: the encoder of {} (pretraining step {})", dir.display(), state.step);
    }
    Ok(model)
}

/// What decides the trajectory: a checkpoint resumes only a run with the same hash.
pub(crate) fn config_hash(cfg: &RunConfig) -> String {
    let key = serde_json::json!({"seed": cfg.seed, "data": cfg.data, "encoder": cfg.encoder, "pretrain": cfg.pretrain, "finetune": cfg.finetune});
    crate::fsutil::config_digest(&key, 16)
}

/// A training batch: token ids, where the answers are predicted and what,
/// histories.
pub(crate) struct Batch {
    pub tokens: Tensor,
    /// Flat positions (row * length + column) whose next token is an answer
    /// token, known when the batch is built (no mask to resolve per step).
    answer_at: Tensor,
    /// The answer token each of them predicts.
    answers: Tensor,
    pub answer_tokens: i64,
    /// Each row's prompt and answer tokens (its padding not counted).
    lengths: Vec<usize>,
    histories: Vec<Vec<Interaction>>,
}

impl Batch {
    /// The batch as named tensors, for a reference implementation to replay
    /// it (`benches/finetune_reference.py`): `<prefix>tokens`, `answer_at`,
    /// `answers`, and the histories' ids per encoder feature, `feature<j>`.
    pub(crate) fn named_tensors(&self, asker: &Asker, prefix: &str) -> Vec<(String, Tensor)> {
        let refs: Vec<&[_]> = self.histories.iter().map(|h| h.as_slice()).collect();
        let mut v = vec![
            (format!("{prefix}tokens"), self.tokens.shallow_clone()),
            (format!("{prefix}answer_at"), self.answer_at.shallow_clone()),
            (format!("{prefix}answers"), self.answers.shallow_clone()),
        ];
        v.extend(asker.inputs(&refs).into_iter().enumerate().map(|(j, t)| (format!("{prefix}feature{j}"), t)));
        v
    }
}

pub(crate) fn make_batch(
    asker: &Asker,
    store: &Store,
    train: &[TrainExample],
    idx: &[usize],
    device: Device,
) -> Result<Batch> {
    let mut seqs = Vec::with_capacity(idx.len());
    let mut histories = Vec::with_capacity(idx.len());
    for &i in idx {
        let ex = &train[i];
        let history = store.interactions(ex.history.clone());
        seqs.push((asker.prompt(&history, &ex.question)?, asker.answer_tokens(&ex.target)?));
        histories.push(history);
    }
    let t = seqs.iter().map(|(p, a)| p.len() + a.len()).max().unwrap_or(1);
    let eos = asker.eos();
    let mut toks = vec![eos; idx.len() * t];
    let (mut at, mut answers) = (Vec::new(), Vec::new());
    for (r, (p, a)) in seqs.iter().enumerate() {
        toks[r * t..r * t + p.len()].copy_from_slice(p);
        toks[r * t + p.len()..r * t + p.len() + a.len()].copy_from_slice(a);
        // Answer token j sits at p.len() + j and is predicted one position earlier.
        at.extend((0..a.len()).map(|j| (r * t + p.len() + j - 1) as i64));
        answers.extend_from_slice(a);
    }
    let shape = [idx.len() as i64, t as i64];
    Ok(Batch {
        tokens: Tensor::from_slice(&toks).view(shape).to_device(device),
        answer_tokens: answers.len() as i64,
        answer_at: Tensor::from_slice(&at).to_device(device),
        answers: Tensor::from_slice(&answers).to_device(device),
        lengths: seqs.iter().map(|(p, a)| p.len() + a.len()).collect(),
        histories,
    })
}

/// Forward and backward of one micro-batch, the loss divided by `global`
/// answer tokens; returns the summed loss.
pub(crate) fn forward_backward(model: &UserLlm, asker: &Asker, b: &Batch, global: f64, device: Device) -> Result<f64> {
    let sum = crate::torch_runtime::with_autocast(device, || {
        let hidden = if !model.integration.mode().reads_user() {
            model.hidden_text(&b.tokens)
        } else {
            let refs: Vec<&[_]> = b.histories.iter().map(|h| h.as_slice()).collect();
            let (user, mask) = model.user_embeddings(&asker.inputs(&refs), true);
            model.hidden_with_user(&b.tokens, &user, &mask, None)
        };
        answer_loss(&hidden, &b.answer_at, &b.answers, &|h| model.llm.logits(h))
    });
    (&sum / global).backward();
    model.release_segments();
    Ok(sum.double_value(&[]))
}

/// Summed next-token loss of the `answers` predicted at the flat positions
/// `at` of the final hidden states `(batch, seq, hidden)`: the LM head
/// (`logits`) runs only there, a few positions of each sequence, not on
/// every prompt position (over a 49k vocabulary that is a fifth of a step).
pub(crate) fn answer_loss(
    hidden: &Tensor,
    at: &Tensor,
    answers: &Tensor,
    logits: &dyn Fn(&Tensor) -> Tensor,
) -> Tensor {
    let width = hidden.size()[2];
    let pred = logits(&hidden.reshape([-1, width]).index_select(0, at)).to_kind(Kind::Float);
    pred.cross_entropy_loss::<Tensor>(answers, None, tch::Reduction::Sum, -100, 0.0)
}

/// What one finetuning run works on: the task, its data and examples, the
/// tokenizer, the run folder.
struct Job<'a> {
    f: &'a FinetuneConfig,
    store: Store,
    cat: Catalog,
    tok: Tokenizer,
    spec: TaskSpec,
    train: Vec<TrainExample>,
    cases: Vec<EvalExample>,
    /// Validation questions (none when no checkpoint before the last is validated).
    valid: Vec<EvalExample>,
    run: RunDir,
    hash: String,
}

/// Finetuning as the skeleton runs it: the model and what trains, the
/// data-parallel optimizer, the training examples as questions and answers.
pub(crate) struct Finetuning<'a> {
    job: &'a Job<'a>,
    w: &'a Worker,
    model: &'a UserLlm,
    asker: Asker<'a>,
    trainable: Vec<(String, Tensor)>,
    opt: Box<dyn DataParallelOptimizer + 'a>,
    /// This step's micro-batches; `None` where this rank has no examples
    /// (it still takes part in each micro-batch's gradient reduction).
    micro: Vec<Option<Batch>>,
    /// The model's cost formula, for the FLOPs of each training example.
    cost: UserLlmCost<'a>,
}

impl Stage for Finetuning<'_> {
    const FILES: StageFiles = StageFiles::Finetune;
    const PREFIX: &'static str = "finetune: ";
    const TAG: &'static str = "finetune";
    const WORLD_REASON: &'static str = "the optimizer shards would not match";
    const SEED_SALT: i64 = 0x5eed;

    fn load(&mut self, dir: &Path) -> Result<()> {
        self.model.load_weights(&dir.join(checkpoint::MODEL), &self.trainable)?;
        self.opt.load_state(&read_tensors(&dir.join(checkpoint::optimizer_shard(self.w.rank)))?)
    }

    /// Every rank writes its optimizer shard, rank 0 also the trained
    /// weights; rank 0 seals once all are confirmed ([`checkpoint::save_together`]).
    fn save(&mut self, step: u64, loss: f64, valid: Option<f64>) -> Result<()> {
        let w = self.w;
        let root = self.job.run.checkpoints(StageFiles::Finetune);
        let state = TrainState {
            step,
            config_hash: self.job.hash.clone(),
            world_size: w.world,
            loss,
            files: Default::default(),
            valid,
        };
        let shard_name = checkpoint::optimizer_shard(w.rank);
        let shard = self.opt.state_tensors();
        let mut mine: Vec<(&str, &[(String, Tensor)])> = vec![(&shard_name, &shard)];
        if w.rank == 0 {
            mine.push((checkpoint::MODEL, &self.trainable));
        }
        checkpoint::save_together(w, &root, state, self.job.f.keep_checkpoints, &mine)
    }

    /// The loss is normalised by the global number of answer tokens, so ranks
    /// and micro-batches add up to one big batch.
    fn prepare(&mut self, micro: Vec<Vec<usize>>) -> Result<f64> {
        self.micro = micro
            .iter()
            .map(|idx| {
                let some = !idx.is_empty();
                some.then(|| make_batch(&self.asker, &self.job.store, &self.job.train, idx, self.w.device)).transpose()
            })
            .collect::<Result<_>>()?;
        Ok(self.micro.iter().flatten().map(|b| b.answer_tokens).sum::<i64>() as f64)
    }

    fn work(&self) -> Work {
        let mut work = Work::default();
        for b in self.micro.iter().flatten() {
            for (len, history) in b.lengths.iter().zip(&b.histories) {
                work += Work {
                    examples: 1.0,
                    tokens: *len as f64,
                    flops: cost::TRAINING_PER_FORWARD * self.cost.forward(*len as f64, history.len() as f64),
                };
            }
        }
        work
    }

    fn step(&mut self, global: f64, lr: f64) -> Result<(f64, f64)> {
        let mut loss_sum = 0.0;
        for b in std::mem::take(&mut self.micro) {
            if let Some(b) = b {
                loss_sum += forward_backward(self.model, &self.asker, &b, global, self.w.device)?;
            }
            self.opt.after_backward()?;
        }
        let grad_norm = self.opt.step(lr, self.job.f.grad_clip)?;
        Ok((loss_sum, grad_norm))
    }

    /// Every rank answers its share of the validation questions; rank 0
    /// records the headline metric (`finetune_validation.json`, TensorBoard)
    /// and returns it for the checkpoint's state.
    fn validate(&mut self, done: u64, tb: Option<&mut EventWriter>) -> Result<Option<f64>> {
        let job = self.job;
        if job.valid.is_empty() {
            return Ok(None);
        }
        self.model.set_training(false);
        let who = format!("validation at step {done}");
        let evaluated = with_threads(self.w.eval_threads(), || {
            evaluate_model(&job.asker(self.model)?, &job.store.vocab.user, &job.valid, &who, &self.w.share())
        });
        self.model.set_training(true);
        let Some((e, _)) = evaluated? else { return Ok(None) };
        let metric = headline(job.f.task);
        let value = e.metrics.get(metric).copied().unwrap_or(f64::NAN);
        let ci = e.ci.get(metric).copied().unwrap_or([f64::NAN; 2]);
        eprintln!(
            "finetune: step {done}: validation {metric} {value:.4} [{:.4}, {:.4}] on {} questions",
            ci[0], ci[1], e.cases
        );
        let path = job.run.finetune_validation();
        // A resumed run validates again the steps after its checkpoint.
        let mut all: Vec<Validation> = fsutil::read_cached(&path, &job.hash).unwrap_or_default();
        all.retain(|v| v.step < done);
        all.push(Validation { step: done, metric: metric.into(), value, ci, questions: e.cases });
        fsutil::write_cached(&path, &job.hash, &all)?;
        if let Some(tb) = tb {
            tb.scalars(done as i64, &[(&format!("finetune/valid/{metric}"), value as f32)])?;
        }
        Ok(Some(value))
    }

    fn log(
        &mut self,
        done: u64,
        loss: f64,
        lr: f64,
        _grad_norm: f64,
        pace: &Pace,
        tb: Option<&mut EventWriter>,
    ) -> Result<()> {
        let Some(tb) = tb else { return Ok(()) };
        let gates: Vec<(String, f32)> = self
            .model
            .gates()
            .into_iter()
            .map(|(layer, g)| (format!("finetune/gate/layer_{layer:02}"), g as f32))
            .collect();
        if !gates.is_empty() {
            let refs: Vec<(&str, f32)> = gates.iter().map(|(k, v)| (k.as_str(), *v)).collect();
            tb.scalars(done as i64, &refs)?;
        }
        eprintln!("finetune step {done}/{} loss {loss:.4} lr {lr:.2e} {}", self.job.f.steps, pace.line());
        Ok(())
    }
}

/// Finetune and evaluate; `Ok(true)` when stopped on request (checkpointed)
/// before the step loop finished.
pub fn run(cfg: &RunConfig, w: &Worker) -> Result<bool> {
    let job = Job::open(cfg)?;
    let f = job.f;

    // Build: the model, what trains (rank 0's values).
    let mut model = build(cfg, &job.store, w.device, true)?;
    model.activation_checkpointing.set(f.activation_checkpointing);
    let trainable = trainable(&model, f)?;
    if let Some(pg) = &w.group {
        let params: Vec<Tensor> = trainable.iter().map(|(_, t)| t.shallow_clone()).collect();
        ddp::broadcast_parameters(pg, &params, &ddp::buckets(&params, cfg.dist.bucket_mb << 20))?;
    }
    if w.rank == 0 {
        job.announce(&model);
    }
    let mut stage = Finetuning {
        job: &job,
        w,
        model: &model,
        asker: Asker::new(&model, &job.tok, &job.cat, job.spec.clone())?,
        opt: zero::optimizer(f.zero_stage, &trainable, w.group.as_ref(), cfg.dist.bucket_mb << 20, f.weight_decay)?,
        trainable,
        micro: Vec::new(),
        cost: UserLlmCost::of(&model),
    };
    let (run, config_hash, examples) = (job.run.clone(), job.hash.clone(), job.train.len());
    let skeleton = Loop { worker: w, run, config_hash, seed: cfg.seed, schedule: f.into(), examples };

    // Resume; the baselines (once, every rank its share; rank 0 has them).
    let start = skeleton.resume(&mut stage)?;
    model.set_training(false);
    let results = job.baselines(&model, w)?;
    if w.rank == 0 {
        let mib = stage.opt.state_bytes() as f64 / (1 << 20) as f64;
        let z = u8::from(f.zero_stage);
        eprintln!("finetune: ZeRO stage {z}, optimizer state {mib:.1} MiB per rank ({} rank(s))", w.world);
    }

    // Step loop.
    let mut tb = if w.rank == 0 { Some(EventWriter::create(job.run.events())?) } else { None };
    model.set_training(true);
    let trained = skeleton.train(&mut stage, start, tb.as_mut())?;
    if trained.interrupted {
        return Ok(true);
    }
    let resident = trained.resident;
    let training_peak_memory_bytes = super::memory::peak_bytes().unwrap_or(0);
    let training_added_memory_bytes = (training_peak_memory_bytes - resident).max(0);
    let mib = |b: i64| b as f64 / (1 << 20) as f64;
    eprintln!(
        "finetune: rank {} peak memory while training {:.1} MiB ({:.1} MiB over the {:.1} MiB resident at the start)",
        w.rank,
        mib(training_peak_memory_bytes),
        mib(training_added_memory_bytes),
        mib(resident)
    );
    let optimizer_state_bytes_per_rank = stage.opt.state_bytes();
    let (selected_step, validation) = job.select(&stage, w)?;
    drop(stage);
    model.set_training(false);

    // Finish: the weights, the evaluation of what the export will hold (every
    // rank its share), predictions, metrics and TensorBoard (rank 0).
    let (trainable_parameters, parameters) = model.parameter_counts();
    let partial = FinetuneMetrics {
        task: f.task,
        integration: f.integration,
        strategy: f.strategy,
        steps: f.steps,
        trainable_parameters,
        parameters,
        optimizer_state_bytes_per_rank,
        zero_stage: f.zero_stage.into(),
        training_peak_memory_bytes,
        training_added_memory_bytes,
        world_size: w.world,
        final_loss: trained.last_loss,
        gates: Vec::new(),
        results,
        restarts: w.restart,
        validation,
        selected_step,
    };
    job.finish(&mut model, partial, tb.as_mut(), w)?;
    Ok(false)
}

/// The parameters the strategy trains; none is an error.
fn trainable(model: &UserLlm, f: &FinetuneConfig) -> Result<Vec<(String, Tensor)>> {
    let trainable: Vec<(String, Tensor)> =
        model.named_parameters().into_iter().filter(|(n, _)| Part::of(n).trains(f.strategy)).collect();
    if trainable.is_empty() {
        bail!(
            "finetune: nothing trains with the {} strategy and {} integration (TextPrompt has no encoder: use full or lora)",
            value_name(&f.strategy),
            value_name(&f.integration)
        );
    }
    Ok(trainable)
}

impl<'a> Job<'a> {
    fn open(cfg: &'a RunConfig) -> Result<Self> {
        let f = cfg.finetune.as_ref().context("no finetune section")?;
        let d = cfg.data.as_ref().context("finetune needs a data section")?;
        let store = Store::open(&d.store)?;
        let cat = Catalog::of_store(&store);
        let spec = TaskSpec::from_config(cfg)?;
        let train = examples::training(&store, f.task, d.window, d.stride)?;
        let cases = examples::evaluation(&store, &cat, &spec, Split::Test, f.eval_examples);
        // With one checkpoint (the last) there is nothing for validation to pick.
        let picks = f.valid_examples > 0 && f.checkpoint_every > 0 && f.checkpoint_every < f.steps;
        let valid =
            if picks { examples::evaluation(&store, &cat, &spec, Split::Valid, f.valid_examples) } else { Vec::new() };
        let tok = Tokenizer::from_dir(&f.model)?;
        Ok(Job { f, store, cat, tok, spec, train, cases, valid, run: RunDir::of(cfg), hash: config_hash(cfg) })
    }

    /// The best validated checkpoint's weights into the model (every rank),
    /// when the run validated: the step they are of, and the validation
    /// history (rank 0's). Without validation: the last step, nothing.
    fn select(&self, stage: &Finetuning, w: &Worker) -> Result<(u64, Vec<Validation>)> {
        if self.valid.is_empty() {
            return Ok((self.f.steps, Vec::new()));
        }
        let root = self.run.checkpoints(StageFiles::Finetune);
        let Some((dir, state)) = checkpoint::best_validated(&root) else {
            // Checkpoints written before validation existed, or all damaged.
            if w.rank == 0 {
                eprintln!(
                    "warning: finetune: no validated checkpoint in {}: testing the last step's weights",
                    root.display()
                );
            }
            return Ok((self.f.steps, Vec::new()));
        };
        stage.model.load_weights(&dir.join(checkpoint::MODEL), &stage.trainable)?;
        let history: Vec<Validation> =
            fsutil::read_cached(&self.run.finetune_validation(), &self.hash).unwrap_or_default();
        if w.rank == 0 {
            let metric = headline(self.f.task);
            eprintln!(
                "finetune: validation picked step {} ({metric} {:.4} on {} validation questions); the test questions are asked once, of its weights",
                state.step,
                state.valid.unwrap_or(f64::NAN),
                self.valid.len()
            );
        }
        Ok((state.step, history))
    }

    /// How evaluation asks this job's questions of `model`.
    fn asker<'m>(&'m self, model: &'m UserLlm) -> Result<Asker<'m>> {
        let mut asker = Asker::new(model, &self.tok, &self.cat, self.spec.clone())?;
        asker.batch = self.f.eval_batch_size;
        Ok(asker)
    }

    fn announce(&self, model: &UserLlm) {
        let (n_train, n_all) = model.parameter_counts();
        eprintln!(
            "finetune: {} with {} integration, {} strategy; {n_train} of {n_all} parameters train; {} training examples, {} test questions{}",
            value_name(&self.f.task),
            value_name(&self.f.integration),
            value_name(&self.f.strategy),
            self.train.len(),
            self.cases.len(),
            match self.valid.len() {
                0 => String::new(),
                n => format!(", {n} validation questions at every checkpoint"),
            }
        );
    }

    /// The baselines' results on rank 0 (empty elsewhere): every rank
    /// answers its share, with its part of the cores; kept in the run folder
    /// for reruns of this config. Rank 0 decides whether the kept ones serve (the other
    /// ranks may not see the file), and the others wait for it untimed.
    fn baselines(&self, model: &UserLlm, w: &Worker) -> Result<Vec<Evaluated>> {
        let path = self.run.finetune_baselines();
        let kept: Option<Vec<Evaluated>> = if w.rank == 0 { fsutil::read_cached(&path, &self.hash) } else { None };
        let results = if w.sum(&[kept.is_some() as u8 as f64])?[0] > 0.0 {
            kept.unwrap_or_default()
        } else {
            let share = w.share();
            let found = with_threads(w.eval_threads(), || {
                baselines(
                    self.asker(model)?,
                    &self.store,
                    &self.cat,
                    &self.train,
                    &self.cases,
                    Asked { before: self.f.before_finetuning, text_prompt: self.f.text_prompt_baseline },
                    &share,
                )
            })?;
            let Some(found) = found else {
                w.after_rank0("baselines")?;
                return Ok(Vec::new());
            };
            // The predictions first: a kept result always has its predictions beside it.
            let lines: String = found
                .iter()
                .flat_map(|(e, ps)| {
                    ps.iter().map(|p| format!("{}\n", serde_json::json!({"who": e.who, "prediction": p})))
                })
                .collect();
            fsutil::write_atomic(&self.run.finetune_baseline_predictions(), lines.as_bytes())?;
            let results: Vec<Evaluated> = found.into_iter().map(|(e, _)| e).collect();
            fsutil::write_cached(&path, &self.hash, &results)?;
            results
        };
        for r in &results {
            eprintln!("{}", describe(r));
        }
        w.after_rank0("baselines")?;
        Ok(results)
    }

    /// After the last step: rank 0 writes the weights; every rank evaluates
    /// its share of what the export will hold (LoRA merged); rank 0 writes
    /// the predictions, the metrics file (`out` with the gates and the
    /// finetuned model's results, after the model before finetuning)
    /// and TensorBoard (`tb`, rank 0's), while the others wait untimed.
    /// Returns the results on rank 0 (empty elsewhere).
    fn finish(
        &self,
        model: &mut UserLlm,
        mut out: FinetuneMetrics,
        tb: Option<&mut EventWriter>,
        w: &Worker,
    ) -> Result<Vec<Evaluated>> {
        let (f, run) = (self.f, &self.run);
        if w.rank == 0 {
            let path = run.finetune_weights();
            let sha = save_tensors(&path, &model.trained_weights())?;
            eprintln!("finetune: weights written to {} (SHA-256 {})", path.display(), &sha[..12]);
        }
        model.merge_lora();
        tch::set_num_threads(w.eval_threads() as i32);
        let asker = self.asker(model)?;
        let share = w.share();
        let evaluated = evaluate_model(&asker, &self.store.vocab.user, &self.cases, FINETUNED, &share)?;
        let (Some((finetuned, predictions)), Some(tb)) = (evaluated, tb) else {
            w.after_rank0("finish")?;
            return Ok(Vec::new());
        };
        eprintln!("{}", describe(&finetuned));
        let lines: String = predictions.iter().map(|p| format!("{p}\n")).collect();
        fsutil::write_atomic(&run.finetune_predictions(), lines.as_bytes())?;
        let mut s: Vec<(String, f32)> =
            finetuned.metrics.iter().map(|(k, v)| (format!("finetune/test/{k}"), *v as f32)).collect();
        for (k, [lo, hi]) in &finetuned.ci {
            s.push((format!("finetune/test/{k}_ci_low"), *lo as f32));
            s.push((format!("finetune/test/{k}_ci_high"), *hi as f32));
        }
        s.push(("finetune/test/gflops_per_example".into(), finetuned.gflops as f32));
        // After the model before finetuning, where it was evaluated.
        out.results.insert(usize::from(f.before_finetuning).min(out.results.len()), finetuned);
        out.gates = model.gates();
        metrics::write(&run.metrics(StageFiles::Finetune), &out)?;
        let results = out.results;
        let refs: Vec<(&str, f32)> = s.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        tb.scalars(f.steps as i64, &refs)?;
        let table: Vec<String> = results.iter().map(|r| format!("- {}", describe(r))).collect();
        tb.text("finetune/results", f.steps as i64, &table.join("\n"))?;
        let samples = samples(&asker, &self.store, &self.cases, &predictions, f.samples)?;
        tb.text("finetune/samples", f.steps as i64, &samples)?;
        tb.flush()?;
        w.after_rank0("finish")?;
        Ok(results)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_loss_from_answer_positions_equals_the_loss_over_all_logits() {
        tch::manual_seed(3);
        let hidden = Tensor::randn([2, 6, 4], tch::kind::FLOAT_CPU);
        let head = Tensor::randn([9, 4], tch::kind::FLOAT_CPU);
        // Prompts of 3 and 2 tokens, then answers; -100 on prompts and padding.
        let targets = Tensor::from_slice(&[-100i64, -100, -100, 4, 7, 2, -100, -100, 5, 1, -100, -100]).view([2, 6]);
        let logits = |h: &Tensor| h.matmul(&head.tr());
        // The answer positions as make_batch lists them: row * 6 + the position before each answer token.
        let at = Tensor::from_slice(&[2i64, 3, 4, 7, 8]);
        let answers = Tensor::from_slice(&[4i64, 7, 2, 5, 1]);
        let got = answer_loss(&hidden, &at, &answers, &logits).double_value(&[]);
        // The reference: every position's logits, the shifted targets, -100 ignored.
        let all = logits(&hidden).narrow(1, 0, 5).reshape([-1, 9]);
        let want = all
            .cross_entropy_loss::<Tensor>(&targets.narrow(1, 1, 5).reshape([-1]), None, tch::Reduction::Sum, -100, 0.0)
            .double_value(&[]);
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    }
}
