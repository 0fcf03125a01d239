//! USER-LLM finetuning on the favorite-genre/category task: the pretrained
//! encoder (this run's pretraining checkpoint) feeds the LLM through gated
//! cross-attention or a soft prompt; the strategy decides what trains; ranks
//! train data-parallel. Evaluation picks the answer among the store's
//! genres/categories by likelihood, for the finetuned model, the same model
//! before training, the majority class, and the TextPrompt baseline (the
//! history as text, no encoder) on the same test cases, with the cost of each.

use super::zero::ShardedAdamW;
use super::batches::{encoder_shape, eval_batch};
use super::checkpoint;
use super::ddp;
use super::schedule::lr_at;
use super::worker::Worker;
use crate::config::RunConfig;
use crate::data::prompt::render_history;
use crate::data::split::{epoch_batches, eval_cases, steps_per_epoch, training_windows, Sharding, Split, WindowSpec};
use crate::data::store::Store;
use crate::data::tasks::favorite_category;
use crate::model::llama::load::load;
use crate::model::scoring::{score_candidates, score_candidates_batch};
use crate::model::tokenizer::Tokenizer;
use crate::model::userllm::{Part, UserLlm, UserLlmConfig};
use crate::tb::EventWriter;
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::io::Write;
use std::time::Instant;
use tch::{Kind, Tensor};

pub const METRICS_FILE: &str = "finetune_metrics.json";
pub const TRAIN_LOG: &str = "finetune_log.jsonl";
/// The trained parts of the model after finetuning (safetensors, Hugging Face names for the LLM).
pub const WEIGHTS_FILE: &str = "finetune_weights.safetensors";
/// Evaluation cases scored together.
const EVAL_CHUNK: usize = 16;

#[derive(Debug, Clone, Serialize)]
pub struct Evaluated {
    pub who: String,
    pub accuracy: f64,
    pub cases: usize,
    /// Text tokens the LLM reads per example (prompt, or prompt + history text).
    pub prompt_tokens: f64,
    /// User-embedding positions per example (cross-attention keys or soft-prompt tokens).
    pub user_tokens: f64,
    /// Forward FLOPs per example (2 x multiply-adds of the LLM's matmuls over its tokens, plus the encoder's).
    pub gflops: f64,
    /// Measured wall time per example, scoring every candidate.
    pub ms: f64,
}

fn question(store: &Store) -> String {
    format!("Question: What is the user's favorite {}?\nAnswer:", store.manifest.category_label)
}

/// Next-token loss on the answer tokens of `(batch, seq)` sequences; returns (sum, count).
fn answer_loss(logits: &Tensor, tokens: &Tensor, answer_from: i64) -> (Tensor, i64) {
    let t = tokens.size()[1];
    let pred = logits.narrow(1, answer_from - 1, t - answer_from).to_kind(Kind::Float);
    let target = tokens.narrow(1, answer_from, t - answer_from);
    let v = pred.size()[2];
    let loss = pred.reshape([-1, v]).cross_entropy_loss::<Tensor>(&target.reshape([-1]), None, tch::Reduction::Sum, -100, 0.0);
    let count = target.ne(-100).sum(Kind::Int64).int64_value(&[]);
    (loss, count)
}

