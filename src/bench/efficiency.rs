//! The efficiency table: for histories of 50 / 100 / 200 interactions on real
//! data with the real tokenizer, what one forward pass over a user's context
//! costs when the history is text (TextPrompt) and when it is user embeddings
//! (USER-LLM with cross-attention, with and without a Perceiver, and as a soft
//! prompt): tokens, FLOPs and measured latency per example.

use crate::data::catalog::Catalog;
use crate::data::split::{eval_cases, Split};
use crate::data::store::Store;
use crate::data::tasks::Task;
use crate::model::batches::{encoder_shape, eval_batch};
use crate::model::cost;
use crate::model::llama::load::load;
use crate::model::llama::Llama;
use crate::model::lora::LoraConfig;
use crate::model::tokenizer::Tokenizer;
use crate::model::userllm::{Integration, PerceiverConfig, ProjectionKind, Strategy, UserLlm, UserLlmConfig};
use crate::model::xattn::Placement;
use crate::task::prompt::{question, text_prompt};
use anyhow::Result;
use std::path::Path;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

pub struct Row {
    pub window: usize,
    pub method: String,
    /// Tokens the LLM's layers process (text, plus soft-prompt embeddings).
    pub llm_tokens: f64,
    /// User-embedding positions the LLM attends to.
    pub user_tokens: f64,
    pub gflops: f64,
    pub ms: f64,
}

fn time_each(n: usize, mut f: impl FnMut(usize)) -> f64 {
    f(0); // warm-up
    let t = Instant::now();
    for i in 0..n {
        f(i);
    }
    t.elapsed().as_secs_f64() * 1000.0 / n as f64
}

pub fn run(store_dir: &Path, model_dir: &Path, windows: &[usize], cases: usize) -> Result<Vec<Row>> {
    let store = Store::open(store_dir)?;
    let tok = Tokenizer::from_dir(model_dir)?;
    let cat = Catalog::of_store(&store);
    let q_text = question(&cat, Task::NextItem, None);
    let question = tok.encode(&q_text)?;
    let mut rows = Vec::new();
    tch::manual_seed(0);
    for &window in windows {
        let cs: Vec<_> = eval_cases(&store, Split::Test, window).into_iter().take(cases).collect();
        let history = cs.iter().map(|c| c.history.len() as f64).sum::<f64>() / cs.len() as f64;
        // TextPrompt: the history written out, then the question.
        let llm: Llama = load(model_dir, Device::Cpu, Kind::Float)?;
        let prompts: Vec<Vec<i64>> = cs
            .iter()
            .map(|c| tok.encode(&text_prompt(&cat, &store.interactions(c.history.clone()), &q_text)))
            .collect::<Result<_>>()?;
        let tokens = prompts.iter().map(|p| p.len() as f64).sum::<f64>() / prompts.len() as f64;
        let ms = time_each(prompts.len(), |i| {
            let ids = Tensor::from_slice(&prompts[i]).unsqueeze(0);
            let _ = tch::no_grad(|| llm.forward(&ids, None)).select(1, -1);
        });
        let gflops =
            prompts.iter().map(|p| cost::llm(&llm.config, p.len() as f64)).sum::<f64>() / prompts.len() as f64 / 1e9;
        rows.push(Row { window, method: "TextPrompt".into(), llm_tokens: tokens, user_tokens: 0.0, gflops, ms });
        drop(llm);
        // USER-LLM variants over the same cases (untrained weights: cost does not depend on them).
        let enc = crate::config::run::EncoderConfig { dropout: 0.0, ..Default::default() };
        let features = enc.features.clone();
        let shape = encoder_shape(&store, &enc, window);
        let variants = [
            ("USER-LLM cross-attention", Integration::CrossAttention, None),
            ("USER-LLM cross-attention + Perceiver (16)", Integration::CrossAttention, Some(16)),
            ("USER-LLM soft prompt + Perceiver (16)", Integration::SoftPrompt, Some(16)),
        ];
        for (name, integration, latents) in variants {
            let cfg = UserLlmConfig {
                integration,
                cross_attention_layers: Placement::Named("all".into()),
                perceiver: latents.map(|k| PerceiverConfig {
                    latents: k,
                    layers: 2,
                    heads: 4,
                    keys: Default::default(),
                }),
                projection: ProjectionKind::Linear,
                strategy: Strategy::Enc,
                lora: LoraConfig::default(),
            };
            let model = UserLlm::new(load(model_dir, Device::Cpu, Kind::Float)?, shape.clone(), &cfg)?;
            let q = Tensor::from_slice(&question).unsqueeze(0);
            let ms = time_each(cs.len(), |i| {
                let b = eval_batch(&store, &[&cs[i]], &features, window, Device::Cpu);
                let _ = tch::no_grad(|| {
                    let (u, m) = model.user_embeddings(&b.inputs, false);
                    model.forward_with_user(&q, &u, &m, None)
                });
            });
            let user = latents.map(|k| k as f64).unwrap_or(history);
            let text = question.len() as f64;
            let llm_tokens = text + integration.mode().extra_positions(user);
            let gflops = cost::user_llm(&model, text, history) / 1e9;
            rows.push(Row { window, method: name.into(), llm_tokens, user_tokens: user, gflops, ms });
        }
    }
    Ok(rows)
}

pub fn report(rows: &[Row]) -> String {
    let mut s = format!(
        "  {:>6}  {:<42} {:>10} {:>11} {:>9} {:>9} {:>9} {:>9}\n",
        "window", "method", "LLM tokens", "user tokens", "GFLOPs", "FLOPs /", "ms", "time /"
    );
    for r in rows {
        let base = rows.iter().find(|b| b.window == r.window && b.method == "TextPrompt").expect("TextPrompt row");
        s.push_str(&format!(
            "  {:>6}  {:<42} {:>10.0} {:>11.0} {:>9.2} {:>8.1}x {:>9.1} {:>8.1}x\n",
            r.window,
            r.method,
            r.llm_tokens,
            r.user_tokens,
            r.gflops,
            base.gflops / r.gflops,
            r.ms,
            base.ms / r.ms
        ));
    }
    s
}
