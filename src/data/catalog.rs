//! What a model needs to know about items, apart from any interactions: raw
//! ids, titles, genres/categories and the rating vocabulary. A store has one;
//! an export carries one (`catalog.json`), so a served model can turn a list
//! of raw item ids into encoder inputs and prompt text without the store.

use super::store::Store;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Catalog {
    /// The store's source format (`movielens`, `amazon`, ...): prompt wording.
    pub format: String,
    /// `genre` or `category`.
    pub category_label: String,
    /// `flat` or `path` (hierarchical categories count only their first level).
    pub category_structure: String,
    /// Raw item id of each item index.
    pub items: Vec<String>,
    pub titles: Vec<Option<String>>,
    /// Category ids of each item, in listed order (the first is its primary one).
    pub item_categories: Vec<Vec<i32>>,
    /// Category names by id; id 0 is `<none>`.
    pub categories: Vec<String>,
    /// Rating names by id.
    pub ratings: Vec<String>,
    #[serde(skip)]
    index: HashMap<String, usize>,
}

/// One interaction of a history: item index and rating id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interaction {
    pub item: usize,
    pub rating: usize,
}

impl Catalog {
    pub fn of_store(s: &Store) -> Self {
        let n = s.items.len();
        let mut c = Catalog {
            format: s.manifest.format.clone(),
            category_label: s.manifest.category_label.clone(),
            category_structure: s.manifest.category_structure.clone(),
            items: s.vocab.item.clone(),
            titles: s.items.iter().map(|i| i.title.clone()).collect(),
            item_categories: (0..n).map(|i| s.item_categories(i).to_vec()).collect(),
            categories: s.vocab.category.clone(),
            ratings: s.vocab.rating.clone(),
            index: HashMap::new(),
        };
        c.build_index();
        c
    }

    fn build_index(&mut self) {
        self.index = self.items.iter().enumerate().map(|(i, r)| (r.clone(), i)).collect();
    }

    pub fn load(path: &Path) -> Result<Self> {
        let mut c: Catalog =
            serde_json::from_slice(&std::fs::read(path).with_context(|| format!("reading {}", path.display()))?)
                .with_context(|| format!("{}: not a uorch catalog", path.display()))?;
        if c.titles.len() != c.items.len() || c.item_categories.len() != c.items.len() {
            bail!("{}: items, titles and item_categories differ in length", path.display());
        }
        c.build_index();
        Ok(c)
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        Ok(crate::fsutil::write_atomic(path, &serde_json::to_vec(self)?)?)
    }

    /// The item's title, or its raw id when the metadata had none.
    pub fn title(&self, i: usize) -> &str {
        self.titles[i].as_deref().unwrap_or(&self.items[i])
    }

    /// The item's first listed category (0 = none): the per-interaction
    /// category feature the store records.
    pub fn primary_category(&self, i: usize) -> i32 {
        self.item_categories[i].first().copied().unwrap_or(0)
    }

    pub fn item_index(&self, raw: &str) -> Option<usize> {
        self.index.get(raw).copied()
    }

    pub fn rating_index(&self, name: &str) -> Option<usize> {
        self.ratings.iter().position(|r| r == name)
    }

    /// What the items are, for prompt wording.
    pub fn item_noun(&self) -> &'static str {
        match self.format.as_str() {
            "amazon" => "product",
            "google-local" => "place",
            _ => "movie",
        }
    }
}

impl Store {
    /// Interactions `range` of the timelines as (item, rating) pairs.
    pub fn interactions(&self, range: std::ops::Range<usize>) -> Vec<Interaction> {
        range
            .map(|k| Interaction { item: self.arrays.item[k] as usize, rating: self.arrays.rating[k] as usize })
            .collect()
    }
}
