//! Baselines a finetuned USER-LLM is compared with, evaluated on the same
//! test questions and with the same scoring as the model itself.

use super::ask::{Answer, Asker, Cost, Question, TargetText};
use super::candidates::rank;
use super::evaluate::{evaluate, evaluate_model, Evaluated, Share};
use super::examples::{EvalExample, TrainExample};
use super::ranking::popularity_scores;
use crate::data::catalog::Catalog;
use crate::data::split::leave_last_out;
use crate::data::store::Store;
use crate::data::tasks::{category_counts, Task};
use crate::rng::SplitMix64;
use anyhow::Result;

/// A result with its per-question predictions.
pub type WithPredictions = (Evaluated, Vec<serde_json::Value>);

/// Which of the model's own baselines to evaluate (the rule baselines always are).
pub struct Asked {
    /// The model before finetuning.
    pub before: bool,
    /// The zero-shot TextPrompt, besides a model that reads user embeddings.
    pub text_prompt: bool,
}

/// The model before finetuning and the baselines on the same test questions
/// (rank 0 gets them, with their predictions; the ranks of `share` answer
/// their part):
/// - the model before finetuning, first, where `asked.before` (of a
///   TextPrompt model that is the zero-shot TextPrompt, and named so);
/// - favorite category: the majority class of the training labels; genre
///   popularity over every user's training interactions; random; and the
///   genre-count oracle, which counts the genres of the very interactions the
///   label is computed from (the upper bound a model reading them can reach);
/// - next item: item popularity over every user's training interactions, and
///   random, over the same candidates;
/// - with `asked.text_prompt`, the same LLM zero-shot with the history as text.
pub fn baselines(
    asker: Asker,
    store: &Store,
    cat: &Catalog,
    train: &[TrainExample],
    cases: &[EvalExample],
    asked: Asked,
    share: &Share,
) -> Result<Option<Vec<WithPredictions>>> {
    let users = &store.vocab.user;
    let task = asker.spec.task;
    let fixed =
        |ranked: Vec<(usize, f64)>| move |_: &EvalExample| Ok((Answer::Ranked(ranked.clone()), Cost::default()));
    let reads_user = asker.integration.mode().reads_user();
    let mut out = Vec::new();
    if asked.before {
        let who = if reads_user { BEFORE.to_string() } else { text_prompt_zero_shot(asker.spec.text_window) };
        out.push(evaluate_model(&asker, users, cases, &who, share)?);
    }
    let random = random_ranking(asker.spec.seed, cat.categories.len());
    match task {
        Task::FavoriteCategory => {
            let mut counts = std::collections::BTreeMap::new();
            for ex in train {
                if let TargetText::Category(c) = ex.target {
                    *counts.entry(c).or_insert(0usize) += 1;
                }
            }
            let majority =
                counts.iter().max_by_key(|&(c, n)| (*n, std::cmp::Reverse(*c))).map(|(c, _)| *c).unwrap_or(0);
            let who = format!("majority class ({})", cat.categories[majority]);
            out.push(evaluate(cat, task, users, cases, &who, share, fixed(vec![(majority, 0.0)]))?);
            let everyone = (0..store.users()).flat_map(|u| leave_last_out(store.range(u)).train);
            let popular = counted(category_counts(store, everyone));
            let who = format!("popularity ({} counts over all training interactions)", cat.category_label);
            out.push(evaluate(cat, task, users, cases, &who, share, fixed(popular))?);
            out.push(evaluate(cat, task, users, cases, "random", share, |c| Ok(random(c)))?);
            let window = asker.spec.window;
            let who = format!("{}-count oracle (upper bound: counts the label's own interactions)", cat.category_label);
            out.push(evaluate(cat, task, users, cases, &who, share, |c| {
                let seen = c.positions.end - c.positions.len().min(window)..c.positions.end;
                Ok((Answer::Ranked(counted(category_counts(store, seen))), Cost::default()))
            })?);
        }
        Task::NextItem => {
            let pop = Vec::<f32>::try_from(popularity_scores(store))?;
            let who = "popularity (all training interactions)";
            out.push(evaluate(cat, task, users, cases, who, share, |c| {
                let Question::NextItem { candidates } = &c.question else { unreachable!("next-item questions") };
                Ok((Answer::Ranked(rank(candidates.iter().map(|&i| (i, pop[i] as f64)).collect())), Cost::default()))
            })?);
            out.push(evaluate(cat, task, users, cases, "random", share, |c| Ok(random(c)))?);
        }
        Task::Review => {}
    }
    if asked.text_prompt && reads_user {
        let who = text_prompt_zero_shot(asker.spec.text_window);
        out.push(evaluate_model(&asker.as_text_prompt(), users, cases, &who, share)?);
    }
    // Every entry is there on rank 0, none elsewhere.
    Ok(out.into_iter().collect())
}

/// The name of a USER-LLM's result before finetuning.
pub const BEFORE: &str = "USER-LLM before finetuning";

/// The name of the zero-shot TextPrompt's result (the same in every trial
/// that asks it, so a report finds it anywhere).
pub fn text_prompt_zero_shot(window: usize) -> String {
    format!("TextPrompt (last {window} interactions as text, no finetuning)")
}

/// Whether a result is a zero-shot TextPrompt's (see [`text_prompt_zero_shot`]).
pub fn is_text_prompt_zero_shot(who: &str) -> bool {
    who.starts_with("TextPrompt (") && who.ends_with(", no finetuning)")
}

/// Category ids with their counts as a ranking (already in order).
fn counted(counts: Vec<(i32, usize)>) -> Vec<(usize, f64)> {
    counts.into_iter().filter(|&(c, _)| c > 0).map(|(c, n)| (c as usize, n as f64)).collect()
}

/// The random baseline: each question's options (the categories, or its
/// candidates) in an order drawn from the seed and the question's user.
fn random_ranking(seed: u64, categories: usize) -> impl Fn(&EvalExample) -> (Answer, Cost) {
    move |c| {
        let mut options: Vec<usize> = match &c.question {
            Question::NextItem { candidates } => candidates.clone(),
            _ => (1..categories).collect(),
        };
        SplitMix64::for_stream(seed ^ 0x4a4d, c.user as u64).shuffle(&mut options);
        (Answer::Ranked(options.into_iter().map(|i| (i, 0.0)).collect()), Cost::default())
    }
}
