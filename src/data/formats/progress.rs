//! Reading input files line by line with one progress bar over all their
//! bytes, and the `file:line` places that messages name.

use super::files::file_name;
use crate::data::ingest::BadLines;
use crate::data::lines::Lines;
use anyhow::Result;
use indicatif::ProgressBar;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

/// Progress over all input bytes.
pub struct Progress {
    pub bar: ProgressBar,
    base: u64,
}

impl Progress {
    pub fn new(bar: ProgressBar) -> Self {
        Self { bar, base: 0 }
    }

    /// Run `f` over a file's lines, keeping the bar current.
    pub fn each_line(&mut self, path: &Path, mut f: impl FnMut(&[u8], &Place) -> Result<()>) -> Result<()> {
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let mut lines = Lines::open(path)?;
        let consumed = lines.progress();
        self.bar.set_message(file_name(path));
        let mut place = Place { path: path.to_path_buf(), line: 0 };
        while let Some(line) = lines.next_line()? {
            place.line += 1;
            f(line, &place)?;
            if place.line % (1 << 16) == 0 {
                self.bar.set_position(self.base + consumed.load(Ordering::Relaxed));
            }
        }
        self.base += size;
        self.bar.set_position(self.base);
        Ok(())
    }
}

impl Progress {
    /// Run `f` on each JSON-lines record of a file, parsed as `T`; blank lines
    /// are skipped and unparsable ones reported as not being `what`.
    pub fn each_json<T: for<'a> serde::Deserialize<'a>>(
        &mut self,
        path: &Path,
        bad: &mut BadLines,
        what: &str,
        mut f: impl FnMut(T) -> Result<()>,
    ) -> Result<()> {
        self.each_line(path, |line, place| {
            if line.iter().all(u8::is_ascii_whitespace) {
                return Ok(());
            }
            match serde_json::from_slice::<T>(line) {
                Ok(record) => f(record),
                Err(e) => bad.report(&place.to_string(), format!("not {what}: {e}")),
            }
        })
    }
}

/// A line of an input file, for messages (`file:line`).
pub struct Place {
    pub path: PathBuf,
    pub line: u64,
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.path.display(), self.line)
    }
}
