//! `uorch bench ...`: each benchmark prints its figures beside a reference
//! measured in the same run.

use crate::data::ingest::Filters;
use crate::data::prepare::{self, PrepareOptions};
use anyhow::Result;
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum BenchCmd {
    /// `data prepare` on a synthetic MovieLens-20M-shaped ratings.csv, against
    /// pandas and pyarrow reading and sorting the same file.
    Ingest {
        /// Ratings to generate.
        #[arg(long, default_value_t = crate::bench::ingest::ML20M_ROWS)]
        rows: u64,
        /// Where the synthetic data is kept (reused while --rows is unchanged).
        #[arg(long, default_value = "checkpoints/bench-ingest")]
        dir: PathBuf,
    },
    /// Encoder pretraining throughput with 1 and 2 CPU workers on the real
    /// MovieLens-100K, against the plain PyTorch encoder when available.
    Pretrain {
        #[arg(long, default_value_t = 60)]
        steps: usize,
        /// Windows per optimizer step across all workers.
        #[arg(long, default_value_t = 64)]
        global_batch: usize,
        #[arg(long, default_value = "checkpoints/bench-pretrain")]
        dir: PathBuf,
        #[arg(long, default_value = ".uorch/golden/bin/python")]
        reference_python: PathBuf,
    },
    /// The efficiency table: TextPrompt vs USER-LLM per example (tokens, FLOPs,
    /// measured latency) for several history lengths, on real data and tokenizer.
    Efficiency {
        /// A prepared timeline store.
        #[arg(long, default_value = "checkpoints/data/ml-100k")]
        store: PathBuf,
        #[arg(long, default_value = ".uorch/models/smollm2-135m-instruct")]
        model: PathBuf,
        #[arg(long = "window", default_values_t = vec![50usize, 100, 200])]
        windows: Vec<usize>,
        /// Test cases timed per window.
        #[arg(long, default_value_t = 16)]
        cases: usize,
    },
    /// Batched evaluation against one question at a time: favorite-genre
    /// questions on a store with the real LLM, cross-attention and soft
    /// prompt, with the largest score difference between the two.
    Eval {
        #[arg(long, default_value = "checkpoints/data/ml-100k")]
        store: PathBuf,
        #[arg(long, default_value = ".uorch/models/smollm2-135m-instruct")]
        model: PathBuf,
        #[arg(long, default_value_t = 32)]
        questions: usize,
        #[arg(long, default_value_t = 8)]
        batch: usize,
        /// Interactions the encoder reads.
        #[arg(long, default_value_t = 50)]
        window: usize,
        /// A Python with torch + transformers for the cross-attention reference (skipped if it has none).
        #[arg(long, default_value = ".uorch/golden/bin/python")]
        reference_python: PathBuf,
        /// Where the reference's inputs (user-side weights, questions) are written.
        #[arg(long, default_value = "checkpoints/bench-eval")]
        dir: PathBuf,
        /// Record the reference's scores in this JSON file (the golden the tests compare uorch's with).
        #[arg(long)]
        write_golden: Option<PathBuf>,
    },
    /// Finetuning throughput of each strategy (Full, LoRA, Enc, Proj) with
    /// cross-attention on a store and an LLM; ratios against Full, MFU on a
    /// GPU; beside transformers + PEFT on the same weights and batches.
    Finetune {
        #[arg(long, default_value = "checkpoints/data/ml-100k")]
        store: PathBuf,
        #[arg(long, default_value = ".uorch/models/smollm2-135m-instruct")]
        model: PathBuf,
        #[arg(long, default_value_t = 5)]
        steps: usize,
        #[arg(long, default_value_t = 8)]
        batch: usize,
        /// cpu, cuda or cuda:N (default: cuda:0 when available).
        #[arg(long)]
        device: Option<String>,
        /// Random weights of the model's shape (only config.json and tokenizer.json are read).
        #[arg(long)]
        random_init: bool,
        /// A Python with torch, transformers and peft for the reference (skipped if it has none).
        #[arg(long, default_value = ".uorch/golden/bin/python")]
        reference_python: PathBuf,
        /// Where the reference's inputs (initial weights, batches) are written.
        #[arg(long, default_value = "checkpoints/bench-finetune")]
        dir: PathBuf,
        /// Record the reference's losses in this JSON file (the golden the tests compare uorch's with).
        #[arg(long)]
        write_golden: Option<PathBuf>,
    },
    /// Greedy generation tokens/s with the key/value cache, one prompt at a
    /// time, against Hugging Face `generate` on the same model and prompt ids
    /// (and whether both produce the same tokens).
    Generate {
        /// A prepared store: its item titles make the review prompts.
        #[arg(long, default_value = "checkpoints/data/ml-100k")]
        store: PathBuf,
        #[arg(long, default_value = ".uorch/models/smollm2-135m-instruct")]
        model: PathBuf,
        #[arg(long, default_value_t = 8)]
        prompts: usize,
        /// Tokens generated per prompt (end-of-sequence does not stop it).
        #[arg(long, default_value_t = 64)]
        new_tokens: usize,
        /// cpu, cuda or cuda:N (default: cuda:0 when available; the reference runs on CPU only).
        #[arg(long)]
        device: Option<String>,
        /// f32 or bf16 weights and activations, on both sides.
        #[arg(long, default_value = "f32")]
        dtype: String,
        /// A Python with torch + transformers for the reference (skipped if it has none).
        #[arg(long, default_value = ".uorch/golden/bin/python")]
        reference_python: PathBuf,
    },
    /// Per-rank memory of DDP, ZeRO-1 and ZeRO-2 on the same finetuning run
    /// (the real MovieLens-100K and LLM, history as text), with step times.
    Zero {
        #[arg(long, default_value = ".uorch/models/smollm2-135m-instruct")]
        model: PathBuf,
        /// full, lora, ... (full shows the gradient and optimizer memory best).
        #[arg(long, default_value = "full")]
        strategy: String,
        #[arg(long, default_value_t = 2)]
        nproc: usize,
        #[arg(long, default_value_t = 4)]
        steps: u64,
        #[arg(long, default_value = "checkpoints/bench-zero")]
        dir: PathBuf,
    },
    /// Training-step throughput (forward + backward + AdamW) of Llama shapes,
    /// against Hugging Face transformers in the same run when available.
    Llm {
        /// smollm2-135m, llama-1b (repeatable).
        #[arg(long = "shape", default_values_t = vec!["smollm2-135m".to_string()])]
        shapes: Vec<String>,
        #[arg(long, default_value_t = 3)]
        steps: usize,
        #[arg(long, default_value_t = 1)]
        warmup: usize,
        /// cpu, cuda or cuda:N (default: cuda:0 when available).
        #[arg(long)]
        device: Option<String>,
        /// A Python with torch + transformers for the reference (skipped if it has none).
        #[arg(long, default_value = ".uorch/golden/bin/python")]
        reference_python: PathBuf,
    },
}

