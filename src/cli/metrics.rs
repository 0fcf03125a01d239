//! `uorch metrics ...`: the evaluation metrics on files, for texts produced
//! anywhere (uorch's predictions, another system's, a paper's).

use crate::task::rouge::{self, Detailed};
use anyhow::{bail, Context, Result};
use clap::Subcommand;
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum MetricsCmd {
    /// ROUGE-1, ROUGE-2 and ROUGE-L of predictions against references, one
    /// text per line (line i against line i), as Google's rouge-score
    /// computes them: the mean of the per-line precision, recall and F1.
    Rouge {
        #[arg(long)]
        predictions: PathBuf,
        #[arg(long)]
        references: PathBuf,
        /// Porter-stem tokens longer than 3 characters (rouge-score's `use_stemmer=True`).
        #[arg(long)]
        stemmer: bool,
        /// One JSON object on stdout instead of the table.
        #[arg(long)]
        json: bool,
    },
}

/// A file's lines (without their `\n` or `\r\n`; a final newline ends the
/// last line rather than starting an empty one).
fn lines(path: &Path) -> Result<Vec<String>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let body = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
    let mut out = Vec::new();
    for (i, line) in body.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let text =
            std::str::from_utf8(line).with_context(|| format!("{}:{}: not UTF-8 text", path.display(), i + 1))?;
        out.push(text.to_string());
    }
    Ok(out)
}

pub fn run(cmd: MetricsCmd) -> Result<()> {
    match cmd {
        MetricsCmd::Rouge { predictions, references, stemmer, json } => {
            let (p, r) = (lines(&predictions)?, lines(&references)?);
            if p.len() != r.len() {
                bail!(
                    "{} has {} lines and {} has {}: expected one prediction per reference line",
                    predictions.display(),
                    p.len(),
                    references.display(),
                    r.len()
                );
            }
            if p.is_empty() {
                bail!("{} and {} are empty: nothing to score", predictions.display(), references.display());
            }
            let each: Vec<Detailed> = p.iter().zip(&r).map(|(p, r)| rouge::detailed(p, r, stemmer)).collect();
            let m = rouge::mean_detailed(&each);
            if json {
                println!(
                    "{}",
                    serde_json::json!({"lines": p.len(), "stemmer": stemmer, "rouge1": m.rouge1, "rouge2": m.rouge2, "rougeL": m.rouge_l})
                );
            } else {
                println!("ROUGE over {} lines ({}):", p.len(), if stemmer { "Porter stemmer" } else { "no stemmer" });
                println!("  {:<8} {:>10} {:>10} {:>10}", "", "precision", "recall", "F1");
                for (name, x) in [("ROUGE-1", m.rouge1), ("ROUGE-2", m.rouge2), ("ROUGE-L", m.rouge_l)] {
                    println!("  {name:<8} {:>10.6} {:>10.6} {:>10.6}", x.precision, x.recall, x.f1);
                }
            }
            Ok(())
        }
    }
}
