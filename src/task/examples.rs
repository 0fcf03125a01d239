//! Finetuning examples per task. Training: windows over each user's training
//! part, asking about the window (favorite genre/category) or about the
//! interaction after it (next item, its review). Evaluation: each user's
//! held-out test interaction with the history before it, as in pretraining.

use crate::data::catalog::{Catalog, Interaction};
use crate::data::split::{eval_cases, training_windows, EvalCase, Split, WindowSpec};
use crate::data::store::Store;
use crate::data::tasks::{favorite_category, Task};
use crate::rng::SplitMix64;
use crate::task::ask::{Question, TargetText, TaskSpec};
use crate::task::candidates::next_item_candidates;
use anyhow::{bail, Result};
use std::ops::Range;

pub struct TrainExample {
    pub history: Range<usize>,
    pub question: Question,
    pub target: TargetText,
}

pub fn training(store: &Store, task: Task, window: usize, stride: usize) -> Result<Vec<TrainExample>> {
    task.check_store(store)?;
    let mut out = Vec::new();
    for w in training_windows(store, WindowSpec { length: window, stride }) {
        let last = w.end - 1;
        let item = store.arrays.item[last] as usize;
        let ex = match task {
            // The label counts exactly the interactions the encoder reads: the
            // last `window` (a window holds one more, the next item's target).
            Task::FavoriteCategory => match favorite_category(store, w.end - (w.end - w.start).min(window)..w.end) {
                0 => None,
                c => Some(TrainExample {
                    history: w.end - (w.end - w.start).min(window)..w.end,
                    question: Question::FavoriteCategory,
                    target: TargetText::Category(c as usize),
                }),
            },
            _ if w.end - w.start < 2 => None,
            Task::NextItem => Some(TrainExample {
                history: w.start..last,
                question: Question::NextItem { candidates: Vec::new() },
                target: TargetText::Item(item),
            }),
            Task::Review => store.review(last).map(|t| TrainExample {
                history: w.start..last,
                question: Question::Review { item },
                target: TargetText::Review(t.to_string()),
            }),
        };
        out.extend(ex);
    }
    if out.is_empty() {
        bail!("{}: no training examples for {task:?} (windows of {window})", store.dir.display());
    }
    Ok(out)
}

/// The right answer of an evaluation question.
#[derive(Debug, Clone, PartialEq)]
pub enum Truth {
    Category(usize),
    Item(usize),
    Review(String),
}

pub struct EvalExample {
    pub user: usize,
    /// The most recent `max(window, text_window)` interactions before the held-out one.
    pub history: Vec<Interaction>,
    /// Where `history` lies in the store.
    pub positions: Range<usize>,
    pub question: Question,
    pub truth: Truth,
}

/// The question about a user's held-out interaction, as evaluation asks it
/// (None when the task has no answer for it: no genre, no review text).
pub fn eval_example(store: &Store, cat: &Catalog, spec: &TaskSpec, case: &EvalCase) -> Option<EvalExample> {
    let history = store.interactions(case.history.clone());
    let target = store.arrays.item[case.target] as usize;
    let (question, truth) = match spec.task {
        Task::FavoriteCategory => {
            let from = case.history.end - case.history.len().min(spec.window);
            match favorite_category(store, from..case.history.end) {
                0 => return None,
                c => (Question::FavoriteCategory, Truth::Category(c as usize)),
            }
        }
        Task::NextItem => {
            // Negatives come from outside everything the user did before the
            // target, not only the history the model is shown.
            let earlier = store.range(case.user as usize).start..case.target;
            let seen: Vec<usize> = store.arrays.item[earlier].iter().map(|&i| i as usize).collect();
            let candidates = next_item_candidates(cat.items.len(), &seen, target, spec.candidates, spec.seed);
            (Question::NextItem { candidates }, Truth::Item(target))
        }
        Task::Review => (Question::Review { item: target }, Truth::Review(store.review(case.target)?.to_string())),
    };
    Some(EvalExample { user: case.user as usize, history, positions: case.history.clone(), question, truth })
}

/// Test (or validation) questions: `limit` drawn uniformly without
/// replacement (seeded by the task's seed) from the users whose held-out
/// interaction of `split` has an answer, or all of them for `limit` 0 or at
/// least their number; in store order.
pub fn evaluation(store: &Store, cat: &Catalog, spec: &TaskSpec, split: Split, limit: usize) -> Vec<EvalExample> {
    let all: Vec<EvalExample> = eval_cases(store, split, spec.window.max(spec.text_window))
        .iter()
        .filter_map(|c| eval_example(store, cat, spec, c))
        .collect();
    if limit == 0 || limit >= all.len() {
        return all;
    }
    let mut order: Vec<usize> = (0..all.len()).collect();
    let stream = match split {
        Split::Test => TEST_DRAW,
        Split::Valid => VALID_DRAW,
    };
    SplitMix64::for_stream(spec.seed, stream).shuffle(&mut order);
    let mut keep = vec![false; all.len()];
    for &i in &order[..limit] {
        keep[i] = true;
    }
    all.into_iter().zip(keep).filter_map(|(e, k)| k.then_some(e)).collect()
}

/// The stream of the run's seed that draws the test users.
const TEST_DRAW: u64 = 0x7e57;
/// The one that draws the validation users.
const VALID_DRAW: u64 = 0x7a11d;
