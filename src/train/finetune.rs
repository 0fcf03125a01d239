//! USER-LLM finetuning on a task (favorite genre/category, next item, review):
//! the pretrained encoder (this run's pretraining checkpoint) feeds the LLM
//! through gated cross-attention or a soft prompt, or the history is text
//! (TextPrompt); the strategy decides what trains. Ranks train data-parallel
//! with the optimizer state sharded (ZeRO-2 style), checkpoint, and resume.
//! Rank 0 evaluates the model before and after finetuning and the baselines
//! on the same test questions, with the cost of each.

use super::checkpoint::{self, TrainState};
use super::ddp;
use super::metrics::{self, FinetuneMetrics};
use super::skeleton::{Loop, Stage};
use super::worker::Worker;
use super::zero::ShardedAdamW;
use crate::config::finetune::FinetuneConfig;
use crate::config::{value_name, RunConfig};
use crate::data::catalog::{Catalog, Interaction};
use crate::data::store::Store;
use crate::model::assemble;
use crate::model::tokenizer::Tokenizer;
use crate::model::userllm::{Part, UserLlm};
use crate::model::weights::{read_tensors, save_tensors};
use crate::rundir::{RunDir, StageFiles};
use crate::task::ask::{Asker, TaskSpec};
use crate::task::baselines::baselines;
use crate::task::evaluate::{describe, evaluate, Evaluated};
use crate::task::examples::{self, EvalExample, TrainExample, Truth};
use crate::tb::EventWriter;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
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
        let (dir, _) = checkpoint::latest(&root)?.with_context(|| {
            format!(
                "finetuning needs a pretrained encoder: no pretraining checkpoint in {} (add a pretrain section)",
                root.display()
            )
        })?;
        checkpoint::load_matching(&dir, "encoder.", &model.named_parameters())?;
    }
    Ok(model)
}

/// What decides the trajectory: a checkpoint resumes only a run with the same hash.
fn config_hash(cfg: &RunConfig) -> String {
    let key = serde_json::json!({"seed": cfg.seed, "data": cfg.data, "encoder": cfg.encoder, "pretrain": cfg.pretrain, "finetune": cfg.finetune});
    crate::fsutil::config_digest(&key, 16)
}

/// A training batch: token ids, answer targets (−100 elsewhere), histories.
pub(crate) struct Batch {
    pub tokens: Tensor,
    targets: Tensor,
    pub answer_tokens: i64,
    histories: Vec<Vec<Interaction>>,
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
    let mut tgt = vec![-100i64; idx.len() * t];
    let mut answer_tokens = 0;
    for (r, (p, a)) in seqs.iter().enumerate() {
        toks[r * t..r * t + p.len()].copy_from_slice(p);
        toks[r * t + p.len()..r * t + p.len() + a.len()].copy_from_slice(a);
        tgt[r * t + p.len()..r * t + p.len() + a.len()].copy_from_slice(a);
        answer_tokens += a.len() as i64;
    }
    let shape = [idx.len() as i64, t as i64];
    Ok(Batch {
        tokens: Tensor::from_slice(&toks).view(shape).to_device(device),
        targets: Tensor::from_slice(&tgt).view(shape).to_device(device),
        answer_tokens,
        histories,
    })
}

/// Forward and backward of one micro-batch, the loss divided by `global`
/// answer tokens; returns the summed loss.
pub(crate) fn forward_backward(model: &UserLlm, asker: &Asker, b: &Batch, global: f64, device: Device) -> Result<f64> {
    let logits = crate::torch_runtime::with_autocast(device, || {
        if !model.integration.mode().reads_user() {
            model.forward_text(&b.tokens)
        } else {
            let refs: Vec<&[_]> = b.histories.iter().map(|h| h.as_slice()).collect();
            model.forward(&b.tokens, &asker.inputs(&refs), true)
        }
    });
    let sum = answer_loss(&logits, &b.targets);
    (&sum / global).backward();
    model.release_segments();
    Ok(sum.double_value(&[]))
}

/// Summed next-token loss on the answer positions.
fn answer_loss(logits: &Tensor, targets: &Tensor) -> Tensor {
    let t = targets.size()[1];
    let pred = logits.narrow(1, 0, t - 1).to_kind(Kind::Float);
    let target = targets.narrow(1, 1, t - 1);
    let v = pred.size()[2];
    pred.reshape([-1, v]).cross_entropy_loss::<Tensor>(&target.reshape([-1]), None, tch::Reduction::Sum, -100, 0.0)
}

