//! The public dataset formats `uorch data prepare` reads. Each format is a
//! type implementing [`DatasetFormat`] in a file of its own, listed once in
//! [`REGISTRY`]; detection, `--format`'s values and help, and the store's
//! manifest all come from there.

mod amazon;
mod files;
mod google_local;
mod movielens;
mod progress;
mod recbole;

use super::ingest::{BadLines, Collector};
use anyhow::{bail, Result};
use std::path::PathBuf;

pub use files::{Files, Inputs};
pub use progress::{Place, Progress};

/// Every format, in the order auto-detection tries them: the first that
/// recognises the files wins. A new format is a new file and one line here.
pub static REGISTRY: &[Format] = &[
    Format(&movielens::ml100k::Ml100k),
    Format(&recbole::Recbole),
    Format(&movielens::dat::MovielensDat),
    Format(&movielens::csv::MovielensCsv),
    Format(&amazon::Amazon),
    Format(&google_local::GoogleLocal),
];

/// One public dataset layout.
pub trait DatasetFormat: Sync {
    /// The `--format` value, also written to the store's manifest.
    fn name(&self) -> &'static str;
    /// One line for `--format`'s help.
    fn about(&self) -> &'static str;
    /// The files it is recognised by, for the message when none is.
    fn expects(&self) -> &'static str;
    /// What the items' classes are called ("genre", "category").
    fn category_label(&self) -> &'static str;
    /// How an item's classes relate to each other.
    fn category_structure(&self) -> CategoryStructure {
        CategoryStructure::Set
    }
    /// Whether interactions carry review texts (for review generation).
    fn has_reviews(&self) -> bool {
        false
    }
    /// Whether `files` look like this format, for auto-detection.
    fn recognises(&self, files: &Files) -> Result<bool>;
    /// Which file plays which role; the error names what is missing.
    fn inputs(&self, files: &Files) -> Result<Inputs>;
    /// Read every input into the collector (metadata first, then interactions).
    fn read(&self, inputs: &Inputs, c: &mut Collector, bad: &mut BadLines, progress: &mut Progress) -> Result<()>;
}

/// How the classes listed for one item relate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CategoryStructure {
    /// Unordered, each as specific as the others (MovieLens genres).
    Set,
    /// A path from general to specific (Amazon's category tree).
    Path,
}

impl CategoryStructure {
    pub fn as_str(self) -> &'static str {
        match self {
            CategoryStructure::Set => "set",
            CategoryStructure::Path => "path",
        }
    }
}

/// A registered format, as `--format` and the rest of `data` pass it around.
#[derive(Clone, Copy)]
pub struct Format(&'static dyn DatasetFormat);

impl Format {
    pub fn named(name: &str) -> Option<Format> {
        REGISTRY.iter().copied().find(|f| f.name() == name)
    }
}

impl std::ops::Deref for Format {
    type Target = dyn DatasetFormat;
    fn deref(&self) -> &Self::Target {
        self.0
    }
}

impl PartialEq for Format {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name()
    }
}

impl Eq for Format {}

impl std::fmt::Debug for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl clap::ValueEnum for Format {
    fn value_variants<'a>() -> &'a [Self] {
        REGISTRY
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.name()).help(self.about()))
    }
}

/// Recognise the dataset among `paths` (files or folders). With `forced`, the
/// format is taken as given and only the files' roles are worked out.
pub fn detect(paths: &[PathBuf], forced: Option<Format>) -> Result<(Format, Inputs)> {
    let files = Files::expand(paths)?;
    let format = match forced {
        Some(f) => f,
        None => match recognise(&files)? {
            Some(f) => f,
            None => {
                let expected: Vec<&str> = REGISTRY.iter().map(|f| f.expects()).collect();
                bail!(
                    "cannot tell the dataset format of [{}]: expected {}; name it with --format",
                    files.names().join(", "),
                    expected.join(", or ")
                )
            }
        },
    };
    Ok((format, format.inputs(&files)?))
}

fn recognise(files: &Files) -> Result<Option<Format>> {
    for f in REGISTRY {
        if f.recognises(files)? {
            return Ok(Some(*f));
        }
    }
    Ok(None)
}

/// Parse a field as `T`, naming the field in the error.
pub(crate) fn field<T: std::str::FromStr>(raw: &str, name: &str) -> std::result::Result<T, String> {
    raw.trim().parse::<T>().map_err(|_| {
        format!("{name} {raw:?} is not a valid {}", std::any::type_name::<T>().rsplit("::").next().unwrap_or("value"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_names_are_unique_and_found_by_name() {
        let mut names: Vec<&str> = REGISTRY.iter().map(|f| f.name()).collect();
        for n in &names {
            assert_eq!(Format::named(n).map(|f| f.name()), Some(*n));
        }
        names.sort();
        names.dedup();
        assert_eq!(names.len(), REGISTRY.len(), "two formats share a name");
        assert!(Format::named("no-such-format").is_none());
    }

    #[test]
    fn unrecognised_files_name_every_format_expected() {
        let dir = std::env::temp_dir().join(format!("uorch-formats-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("notes.txt"), "hello\n").unwrap();
        let err = detect(std::slice::from_ref(&dir), None).unwrap_err().to_string();
        std::fs::remove_dir_all(&dir).unwrap();
        for f in REGISTRY {
            assert!(err.contains(f.expects()), "{err}");
        }
    }

    #[test]
    fn detection_follows_the_registry_order() {
        // ml-100k's u.data wins over a RecBole .inter in the same folder, as
        // ml-100k comes first in the registry.
        let dir = std::env::temp_dir().join(format!("uorch-formats-order-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["u.data", "u.item", "x.inter", "x.item"] {
            std::fs::write(dir.join(f), "").unwrap();
        }
        let (format, inputs) = detect(std::slice::from_ref(&dir), None).unwrap();
        assert_eq!(format.name(), "ml-100k");
        assert_eq!(inputs.interactions, [dir.join("u.data")]);
        let (format, _) = detect(std::slice::from_ref(&dir), Format::named("recbole")).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(format.name(), "recbole");
    }
}