/// The real MovieLens-100K as a store under `dir` (prepared once).
fn ml100k(dir: &std::path::Path) -> Result<PathBuf> {
    let store = dir.join("ml-100k");
    if !store.join("manifest.json").exists() {
        let opts = PrepareOptions {
            inputs: vec![crate::paths::movielens_100k_dir()],
            out: store.clone(),
            format: None,
            filters: Filters { min_user_interactions: 5, min_item_interactions: 5 },
            skip_bad_lines: false,
            force: true,
            progress: false,
        };
        prepare::prepare(&opts)?;
    }
    Ok(store)
}

pub fn run(cmd: BenchCmd) -> Result<()> {
    match cmd {
        BenchCmd::Finetune { store, model, steps, batch, device, random_init, reference_python, dir, write_golden } => {
            use crate::bench::finetune;
            let device = super::parse_device(device.as_deref())?;
            let opts = finetune::Options {
                store: &store,
                model: &model,
                steps: steps.max(1),
                batch: batch.max(1),
                device,
                random_init,
                reference: Some(&reference_python),
                dir: &dir,
            };
            let rows = finetune::run(&opts)?;
            println!(
                "favorite-genre finetuning step (cross-attention every 3rd layer, Perceiver 16 latents, batch {batch}, window 50) on {}, {} steps after a warm-up:",
                if device.is_cuda() { "GPU (bf16 autocast)".to_string() } else { format!("CPU ({} threads)", tch::get_num_threads()) },
                steps
            );
            print!("{}", finetune::report(&rows, device));
            if let Some(path) = write_golden {
                let json = serde_json::to_string_pretty(&finetune::golden_json(&rows, &opts)?)?;
                crate::fsutil::write_atomic(&path, format!("{json}\n").as_bytes())?;
                println!("reference losses written to {}", path.display());
            }
        }
        BenchCmd::Generate { store, model, prompts, new_tokens, device, dtype, reference_python } => {
            use crate::bench::generate;
            let device = super::parse_device(device.as_deref())?;
            let kind = match dtype.as_str() {
                "f32" => tch::Kind::Float,
                "bf16" => tch::Kind::BFloat16,
                other => anyhow::bail!("--dtype {other:?}: expected f32 or bf16"),
            };
            let opts = generate::Options {
                store: &store,
                model: &model,
                prompts: prompts.max(1),
                new_tokens: new_tokens.max(1),
                device,
                kind,
                reference: Some(&reference_python),
            };
            let outcome = generate::run(&opts)?;
            println!(
                "generation with {} in {dtype} on {}:",
                model.display(),
                if device.is_cuda() { "GPU".to_string() } else { format!("CPU ({} threads)", tch::get_num_threads()) }
            );
            print!("{}", generate::report(&outcome));
        }
        BenchCmd::Llm { shapes, steps, warmup, device, reference_python } => {
            use crate::bench::llm;
            let device = super::parse_device(device.as_deref())?;
            for name in &shapes {
                let s = llm::shape(name, device)?;
                eprintln!("{}: running uorch ...", s.name);
                let mut rows = vec![llm::run_ours(&s, device, steps, warmup)?];
                eprintln!("{}: running the transformers reference ...", s.name);
                match llm::run_reference(&reference_python, &s, device, steps, warmup)? {
                    Some(r) => rows.push(r),
                    None => eprintln!("  no torch + transformers at {}: reference skipped", reference_python.display()),
                }
                print!("{}", llm::report(&s, &rows, device));
            }
        }
        BenchCmd::Pretrain { steps, global_batch, dir, reference_python } => {
            if global_batch % 2 != 0 || steps < 4 {
                anyhow::bail!("--global-batch must be even and --steps at least 4");
            }
            let store = ml100k(&dir)?;
            let rows = crate::bench::pretrain::bench(&dir, &store, steps, global_batch, &reference_python)?;
            println!("encoder pretraining on MovieLens-100K (dim 64, 2 layers, window 50, global batch {global_batch}), {} logical cores:", super::cores());
            print!("{}", crate::bench::pretrain::report(&rows));
        }
        BenchCmd::Zero { model, strategy, nproc, steps, dir } => {
            if nproc < 2 || steps < 2 {
                anyhow::bail!("--nproc and --steps must be at least 2 (one worker has nothing to shard)");
            }
            let store = ml100k(&dir)?;
            let rows = crate::bench::zero::bench(&dir, &store, &model, &strategy, nproc, steps)?;
            println!(
                "{strategy} finetuning (history as text, 2 examples per rank) on {nproc} CPU workers, {} logical cores:",
                super::cores()
            );
            print!("{}", crate::bench::zero::report(&rows));
        }
        BenchCmd::Efficiency { store, model, windows, cases } => {
            let rows = crate::bench::efficiency::run(&store, &model, &windows, cases.max(1))?;
            println!(
                "per example, one forward over the user's context (CPU, {} threads); ratios against TextPrompt:",
                tch::get_num_threads()
            );
            print!("{}", crate::bench::efficiency::report(&rows));
        }
        BenchCmd::Eval { store, model, questions, batch, window, reference_python, dir, write_golden } => {
            use crate::bench::eval;
            let reference = if crate::bench::python_imports(&reference_python, "torch, transformers") {
                Some(eval::ReferenceRun { python: &reference_python, dir: &dir })
            } else {
                eprintln!("reference skipped: {} has no torch + transformers", reference_python.display());
                None
            };
            let rows = eval::run(&store, &model, questions.max(1), batch.max(1), window.max(1), reference)?;
            println!(
                "favorite-genre questions asked one at a time and in batches (CPU, {} threads), untrained integration with open gates:",
                tch::get_num_threads()
            );
            print!("{}", eval::report(&rows));
            if let Some(path) = write_golden {
                let r = rows
                    .iter()
                    .find_map(|r| r.reference.as_ref())
                    .ok_or_else(|| anyhow::anyhow!("--write-golden: the reference did not run"))?;
                let golden = serde_json::json!({
                    "questions": questions.max(1), "batch": batch.max(1), "window": window.max(1),
                    "reference": r.who, "reference_scores": r.scores,
                });
                let json = serde_json::to_string_pretty(&golden)?;
                crate::fsutil::write_atomic(&path, format!("{json}\n").as_bytes())?;
                println!("reference scores written to {}", path.display());
            }
        }
        BenchCmd::Ingest { rows, dir } => {
            let results = crate::bench::ingest::bench(&dir, rows, &crate::paths::venv_python())?;
            println!("ingest benchmark, {} logical cores:", super::cores());
            print!("{}", crate::bench::ingest::report(&results));
        }
    }
    Ok(())
}
