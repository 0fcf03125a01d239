//! USER-LLM finetuning on a task (favorite genre/category, next item, review):
//! the pretrained encoder (this run's pretraining checkpoint) feeds the LLM
//! through gated cross-attention or a soft prompt, or the history is text
//! (TextPrompt); the strategy decides what trains. Ranks train data-parallel
//! with the optimizer state sharded (ZeRO-2 style), checkpoint, and resume.
//! Rank 0 evaluates the model before and after finetuning and the baselines
//! on the same test questions, with the cost of each.

pub mod evaluate;
pub mod examples;

use super::checkpoint::{self, TrainState};
use super::ddp;
use super::schedule::lr_at;
use super::worker::Worker;
use super::zero::ShardedAdamW;
use crate::config::{value_name, RunConfig};
use crate::data::catalog::{Catalog, Interaction};
use crate::data::split::{epoch_batches, steps_per_epoch, Sharding};
use crate::data::store::Store;
use crate::data::tasks::Task;
use crate::model::llama::load::load;
use crate::model::tokenizer::Tokenizer;
use crate::model::userllm::{Integration, Part, Strategy, UserLlm, UserLlmConfig};
use crate::serve::ask::{rank, Answer, Asker, Cost, TaskSpec};
use crate::tb::EventWriter;
use anyhow::{bail, Context, Result};
use evaluate::{describe, evaluate, Evaluated};
use examples::{EvalExample, TrainExample, Truth};
use std::io::Write;
use std::path::Path;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

pub const METRICS_FILE: &str = "finetune_metrics.json";
pub const TRAIN_LOG: &str = "finetune_log.jsonl";
/// Everything of the model that is not the base LLM's frozen weights
/// (safetensors, Hugging Face names for the LLM's): the model folder plus
/// this file is the finetuned model.
pub const WEIGHTS_FILE: &str = "finetune_weights.safetensors";
/// The finetuned model's answer to every test question, one JSON per line.
pub const PREDICTIONS_FILE: &str = "finetune_predictions.jsonl";
/// Results before finetuning, kept so a resumed run does not redo them.
const BASELINES_FILE: &str = "finetune_baselines.json";

pub fn user_llm_config(cfg: &RunConfig) -> Result<UserLlmConfig> {
    let f = cfg.finetune.as_ref().context("no finetune section")?;
    Ok(UserLlmConfig {
        integration: f.integration,
        cross_attention_layers: f.cross_attention_layers.clone(),
        perceiver: f.perceiver.clone(),
        projection: f.projection,
        strategy: f.strategy,
        lora: f.lora.clone(),
    })
}

pub fn task_spec(cfg: &RunConfig) -> Result<TaskSpec> {
    let f = cfg.finetune.as_ref().context("no finetune section")?;
    let d = cfg.data.as_ref().context("finetune needs a data section")?;
    Ok(TaskSpec {
        task: f.task,
        window: d.window,
        text_window: f.text_prompt_window,
        candidates: f.candidates,
        max_new_tokens: f.max_new_tokens,
        seed: cfg.seed,
    })
}

/// The run's USER-LLM before finetuning: the base LLM, new integration
/// parts, and (unless TextPrompt, or `pretrained_encoder` is false) the
/// encoder from this run's pretraining checkpoint.
pub fn build(cfg: &RunConfig, store: &Store, device: Device, pretrained_encoder: bool) -> Result<UserLlm> {
    let f = cfg.finetune.as_ref().context("no finetune section")?;
    build_with(cfg, store, load(&f.model, device, Kind::Float)?, pretrained_encoder)
}

