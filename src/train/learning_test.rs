//! Finetuning learns: on a synthetic store where each user's favorite genre
//! follows from the history (every user watches mostly one genre), a few
//! dozen steps of a tiny USER-LLM beat the majority class by a wide margin,
//! and do not when the user embeddings are cut off (the cross-attention
//! gates held at 0), which shows the answer comes through the encoder.

use super::adamw::AdamW;
use super::finetune::{build, forward_backward, make_batch};
use crate::config::RunConfig;
use crate::data::catalog::Catalog;
use crate::data::formats::Format;
use crate::data::ingest::Filters;
use crate::data::prepare::{prepare, PrepareOptions};
use crate::data::split::Split;
use crate::data::store::Store;
use crate::model::tokenizer::Tokenizer;
use crate::model::userllm::{Part, Strategy};
use crate::rng::SplitMix64;
use crate::task::ask::{Asker, TargetText, TaskSpec};
use crate::task::evaluate::{evaluate_model, Gather, Share};
use crate::task::examples;
use std::path::Path;
use tch::{Device, Tensor};

const GENRES: [&str; 8] = ["Action", "Comedy", "Drama", "Horror", "Romance", "Thriller", "War", "Western"];

/// 80 movies, ten of each genre; 240 users, each watching the ten movies of
/// one genre (`user % 8`) and 4 of other genres, in a shuffled order.
fn synthetic_store(dir: &Path) -> Store {
    let mut movies = String::from("movieId,title,genres\n");
    for m in 0..80 {
        movies.push_str(&format!("{},Film {m} (1990),{}\n", m + 1, GENRES[m % 8]));
    }
    let mut ratings = String::from("userId,movieId,rating,timestamp\n");
    let mut rng = SplitMix64::new(9);
    for u in 0..240usize {
        let g = u % 8;
        let mut picks: Vec<usize> = (0..10).map(|i| g + 8 * i).collect();
        while picks.len() < 14 {
            let m = rng.below(80) as usize;
            if m % 8 != g && !picks.contains(&m) {
                picks.push(m);
            }
        }
        rng.shuffle(&mut picks);
        for (t, m) in picks.iter().enumerate() {
            ratings.push_str(&format!("{},{},4.0,{}\n", u + 1, m + 1, 1000 + t));
        }
    }
    let raw = dir.join("raw");
    std::fs::create_dir_all(&raw).unwrap();
    std::fs::write(raw.join("movies.csv"), movies).unwrap();
    std::fs::write(raw.join("ratings.csv"), ratings).unwrap();
    let out = dir.join("store");
    prepare(&PrepareOptions {
        inputs: vec![raw],
        out: out.clone(),
        format: Some(Format::named("movielens-csv").expect("a registered format")),
        filters: Filters { min_user_interactions: 1, min_item_interactions: 1 },
        skip_bad_lines: false,
        force: false,
        progress: false,
    })
    .unwrap();
    Store::open(&out).unwrap()
}

/// One process: its own answers are all there are.
struct Alone;

impl Gather for Alone {
    fn gather(&self, _name: &str, mine: Vec<u8>) -> anyhow::Result<Option<Vec<Vec<u8>>>> {
        Ok(Some(vec![mine]))
    }
}

/// Test accuracy after `steps` steps of full finetuning, with the gates
/// trained or held at 0; and the majority class's accuracy on the same questions.
fn finetune(dir: &Path, store: &Store, gates_train: bool, steps: usize) -> (f64, f64) {
    let yaml = format!(
        "name: learn\nseed: 3\ndata: {{store: {}, window: 10, stride: 5}}\nencoder: {{dim: 32, layers: 1, heads: 2}}\n\
         finetune: {{model: {}, task: favorite-category, integration: cross_attention, cross_attention_layers: all, \
         strategy: full, steps: {steps}, chat_template: false}}\n",
        store.dir.display(),
        dir.join("llm").display()
    );
    let path = dir.join(format!("learn-{gates_train}.yaml"));
    std::fs::write(&path, yaml).unwrap();
    let cfg: RunConfig = crate::config::load(&path, &[]).unwrap().config;
    let model = build(&cfg, store, Device::Cpu, false).unwrap();
    let trainable: Vec<(String, Tensor)> = model
        .named_parameters()
        .into_iter()
        .filter(|(n, _)| Part::of(n).trains(Strategy::Full) && (gates_train || !n.ends_with("alpha")))
        .collect();
    let cat = Catalog::of_store(store);
    let tok = Tokenizer::from_dir(&dir.join("llm")).unwrap();
    let spec = TaskSpec::from_config(&cfg).unwrap();
    let train = examples::training(store, spec.task, 10, 5).unwrap();
    let cases = examples::evaluation(store, &cat, &spec, Split::Test, 0);
    let asker = Asker::new(&model, &tok, &cat, spec).unwrap();
    let mut opt = AdamW::new(0.0);
    let mut order: Vec<usize> = (0..train.len()).collect();
    SplitMix64::new(5).shuffle(&mut order);
    model.set_training(true);
    for step in 0..steps {
        let idx: Vec<usize> = (0..16).map(|i| order[(step * 16 + i) % order.len()]).collect();
        let b = make_batch(&asker, store, &train, &idx, Device::Cpu).unwrap();
        forward_backward(&model, &asker, &b, b.answer_tokens as f64, Device::Cpu).unwrap();
        opt.step(&trainable, 3e-3).unwrap();
        for (_, p) in &model.named_parameters() {
            p.shallow_clone().zero_grad();
        }
    }
    model.set_training(false);
    let share = Share { rank: 0, world: 1, gather: &Alone };
    let (result, _) = evaluate_model(&asker, &store.vocab.user, &cases, "finetuned", &share).unwrap().unwrap();
    // The majority class of the training labels, on the same questions.
    let mut counts = [0usize; GENRES.len() + 1];
    for ex in &train {
        if let TargetText::Category(c) = ex.target {
            counts[c] += 1;
        }
    }
    let majority = (0..counts.len()).max_by_key(|&c| counts[c]).unwrap();
    let truths = cases.iter().filter(|c| c.truth == examples::Truth::Category(majority)).count();
    (result.metrics["accuracy"], truths as f64 / cases.len() as f64)
}

#[test]
fn a_few_dozen_steps_beat_the_majority_class_and_not_with_the_gates_held_shut() {
    let d = tempfile::tempdir().unwrap();
    let store = synthetic_store(d.path());
    let tokenizer = Path::new(env!("CARGO_MANIFEST_DIR")).join(".uorch/models/smollm2-135m-instruct/tokenizer.json");
    crate::model::tiny::write_tiny_model(&d.path().join("llm"), &tokenizer).unwrap();
    let (learned, majority) = finetune(d.path(), &store, true, 60);
    assert!(majority < 0.2, "eight balanced genres: majority {majority}");
    assert!(learned > majority + 0.4, "finetuned {learned} against majority {majority}");
    let (shut, _) = finetune(d.path(), &store, false, 60);
    assert!(shut < majority + 0.1, "with no user embedding reaching the LLM: {shut} against majority {majority}");
}
