//! Task examples built on evaluation cases: next item, favorite
//! genre/category, and review generation.

use super::split::{eval_cases, EvalCase, Split};
use super::store::Store;
use anyhow::{bail, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Task {
    /// Predict the next item.
    NextItem,
    /// Name the most frequent genre/category of the history window.
    FavoriteCategory,
    /// Write the user's review of the next item (stores with review text).
    Review,
}

impl Task {
    /// Refuse a task the store cannot pose: review generation needs review text.
    pub fn check_store(self, store: &Store) -> Result<()> {
        if self == Task::Review && store.arrays.review_offsets.is_none() {
            bail!(
                "{}: review generation needs review text, and this {} store has none",
                store.dir.display(),
                store.manifest.format
            );
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Item(i32),
    Category(i32),
    Review(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub case: EvalCase,
    pub target: Target,
}

/// Genre/category ids that count for an item: every listed one for flat sets
/// (MovieLens genres, Google categories), only the first for hierarchical
/// paths (Amazon), whose deeper levels would be counted twice.
fn counted_categories(store: &Store, item: usize) -> &[i32] {
    let all = store.item_categories(item);
    if store.manifest.category_structure == "path" {
        &all[..all.len().min(1)]
    } else {
        all
    }
}

/// The most frequent genre/category over the window's items. Ties go to the
/// one seen most recently in the window, then to the smaller id. `<none>` (id
/// 0) only when no item in the window has any.
pub fn favorite_category(store: &Store, window: std::ops::Range<usize>) -> i32 {
    category_counts(store, window).first().map(|&(c, _)| c).unwrap_or(0)
}

/// The genres/categories counted over the positions `over` (each item's
/// [`counted_categories`]), most frequent first, ties as in
/// [`favorite_category`]; with each one's count.
pub fn category_counts(store: &Store, over: impl IntoIterator<Item = usize>) -> Vec<(i32, usize)> {
    let mut count: std::collections::HashMap<i32, (usize, usize)> = std::collections::HashMap::new();
    for k in over {
        for &c in counted_categories(store, store.arrays.item[k] as usize) {
            let e = count.entry(c).or_insert((0, 0));
            e.0 += 1;
            e.1 = k;
        }
    }
    let mut v: Vec<(i32, (usize, usize))> = count.into_iter().collect();
    v.sort_by(|(ca, (na, la)), (cb, (nb, lb))| nb.cmp(na).then(lb.cmp(la)).then(ca.cmp(cb)));
    v.into_iter().map(|(c, (n, _))| (c, n)).collect()
}

/// Examples for `task` on the validation or test targets, with up to `length`
/// interactions of history each.
pub fn examples(store: &Store, task: Task, split: Split, length: usize) -> Result<Vec<Example>> {
    task.check_store(store)?;
    let mut out = Vec::new();
    for case in eval_cases(store, split, length) {
        let target = match task {
            Task::NextItem => Target::Item(store.arrays.item[case.target]),
            Task::FavoriteCategory => Target::Category(favorite_category(store, case.history.clone())),
            Task::Review => match store.review(case.target) {
                Some(text) => Target::Review(text.to_string()),
                None => continue,
            },
        };
        out.push(Example { case, target });
    }
    Ok(out)
}