pub fn run(cfg: &RunConfig, w: &Worker) -> Result<Vec<Evaluated>> {
    let f = cfg.finetune.as_ref().context("no finetune section")?;
    let d = cfg.data.as_ref().context("finetune needs a data section")?;
    let enc_cfg = cfg.encoder.clone().unwrap_or_default();
    let store = Store::open(&d.store)?;
    let run_dir = cfg.run_dir();
    let lead = w.rank == 0;
    let tok = Tokenizer::from_dir(&f.model)?;
    let llm = load(&f.model, w.device, Kind::Float)?;
    let shape = encoder_shape(&store, &enc_cfg, d.window);
    tch::manual_seed(cfg.seed as i64 + 1);
    let ucfg = UserLlmConfig {
        integration: f.integration,
        cross_attention_layers: f.cross_attention_layers.clone(),
        perceiver: f.perceiver.clone(),
        projection: f.projection,
        strategy: f.strategy,
        lora: f.lora.clone(),
    };
    let model = UserLlm::new(llm, shape, &ucfg)?;
    let named = model.named_parameters();
    let (pre_dir, _) = checkpoint::latest(&run_dir)?.with_context(|| {
        format!("finetuning needs a pretrained encoder: no pretraining checkpoint in {} (add a pretrain section)", run_dir.join(checkpoint::DIR).display())
    })?;
    let copied = checkpoint::load_matching(&pre_dir, "encoder.", &named)?;
    let trainable: Vec<(String, Tensor)> = named.iter().filter(|(n, _)| Part::of(n).trains(f.strategy)).map(|(n, t)| (n.clone(), t.shallow_clone())).collect();
    let params: Vec<Tensor> = trainable.iter().map(|(_, t)| t.shallow_clone()).collect();
    let buckets = ddp::buckets(&params, cfg.dist.bucket_mb << 20);
    if let Some(pg) = &w.group {
        ddp::broadcast_parameters(pg, &params, &buckets)?;
    }
    let (n_train, n_all) = model.parameter_counts();
    if lead {
        eprintln!("finetune: {:?} {:?}, encoder from {} ({copied} tensors), {n_train} of {n_all} parameters train", f.integration, f.strategy, pre_dir.display());
    }

    // Answers: every genre/category name; the prompt asks for one.
    let names: Vec<(i32, String)> = store.vocab.category.iter().enumerate().skip(1).map(|(i, n)| (i as i32, n.clone())).collect();
    let answers: Vec<Vec<i64>> = names.iter().map(|(_, n)| tok.encode(&format!(" {n}"))).collect::<Result<_>>()?;
    let prompt = tok.encode(&question(&store))?;
    let eos = model.llm.config.eos_ids().first().copied().unwrap_or(0);

    // Training examples: windows over each user's training part, labelled by their favorite.
    let windows = training_windows(&store, WindowSpec { length: d.window, stride: d.stride });
    let labels: Vec<i32> = windows.iter().map(|w| favorite_category(&store, w.start..w.end)).collect();
    let usable: Vec<usize> = (0..windows.len()).filter(|&i| labels[i] > 0).collect();
    if usable.is_empty() {
        bail!("{}: no training window has a {}", d.store.display(), store.manifest.category_label);
    }
    let cases: Vec<_> = eval_cases(&store, Split::Test, d.window).into_iter().filter(|c| favorite_category(&store, c.history.clone()) > 0).take(f.eval_examples).collect();

    let mut results = Vec::new();
    // Evaluation runs on rank 0 alone (the others wait): give it every core.
    let cores = std::thread::available_parallelism().map(|n| n.get() as i32).unwrap_or(1);
    let train_threads = tch::get_num_threads();
    let evaluate = |label: &str, results: &mut Vec<Evaluated>| -> Result<()> {
        if lead {
            tch::set_num_threads(cores);
            results.push(evaluate_user_llm(&model, &store, &cases, &prompt, &answers, &names, d.window, label)?);
            tch::set_num_threads(train_threads);
        }
        Ok(())
    };
    evaluate("USER-LLM before finetuning", &mut results)?;

    let mut tb = if lead { Some(EventWriter::create(&run_dir.join("tb"))?) } else { None };
    let mut log = if lead { Some(std::fs::OpenOptions::new().create(true).append(true).open(run_dir.join(TRAIN_LOG))?) } else { None };
    // Optimizer state sharded across the ranks (ZeRO-2 style).
    let mut opt = ShardedAdamW::new(&trainable, w.rank, w.world, f.weight_decay);
    if lead {
        eprintln!("finetune: optimizer state {:.1} MiB per rank ({} rank(s))", opt.state_bytes() as f64 / (1 << 20) as f64, w.world);
    }
    let per_epoch = steps_per_epoch(usable.len(), w.world, f.batch_size) as u64;
    let shard = Sharding { world: w.world, rank: w.rank, batch_size: f.batch_size, seed: cfg.seed, shuffle: true };
    let mut epoch_cache: Option<(u64, Vec<Vec<usize>>)> = None;
    model.set_training(true);
    let t_train = Instant::now();
    for step in 0..f.steps {
        tch::manual_seed((cfg.seed as i64) ^ ((step as i64) << 8) ^ w.rank as i64 ^ 0x5eed);
        let (epoch, idx) = (step / per_epoch, (step % per_epoch) as usize);
        if epoch_cache.as_ref().map(|(e, _)| *e) != Some(epoch) {
            epoch_cache = Some((epoch, epoch_batches(usable.len(), shard, epoch)));
        }
        let batch: Vec<usize> = epoch_cache.as_ref().expect("filled").1[idx].iter().map(|&i| usable[i]).collect();
        let lr = lr_at(step, f.steps, f.warmup_steps, f.lr);
        let mut loss_sum = 0.0;
        let mut count = 0i64;
        if !batch.is_empty() {
            // Sequences: prompt, answer, end of text; padded with −100 targets.
            let longest = batch.iter().map(|&i| answers[(labels[i] - 1) as usize].len()).max().unwrap_or(1) + 1;
            let t = prompt.len() + longest;
            let mut toks = vec![eos; batch.len() * t];
            let mut tgt = vec![-100i64; batch.len() * t];
            for (r, &i) in batch.iter().enumerate() {
                let a = &answers[(labels[i] - 1) as usize];
                toks[r * t..r * t + prompt.len()].copy_from_slice(&prompt);
                toks[r * t + prompt.len()..r * t + prompt.len() + a.len()].copy_from_slice(a);
                for (j, &x) in a.iter().chain(std::iter::once(&eos)).enumerate() {
                    tgt[r * t + prompt.len() + j] = x;
                }
            }
            let toks = Tensor::from_slice(&toks).view([batch.len() as i64, t as i64]).to_device(w.device);
            let tgt = Tensor::from_slice(&tgt).view([batch.len() as i64, t as i64]).to_device(w.device);
            let hist: Vec<_> = batch.iter().map(|&i| crate::data::split::EvalCase { user: windows[i].user, history: windows[i].start..windows[i].end, target: windows[i].end }).collect();
            let refs: Vec<_> = hist.iter().collect();
            let feats = eval_batch(&store, &refs, &enc_cfg.features, d.window, w.device).inputs;
            let logits = crate::torch_runtime::with_autocast(w.device, || model.forward(&toks, &feats, true));
            let (sum, n) = answer_loss(&logits, &tgt, prompt.len() as i64);
            count = n;
            let global = w.sum(&[n as f64])?[0].max(1.0);
            (&sum / global).backward();
            loss_sum = sum.double_value(&[]);
        } else {
            w.sum(&[0.0])?;
        }
        let grad_norm = opt.step(w.group.as_ref(), lr, f.grad_clip)?;
        let totals = w.sum(&[loss_sum, count as f64])?;
        let loss = totals[0] / totals[1].max(1.0);
        if let Some(l) = &mut log {
            writeln!(l, "{}", serde_json::json!({"step": step + 1, "loss": loss, "lr": lr, "grad_norm": grad_norm, "elapsed_s": t_train.elapsed().as_secs_f64()}))?;
        }
        if (step + 1) % f.log_every == 0 || step + 1 == f.steps {
            if let Some(tb) = &mut tb {
                let mut s: Vec<(String, f32)> = vec![("finetune/loss".into(), loss as f32), ("finetune/lr".into(), lr as f32), ("finetune/grad_norm".into(), grad_norm as f32)];
                for (layer, g) in model.gates() {
                    s.push((format!("finetune/gate/layer_{layer:02}"), g as f32));
                }
                let refs: Vec<(&str, f32)> = s.iter().map(|(k, v)| (k.as_str(), *v)).collect();
                tb.scalars((step + 1) as i64, &refs)?;
                eprintln!("finetune step {}/{} loss {loss:.4} lr {lr:.2e}", step + 1, f.steps);
            }
        }
    }
    model.set_training(false);
    // The finetuned weights: every part that trained (the frozen LLM is the
    // model folder's), identical on all ranks after the all-gather.
    if lead {
        let path = run_dir.join(WEIGHTS_FILE);
        let sha = checkpoint::save_tensors(&path, &trainable)?;
        eprintln!("finetune: weights written to {} (SHA-256 {})", path.display(), &sha[..12]);
    }
    evaluate("USER-LLM finetuned", &mut results)?;
    if lead {
        // Majority class of the training labels, on the same cases.
        let mut counts = std::collections::HashMap::new();
        for &i in &usable {
            *counts.entry(labels[i]).or_insert(0usize) += 1;
        }
        let majority = counts.into_iter().max_by_key(|&(c, n)| (n, std::cmp::Reverse(c))).map(|(c, _)| c).unwrap_or(0);
        let hit = cases.iter().filter(|c| favorite_category(&store, c.history.clone()) == majority).count();
        results.push(Evaluated { who: format!("majority class ({})", store.vocab.category[majority as usize]), accuracy: hit as f64 / cases.len().max(1) as f64, cases: cases.len(), prompt_tokens: 0.0, user_tokens: 0.0, gflops: 0.0, ms: 0.0 });
        if f.text_prompt_baseline {
            tch::set_num_threads(cores);
            results.push(evaluate_text_prompt(&model, &store, &tok, &cases, &answers, &names, f.text_prompt_window)?);
        }
        let out = serde_json::json!({"task": "favorite-category", "integration": f.integration, "strategy": f.strategy, "steps": f.steps,
            "trainable_parameters": n_train, "parameters": n_all, "optimizer_state_bytes_per_rank": opt.state_bytes(), "world_size": w.world,
            "gates": model.gates(), "results": results});
        crate::fsutil::write_atomic(&run_dir.join(METRICS_FILE), serde_json::to_string_pretty(&out)?.as_bytes())?;
        if let Some(tb) = &mut tb {
            for r in &results {
                tb.text("finetune/results", f.steps as i64, &format!("{}: accuracy {:.4} on {} cases, {:.0} prompt + {:.0} user tokens, {:.3} GFLOPs, {:.1} ms per example", r.who, r.accuracy, r.cases, r.prompt_tokens, r.user_tokens, r.gflops, r.ms))?;
            }
            tb.flush()?;
        }
    }
    if let Some(pg) = &w.group {
        pg.barrier()?.wait()?;
    }
    Ok(results)
}

