//! Ingest benchmark: a synthetic `ratings.csv` + `movies.csv` with MovieLens-20M's
//! shape (20,000,263 ratings, 138,493 users, 27,278 movies, half-star ratings,
//! file sorted by user as the real one is), prepared by `uorch data prepare` in
//! a child process; wall time, rows/s and peak memory are reported next to
//! pandas and pyarrow reading and sorting the same file, when the set-up venv
//! has them (`make bench-setup`).

use super::children_peak_rss;
use crate::rng::SplitMix64;
use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

pub const ML20M_ROWS: u64 = 20_000_263;
const ML20M_USERS: u64 = 138_493;
const ML20M_MOVIES: u64 = 27_278;

/// Write the synthetic dataset into `dir`.
pub fn generate(dir: &Path, rows: u64) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let movies = ML20M_MOVIES.min(rows.max(1));
    let mut m = std::io::BufWriter::new(std::fs::File::create(dir.join("movies.csv"))?);
    writeln!(m, "movieId,title,genres")?;
    const GENRES: [&str; 6] = ["Action", "Comedy", "Drama", "Romance", "Thriller", "Sci-Fi"];
    for id in 1..=movies {
        writeln!(
            m,
            "{id},\"Movie {id}, The ({})\",{}|{}",
            1950 + id % 70,
            GENRES[(id % 6) as usize],
            GENRES[((id / 6) % 6) as usize]
        )?;
    }
    m.flush()?;
    let users = ML20M_USERS.min(rows.max(1));
    let mut r = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(dir.join("ratings.csv"))?);
    writeln!(r, "userId,movieId,rating,timestamp")?;
    let mut rng = SplitMix64::new(20);
    let per_user = rows / users;
    let mut written = 0;
    for u in 1..=users {
        let n = if u == users { rows - written } else { per_user };
        for _ in 0..n {
            // Skewed popularity: squaring a uniform favours low movie ids.
            let x = rng.below(1 << 20) as f64 / (1u64 << 20) as f64;
            let movie = 1 + ((x * x) * movies as f64) as u64;
            let half_stars = 1 + rng.below(10);
            let ts = 789_652_009 + rng.below(638_000_000);
            if half_stars % 2 == 0 {
                writeln!(r, "{u},{movie},{}.0,{ts}", half_stars / 2)?;
            } else {
                writeln!(r, "{u},{movie},{}.5,{ts}", half_stars / 2)?;
            }
        }
        written += n;
    }
    r.flush()?;
    Ok(())
}

const REFERENCE: &str = r#"
import resource, sys, time
which, path = sys.argv[1], sys.argv[2]
t = time.perf_counter()
if which == "pandas":
    import pandas as pd
    df = pd.read_csv(path)
    df = df.sort_values(["userId", "timestamp"], kind="stable")
    n = len(df)
else:
    import pyarrow.csv as pc
    tbl = pc.read_csv(path)
    tbl = tbl.sort_by([("userId", "ascending"), ("timestamp", "ascending")])
    n = tbl.num_rows
dt = time.perf_counter() - t
print(n, dt, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"#;

pub struct Measured {
    pub name: String,
    pub rows: u64,
    pub seconds: f64,
    pub peak_bytes: u64,
}

/// Run a Python reference if the venv can import it.
fn reference(python: &Path, which: &str, ratings: &Path) -> Result<Option<Measured>> {
    let module = if which == "pandas" { "pandas" } else { "pyarrow" };
    let ok = Command::new(python)
        .args(["-c", &format!("import {module}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        return Ok(None);
    }
    let o = Command::new(python).args(["-c", REFERENCE, which]).arg(ratings).output()?;
    if !o.status.success() {
        bail!("{which} reference failed: {}", String::from_utf8_lossy(&o.stderr));
    }
    let text = String::from_utf8_lossy(&o.stdout);
    let f: Vec<&str> = text.split_whitespace().collect();
    Ok(Some(Measured {
        name: format!("{which} read_csv + sort"),
        rows: f[0].parse()?,
        seconds: f[1].parse()?,
        peak_bytes: f[2].parse()?,
    }))
}

/// Time `uorch data prepare` on the data in `dir` (a child process, so its
/// peak memory is its own).
pub fn run_prepare(uorch: &Path, dir: &Path, out: &Path) -> Result<Measured> {
    let _ = std::fs::remove_dir_all(out);
    let t = Instant::now();
    let o = Command::new(uorch)
        .args(["data", "prepare"])
        .arg(dir.join("ratings.csv"))
        .arg(dir.join("movies.csv"))
        .arg("--out")
        .arg(out)
        .args(["--min-user-interactions", "1", "--min-item-interactions", "1"])
        .output()
        .context("running uorch data prepare")?;
    let seconds = t.elapsed().as_secs_f64();
    if !o.status.success() {
        bail!("prepare failed: {}", String::from_utf8_lossy(&o.stderr));
    }
    let rows = crate::data::store::Store::open(out)?.manifest.counts.interactions as u64;
    Ok(Measured { name: "uorch data prepare (full store)".into(), rows, seconds, peak_bytes: children_peak_rss() })
}

pub fn report(rows: &[Measured]) -> String {
    let base = rows.first().map(|m| m.seconds).unwrap_or(1.0);
    let mut s = format!(
        "  {:<34} {:>11} {:>9} {:>13} {:>10} {:>14}\n",
        "", "rows", "seconds", "rows/s", "peak RSS", "time vs uorch"
    );
    for m in rows {
        s.push_str(&format!(
            "  {:<34} {:>11} {:>9.2} {:>13} {:>8.2} GB {:>13.2}x\n",
            m.name,
            crate::data::stats::group(m.rows as usize),
            m.seconds,
            crate::data::stats::group((m.rows as f64 / m.seconds) as usize),
            m.peak_bytes as f64 / 1e9,
            m.seconds / base
        ));
    }
    s
}

/// The whole benchmark: generate (or reuse) the data, run prepare, then the references.
pub fn bench(dir: &Path, rows: u64, python: &Path) -> Result<Vec<Measured>> {
    let ratings = dir.join("ratings.csv");
    let fresh = !ratings.exists()
        || std::fs::read_to_string(dir.join("rows")).ok().and_then(|s| s.trim().parse::<u64>().ok()) != Some(rows);
    if fresh {
        eprintln!("generating {} synthetic ratings in {} ...", crate::data::stats::group(rows as usize), dir.display());
        generate(dir, rows)?;
        std::fs::write(dir.join("rows"), rows.to_string())?;
    }
    let exe = std::env::current_exe()?;
    eprintln!("running uorch data prepare ...");
    let mut out = vec![run_prepare(&exe, dir, &dir.join("store"))?];
    let _ = std::fs::remove_dir_all(dir.join("store"));
    for which in ["pyarrow", "pandas"] {
        eprintln!("running the {which} reference ...");
        match reference(python, which, &ratings)? {
            Some(m) => out.push(m),
            None => eprintln!("  {which} is not installed in {} (make bench-setup): skipped", python.display()),
        }
    }
    Ok(out)
}
