//! A question to an export about one user, from the command line: the
//! history comes from a prepared store (the user's test question, exactly as
//! evaluation asked it) or from a JSON file of raw item ids and ratings.

use super::export::Loaded;
use crate::data::catalog::{Catalog, Interaction};
use crate::data::split::{eval_cases, Split};
use crate::data::store::Store;
use crate::data::tasks::Task;
use crate::task::ask::{Asker, Question};
use crate::task::evaluate::prediction_json;
use crate::task::examples::{eval_example, Truth};
use anyhow::{bail, Context, Result};
use std::path::PathBuf;

pub enum Source {
    /// The user's held-out test question in a store.
    Store { store: PathBuf, user: String },
    /// `[{"item": "50", "rating": "4"}, ...]`, oldest first.
    File(PathBuf),
}

pub struct Request {
    pub source: Source,
    /// Review: the item to review (raw id); required with a history file.
    pub item: Option<String>,
    /// Next item: candidates to rank (raw ids); default every item not in the history.
    pub candidates: Option<Vec<String>>,
}

fn map_item(to: &Catalog, raw: &str, what: &str) -> Result<usize> {
    to.item_index(raw).with_context(|| format!("{what}: item {raw:?} is not in the export's catalog"))
}

fn read_history(path: &PathBuf, cat: &Catalog) -> Result<Vec<Interaction>> {
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).with_context(|| format!("reading {}", path.display()))?)
            .with_context(|| format!("{}: not JSON", path.display()))?;
    let list = v
        .as_array()
        .with_context(|| format!("{}: expected a list of {{\"item\": ID, \"rating\": R}}", path.display()))?;
    list.iter()
        .enumerate()
        .map(|(i, x)| {
            let text = |k: &str| x.get(k).map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()));
            let (Some(item), Some(rating)) = (text("item"), text("rating")) else {
                bail!("{}: entry {i}: expected {{\"item\": ID, \"rating\": R}}, found {x}", path.display());
            };
            let r = cat.rating_index(&rating).with_context(|| {
                format!("{}: entry {i}: rating {rating:?} is not one of {:?}", path.display(), cat.ratings)
            })?;
            Ok(Interaction { item: map_item(cat, &item, &format!("{}: entry {i}", path.display()))?, rating: r })
        })
        .collect()
}

/// The answer as the JSON line evaluation writes to `finetune_predictions.jsonl`.
pub fn ask(loaded: &Loaded, req: &Request) -> Result<serde_json::Value> {
    let cat = &loaded.catalog;
    let spec = &loaded.spec.task;
    let (user, history, question, truth) = match &req.source {
        Source::Store { store, user } => {
            let s = Store::open(store)?;
            let sc = Catalog::of_store(&s);
            let u = s.user_index(user).with_context(|| format!("no user {user:?} in {}", store.display()))?;
            let case = eval_cases(&s, Split::Test, spec.window.max(spec.text_window))
                .into_iter()
                .find(|c| c.user as usize == u)
                .with_context(|| format!("user {user:?} has no test interaction in {}", store.display()))?;
            let ex = eval_example(&s, &sc, spec, &case).with_context(|| {
                format!(
                    "user {user:?}: the task has no answer for their test interaction (no {} or review text)",
                    sc.category_label
                )
            })?;
            // Store indices → the export's, through raw ids.
            let to = |i: usize| map_item(cat, &sc.items[i], "history");
            let history = ex
                .history
                .iter()
                .map(|x| Ok(Interaction { item: to(x.item)?, rating: x.rating }))
                .collect::<Result<Vec<_>>>()?;
            let question = match ex.question {
                Question::FavoriteCategory => Question::FavoriteCategory,
                Question::NextItem { candidates } => {
                    Question::NextItem { candidates: candidates.into_iter().map(to).collect::<Result<_>>()? }
                }
                Question::Review { item } => Question::Review { item: to(item)? },
            };
            let truth = match ex.truth {
                Truth::Item(i) => Truth::Item(to(i)?),
                t => t,
            };
            (user.clone(), history, question, Some(truth))
        }
        Source::File(path) => {
            let history = read_history(path, cat)?;
            let question = match spec.task {
                Task::FavoriteCategory => Question::FavoriteCategory,
                Task::NextItem => Question::NextItem {
                    candidates: match &req.candidates {
                        Some(c) => c.iter().map(|r| map_item(cat, r, "--candidates")).collect::<Result<_>>()?,
                        None => {
                            let seen: std::collections::HashSet<usize> = history.iter().map(|x| x.item).collect();
                            (0..cat.items.len()).filter(|i| !seen.contains(i)).collect()
                        }
                    },
                },
                Task::Review => Question::Review {
                    item: map_item(
                        cat,
                        req.item.as_deref().context("a review needs --item ID (the item to review)")?,
                        "--item",
                    )?,
                },
            };
            (path.display().to_string(), history, question, None)
        }
    };
    let asker = Asker::new(&loaded.model, &loaded.tok, cat, spec.clone())?;
    let (answer, cost) = asker.ask(&history, &question)?;
    Ok(prediction_json(cat, spec.task, &user, &answer, truth.as_ref(), &cost))
}
