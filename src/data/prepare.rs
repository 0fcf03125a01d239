//! `uorch data prepare`: raw dataset files → timeline store, built aside and
//! renamed into place so that a failed or interrupted run leaves nothing a
//! later command would accept.

use super::formats::{self, Format, Progress};
use super::ingest::{BadLines, Collector, Filters};
use super::store::{self, Counts, Manifest, SourceFile};
use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct PrepareOptions {
    pub inputs: Vec<PathBuf>,
    pub out: PathBuf,
    pub format: Option<Format>,
    pub filters: Filters,
    pub skip_bad_lines: bool,
    /// Replace an existing store at `out`.
    pub force: bool,
    pub progress: bool,
}

/// What a prepare did, for the one-line summary.
#[derive(Debug)]
pub struct Prepared {
    pub format: Format,
    pub manifest: Manifest,
    pub rows_read: usize,
    pub skipped_examples: Vec<String>,
    /// Seconds spent per phase (read, order, checksum, write), in order.
    pub timings: Vec<(&'static str, f64)>,
}

fn sha256_file(path: &Path) -> Result<(u64, String)> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((n, format!("{:x}", h.finalize())))
}

/// Removes the staging folder unless the store was moved into place.
struct Staging(PathBuf);

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn prepare(opts: &PrepareOptions) -> Result<Prepared> {
    let (format, inputs) = formats::detect(&opts.inputs, opts.format)?;
    // The files it reads (not their folders: a store may go inside a dataset's folder).
    let files = inputs.all();
    let sources: Vec<&Path> = files.iter().map(|p| p.as_ref()).collect();
    crate::fsutil::check_precious_output(&opts.out, &sources, opts.force, |p| p.join("manifest.json").exists())?;
    let parent = opts.out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    let name = opts.out.file_name().context("--out needs a folder name")?.to_string_lossy().into_owned();
    let staging = Staging(parent.join(format!(".{name}.partial-{}", std::process::id())));
    std::fs::create_dir(&staging.0).with_context(|| format!("cannot create {}", staging.0.display()))?;

    let total: u64 = inputs.all().iter().map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)).sum();
    let bar = if opts.progress { indicatif::ProgressBar::new(total) } else { indicatif::ProgressBar::hidden() };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg:>16} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    // Size the arrays from the input: ~30 bytes per rating line is typical.
    let expected_rows =
        (inputs.interactions.iter().map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)).sum::<u64>() / 30)
            as usize;
    let mut collector =
        Collector::new(format.has_reviews().then_some(staging.0.as_path()), expected_rows.min(1 << 28))?;
    let mut bad = BadLines::new(opts.skip_bad_lines);
    let mut progress = Progress::new(bar);
    let mut timings = Vec::new();
    let mut clock = std::time::Instant::now();
    let mut lap = |name: &'static str, timings: &mut Vec<(&'static str, f64)>| {
        timings.push((name, clock.elapsed().as_secs_f64()));
        clock = std::time::Instant::now();
    };
    format.read(&inputs, &mut collector, &mut bad, &mut progress)?;
    progress.bar.finish_and_clear();
    let rows_read = collector.len();
    if rows_read == 0 {
        bail!(
            "no interactions in {}",
            inputs.interactions.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        );
    }
    let reviews_path = staging.0.join(store::REVIEWS);
    lap("read", &mut timings);
    let t = collector.finish(opts.filters, format.has_reviews().then_some(reviews_path.as_path()))?;
    lap("filter+order", &mut timings);

    let mut sources = Vec::new();
    for (role, paths) in [("interactions", &inputs.interactions), ("metadata", &inputs.metadata)] {
        for p in paths {
            let (bytes, sha256) = sha256_file(p)?;
            sources.push(SourceFile {
                name: p.file_name().unwrap_or_default().to_string_lossy().into_owned(),
                role: role.into(),
                bytes,
                sha256,
            });
        }
    }
    if let Some(p) = &inputs.genre_list {
        let (bytes, sha256) = sha256_file(p)?;
        sources.push(SourceFile {
            name: p.file_name().unwrap_or_default().to_string_lossy().into_owned(),
            role: "genres".into(),
            bytes,
            sha256,
        });
    }
    lap("checksum", &mut timings);
    let reviews = t.arrays.review_offsets.as_ref().map(|o| o.windows(2).filter(|w| w[1] > w[0]).count()).unwrap_or(0);
    let features = BTreeMap::from([
        ("item".to_string(), t.items.len()),
        ("category".to_string(), t.categories.len()),
        ("rating".to_string(), t.ratings.len()),
    ]);
    let manifest = Manifest {
        store_version: store::STORE_VERSION,
        format: format.name().into(),
        category_label: format.category_label().into(),
        category_structure: format.category_structure().as_str().into(),
        sources,
        filters: opts.filters,
        filter_rounds: t.filter_rounds,
        counts: Counts {
            users: t.users.len(),
            items: t.items.len(),
            interactions: t.arrays.item.len(),
            reviews,
            skipped_lines: bad.count,
        },
        features,
        timestamp_unit: "seconds".into(),
        created_by: format!("uorch {}", env!("CARGO_PKG_VERSION")),
    };
    store::write(&staging.0, &t, &manifest)?;
    lap("write", &mut timings);

    // Swap into place: the old store (with --force) is moved aside first.
    crate::fsutil::replace_dir(&staging.0, &opts.out)?;
    Ok(Prepared { format, manifest, rows_read, skipped_examples: bad.first, timings })
}
