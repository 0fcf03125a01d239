//! The input files of `uorch data prepare`: folders expanded into files, files
//! found by name, and JSON-lines files told apart by their first record.

use crate::data::lines::Lines;
use anyhow::{bail, Context, Result};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The files of one dataset, by role.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    pub interactions: Vec<PathBuf>,
    pub metadata: Vec<PathBuf>,
    /// ml-100k's optional genre list.
    pub genre_list: Option<PathBuf>,
}

impl Inputs {
    pub fn all(&self) -> Vec<&PathBuf> {
        self.interactions.iter().chain(&self.metadata).chain(&self.genre_list).collect()
    }
}

/// The files named on the command line, folders expanded one level, sorted
/// within each folder for determinism.
pub struct Files(Vec<PathBuf>);

impl Files {
    pub fn expand(paths: &[PathBuf]) -> Result<Files> {
        let mut files = Vec::new();
        for p in paths {
            if p.is_dir() {
                let mut inner: Vec<PathBuf> = std::fs::read_dir(p)
                    .with_context(|| format!("cannot list {}", p.display()))?
                    .flatten()
                    .map(|e| e.path())
                    .filter(|f| f.is_file())
                    .collect();
                inner.sort();
                files.extend(inner);
            } else if p.is_file() {
                files.push(p.clone());
            } else {
                bail!("{}: no such file or folder", p.display());
            }
        }
        Ok(Files(files))
    }

    /// The file called `name` (or `name.gz`).
    pub fn named(&self, name: &str) -> Option<PathBuf> {
        self.0.iter().find(|f| base_name(f) == name).cloned()
    }

    /// The files whose name (without `.gz`) ends with `suffix`.
    pub fn ending(&self, suffix: &str) -> Vec<PathBuf> {
        self.0.iter().filter(|f| base_name(f).ends_with(suffix)).cloned().collect()
    }

    /// `.json`, `.jsonl` and `.ndjson` files (plain or `.gz`).
    pub fn json(&self) -> impl Iterator<Item = &PathBuf> {
        self.0.iter().filter(|f| {
            let n = base_name(f);
            n.ends_with(".json") || n.ends_with(".jsonl") || n.ends_with(".ndjson")
        })
    }

    /// Whether the first record of some JSON-lines file satisfies `test`.
    pub fn any_json(&self, test: impl Fn(&Keys) -> bool) -> Result<bool> {
        for f in self.json() {
            if test(&first_record_keys(f)?) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    pub fn names(&self) -> Vec<String> {
        self.0.iter().map(|f| file_name(f)).collect()
    }
}

pub fn file_name(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// The name without `.gz`.
pub fn base_name(p: &Path) -> String {
    let n = file_name(p);
    n.strip_suffix(".gz").map(str::to_string).unwrap_or(n)
}

/// The keys of a JSON-lines file's first record; empty when it is not an object.
pub type Keys = BTreeSet<String>;

pub fn first_record_keys(path: &Path) -> Result<Keys> {
    let mut lines = Lines::open(path)?;
    let Some(first) = lines.next_line()? else { return Ok(Keys::new()) };
    Ok(match serde_json::from_slice::<serde_json::Value>(first) {
        Ok(serde_json::Value::Object(obj)) => obj.keys().cloned().collect(),
        _ => Keys::new(),
    })
}

/// How a JSON-lines dataset tells its reviews from its metadata, by the keys
/// of each file's first record.
pub struct JsonRoles {
    pub format: &'static str,
    pub is_review: fn(&Keys) -> bool,
    pub is_meta: fn(&Keys) -> bool,
    /// The review fields that are read, for the message when none is found.
    pub review_keys: &'static str,
}

impl JsonRoles {
    /// Whether some file looks like this dataset's reviews or metadata.
    pub fn recognises(&self, files: &Files) -> Result<bool> {
        files.any_json(|k| (self.is_review)(k) || (self.is_meta)(k))
    }

    /// Every JSON-lines file as reviews or metadata; any other one is an error.
    pub fn inputs(&self, files: &Files) -> Result<Inputs> {
        let mut inputs = Inputs::default();
        for f in files.json() {
            let keys = first_record_keys(f)?;
            if (self.is_review)(&keys) {
                inputs.interactions.push(f.clone());
            } else if (self.is_meta)(&keys) {
                inputs.metadata.push(f.clone());
            } else {
                let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
                bail!(
                    "{}: not {} reviews or metadata (its first record has the keys [{}])",
                    f.display(),
                    self.format,
                    keys.join(", ")
                );
            }
        }
        if inputs.interactions.is_empty() {
            bail!("no {} reviews file among the inputs (JSON lines with {})", self.format, self.review_keys);
        }
        Ok(inputs)
    }
}
