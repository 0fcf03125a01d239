//! The public dataset formats `uorch data prepare` reads, and how a set of
//! input paths is recognised as one of them.

mod amazon;
mod google_local;
mod movielens;
mod recbole;

use super::ingest::{BadLines, Collector};
use super::lines::Lines;
use anyhow::{bail, Context, Result};
use indicatif::ProgressBar;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// MovieLens 100K: u.data + u.item (+ u.genre).
    #[value(name = "ml-100k")]
    #[serde(rename = "ml-100k")]
    Ml100k,
    /// RecBole atomic files: NAME.inter + NAME.item.
    Recbole,
    /// MovieLens 1M / 10M: ratings.dat + movies.dat, `::`-separated.
    MovielensDat,
    /// MovieLens 20M / 25M / latest: ratings.csv + movies.csv.
    MovielensCsv,
    /// Amazon Review 2018: reviews JSON lines + metadata JSON lines.
    Amazon,
    /// Google Local Review 2021: reviews JSON lines + metadata JSON lines.
    GoogleLocal,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Ml100k => "ml-100k",
            Format::Recbole => "recbole",
            Format::MovielensDat => "movielens-dat",
            Format::MovielensCsv => "movielens-csv",
            Format::Amazon => "amazon",
            Format::GoogleLocal => "google-local",
        }
    }

    /// What the format's item classes are called.
    pub fn category_label(self) -> &'static str {
        match self {
            Format::Ml100k | Format::Recbole | Format::MovielensDat | Format::MovielensCsv => "genre",
            Format::Amazon | Format::GoogleLocal => "category",
        }
    }

    pub fn has_reviews(self) -> bool {
        matches!(self, Format::Amazon | Format::GoogleLocal)
    }
}

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

/// Expand directories (one level) into their files, sorted for determinism.
fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
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
    Ok(files)
}