/// Matmul parameters of the LLM applied per token (embeddings are lookups; the
/// head is counted once per scored position).
fn llm_matmul_params(model: &UserLlm) -> f64 {
    let c = &model.llm.config;
    (c.parameter_count() - (c.vocab_size * c.hidden_size) as u64 * if c.tie_word_embeddings { 1 } else { 2 }) as f64
}

#[allow(clippy::too_many_arguments)]
fn evaluate_user_llm(
    model: &UserLlm,
    store: &Store,
    cases: &[crate::data::split::EvalCase],
    prompt: &[i64],
    answers: &[Vec<i64>],
    names: &[(i32, String)],
    window: usize,
    who: &str,
) -> Result<Evaluated> {
    let features: Vec<_> = model.encoder.shape.features.iter().map(|(f, _)| *f).collect();
    let t0 = Instant::now();
    let mut hits = 0;
    let mut user_tokens = 0.0;
    let mut predicted = std::collections::BTreeMap::new();
    let device = model.llm.device();
    // Every case has the same prompt: score a chunk of cases as one batch.
    for chunk in cases.chunks(EVAL_CHUNK) {
        let refs: Vec<_> = chunk.iter().collect();
        let b = eval_batch(store, &refs, &features, window, device);
        let (user, mask) = tch::no_grad(|| model.user_embeddings(&b.inputs, false));
        user_tokens += mask.sum(Kind::Int64).int64_value(&[]) as f64;
        let prompts = Tensor::from_slice(prompt).unsqueeze(0).expand([chunk.len() as i64, -1], false).to_device(device);
        let scores = score_candidates_batch(model.llm.layers.len(), &prompts, answers, 0, &mut |ids, cache, rows| {
            model.forward_with_user(ids, &user.index_select(0, rows), &mask.index_select(0, rows), Some(cache))
        });
        for (c, s) in chunk.iter().zip(&scores) {
            let best = s.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| names[i].0).unwrap_or(0);
            *predicted.entry(best).or_insert(0usize) += 1;
            if best == favorite_category(store, c.history.clone()) {
                hits += 1;
            }
        }
    }
    let n = cases.len().max(1) as f64;
    let top: Vec<String> = predicted.iter().map(|(c, k)| format!("{} {k}", store.vocab.category[*c as usize])).collect();
    eprintln!("{who}: predictions {}", top.join(", "));
    let user_tokens = user_tokens / n;
    let xattn_params: f64 = model.xattn.values().map(|_| 4.0 * (model.llm.config.hidden_size as f64).powi(2)).sum();
    let enc_params: f64 = model.vs.variables().iter().filter(|(k, _)| k.starts_with("encoder.") && !k.contains(".head.")).map(|(_, t)| t.numel() as f64).sum();
    let tokens = prompt.len() as f64;
    let gflops = (2.0 * llm_matmul_params(model) * tokens + 2.0 * xattn_params * tokens + 2.0 * enc_params * window as f64) / 1e9;
    Ok(Evaluated { who: who.into(), accuracy: hits as f64 / n, cases: cases.len(), prompt_tokens: tokens, user_tokens, gflops, ms: t0.elapsed().as_secs_f64() * 1000.0 / n })
}

