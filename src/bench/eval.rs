//! Batched evaluation against asking one user at a time: the same
//! favorite-category questions on real data with the real LLM, answered by
//! [`Asker::ask`] per user and by [`Asker::ask_batch`], timed, with the
//! largest score difference between the two (which must stay within 1e-5).
//!
//! With `reference`, the cross-attention questions are also answered by
//! Hugging Face transformers (`benches/eval_reference.py`) from the same
//! weights, questions and batch size, which this module writes for it: its
//! examples/s beside uorch's, and the largest score difference, which shows
//! the two score the same model.

use crate::config::finetune::Scoring;
use crate::data::catalog::{Catalog, Interaction};
use crate::data::store::Store;
use crate::data::tasks::Task;
use crate::model::batches::encoder_shape;
use crate::model::llama::load::load;
use crate::model::lora::LoraConfig;
use crate::model::tokenizer::Tokenizer;
use crate::model::userllm::{Integration, ProjectionKind, Strategy, UserLlm, UserLlmConfig};
use crate::model::xattn::Placement;
use crate::task::ask::{Answer, Asker, Question, TaskSpec};
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

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
    /// The batched answers: each question's `(option id, score)`, best first.
    pub scores: Vec<Ranking>,
    pub reference: Option<Reference>,
}

/// One question's options `(id, score)`, best first.
pub type Ranking = Vec<(usize, f64)>;

/// The batched questions answered by transformers.
pub struct Reference {
    pub who: String,
    pub ms: f64,
    /// Largest option score difference from uorch's batched answers.
    pub max_diff: f64,
    pub answers_differ: usize,
    /// Its scores by option, in id order (option `i` has id `i + 1`).
    pub scores: Vec<Vec<f64>>,
}

/// A Python with torch + transformers and where the reference's inputs go.
pub struct ReferenceRun<'a> {
    pub python: &'a Path,
    pub dir: &'a Path,
}

fn scores(a: &Answer) -> Vec<(usize, f64)> {
    match a {
        Answer::Ranked(r) => r.clone(),
        Answer::Text(_) => Vec::new(),
    }
}

pub fn run(
    store_dir: &Path,
    model_dir: &Path,
    questions: usize,
    batch: usize,
    window: usize,
    reference: Option<ReferenceRun>,
) -> Result<Vec<Row>> {
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
        let batched: Vec<_> = batched.iter().map(|(a, _)| scores(a)).collect();
        let alone: Vec<_> = alone.iter().map(|(a, _)| scores(a)).collect();
        let (max_diff, answers_differ) = compare(&alone, &batched);
        let reference = match &reference {
            Some(r) if integration == Integration::CrossAttention => {
                Some(run_reference(r, &cfg, &asker, &qs, &batched, model_dir)?)
            }
            _ => None,
        };
        rows.push(Row {
            integration: name,
            questions: qs.len(),
            batch,
            ms_alone,
            ms_batched,
            max_diff,
            answers_differ,
            scores: batched,
            reference,
        });
    }
    Ok(rows)
}

/// Of two sets of rankings `(option id, score)`, the largest score
/// difference of any option and the questions whose best option differs.
pub fn compare(a: &[Ranking], b: &[Ranking]) -> (f64, usize) {
    let (mut max_diff, mut answers_differ) = (0.0f64, 0);
    for (a, b) in a.iter().zip(b) {
        answers_differ += usize::from(a.first().map(|x| x.0) != b.first().map(|x| x.0));
        for (i, s) in a {
            let other = b.iter().find(|x| x.0 == *i).map(|x| x.1).unwrap_or(f64::INFINITY);
            max_diff = max_diff.max((s - other).abs());
        }
    }
    (max_diff, answers_differ)
}