fn file_name(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// The name without `.gz`.
fn base_name(p: &Path) -> String {
    let n = file_name(p);
    n.strip_suffix(".gz").map(str::to_string).unwrap_or(n)
}

/// What a JSON-lines file holds, judged by the keys of its first record.
#[derive(Debug, Clone, Copy, PartialEq)]
enum JsonKind {
    AmazonReviews,
    AmazonMeta,
    GoogleReviews,
    GoogleMeta,
}

fn json_kind(path: &Path) -> Result<Option<JsonKind>> {
    let mut lines = Lines::open(path)?;
    let Some(first) = lines.next_line()? else { return Ok(None) };
    let Ok(serde_json::Value::Object(obj)) = serde_json::from_slice::<serde_json::Value>(first) else {
        return Ok(None);
    };
    let has = |k: &str| obj.contains_key(k);
    Ok(if has("reviewerID") && has("asin") {
        Some(JsonKind::AmazonReviews)
    } else if has("asin") {
        Some(JsonKind::AmazonMeta)
    } else if has("gmap_id") && has("user_id") {
        Some(JsonKind::GoogleReviews)
    } else if has("gmap_id") {
        Some(JsonKind::GoogleMeta)
    } else {
        None
    })
}

fn is_json_name(name: &str) -> bool {
    name.ends_with(".json") || name.ends_with(".jsonl") || name.ends_with(".ndjson")
}

/// Recognise the dataset among `paths` (files or folders). With `forced`, the
/// format is taken as given and only the files' roles are worked out.
pub fn detect(paths: &[PathBuf], forced: Option<Format>) -> Result<(Format, Inputs)> {
    let files = expand(paths)?;
    let named = |n: &str| files.iter().find(|f| base_name(f) == n).cloned();
    let ends = |suffix: &str| files.iter().filter(|f| base_name(f).ends_with(suffix)).cloned().collect::<Vec<_>>();

    let ml = |data: &str, meta: &str| -> Result<Inputs> {
        let interactions = named(data).with_context(|| format!("no {data} among the inputs"))?;
        let metadata = named(meta)
            .with_context(|| format!("no {meta} beside {} (it holds titles and genres)", interactions.display()))?;
        Ok(Inputs { interactions: vec![interactions], metadata: vec![metadata], genre_list: named("u.genre") })
    };
    let recbole = || -> Result<Inputs> {
        let inter = ends(".inter");
        if inter.len() != 1 {
            bail!("expected one RecBole .inter file among the inputs, found {}", inter.len());
        }
        let stem = base_name(&inter[0]).trim_end_matches(".inter").to_string();
        let item = named(&format!("{stem}.item"))
            .with_context(|| format!("no {stem}.item beside {} (it holds titles and genres)", inter[0].display()))?;
        Ok(Inputs { interactions: inter, metadata: vec![item], genre_list: None })
    };
    let json = |want: Format| -> Result<Inputs> {
        let mut inputs = Inputs::default();
        for f in files.iter().filter(|f| is_json_name(&base_name(f))) {
            match (want, json_kind(f)?) {
                (Format::Amazon, Some(JsonKind::AmazonReviews))
                | (Format::GoogleLocal, Some(JsonKind::GoogleReviews)) => inputs.interactions.push(f.clone()),
                (Format::Amazon, Some(JsonKind::AmazonMeta)) | (Format::GoogleLocal, Some(JsonKind::GoogleMeta)) => {
                    inputs.metadata.push(f.clone())
                }
                (_, kind) => {
                    bail!("{}: not {} reviews or metadata (first record looks like {kind:?})", f.display(), want.name())
                }
            }
        }
        if inputs.interactions.is_empty() {
            bail!("no {} reviews file among the inputs (JSON lines with {})", want.name(), review_keys(want));
        }
        Ok(inputs)
    };

    let format = match forced {
        Some(f) => f,
        None => {
            if named("u.data").is_some() {
                Format::Ml100k
            } else if !ends(".inter").is_empty() {
                Format::Recbole
            } else if named("ratings.dat").is_some() {
                Format::MovielensDat
            } else if named("ratings.csv").is_some() {
                Format::MovielensCsv
            } else {
                let kinds: Vec<Option<JsonKind>> = files
                    .iter()
                    .filter(|f| is_json_name(&base_name(f)))
                    .map(|f| json_kind(f))
                    .collect::<Result<_>>()?;
                if kinds.iter().any(|k| matches!(k, Some(JsonKind::AmazonReviews | JsonKind::AmazonMeta))) {
                    Format::Amazon
                } else if kinds.iter().any(|k| matches!(k, Some(JsonKind::GoogleReviews | JsonKind::GoogleMeta))) {
                    Format::GoogleLocal
                } else {
                    let names: Vec<String> = files.iter().map(|f| file_name(f)).collect();
                    bail!(
                        "cannot tell the dataset format of [{}]: expected u.data + u.item, NAME.inter + NAME.item, ratings.dat + movies.dat, ratings.csv + movies.csv, or Amazon / Google Local JSON lines; name it with --format",
                        names.join(", ")
                    );
                }
            }
        }
    };
    let inputs = match format {
        Format::Ml100k => ml("u.data", "u.item")?,
        Format::Recbole => recbole()?,
        Format::MovielensDat => ml("ratings.dat", "movies.dat")?,
        Format::MovielensCsv => ml("ratings.csv", "movies.csv")?,
        Format::Amazon | Format::GoogleLocal => json(format)?,
    };
    Ok((format, inputs))
}

fn review_keys(f: Format) -> &'static str {
    match f {
        Format::Amazon => "reviewerID, asin, overall, unixReviewTime",
        _ => "user_id, gmap_id, rating, time",
    }
}

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

/// Read every input into the collector (metadata first, then interactions).
pub fn read(
    format: Format,
    inputs: &Inputs,
    c: &mut Collector,
    bad: &mut BadLines,
    progress: &mut Progress,
) -> Result<()> {
    match format {
        Format::Ml100k => movielens::read_100k(inputs, c, bad, progress),
        Format::MovielensDat => movielens::read_dat(inputs, c, bad, progress),
        Format::MovielensCsv => movielens::read_csv(inputs, c, bad, progress),
        Format::Recbole => recbole::read(inputs, c, bad, progress),
        Format::Amazon => amazon::read(inputs, c, bad, progress),
        Format::GoogleLocal => google_local::read(inputs, c, bad, progress),
    }
}

/// Parse a field as `T`, naming the field in the error.
pub(crate) fn field<T: std::str::FromStr>(raw: &str, name: &str) -> std::result::Result<T, String> {
    raw.trim().parse::<T>().map_err(|_| {
        format!("{name} {raw:?} is not a valid {}", std::any::type_name::<T>().rsplit("::").next().unwrap_or("value"))
    })
}