/// As [`build`], around an LLM already in memory.
pub fn build_with(
    cfg: &RunConfig,
    store: &Store,
    llm: crate::model::llama::Llama,
    pretrained_encoder: bool,
) -> Result<UserLlm> {
    let f = cfg.finetune.as_ref().context("no finetune section")?;
    let d = cfg.data.as_ref().context("finetune needs a data section")?;
    let shape = super::batches::encoder_shape(store, &cfg.encoder.clone().unwrap_or_default(), d.window);
    tch::manual_seed(cfg.seed as i64 + 1);
    let model = UserLlm::new(llm, shape, &user_llm_config(cfg)?)?;
    if pretrained_encoder && f.integration != Integration::TextPrompt {
        let root = checkpoint::pretrain_root(f.encoder_from.as_deref().unwrap_or(&cfg.run_dir()));
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

/// What [`WEIGHTS_FILE`] holds: every tensor but the frozen base LLM's.
pub fn weights_to_save(model: &UserLlm) -> Vec<(String, Tensor)> {
    model
        .named_parameters()
        .into_iter()
        .filter(|(n, _)| Part::of(n) != Part::Llm || model.strategy == Strategy::Full)
        .collect()
}

/// Load [`WEIGHTS_FILE`] of a run into a model built by [`build`].
pub fn load_weights(model: &UserLlm, path: &Path) -> Result<usize> {
    let saved = checkpoint::read_tensors(path)?;
    let named: std::collections::BTreeMap<String, Tensor> = model.named_parameters().into_iter().collect();
    tch::no_grad(|| -> Result<()> {
        for (name, src) in &saved {
            let p = named.get(name).with_context(|| {
                format!("{}: tensor {name} is not part of this model (another configuration?)", path.display())
            })?;
            if p.size() != src.size() {
                bail!("{}: tensor {name} has shape {:?}, the model {:?}", path.display(), src.size(), p.size());
            }
            p.shallow_clone().copy_(&src.to_device(p.device()).to_kind(p.kind()));
        }
        Ok(())
    })?;
    Ok(saved.len())
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
        if model.integration == Integration::TextPrompt {
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

/// Results of the baselines, computed once (rank 0) before training.
fn baselines(
    asker: Asker,
    store: &Store,
    cat: &Catalog,
    train: &[TrainExample],
    cases: &[EvalExample],
    text_prompt: bool,
) -> Result<Vec<Evaluated>> {
    let users = &store.vocab.user;
    let task = asker.spec.task;
    let mut out = vec![
        evaluate(cat, task, users, cases, "USER-LLM before finetuning", |c| asker.ask(&c.history, &c.question))?.0,
    ];
    match task {
        Task::FavoriteCategory => {
            let mut counts = std::collections::BTreeMap::new();
            for ex in train {
                if let crate::serve::ask::TargetText::Category(c) = ex.target {
                    *counts.entry(c).or_insert(0usize) += 1;
                }
            }
            let majority =
                counts.iter().max_by_key(|&(c, n)| (*n, std::cmp::Reverse(*c))).map(|(c, _)| *c).unwrap_or(0);
            let who = format!("majority class ({})", cat.categories[majority]);
            out.push(
                evaluate(cat, task, users, cases, &who, |_| {
                    Ok((Answer::Ranked(vec![(majority, 0.0)]), Cost::default()))
                })?
                .0,
            );
        }
        Task::NextItem => {
            // Popularity among training interactions, over the same candidates.
            let mut pop = vec![0.0f64; cat.items.len()];
            for ex in train {
                if let crate::serve::ask::TargetText::Item(i) = ex.target {
                    pop[i] += 1.0;
                }
            }
            out.push(
                evaluate(cat, task, users, cases, "popularity", |c| {
                    let crate::serve::ask::Question::NextItem { candidates } = &c.question else {
                        unreachable!("next-item questions")
                    };
                    Ok((Answer::Ranked(rank(candidates.iter().map(|&i| (i, pop[i])).collect())), Cost::default()))
                })?
                .0,
            );
        }
        Task::Review => {}
    }
    if text_prompt && asker.integration != Integration::TextPrompt {
        let window = asker.spec.text_window;
        let zero_shot = asker.as_text_prompt();
        let who = format!("TextPrompt (last {window} interactions as text, no finetuning)");
        out.push(evaluate(cat, task, users, cases, &who, |c| zero_shot.ask(&c.history, &c.question))?.0);
    }
    Ok(out)
}

pub fn run(cfg: &RunConfig, w: &Worker) -> Result<Vec<Evaluated>> {
    let f = cfg.finetune.as_ref().context("no finetune section")?;
    let d = cfg.data.as_ref().context("finetune needs a data section")?;
    let store = Store::open(&d.store)?;
    let cat = Catalog::of_store(&store);
    let run_dir = cfg.run_dir();
    let lead = w.rank == 0;
    let tok = Tokenizer::from_dir(&f.model)?;
    let spec = task_spec(cfg)?;
    let mut model = build(cfg, &store, w.device, true)?;
    model.activation_checkpointing.set(f.activation_checkpointing);
    let named = model.named_parameters();
    let trainable: Vec<(String, Tensor)> = named
        .iter()
        .filter(|(n, _)| Part::of(n).trains(f.strategy))
        .map(|(n, t)| (n.clone(), t.shallow_clone()))
        .collect();
    if trainable.is_empty() {
        bail!("finetune: nothing trains with the {} strategy and {} integration (TextPrompt has no encoder: use full or lora)", value_name(&f.strategy), value_name(&f.integration));
    }
    let params: Vec<Tensor> = trainable.iter().map(|(_, t)| t.shallow_clone()).collect();
    if let Some(pg) = &w.group {
        ddp::broadcast_parameters(pg, &params, &ddp::buckets(&params, cfg.dist.bucket_mb << 20))?;
    }
    let (n_train, n_all) = model.parameter_counts();
    let train = examples::training(&store, f.task, d.window, d.stride)?;
    let cases = examples::evaluation(&store, &cat, &spec, f.eval_examples);
    if lead {
        eprintln!("finetune: {} with {} integration, {} strategy; {n_train} of {n_all} parameters train; {} training examples, {} test questions", value_name(&f.task), value_name(&f.integration), value_name(&f.strategy), train.len(), cases.len());
    }

    // Evaluation runs on rank 0 alone (the others wait): give it every core.
    let cores = std::thread::available_parallelism().map(|n| n.get() as i32).unwrap_or(1);
    let train_threads = tch::get_num_threads();
    let hash = config_hash(cfg);
    let ckpt_root = checkpoint::finetune_root(&run_dir);
    let mut opt = ShardedAdamW::new(&trainable, w.rank, w.world, f.weight_decay);
    let mut start = 0u64;
    if let Some((dir, state)) = checkpoint::latest(&ckpt_root)? {
        if state.config_hash != hash {
            bail!("{} was written by a run with a different configuration (hash {} vs {hash}): use a new run name, or delete {} to start over", dir.display(), state.config_hash, ckpt_root.display());
        }
        if state.world_size != w.world {
            bail!("{} was written with {} workers, this run has {}: the optimizer shards would not match; resume with the same --nproc", dir.display(), state.world_size, w.world);
        }
        load_weights(&model, &dir.join(checkpoint::MODEL))?;
        opt.load_state(&checkpoint::read_tensors(&dir.join(format!("optimizer-rank-{}.safetensors", w.rank)))?)?;
        start = state.step;
        if lead {
            eprintln!("finetune: resuming from {} (step {start})", dir.display());
        }
    }
    let baselines_path = run_dir.join(BASELINES_FILE);
    let mut results: Vec<Evaluated> = Vec::new();
    if lead {
        model.set_training(false);
        results = match std::fs::read(&baselines_path)
            .ok()
            .and_then(|b| serde_json::from_slice::<(String, Vec<Evaluated>)>(&b).ok())
            .filter(|(h, _)| *h == hash)
        {
            Some((_, r)) => r,
            None => {
                tch::set_num_threads(cores);
                let r = baselines(
                    Asker::new(&model, &tok, &cat, spec.clone())?,
                    &store,
                    &cat,
                    &train,
                    &cases,
                    f.text_prompt_baseline,
                )?;
                tch::set_num_threads(train_threads);
                crate::fsutil::write_atomic(&baselines_path, &serde_json::to_vec_pretty(&(&hash, &r))?)?;
                r
            }
        };
        for r in &results {
            eprintln!("{}", describe(r));
        }
        eprintln!(
            "finetune: optimizer state {:.1} MiB per rank ({} rank(s))",
            opt.state_bytes() as f64 / (1 << 20) as f64,
            w.world
        );
    }

    let mut tb = if lead { Some(EventWriter::create(&run_dir.join("tb"))?) } else { None };
    let mut log = if lead {
        Some(std::fs::OpenOptions::new().create(true).append(true).open(run_dir.join(TRAIN_LOG))?)
    } else {
        None
    };
    let per_epoch = steps_per_epoch(train.len(), w.world, f.batch_size) as u64;
    let shard = Sharding { world: w.world, rank: w.rank, batch_size: f.batch_size, seed: cfg.seed, shuffle: true };
    let mut epoch_cache: Option<(u64, Vec<Vec<usize>>)> = None;
    let save = |step: u64, loss: f64, opt: &ShardedAdamW| -> Result<()> {
        // Rank 0 stages, every rank writes its optimizer shard, rank 0 seals.
        let barrier = || -> Result<()> {
            if let Some(pg) = &w.group {
                pg.barrier()?.wait()?;
            }
            Ok(())
        };
        let tmp = ckpt_root.join(format!(".step-{step:08}.tmp"));
        if lead {
            checkpoint::staging(&ckpt_root, step)?;
        }
        barrier()?;
        checkpoint::write_file(&tmp, &format!("optimizer-rank-{}.safetensors", w.rank), &opt.state_tensors())?;
        if lead {
            checkpoint::write_file(&tmp, checkpoint::MODEL, &trainable)?;
        }
        barrier()?;
        if lead {
            checkpoint::commit(
                &ckpt_root,
                &tmp,
                TrainState { step, config_hash: hash.clone(), world_size: w.world, loss, files: Default::default() },
                f.keep_checkpoints,
            )?;
        }
        barrier()
    };
    let asker = Asker::new(&model, &tok, &cat, spec.clone())?;
    model.set_training(true);
    let t_train = Instant::now();
    let mut last_loss = f64::NAN;
    for step in start..f.steps {
        tch::manual_seed((cfg.seed as i64) ^ ((step as i64) << 8) ^ w.rank as i64 ^ 0x5eed);
        let lr = lr_at(step, f.steps, f.warmup_steps, f.lr);
        let mut micro = Vec::with_capacity(f.grad_accum);
        for a in 0..f.grad_accum as u64 {
            let m = step * f.grad_accum as u64 + a;
            let (epoch, idx) = (m / per_epoch, (m % per_epoch) as usize);
            if epoch_cache.as_ref().map(|(e, _)| *e) != Some(epoch) {
                epoch_cache = Some((epoch, epoch_batches(train.len(), shard, epoch)));
            }
            let idx = &epoch_cache.as_ref().expect("filled").1[idx];
            if !idx.is_empty() {
                micro.push(make_batch(&asker, &store, &train, idx, w.device)?);
            }
        }
        // The loss is normalised by the global number of answer tokens, so
        // ranks and micro-batches add up to one big batch.
        let local: i64 = micro.iter().map(|b| b.answer_tokens).sum();
        let (stop, counts) = w.stop_and_sum(&[local as f64])?;
        if stop {
            save(step, last_loss, &opt)?;
            if lead {
                eprintln!("interrupted after step {step}: checkpoint written");
            }
            return Ok(results);
        }
        let global = counts[0].max(1.0);
        let mut loss_sum = 0.0;
        for b in &micro {
            loss_sum += forward_backward(&model, &asker, b, global, w.device)?;
        }
        let grad_norm = opt.step(w.group.as_ref(), lr, f.grad_clip)?;
        last_loss = w.sum(&[loss_sum])?[0] / global;
        let done = step + 1;
        if let Some(l) = &mut log {
            writeln!(
                l,
                "{}",
                serde_json::json!({"step": done, "loss": last_loss, "lr": lr, "grad_norm": grad_norm, "elapsed_s": t_train.elapsed().as_secs_f64()})
            )?;
        }
        if done % f.log_every == 0 || done == f.steps {
            if let Some(tb) = &mut tb {
                let mut s: Vec<(String, f32)> = vec![
                    ("finetune/loss".into(), last_loss as f32),
                    ("finetune/lr".into(), lr as f32),
                    ("finetune/grad_norm".into(), grad_norm as f32),
                ];
                for (layer, g) in model.gates() {
                    s.push((format!("finetune/gate/layer_{layer:02}"), g as f32));
                }
                let refs: Vec<(&str, f32)> = s.iter().map(|(k, v)| (k.as_str(), *v)).collect();
                tb.scalars(done as i64, &refs)?;
                eprintln!("finetune step {done}/{} loss {last_loss:.4} lr {lr:.2e}", f.steps);
            }
        }
        if f.checkpoint_every > 0 && done % f.checkpoint_every == 0 && done < f.steps {
            save(done, last_loss, &opt)?;
        }
    }
    drop(asker);
    model.set_training(false);
    if start < f.steps {
        save(f.steps, last_loss, &opt)?;
    }
    if lead {
        let path = run_dir.join(WEIGHTS_FILE);
        let sha = checkpoint::save_tensors(&path, &weights_to_save(&model))?;
        eprintln!("finetune: weights written to {} (SHA-256 {})", path.display(), &sha[..12]);
        // Evaluate the weights the export will hold: LoRA merged.
        model.merge_lora();
        tch::set_num_threads(cores);
        let asker = Asker::new(&model, &tok, &cat, spec.clone())?;
        let (finetuned, predictions) = evaluate(&cat, f.task, &store.vocab.user, &cases, "USER-LLM finetuned", |c| {
            asker.ask(&c.history, &c.question)
        })?;
        eprintln!("{}", describe(&finetuned));
        let lines: String = predictions.iter().map(|p| format!("{p}\n")).collect();
        crate::fsutil::write_atomic(&run_dir.join(PREDICTIONS_FILE), lines.as_bytes())?;
        results.insert(1, finetuned);
        let out = serde_json::json!({"task": f.task, "integration": f.integration, "strategy": f.strategy, "steps": f.steps,
            "trainable_parameters": n_train, "parameters": n_all, "optimizer_state_bytes_per_rank": opt.state_bytes(), "world_size": w.world,
            "final_loss": last_loss, "gates": model.gates(), "results": results});
        crate::fsutil::write_atomic(&run_dir.join(METRICS_FILE), serde_json::to_string_pretty(&out)?.as_bytes())?;
        if let Some(tb) = &mut tb {
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
    }
    if let Some(pg) = &w.group {
        pg.barrier()?.wait()?;
    }
    Ok(results)
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
