//! Batched evaluation against asking one user at a time: the same
//! favorite-category questions on real data with the real LLM, answered by
//! [`Asker::ask`] per user and by [`Asker::ask_batch`], timed, with the
//! largest score difference between the two (which must stay within 1e-5).

use crate::config::finetune::Scoring;
use crate::data::catalog::Catalog;
use crate::data::store::Store;
use crate::data::tasks::Task;
use crate::model::batches::encoder_shape;
use crate::model::llama::load::load;
use crate::model::lora::LoraConfig;
use crate::model::tokenizer::Tokenizer;
use crate::model::userllm::{Integration, ProjectionKind, Strategy, UserLlm, UserLlmConfig};
use crate::model::xattn::Placement;
use crate::task::ask::{Answer, Asker, TaskSpec};
use anyhow::Result;
use std::path::Path;
use std::time::Instant;
use tch::{Device, Kind};

pub struct Row {
    pub integration: &'static str,
    pub questions: usize,
    pub batch: usize,
    pub ms_alone: f64,
    pub ms_batched: f64,
    /// Largest difference of any option's score between the two.
    pub max_diff: f64,
    /// Questions whose best answer differs between the two.
    pub answers_differ: usize,
}

fn scores(a: &Answer) -> Vec<(usize, f64)> {
    match a {
        Answer::Ranked(r) => r.clone(),
        Answer::Text(_) => Vec::new(),
    }
}

pub fn run(store_dir: &Path, model_dir: &Path, questions: usize, batch: usize, window: usize) -> Result<Vec<Row>> {
    let store = Store::open(store_dir)?;
    let cat = Catalog::of_store(&store);
    let tok = Tokenizer::from_dir(model_dir)?;
    let spec = TaskSpec {
        task: Task::FavoriteCategory,
        window,
        text_window: window,
        candidates: 0,
        max_new_tokens: 1,
        seed: 0,
        scoring: Scoring::Mean,
        chat_template: true,
    };
    let cases = crate::task::examples::evaluation(&store, &cat, &spec, crate::data::split::Split::Test, questions);
    let qs: Vec<_> = cases.iter().map(|c| (c.history.as_slice(), &c.question)).collect();
    let enc = crate::config::run::EncoderConfig { dropout: 0.0, ..Default::default() };
    let mut rows = Vec::new();
    for (name, integration) in
        [("cross-attention", Integration::CrossAttention), ("soft prompt", Integration::SoftPrompt)]
    {
        let cfg = UserLlmConfig {
            integration,
            cross_attention_layers: Placement::Named("every_3".into()),
            perceiver: None,
            projection: ProjectionKind::Linear,
            strategy: Strategy::Enc,
            lora: LoraConfig::default(),
        };
        tch::manual_seed(0);
        let model =
            UserLlm::new(load(model_dir, Device::Cpu, Kind::Float)?, encoder_shape(&store, &enc, window), &cfg)?;
        // Open gates, as after finetuning, so each user's embeddings count.
        for b in model.xattn.values() {
            let _ = tch::no_grad(|| b.alpha.shallow_clone().fill_(0.5));
        }
        let mut asker = Asker::new(&model, &tok, &cat, spec.clone())?;
        asker.batch = batch;
        asker.ask(qs[0].0, qs[0].1)?; // warm-up
        let t = Instant::now();
        let alone: Vec<_> = qs.iter().map(|(h, q)| asker.ask(h, q)).collect::<Result<_>>()?;
        let ms_alone = t.elapsed().as_secs_f64() * 1000.0 / qs.len() as f64;
        let t = Instant::now();
        let batched = asker.ask_batch(&qs)?;
        let ms_batched = t.elapsed().as_secs_f64() * 1000.0 / qs.len() as f64;
        let (mut max_diff, mut answers_differ) = (0.0f64, 0);
        for ((a, _), (b, _)) in alone.iter().zip(&batched) {
            let (a, b) = (scores(a), scores(b));
            answers_differ += usize::from(a.first().map(|x| x.0) != b.first().map(|x| x.0));
            for (i, s) in &a {
                let other = b.iter().find(|x| x.0 == *i).map(|x| x.1).unwrap_or(f64::INFINITY);
                max_diff = max_diff.max((s - other).abs());
            }
        }
        rows.push(Row {
            integration: name,
            questions: qs.len(),
            batch,
            ms_alone,
            ms_batched,
            max_diff,
            answers_differ,
        });
    }
    Ok(rows)
}

pub fn report(rows: &[Row]) -> String {
    let mut s = format!(
        "  {:<16} {:>9} {:>6} {:>12} {:>12} {:>8} {:>14} {:>14}\n",
        "integration", "questions", "batch", "ms one each", "ms batched", "speed-up", "max |score Δ|", "answers differ"
    );
    for r in rows {
        s.push_str(&format!(
            "  {:<16} {:>9} {:>6} {:>12.1} {:>12.1} {:>7.2}x {:>14.2e} {:>14}\n",
            r.integration,
            r.questions,
            r.batch,
            r.ms_alone,
            r.ms_batched,
            r.ms_alone / r.ms_batched,
            r.max_diff,
            r.answers_differ
        ));
    }
    s
}
