//! The words the LLM reads: the task's question (the same in training,
//! evaluation and serving), and TextPrompt, the baseline USER-LLM is compared
//! against, where the history is written out as text, e.g.
//! `Toy Story (1995) [Animation, Children's, Comedy] rated 4/5; ...`.

use crate::data::catalog::{Catalog, Interaction};
use crate::data::store::Store;
use crate::data::tasks::{Example, Target, Task};

/// One interaction: title, genres/categories in brackets (when known), rating.
pub fn render_interaction(cat: &Catalog, x: Interaction) -> String {
    let cats: Vec<&str> = cat.item_categories[x.item].iter().map(|&c| cat.categories[c as usize].as_str()).collect();
    let rating = &cat.ratings[x.rating];
    if cats.is_empty() {
        format!("{} rated {rating}/5", cat.title(x.item))
    } else {
        format!("{} [{}] rated {rating}/5", cat.title(x.item), cats.join(", "))
    }
}

/// A history, oldest first, interactions separated by `; `.
pub fn render_history(cat: &Catalog, history: &[Interaction]) -> String {
    history.iter().map(|&x| render_interaction(cat, x)).collect::<Vec<_>>().join("; ")
}

/// The question for `task`: a classification lists its options (every
/// category, in the catalog's order); a review names the item reviewed.
pub fn question(cat: &Catalog, task: Task, target_item: Option<usize>) -> String {
    match task {
        Task::NextItem => format!("Question: Which {} will the user choose next?\nAnswer:", cat.item_noun()),
        Task::FavoriteCategory => format!(
            "Question: What is the user's favorite {}? Options: {}.\nAnswer:",
            cat.category_label,
            cat.categories.get(1..).unwrap_or_default().join(", ")
        ),
        Task::Review => format!(
            "Question: Write the user's review of {}.\nAnswer:",
            target_item.map(|i| cat.title(i)).unwrap_or("the item")
        ),
    }
}

/// TextPrompt: the history written out, then the question.
pub fn text_prompt(cat: &Catalog, history: &[Interaction], question: &str) -> String {
    format!("A user's {} history, oldest first: {}.\n{question}", cat.item_noun(), render_history(cat, history))
}

/// The whole TextPrompt for an example.
pub fn task_prompt(store: &Store, cat: &Catalog, task: Task, ex: &Example) -> String {
    let target = store.arrays.item[ex.case.target] as usize;
    text_prompt(cat, &store.interactions(ex.case.history.clone()), &question(cat, task, Some(target)))
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
