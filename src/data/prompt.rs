//! TextPrompt: a history written out as text, the baseline USER-LLM is
//! compared against, e.g.
//! `Toy Story (1995) [Animation, Children's, Comedy] rated 4/5; ...`.

use super::store::Store;
use super::tasks::{Example, Target, Task};

/// What the items of a format are, for prompt wording.
pub fn item_noun(store: &Store) -> &'static str {
    match store.manifest.format.as_str() {
        "amazon" => "product",
        "google-local" => "place",
        _ => "movie",
    }
}

/// One interaction: title, genres/categories in brackets (when known), rating.
pub fn render_interaction(store: &Store, k: usize) -> String {
    let item = store.arrays.item[k] as usize;
    let cats: Vec<&str> = store.item_categories(item).iter().map(|&c| store.vocab.category[c as usize].as_str()).collect();
    let rating = &store.vocab.rating[store.arrays.rating[k] as usize];
    if cats.is_empty() {
        format!("{} rated {rating}/5", store.title(item))
    } else {
        format!("{} [{}] rated {rating}/5", store.title(item), cats.join(", "))
    }
}

/// A history, oldest first, interactions separated by `; `.
pub fn render_history(store: &Store, range: std::ops::Range<usize>) -> String {
    range.map(|k| render_interaction(store, k)).collect::<Vec<_>>().join("; ")
}

/// The whole TextPrompt for an example: the history, then the task's question.
pub fn task_prompt(store: &Store, task: Task, ex: &Example) -> String {
    let noun = item_noun(store);
    let history = render_history(store, ex.case.history.clone());
    let question = match (task, &ex.target) {
        (Task::NextItem, _) => format!("Which {noun} will the user choose next?"),
        (Task::FavoriteCategory, _) => format!("What is the user's favorite {}?", store.manifest.category_label),
        (Task::Review, _) => format!("Write the user's review of {}.", store.title(store.arrays.item[ex.case.target] as usize)),
    };
    format!("A user's {noun} history, oldest first: {history}.\n{question}")
}

/// The answer text a model should produce for an example.
pub fn target_text(store: &Store, ex: &Example) -> String {
    match &ex.target {
        Target::Item(i) => store.title(*i as usize).to_string(),
        Target::Category(c) => store.vocab.category[*c as usize].clone(),
        Target::Review(t) => t.clone(),
    }
}

/// Counts tokens with an LLM's `tokenizer.json` (Hugging Face format).
pub struct TokenCounter(tokenizers::Tokenizer);

impl TokenCounter {
    pub fn from_file(path: &std::path::Path) -> anyhow::Result<Self> {
        tokenizers::Tokenizer::from_file(path)
            .map(Self)
            .map_err(|e| anyhow::anyhow!("{}: not a tokenizer.json: {e}", path.display()))
    }

    /// Tokens of `text` without special tokens.
    pub fn count(&self, text: &str) -> anyhow::Result<usize> {
        self.0.encode(text, false).map(|e| e.len()).map_err(|e| anyhow::anyhow!("tokenizing: {e}"))
    }
}