/// Finetuning as the skeleton runs it: the model and what trains, the
/// sharded optimizer, the training examples as questions and answers.
struct Finetuning<'a> {
    f: &'a FinetuneConfig,
    w: &'a Worker,
    store: &'a Store,
    model: &'a UserLlm,
    asker: Asker<'a>,
    train: &'a [TrainExample],
    trainable: Vec<(String, Tensor)>,
    opt: ShardedAdamW,
    root: PathBuf,
    hash: String,
    micro: Vec<Batch>,
}

impl Stage for Finetuning<'_> {
    fn load(&mut self, dir: &Path) -> Result<()> {
        self.model.load_weights(&dir.join(checkpoint::MODEL))?;
        self.opt.load_state(&read_tensors(&dir.join(checkpoint::optimizer_shard(self.w.rank)))?)
    }

    /// Rank 0 stages, every rank writes its optimizer shard, rank 0 seals.
    fn save(&mut self, step: u64, loss: f64) -> Result<()> {
        let (w, lead) = (self.w, self.w.rank == 0);
        let barrier = || -> Result<()> {
            if let Some(pg) = &w.group {
                pg.barrier()?.wait()?;
            }
            Ok(())
        };
        let tmp = self.root.join(crate::rundir::checkpoint::staging_dir(step));
        if lead {
            checkpoint::staging(&self.root, step)?;
        }
        barrier()?;
        checkpoint::write_file(&tmp, &checkpoint::optimizer_shard(w.rank), &self.opt.state_tensors())?;
        if lead {
            checkpoint::write_file(&tmp, checkpoint::MODEL, &self.trainable)?;
        }
        barrier()?;
        if lead {
            let state = TrainState {
                step,
                config_hash: self.hash.clone(),
                world_size: w.world,
                loss,
                files: Default::default(),
            };
            checkpoint::commit(&self.root, &tmp, state, self.f.keep_checkpoints)?;
        }
        barrier()
    }

    /// The loss is normalised by the global number of answer tokens, so ranks
    /// and micro-batches add up to one big batch.
    fn prepare(&mut self, micro: Vec<Vec<usize>>) -> Result<f64> {
        self.micro = micro
            .iter()
            .filter(|idx| !idx.is_empty())
            .map(|idx| make_batch(&self.asker, self.store, self.train, idx, self.w.device))
            .collect::<Result<_>>()?;
        Ok(self.micro.iter().map(|b| b.answer_tokens).sum::<i64>() as f64)
    }

    fn step(&mut self, global: f64, lr: f64) -> Result<(f64, f64)> {
        let mut loss_sum = 0.0;
        for b in std::mem::take(&mut self.micro) {
            loss_sum += forward_backward(self.model, &self.asker, &b, global, self.w.device)?;
        }
        let grad_norm = self.opt.step(self.w.group.as_ref(), lr, self.f.grad_clip)?;
        Ok((loss_sum, grad_norm))
    }

    fn log(&mut self, done: u64, loss: f64, lr: f64, grad_norm: f64, tb: Option<&mut EventWriter>) -> Result<()> {
        let Some(tb) = tb else { return Ok(()) };
        let mut s: Vec<(String, f32)> = vec![
            ("finetune/loss".into(), loss as f32),
            ("finetune/lr".into(), lr as f32),
            ("finetune/grad_norm".into(), grad_norm as f32),
        ];
        for (layer, g) in self.model.gates() {
            s.push((format!("finetune/gate/layer_{layer:02}"), g as f32));
        }
        let refs: Vec<(&str, f32)> = s.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        tb.scalars(done as i64, &refs)?;
        eprintln!("finetune step {done}/{} loss {loss:.4} lr {lr:.2e}", self.f.steps);
        Ok(())
    }
}

