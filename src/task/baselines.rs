//! Baselines a finetuned USER-LLM is compared with, evaluated on the same
//! test questions and with the same scoring as the model itself.

use super::ask::{Answer, Asker, Cost, Question, TargetText};
use super::candidates::rank;
use super::evaluate::{evaluate, Evaluated, Share};
use super::examples::{EvalExample, TrainExample};
use crate::data::catalog::Catalog;
use crate::data::store::Store;
use crate::data::tasks::Task;
use anyhow::Result;

/// The model before finetuning and the baselines on the same test questions:
/// the majority class (favorite category), popularity over the same candidates
/// (next item), and, with `text_prompt`, the same LLM zero-shot with the
/// history as text. The ranks of `share` answer their part; rank 0 gets the
/// results.
pub fn baselines(
    asker: Asker,
    store: &Store,
    cat: &Catalog,
    train: &[TrainExample],
    cases: &[EvalExample],
    text_prompt: bool,
    share: &Share,
) -> Result<Option<Vec<Evaluated>>> {
    let users = &store.vocab.user;
    let task = asker.spec.task;
    let result = |r: Option<(Evaluated, _)>| r.map(|(e, _)| e);
    let mut out = vec![result(evaluate(cat, task, users, cases, "USER-LLM before finetuning", share, |c| {
        asker.ask(&c.history, &c.question)
    })?)];
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
            out.push(result(evaluate(cat, task, users, cases, &who, share, |_| {
                Ok((Answer::Ranked(vec![(majority, 0.0)]), Cost::default()))
            })?));
        }
        Task::NextItem => {
            // Popularity among training interactions, over the same candidates.
            let mut pop = vec![0.0f64; cat.items.len()];
            for ex in train {
                if let TargetText::Item(i) = ex.target {
                    pop[i] += 1.0;
                }
            }
            out.push(result(evaluate(cat, task, users, cases, "popularity", share, |c| {
                let Question::NextItem { candidates } = &c.question else { unreachable!("next-item questions") };
                Ok((Answer::Ranked(rank(candidates.iter().map(|&i| (i, pop[i])).collect())), Cost::default()))
            })?));
        }
        Task::Review => {}
    }
    if text_prompt && asker.integration.mode().reads_user() {
        let window = asker.spec.text_window;
        let zero_shot = asker.as_text_prompt();
        let who = format!("TextPrompt (last {window} interactions as text, no finetuning)");
        out.push(result(evaluate(cat, task, users, cases, &who, share, |c| zero_shot.ask(&c.history, &c.question))?));
    }
    // Every entry is there on rank 0, none elsewhere.
    Ok(out.into_iter().collect())
}
