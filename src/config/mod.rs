//! Typed configuration from YAML: presets (`include:`), command-line overrides
//! (`--set key.path=value`), validation, and errors that point at the text.
//!
//! Loading goes: parse every file into a position-carrying tree ([`tree`]) →
//! merge includes and overrides (later wins; maps merge key by key, everything
//! else is replaced) → deserialize the merged tree into a typed struct with
//! unknown keys denied → run the struct's range checks. Any error is mapped back
//! through its key path to the file, line and column that set the value.

mod defaults;
pub mod emit;
pub mod encoder;
mod error;
mod every_error;
pub mod finetune;
mod merge;
pub mod run;
pub mod tree;

pub use error::{ConfigError, ConfigErrors};
pub use merge::{apply_override, load_tree, preset_names};
pub use run::RunConfig;

/// A config value as it is spelled in YAML (`favorite-category`, `cross_attention`, ...).
pub fn value_name<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v).ok().and_then(|j| j.as_str().map(str::to_string)).unwrap_or_default()
}

use serde::de::DeserializeOwned;
use std::path::Path;
use tree::Node;

/// Output root used when a config names none (relative to the working folder).
pub const DEFAULT_OUTPUT_ROOT: &str = "checkpoints";

/// Range and consistency checks that types alone cannot express.
pub trait Validate {
    fn validate(&self, checks: &mut Checks);
}

/// Collects failed checks, each with the dotted key path it concerns.
#[derive(Default, Debug)]
pub struct Checks {
    failures: Vec<(String, String)>,
}

impl Checks {
    /// Record `expected` against `key` unless `ok`.
    pub fn check(&mut self, key: &str, ok: bool, expected: impl std::fmt::Display) {
        if !ok {
            self.failures.push((key.to_string(), format!("expected {expected}")));
        }
    }
}

/// A typed config together with the merged tree it came from (which knows
/// where each value was written, for dumps with origins).
#[derive(Debug, Clone)]
pub struct Resolved<T> {
    pub config: T,
    pub tree: Node,
}

/// Load `path` with its includes, apply `overrides` (`key.path=value`), and
/// deserialize and validate it as `T`.
pub fn load<T: DeserializeOwned + Validate>(path: &Path, overrides: &[String]) -> Result<Resolved<T>, ConfigErrors> {
    let tree = merge::load_tree(path, overrides)?;
    let config = from_tree::<T>(&tree)?;
    Ok(Resolved { config, tree })
}

/// Deserialize and validate a merged tree.
pub fn from_tree<T: DeserializeOwned + Validate>(tree: &Node) -> Result<T, ConfigErrors> {
    match check_tree::<T>(tree) {
        (Some(config), errors) if errors.is_empty() => Ok(config),
        (_, errors) => Err(ConfigErrors(errors)),
    }
}

/// Every problem of a merged tree: each type error (the first at each key),
/// then each out-of-range value, and the config (patched where it had type
/// errors; `None` when the document was beyond patching) for further checks.
pub fn check_tree<T: DeserializeOwned + Validate>(tree: &Node) -> (Option<T>, Vec<ConfigError>) {
    let (config, mut errors) = every_error::deserialize::<T>(tree);
    if let Some(config) = &config {
        let mut checks = Checks::default();
        config.validate(&mut checks);
        let failures: Vec<_> = checks.failures.into_iter().filter(|(k, _)| !covered(&errors, k)).collect();
        errors.extend(failures.into_iter().map(|(key, message)| ConfigError::at_key(tree, &key, message)));
    }
    (config, errors)
}

/// Whether `key` is at or under a key some error already names: its value
/// there is a stand-in, so further checks of it would only mislead.
pub fn covered(errors: &[ConfigError], key: &str) -> bool {
    errors.iter().any(|e| {
        let t = &e.key;
        t.is_empty() || key == t || key.starts_with(&format!("{t}.")) || key.starts_with(&format!("{t}["))
    })
}