pub fn run(cfg: &RunConfig, w: &Worker) -> Result<Vec<Evaluated>> {
    let f = cfg.finetune.as_ref().context("no finetune section")?;
    let d = cfg.data.as_ref().context("finetune needs a data section")?;
    let store = Store::open(&d.store)?;
    let cat = Catalog::of_store(&store);
    let run = RunDir::of(cfg);
    let lead = w.rank == 0;

    // Build: the model, what trains (rank 0's values), the examples.
    let tok = Tokenizer::from_dir(&f.model)?;
    let spec = TaskSpec::from_config(cfg)?;
    let mut model = build(cfg, &store, w.device, true)?;
    model.activation_checkpointing.set(f.activation_checkpointing);
    let trainable: Vec<(String, Tensor)> =
        model.named_parameters().into_iter().filter(|(n, _)| Part::of(n).trains(f.strategy)).collect();
    if trainable.is_empty() {
        bail!(
            "finetune: nothing trains with the {} strategy and {} integration (TextPrompt has no encoder: use full or lora)",
            value_name(&f.strategy),
            value_name(&f.integration)
        );
    }
    let params: Vec<Tensor> = trainable.iter().map(|(_, t)| t.shallow_clone()).collect();
    if let Some(pg) = &w.group {
        ddp::broadcast_parameters(pg, &params, &ddp::buckets(&params, cfg.dist.bucket_mb << 20))?;
    }
    let (n_train, n_all) = model.parameter_counts();
    let train = examples::training(&store, f.task, d.window, d.stride)?;
    let cases = examples::evaluation(&store, &cat, &spec, f.eval_examples);
    if lead {
        eprintln!(
            "finetune: {} with {} integration, {} strategy; {n_train} of {n_all} parameters train; {} training examples, {} test questions",
            value_name(&f.task),
            value_name(&f.integration),
            value_name(&f.strategy),
            train.len(),
            cases.len()
        );
    }
    // Evaluation runs on rank 0 alone (the others wait): give it every core.
    let cores = std::thread::available_parallelism().map(|n| n.get() as i32).unwrap_or(1);
    let hash = config_hash(cfg);
    let mut stage = Finetuning {
        f,
        w,
        store: &store,
        model: &model,
        asker: Asker::new(&model, &tok, &cat, spec.clone())?,
        train: &train,
        opt: ShardedAdamW::new(&trainable, w.rank, w.world, f.weight_decay),
        trainable,
        root: run.checkpoints(StageFiles::Finetune),
        hash: hash.clone(),
        micro: Vec::new(),
    };
    let skeleton = Loop {
        worker: w,
        run: run.clone(),
        files: StageFiles::Finetune,
        config_hash: hash.clone(),
        prefix: "finetune: ",
        world_reason: "the optimizer shards would not match",
        seed: cfg.seed,
        seed_salt: 0x5eed,
        steps: f.steps,
        grad_accum: f.grad_accum,
        lr: f.lr,
        warmup_steps: f.warmup_steps,
        log_every: f.log_every,
        checkpoint_every: f.checkpoint_every,
        examples: train.len(),
        batch_size: f.batch_size,
    };

    // Resume; the baselines (once, rank 0).
    let start = skeleton.resume(&mut stage)?;
    let mut results: Vec<Evaluated> = Vec::new();
    if lead {
        model.set_training(false);
        results = baseline_results(&model, &tok, &cat, &spec, &store, &train, &cases, f, &hash, &run, cores)?;
        for r in &results {
            eprintln!("{}", describe(r));
        }
        eprintln!(
            "finetune: optimizer state {:.1} MiB per rank ({} rank(s))",
            stage.opt.state_bytes() as f64 / (1 << 20) as f64,
            w.world
        );
    }

    // Step loop.
    let mut tb = if lead { Some(EventWriter::create(&run.tb())?) } else { None };
    model.set_training(true);
    let trained = skeleton.train(&mut stage, start, tb.as_mut())?;
    if trained.interrupted {
        return Ok(results);
    }
    let optimizer_bytes = stage.opt.state_bytes();
    drop(stage);
    model.set_training(false);

    // Finish (rank 0): the weights, then the evaluation of what the export
    // will hold (LoRA merged), predictions, metrics and TensorBoard.
    if let Some(tb) = &mut tb {
        let path = run.finetune_weights();
        let sha = save_tensors(&path, &model.trained_weights())?;
        eprintln!("finetune: weights written to {} (SHA-256 {})", path.display(), &sha[..12]);
        model.merge_lora();
        tch::set_num_threads(cores);
        let asker = Asker::new(&model, &tok, &cat, spec.clone())?;
        let (finetuned, predictions) = evaluate(&cat, f.task, &store.vocab.user, &cases, "USER-LLM finetuned", |c| {
            asker.ask(&c.history, &c.question)
        })?;
        eprintln!("{}", describe(&finetuned));
        let lines: String = predictions.iter().map(|p| format!("{p}\n")).collect();
        crate::fsutil::write_atomic(&run.finetune_predictions(), lines.as_bytes())?;
        results.insert(1, finetuned);
        let out = FinetuneMetrics {
            task: f.task,
            integration: f.integration,
            strategy: f.strategy,
            steps: f.steps,
            trainable_parameters: n_train,
            parameters: n_all,
            optimizer_state_bytes_per_rank: optimizer_bytes,
            world_size: w.world,
            final_loss: trained.last_loss,
            gates: model.gates(),
            results: results.clone(),
        };
        metrics::write(&run.metrics(StageFiles::Finetune), &out)?;
        let mut s: Vec<(String, f32)> =
            results[1].metrics.iter().map(|(k, v)| (format!("finetune/test/{k}"), *v as f32)).collect();
        s.push(("finetune/test/gflops_per_example".into(), results[1].gflops as f32));
        let refs: Vec<(&str, f32)> = s.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        tb.scalars(f.steps as i64, &refs)?;
        let table: Vec<String> = results.iter().map(|r| format!("- {}", describe(r))).collect();
        tb.text("finetune/results", f.steps as i64, &table.join("\n"))?;
        tb.text("finetune/samples", f.steps as i64, &samples(&asker, &store, &cases, &predictions, f.samples)?)?;
        tb.flush()?;
    }
    if let Some(pg) = &w.group {
        pg.barrier()?.wait()?;
    }
    Ok(results)
}

