//! Finetuning examples per task. Training: windows over each user's training
//! part, asking about the window (favorite genre/category) or about the
//! interaction after it (next item, its review). Evaluation: each user's
//! held-out test interaction with the history before it, as in pretraining.

use crate::data::catalog::{Catalog, Interaction};
use crate::data::split::{eval_cases, training_windows, EvalCase, Split, WindowSpec};
use crate::data::store::Store;
use crate::data::tasks::{favorite_category, Task};
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
            Task::FavoriteCategory => match favorite_category(store, w.start..w.end) {
                0 => None,
                c => Some(TrainExample {
                    history: w.start..w.end,
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
        Task::NextItem => (
            Question::NextItem {
                candidates: next_item_candidates(cat.items.len(), &history, target, spec.candidates, spec.seed),
            },
            Truth::Item(target),
        ),
        Task::Review => (Question::Review { item: target }, Truth::Review(store.review(case.target)?.to_string())),
    };
    Some(EvalExample { user: case.user as usize, history, question, truth })
}

/// Test cases in store order (the first `limit` with an answer).
pub fn evaluation(store: &Store, cat: &Catalog, spec: &TaskSpec, limit: usize) -> Vec<EvalExample> {
    eval_cases(store, Split::Test, spec.window.max(spec.text_window))
        .iter()
        .filter_map(|c| eval_example(store, cat, spec, c))
        .take(limit)
        .collect()
}
