//! `uorch generate` (continue a prompt, or ask an export about a user) and
//! `uorch export` (a finetuned run as a folder for serving).

use crate::config::value_name;
use crate::model::generate::{self, Sampling};
use crate::model::llama::load::{default_kind, load};
use crate::model::tokenizer::Tokenizer;
use crate::serve::export::{self, Loaded};
use crate::serve::query::{self, Request, Source};
use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;

#[derive(Args)]
pub struct GenerateArgs {
    /// A Hugging Face model folder, or a folder written by `uorch export`.
    #[arg(long)]
    model: PathBuf,
    /// The text to continue (plain model folders).
    #[arg(long)]
    prompt: Option<String>,
    /// Export: a prepared store holding the user's history.
    #[arg(long, requires = "user")]
    store: Option<PathBuf>,
    /// Export: the user's raw id in --store.
    #[arg(long, requires = "store")]
    user: Option<String>,
    /// Export: the history as JSON, `[{"item": "50", "rating": "4"}, ...]`, oldest first.
    #[arg(long, conflicts_with = "store")]
    history: Option<PathBuf>,
    /// Export, review task with --history: the item to review (raw id).
    #[arg(long)]
    item: Option<String>,
    /// Export, next-item task with --history: candidate item ids, comma-separated (default: every item not in the history).
    #[arg(long, value_delimiter = ',')]
    candidates: Option<Vec<String>>,
    /// Export: print the answer as one JSON line (as in finetune_predictions.jsonl).
    #[arg(long)]
    json: bool,
    #[arg(long, default_value_t = 32)]
    max_new_tokens: usize,
    /// Sampling temperature; 0 = greedy.
    #[arg(long, default_value_t = 0.0)]
    temperature: f64,
    /// Nucleus sampling mass.
    #[arg(long, default_value_t = 1.0)]
    top_p: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// cpu, cuda or cuda:N (default: cuda:0 when available).
    #[arg(long)]
    device: Option<String>,
}

#[derive(Args)]
pub struct ExportArgs {
    /// The run folder (`<output_root>/<name>`) of a finished finetuning run.
    run_dir: PathBuf,
    /// The export folder: new, empty, or a previous export (else --force).
    #[arg(long)]
    out: PathBuf,
    /// Replace whatever is at --out (never the run folder itself).
    #[arg(long)]
    force: bool,
    /// One JSON object on stdout: the folder, its files and sizes, and its
    /// integration.json.
    #[arg(long)]
    json: bool,
}

pub fn generate(a: GenerateArgs) -> Result<()> {
    if export::is_export(&a.model) {
        return ask_export(a);
    }
    if !(0.0..=1.0).contains(&a.top_p) || a.top_p == 0.0 || a.temperature < 0.0 {
        anyhow::bail!("--top-p must be in (0, 1] and --temperature at least 0");
    }
    let prompt = a.prompt.with_context(|| format!("{} is a model folder: give --prompt TEXT", a.model.display()))?;
    let device = super::parse_device(a.device.as_deref())?;
    let tok = Tokenizer::from_dir(&a.model)?;
    let m = load(&a.model, device, default_kind(device))?;
    let ids = tok.encode(&prompt)?;
    if ids.is_empty() {
        anyhow::bail!("the prompt is empty after tokenization");
    }
    let sampling = Sampling { temperature: a.temperature, top_p: a.top_p, seed: a.seed };
    let out = generate::generate(&m, &ids, a.max_new_tokens, sampling, &m.config.eos_ids());
    println!("{}", tok.decode(&out)?);
    Ok(())
}

/// `generate --model EXPORT`: the export's task about one user.
fn ask_export(a: GenerateArgs) -> Result<()> {
    let source = match (a.store, a.user, a.history) {
        (Some(store), Some(user), None) => Source::Store { store, user },
        (None, None, Some(h)) => Source::File(h),
        _ => anyhow::bail!(
            "{} is an export: give the user's history with --store STORE --user ID, or --history FILE",
            a.model.display()
        ),
    };
    let loaded = export::load_export(&a.model, super::parse_device(a.device.as_deref())?)?;
    let answer = query::ask(&loaded, &Request { source, item: a.item, candidates: a.candidates })?;
    if a.json {
        println!("{answer}");
    } else {
        print_answer(&loaded, &answer);
    }
    Ok(())
}

pub fn export(a: ExportArgs) -> Result<()> {
    let spec = export::export(&a.run_dir, &a.out, a.force)?;
    if a.json {
        let mut files = Vec::new();
        for e in std::fs::read_dir(&a.out)?.flatten() {
            files.push(serde_json::json!({"name": e.file_name().to_string_lossy(), "bytes": e.metadata()?.len()}));
        }
        files.sort_by(|x, y| x["name"].as_str().cmp(&y["name"].as_str()));
        let out = serde_json::json!({"run": a.run_dir, "out": a.out, "files": files, "integration": spec});
        println!("{out}");
        return Ok(());
    }
    println!(
        "exported {} ({:?}, {} cross-attention layer(s), task {}) to {}",
        a.run_dir.display(),
        spec.integration,
        spec.cross_attention_layers.len(),
        value_name(&spec.task.task),
        a.out.display()
    );
    Ok(())
}

/// An export's answer for people: the top candidates with their titles and scores, or the text.
fn print_answer(loaded: &Loaded, a: &serde_json::Value) {
    match a["top"].as_array() {
        Some(top) => {
            let cat = &loaded.catalog;
            for (i, x) in top.iter().enumerate() {
                let id = x[0].as_str().unwrap_or("");
                let title = cat.item_index(id).map(|k| format!("  {}", cat.title(k))).unwrap_or_default();
                println!("{:>3}. {id}{title}  ({:.4})", i + 1, x[1].as_f64().unwrap_or(f64::NAN));
            }
        }
        None => println!("{}", a["answer"].as_str().unwrap_or("")),
    }
    if !a["truth"].is_null() {
        println!("truth: {}", a["truth"].as_str().unwrap_or(""));
    }
}