/// The baselines' results: from `finetune_baselines.json` when this config
/// wrote it, else evaluated now (with every core) and kept there.
#[allow(clippy::too_many_arguments)]
fn baseline_results(
    model: &UserLlm,
    tok: &Tokenizer,
    cat: &Catalog,
    spec: &TaskSpec,
    store: &Store,
    train: &[TrainExample],
    cases: &[EvalExample],
    f: &FinetuneConfig,
    hash: &str,
    run: &RunDir,
    cores: i32,
) -> Result<Vec<Evaluated>> {
    let path = run.finetune_baselines();
    let kept = std::fs::read(&path).ok().and_then(|b| serde_json::from_slice::<(String, Vec<Evaluated>)>(&b).ok());
    if let Some((_, r)) = kept.filter(|(h, _)| h == hash) {
        return Ok(r);
    }
    let train_threads = tch::get_num_threads();
    tch::set_num_threads(cores);
    let r = baselines(Asker::new(model, tok, cat, spec.clone())?, store, cat, train, cases, f.text_prompt_baseline)?;
    tch::set_num_threads(train_threads);
    crate::fsutil::write_atomic(&path, &serde_json::to_vec_pretty(&(hash, &r))?)?;
    Ok(r)
}

/// The first `n` test questions with the finetuned model's answer and the truth, as Markdown.
fn samples(
    asker: &Asker,
    store: &Store,
    cases: &[EvalExample],
    predictions: &[serde_json::Value],
    n: usize,
) -> Result<String> {
    let mut out = Vec::new();
    for (c, p) in cases.iter().zip(predictions).take(n) {
        let prompt = asker.tok.decode(&asker.prompt(&c.history, &c.question)?)?;
        let truth = match &c.truth {
            Truth::Category(x) => asker.cat.categories[*x].clone(),
            Truth::Item(i) => asker.cat.title(*i).to_string(),
            Truth::Review(t) => t.clone(),
        };
        let answer = match p["answer"].as_str() {
            Some(a) if matches!(c.truth, Truth::Item(_)) => {
                asker.cat.item_index(a).map(|i| asker.cat.title(i).to_string()).unwrap_or_default()
            }
            Some(a) => a.to_string(),
            None => String::new(),
        };
        out.push(format!(
            "**user {}** ({} interactions)\n\n    {}\n\n**answer:** {answer}\n\n**truth:** {truth}",
            store.vocab.user[c.user],
            c.history.len(),
            prompt.replace('\n', "\n    ")
        ));
    }
    Ok(out.join("\n\n---\n\n"))
}