fn evaluate_text_prompt(
    model: &UserLlm,
    store: &Store,
    tok: &Tokenizer,
    cases: &[crate::data::split::EvalCase],
    answers: &[Vec<i64>],
    names: &[(i32, String)],
    window: usize,
) -> Result<Evaluated> {
    let t0 = Instant::now();
    let mut hits = 0;
    let mut tokens = 0.0;
    let noun = crate::data::prompt::item_noun(store);
    for c in cases {
        let start = c.history.end - c.history.len().min(window);
        let text = format!("A user's {noun} history, oldest first: {}.\n{}", render_history(store, start..c.history.end), question(store));
        let prompt = tok.encode(&text)?;
        tokens += prompt.len() as f64;
        let scores = score_candidates(model.llm.layers.len(), &prompt, answers, 0, model.llm.device(), &mut |ids, cache, _| model.llm.forward(ids, Some(cache)));
        let best = scores.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| names[i].0).unwrap_or(0);
        if best == favorite_category(store, c.history.clone()) {
            hits += 1;
        }
    }
    let n = cases.len().max(1) as f64;
    let tokens = tokens / n;
    Ok(Evaluated {
        who: format!("TextPrompt (last {window} interactions as text, no finetuning)"),
        accuracy: hits as f64 / n,
        cases: cases.len(),
        prompt_tokens: tokens,
        user_tokens: 0.0,
        gflops: 2.0 * llm_matmul_params(model) * tokens / 1e9,
        ms: t0.elapsed().as_secs_f64() * 1000.0 / n,
    })
}