/// The same questions in transformers, from the same weights (`asker`'s
/// model, built from `cfg`) and batch size; `ours` are uorch's batched rankings.
fn run_reference(
    r: &ReferenceRun,
    cfg: &UserLlmConfig,
    asker: &Asker,
    qs: &[(&[Interaction], &Question)],
    ours: &[Ranking],
    model_dir: &Path,
) -> Result<Reference> {
    let model = asker.model;
    std::fs::create_dir_all(r.dir).with_context(|| format!("creating {}", r.dir.display()))?;
    let init: Vec<_> = model.vs.variables().into_iter().collect();
    crate::model::weights::save_tensors(&r.dir.join("init.safetensors"), &init)?;
    let prompts: Vec<Vec<i64>> = qs.iter().map(|(h, q)| asker.prompt(h, q)).collect::<Result<_>>()?;
    if prompts.iter().any(|p| p.len() != prompts[0].len()) {
        bail!("the reference batches prompts of one length; these differ (the history is in the prompt?)");
    }
    let histories: Vec<&[Interaction]> = qs.iter().map(|(h, _)| *h).collect();
    let mut tensors = vec![(
        "prompts".to_string(),
        Tensor::from_slice(&prompts.concat()).view([prompts.len() as i64, -1]).to_kind(Kind::Float),
    )];
    for (j, t) in asker.inputs(&histories).into_iter().enumerate() {
        tensors.push((format!("feature{j}"), t.to_device(Device::Cpu).to_kind(Kind::Float)));
    }
    crate::model::weights::save_tensors(&r.dir.join("questions.safetensors"), &tensors)?;
    let mut args = serde_json::json!({
        "dir": r.dir, "model": model_dir, "threads": tch::get_num_threads(), "batch": asker.batch,
        "answers": asker.category_answers(), "scoring": asker.spec.scoring,
    });
    super::finetune::merge(&mut args, super::finetune::user_side_args(model, cfg));
    eprintln!("transformers: the same {} questions ...", qs.len());
    let v = super::reference_json(r.python, "eval_reference.py", &args)?;
    let theirs: Vec<Vec<f64>> = serde_json::from_value(v["scores"].clone()).context("reference: no scores")?;
    let ranked: Vec<Ranking> = theirs.iter().map(|r| ranking(r)).collect();
    let (max_diff, answers_differ) = compare(ours, &ranked);
    let seconds = v["seconds"].as_f64().context("reference: no seconds")?;
    Ok(Reference {
        who: format!("HF transformers {}", v["transformers"].as_str().unwrap_or("?")),
        ms: seconds * 1000.0 / qs.len() as f64,
        max_diff,
        answers_differ,
        scores: theirs,
    })
}

/// Scores by option in id order (option `i` has id `i + 1`) → best first.
pub fn ranking(scores: &[f64]) -> Ranking {
    let mut r: Ranking = scores.iter().enumerate().map(|(i, &s)| (i + 1, s)).collect();
    r.sort_by(|a, b| b.1.total_cmp(&a.1));
    r
}

pub fn report(rows: &[Row]) -> String {
    let mut s = format!(
        "  {:<16} {:>9} {:>6} {:>12} {:>12} {:>8} {:>11} {:>14} {:>14}\n",
        "integration",
        "questions",
        "batch",
        "ms one each",
        "ms batched",
        "speed-up",
        "examples/s",
        "max |score Δ|",
        "answers differ"
    );
    for r in rows {
        s.push_str(&format!(
            "  {:<16} {:>9} {:>6} {:>12.1} {:>12.1} {:>7.2}x {:>11.2} {:>14.2e} {:>14}\n",
            r.integration,
            r.questions,
            r.batch,
            r.ms_alone,
            r.ms_batched,
            r.ms_alone / r.ms_batched,
            1000.0 / r.ms_batched,
            r.max_diff,
            r.answers_differ
        ));
    }
    for row in rows {
        if let Some(r) = &row.reference {
            s.push_str(&format!(
                "\n  {} batched, against {} (benches/eval_reference.py), same weights, questions and batch:\n",
                row.integration, r.who
            ));
            s.push_str(&format!(
                "    reference {:.1} ms/question ({:.2} examples/s); uorch {:.2}x; max |score Δ| {:.2e}; answers differ {}/{}\n",
                r.ms,
                1000.0 / r.ms,
                r.ms / row.ms_batched,
                r.max_diff,
                r.answers_differ,
                row.questions
            ));
        }
    }
    s
}
