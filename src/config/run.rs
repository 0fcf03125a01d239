//! The configuration of one run (a trial): what `uorch launch RUN.yaml` executes.
//! Later stages add their sections here; every field is used by some code path.

use super::{Checks, Validate, DEFAULT_OUTPUT_ROOT};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Run name; the run's folder is `<output_root>/<name>`.
    pub name: String,
    /// Where run folders are created (relative paths: from the working folder).
    #[serde(default = "default_output_root")]
    pub output_root: PathBuf,
    /// Seed for every random number generator of the run.
    #[serde(default)]
    pub seed: u64,
    /// CPU threads libtorch uses per process for intra-op work; 0 = its default.
    #[serde(default)]
    pub cpu_threads: u32,
}

fn default_output_root() -> PathBuf {
    PathBuf::from(DEFAULT_OUTPUT_ROOT)
}

/// Upper bound for `cpu_threads`: beyond this a value is a typo, not a machine.
pub const MAX_CPU_THREADS: u32 = 1024;

/// A name usable as one folder name on any file system we run on.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '='))
}

impl Validate for RunConfig {
    fn validate(&self, checks: &mut Checks) {
        checks.check(
            "name",
            is_valid_name(&self.name),
            format!(
                "a folder name of 1-128 characters from A-Z a-z 0-9 - _ . = not starting with '.', found {:?}",
                self.name
            ),
        );
        checks.check(
            "cpu_threads",
            self.cpu_threads <= MAX_CPU_THREADS,
            format!("0 (libtorch's default) or 1..={MAX_CPU_THREADS}, found {}", self.cpu_threads),
        );
        checks.check("output_root", !self.output_root.as_os_str().is_empty(), "a non-empty path");
    }
}

impl RunConfig {
    /// The run's folder.
    pub fn run_dir(&self) -> PathBuf {
        self.output_root.join(&self.name)
    }
}
