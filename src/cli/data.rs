//! `uorch data prepare|splits|examples|stats`.

use crate::data::formats::Format;
use crate::data::ingest::Filters;
use crate::data::prepare::{self, PrepareOptions};
use crate::data::split::{self, Split};
use crate::data::stats;
use crate::data::store::Store;
use crate::data::tasks::{self, Task};
use crate::task::prompt;
use anyhow::{Context, Result};
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum DataCmd {
    /// Read a public dataset (any format listed under --format; plain or .gz)
    /// into a timeline store.
    Prepare {
        /// Dataset files or folders holding them.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// The store folder to create.
        #[arg(long)]
        out: PathBuf,
        /// The format, when auto-detection should not decide.
        #[arg(long, value_enum)]
        format: Option<Format>,
        /// Keep only users with at least this many interactions (iterated with the item minimum).
        #[arg(long, default_value_t = 5)]
        min_user_interactions: u32,
        /// Keep only items with at least this many interactions.
        #[arg(long, default_value_t = 5)]
        min_item_interactions: u32,
        /// Count and skip malformed lines instead of stopping at the first.
        #[arg(long)]
        skip_bad_lines: bool,
        /// Replace an existing store.
        #[arg(long)]
        force: bool,
        /// Print how long each phase took.
        #[arg(long)]
        timings: bool,
        /// One JSON object on stdout (schema in the README) instead of the lines.
        #[arg(long)]
        json: bool,
    },
    /// Count training windows, evaluation cases and per-rank batches.
    Splits {
        store: PathBuf,
        /// Window length (inputs per window).
        #[arg(long, default_value_t = 50)]
        window: usize,
        /// Interactions between consecutive window ends.
        #[arg(long, default_value_t = 50)]
        stride: usize,
        /// Data-parallel ranks to shard the training windows over.
        #[arg(long, default_value_t = 1)]
        world: usize,
        #[arg(long, default_value_t = 32)]
        batch_size: usize,
        #[arg(long)]
        json: bool,
    },
    /// Show task examples with their TextPrompt rendering (and token counts).
    Examples {
        store: PathBuf,
        #[arg(long, value_enum, default_value = "next-item")]
        task: Task,
        #[arg(long, value_enum, default_value = "test")]
        split: Split,
        /// History length (most recent interactions before the target).
        #[arg(long, default_value_t = 50)]
        window: usize,
        /// Only this user (raw id as in the source data).
        #[arg(long)]
        user: Option<String>,
        /// At most this many examples.
        #[arg(long, default_value_t = 3)]
        limit: usize,
        /// An LLM's tokenizer.json, to count prompt tokens.
        #[arg(long)]
        tokenizer: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Summarise a timeline store.
    Stats {
        store: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: DataCmd) -> Result<()> {
    match cmd {
        DataCmd::Prepare {
            inputs,
            out,
            format,
            min_user_interactions,
            min_item_interactions,
            skip_bad_lines,
            force,
            timings,
            json,
        } => {
            let t0 = std::time::Instant::now();
            let opts = PrepareOptions {
                inputs,
                out: out.clone(),
                format,
                filters: Filters { min_user_interactions, min_item_interactions },
                skip_bad_lines,
                force,
                progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
            };
            let p = prepare::prepare(&opts)?;
            let c = &p.manifest.counts;
            if json {
                let phases: serde_json::Map<_, _> =
                    p.timings.iter().map(|(n, s)| (n.to_string(), (*s).into())).collect();
                let out = serde_json::json!({
                    "store": out, "format": p.format.name(), "category_label": p.manifest.category_label,
                    "seconds": t0.elapsed().as_secs_f64(), "rows_read": p.rows_read, "counts": c,
                    "phases_s": phases, "skipped_examples": p.skipped_examples,
                });
                println!("{out}");
                return Ok(());
            }
            println!(
                "prepared {} ({}) in {:.2} s: {} users, {} items, {} interactions ({} read; {} with review text) -> {}",
                p.format.name(),
                p.manifest.category_label,
                t0.elapsed().as_secs_f64(),
                stats::group(c.users),
                stats::group(c.items),
                stats::group(c.interactions),
                stats::group(p.rows_read),
                stats::group(c.reviews),
                out.display()
            );
            if timings {
                let parts: Vec<String> = p.timings.iter().map(|(n, s)| format!("{n} {s:.2} s")).collect();
                println!("phases: {}", parts.join(", "));
            }
            if c.skipped_lines > 0 {
                println!("skipped {} malformed lines; the first:", c.skipped_lines);
                for e in &p.skipped_examples {
                    println!("  {e}");
                }
            }
        }
        DataCmd::Splits { store, window, stride, world, batch_size, json } => {
            if window == 0 || stride == 0 || world == 0 || batch_size == 0 {
                anyhow::bail!("--window, --stride, --world and --batch-size must be at least 1");
            }
            let s = Store::open(&store)?;
            let windows = split::training_windows(&s, split::WindowSpec { length: window, stride });
            let valid = split::eval_cases(&s, Split::Valid, window).len();
            let test = split::eval_cases(&s, Split::Test, window).len();
            let steps = split::steps_per_epoch(windows.len(), world, batch_size);
            let targets: usize = windows.iter().map(|w| w.end - w.start - 1).sum();
            if json {
                println!(
                    "{}",
                    serde_json::json!({"training_windows": windows.len(), "training_targets": targets, "valid_cases": valid, "test_cases": test, "steps_per_epoch": steps, "world": world, "batch_size": batch_size})
                );
            } else {
                println!(
                    "  training windows   {} (length {window}, stride {stride}; {} next-item targets)",
                    stats::group(windows.len()),
                    stats::group(targets)
                );
                println!("  validation cases   {}", stats::group(valid));
                println!("  test cases         {}", stats::group(test));
                println!("  steps per epoch    {steps} on each of {world} rank(s) at batch size {batch_size}");
            }
        }
        DataCmd::Examples { store, task, split, window, user, limit, tokenizer, json } => {
            let s = Store::open(&store)?;
            let counter = tokenizer.as_deref().map(prompt::TokenCounter::from_file).transpose()?;
            let mut all = tasks::examples(&s, task, split, window)?;
            if let Some(raw) = &user {
                let u = s.user_index(raw).with_context(|| format!("no user {raw:?} in {}", store.display()))?;
                all.retain(|e| e.case.user as usize == u);
            }
            let total = all.len();
            let cat = crate::data::catalog::Catalog::of_store(&s);
            let mut rows = Vec::new();
            for ex in all.iter().take(limit) {
                let text = prompt::task_prompt(&s, &cat, task, ex);
                let tokens = counter.as_ref().map(|c| c.count(&text)).transpose()?;
                rows.push(serde_json::json!({
                    "user": s.vocab.user[ex.case.user as usize],
                    "history_length": ex.case.history.len(),
                    "target": prompt::target_text(&s, ex),
                    "prompt": text,
                    "prompt_tokens": tokens,
                }));
            }
            if json {
                println!("{}", serde_json::json!({"examples": total, "shown": rows}));
            } else {
                println!(
                    "{} {} examples on the {} split (history up to {window}); showing {}",
                    stats::group(total),
                    value_name(task),
                    value_name(split),
                    rows.len()
                );
                for r in &rows {
                    println!(
                        "\nuser {} ({} interactions of history) -> {}",
                        r["user"].as_str().unwrap_or(""),
                        r["history_length"],
                        r["target"].as_str().unwrap_or("")
                    );
                    if let Some(t) = r["prompt_tokens"].as_u64() {
                        println!("prompt ({t} tokens):");
                    }
                    println!("{}", r["prompt"].as_str().unwrap_or(""));
                }
            }
        }
        DataCmd::Stats { store, json } => {
            let s = Store::open(&store)?;
            let st = stats::compute(&s);
            if json {
                println!("{}", serde_json::to_string_pretty(&st)?);
            } else {
                print!("{}", stats::render(&st, &store));
            }
        }
    }
    Ok(())
}

/// The command-line spelling of an option value.
fn value_name(v: impl clap::ValueEnum) -> String {
    v.to_possible_value().map(|p| p.get_name().to_string()).unwrap_or_default()
}
