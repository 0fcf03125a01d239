//! The `uorch` command line.

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use uorch::config::{self, emit, ConfigErrors, RunConfig};
use uorch::data::formats::Format;
use uorch::data::ingest::Filters;
use uorch::data::prepare::{self, PrepareOptions};
use uorch::data::split::{self, Split};
use uorch::data::store::Store;
use uorch::data::tasks::{self, Task};
use uorch::data::{prompt, stats};
use uorch::{env_report, rundir, tb, torch_runtime};

/// `uorch --version`: the crate version and the commit it was built from.
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("UORCH_GIT_COMMIT"), ")");

#[derive(Parser)]
#[command(name = "uorch", version = VERSION, about = "USER-LLM training orchestrator", propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Report versions, devices, collective backends and paths (paste into bug reports).
    Env {
        /// Machine-readable JSON.
        #[arg(long)]
        json: bool,
    },
    /// Inspect configuration files.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Datasets: prepare timeline stores and inspect them.
    #[command(subcommand)]
    Data(DataCmd),
    /// LLMs: import, inspect, tokenize.
    #[command(subcommand)]
    Model(ModelCmd),
    /// Continue a prompt with a model folder (greedy unless --temperature > 0;
    /// prints only the continuation), or ask an export (`uorch export`) its
    /// task about a user: `--store S --user ID` (the user's test question, as
    /// evaluation asked it) or `--history FILE` (JSON list of {item, rating}).
    Generate {
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
    },
    /// Write a finetuned run as a self-contained folder for serving: the LLM
    /// with LoRA merged (Hugging Face layout), the user encoder, Perceiver,
    /// projection and cross-attention weights, and how they connect.
    Export {
        /// The run folder (`<output_root>/<name>`) of a finished finetuning run.
        run_dir: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Benchmarks that print their figures beside a reference.
    #[command(subcommand)]
    Bench(BenchCmd),
    /// Run a config: create its run folder (resolved config, environment,
    /// TensorBoard log) and execute its stages.
    Launch {
        #[command(flatten)]
        src: ConfigSource,
        /// Print what would run, change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Worker processes on this machine (sets dist.nproc).
        #[arg(long)]
        nproc: Option<usize>,
        /// Machines taking part (one launcher on each).
        #[arg(long, default_value_t = 1)]
        nnodes: usize,
        /// This machine's index among them.
        #[arg(long, default_value_t = 0)]
        node_rank: usize,
        /// Address of the machine with node rank 0 (it serves the rendezvous).
        #[arg(long, default_value = "127.0.0.1")]
        master_addr: String,
        /// Rendezvous port (0: a free one; give the same one to every machine).
        #[arg(long, default_value_t = 0)]
        master_port: u16,
    },
    /// Experiments (sweeps) started by `uorch launch EXPERIMENT.yaml`.
    #[command(subcommand)]
    Sweep(SweepCmd),
    /// One worker of a launch (started by `uorch launch` with RANK, WORLD_SIZE,
    /// MASTER_ADDR, MASTER_PORT set).
    #[command(hide = true)]
    Worker {
        #[arg(long)]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum SweepCmd {
    /// Where an experiment stands: every trial's state, metrics and cost
    /// (read from its folder; safe while the sweep runs).
    Status {
        /// The experiment folder (`<output_root>/<name>`).
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Print the fully resolved config (presets merged, overrides applied, defaults filled).
    Show {
        #[command(flatten)]
        src: ConfigSource,
        /// JSON instead of YAML.
        #[arg(long)]
        json: bool,
        /// Comment each value with the file:line:col or override that set it.
        #[arg(long)]
        origins: bool,
    },
    /// Check a config and report every problem found; exit status 2 if any.
    Check {
        #[command(flatten)]
        src: ConfigSource,
    },
    /// List the presets under configs/ that `include:` can name.
    Presets,
}

#[derive(Subcommand)]
enum DataCmd {
    /// Read a public dataset (MovieLens, RecBole, Amazon 2018, Google Local 2021;
    /// plain or .gz) into a timeline store.
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

#[derive(Subcommand)]
enum ModelCmd {
    /// Convert a GGUF file (F32/F16/BF16/Q8_0/Q4_0/Q4_1/Q4_K/Q6_K) into a Hugging
    /// Face folder: config.json, model.safetensors (f32), tokenizer.json.
    ImportGguf {
        file: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        force: bool,
    },
    /// Token ids of a text.
    Tokenize {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        text: String,
        #[arg(long)]
        json: bool,
    },
    /// Architecture, sizes, parameter counts and dtype of a model folder.
    Info {
        dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum BenchCmd {
    /// `data prepare` on a synthetic MovieLens-20M-shaped ratings.csv, against
    /// pandas and pyarrow reading and sorting the same file.
    Ingest {
        /// Ratings to generate.
        #[arg(long, default_value_t = uorch::bench::ingest::ML20M_ROWS)]
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
    /// Finetuning throughput of each strategy (Full, LoRA, Enc, Proj) with
    /// cross-attention on a store and an LLM; ratios against Full, MFU on a GPU.
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

#[derive(Args)]
struct ConfigSource {
    /// The run config (YAML).
    file: PathBuf,
    /// Override a value: `--set finetune.lr=3e-4` (repeatable; the value is YAML).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

impl ConfigSource {
    fn load(&self) -> Result<config::Resolved<RunConfig>, ConfigErrors> {
        config::load::<RunConfig>(&self.file, &self.set)
    }
}

fn main() -> ExitCode {
    // A closed pipe (`uorch ... | head`) ends the program quietly, as for other tools.
    // SAFETY: restoring the default disposition of one signal at start-up.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    // Before any tensor work: make libtorch's CUDA half visible when it exists.
    torch_runtime::init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            if let Some(ce) = e.downcast_ref::<ConfigErrors>() {
                for line in ce.to_string().lines() {
                    eprintln!("error: {line}");
                }
                return ExitCode::from(2);
            }
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Env { json } => {
            let report = env_report::collect();
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", env_report::render(&report));
            }
        }
        Command::Config(ConfigCmd::Show { src, json, origins }) => {
            let (resolved, sweep) = uorch::sweep::plan::load_base(&src.file, &src.set)?;
            let mut value = serde_json::to_value(&resolved.config)?;
            if json {
                if let Some(s) = &sweep {
                    value["sweep"] = serde_json::to_value(s)?;
                }
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else {
                print!("{}", emit::to_yaml(&value, origins.then_some(&resolved.tree)));
                if let Some(s) = &sweep {
                    print!("{}", emit::to_yaml(&serde_json::json!({ "sweep": s }), None));
                }
            }
        }
        Command::Config(ConfigCmd::Check { src }) => {
            if uorch::sweep::plan::is_experiment(&src.file)? {
                let plan = uorch::sweep::plan::build(&src.file, &src.set, 0)?;
                println!(
                    "{}: ok (an experiment: {} trial(s), {} stage(s))",
                    src.file.display(),
                    plan.trials.len(),
                    plan.stages.len()
                );
            } else {
                src.load()?;
                println!("{}: ok", src.file.display());
            }
        }
        Command::Config(ConfigCmd::Presets) => {
            for name in config::preset_names() {
                println!("{name}");
            }
        }
        Command::Launch { mut src, dry_run, nproc, nnodes, node_rank, master_addr, master_port } => {
            if let Some(n) = nproc {
                src.set.push(format!("dist.nproc={n}"));
            }
            let topo = uorch::launch::Topology { nproc: 1, nnodes, node_rank, master_addr, master_port };
            if uorch::sweep::plan::is_experiment(&src.file)? {
                return launch_sweep(&src, dry_run, topo);
            }
            return launch(&src, dry_run, topo);
        }
        Command::Worker { config } => worker(&config)?,
        Command::Sweep(SweepCmd::Status { dir }) => {
            let plan = uorch::sweep::plan::Plan::load(&dir)?;
            let rows = uorch::sweep::results::rows(&plan);
            let count = |s: uorch::sweep::state::State| rows.iter().filter(|r| r.state == s).count();
            use uorch::sweep::state::State;
            println!(
                "experiment `{}` ({} trials): {} done, {} running, {} failed, {} interrupted, {} pending",
                plan.experiment,
                rows.len(),
                count(State::Done),
                count(State::Running),
                count(State::Failed),
                count(State::Interrupted),
                count(State::Pending)
            );
            print!("{}", uorch::sweep::results::table(&plan, &rows));
        }
        Command::Data(cmd) => data_command(cmd)?,
        Command::Export { run_dir, out } => {
            let spec = uorch::serve::export::export(&run_dir, &out)?;
            println!(
                "exported {} ({:?}, {} cross-attention layer(s), task {}) to {}",
                run_dir.display(),
                spec.integration,
                spec.cross_attention_layers.len(),
                config::value_name(&spec.task.task),
                out.display()
            );
        }
        Command::Generate { model, store, user, history, item, candidates, json, device, .. }
            if uorch::serve::export::is_export(&model) =>
        {
            use uorch::serve::query::{Request, Source};
            let source = match (store, user, history) {
                (Some(store), Some(user), None) => Source::Store { store, user },
                (None, None, Some(h)) => Source::File(h),
                _ => anyhow::bail!(
                    "{} is an export: give the user's history with --store STORE --user ID, or --history FILE",
                    model.display()
                ),
            };
            let loaded = uorch::serve::export::load_export(&model, parse_device(device.as_deref())?)?;
            let answer = uorch::serve::query::ask(&loaded, &Request { source, item, candidates })?;
            if json {
                println!("{answer}");
            } else {
                print_answer(&loaded, &answer);
            }
        }
        Command::Generate { model, prompt, max_new_tokens, temperature, top_p, seed, device, .. } => {
            if !(0.0..=1.0).contains(&top_p) || top_p == 0.0 || temperature < 0.0 {
                anyhow::bail!("--top-p must be in (0, 1] and --temperature at least 0");
            }
            let prompt =
                prompt.with_context(|| format!("{} is a model folder: give --prompt TEXT", model.display()))?;
            let device = parse_device(device.as_deref())?;
            let tok = uorch::model::tokenizer::Tokenizer::from_dir(&model)?;
            let m = uorch::model::llama::load::load(&model, device, uorch::model::llama::load::default_kind(device))?;
            let ids = tok.encode(&prompt)?;
            if ids.is_empty() {
                anyhow::bail!("the prompt is empty after tokenization");
            }
            let sampling = uorch::model::generate::Sampling { temperature, top_p, seed };
            let out = uorch::model::generate::generate(&m, &ids, max_new_tokens, sampling, &m.config.eos_ids());
            println!("{}", tok.decode(&out)?);
        }
        Command::Model(ModelCmd::Tokenize { model, text, json }) => {
            let ids = uorch::model::tokenizer::Tokenizer::from_dir(&model)?.encode(&text)?;
            if json {
                println!("{}", serde_json::json!(ids));
            } else {
                println!("{}", ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(" "));
            }
        }
        Command::Model(ModelCmd::Info { dir, json }) => {
            let c = uorch::model::llama::LlamaConfig::load(&dir)?;
            let files = uorch::model::llama::load::weight_files(&dir)?;
            let dtypes = uorch::model::llama::load::stored_dtypes(&files)?;
            let info = serde_json::json!({
                "architecture": c.model_type, "layers": c.num_hidden_layers, "hidden_size": c.hidden_size,
                "intermediate_size": c.intermediate_size, "attention_heads": c.num_attention_heads,
                "kv_heads": c.kv_heads(), "head_dim": c.head_dim(), "vocab_size": c.vocab_size,
                "tied_embeddings": c.tie_word_embeddings, "rope_theta": c.rope_theta,
                "max_positions": c.max_position_embeddings, "parameters": c.parameter_count(),
                "stored_dtypes": dtypes,
            });
            if json {
                println!("{}", serde_json::to_string_pretty(&info)?);
            } else {
                for (k, v) in info.as_object().unwrap() {
                    println!("  {k:<18} {v}");
                }
            }
        }
        Command::Model(ModelCmd::ImportGguf { file, out, force }) => {
            let t0 = std::time::Instant::now();
            let m = uorch::model::gguf::import::import(&file, &out, force)?;
            println!(
                "imported {} ({} tensors, {:.1}M parameters{}) in {:.1} s -> {}",
                m.architecture,
                m.tensors,
                m.parameters as f64 / 1e6,
                if m.tied_embeddings { ", tied embeddings" } else { "" },
                t0.elapsed().as_secs_f64(),
                out.display()
            );
        }
        Command::Bench(BenchCmd::Finetune { store, model, steps, batch, device, random_init }) => {
            let device = parse_device(device.as_deref())?;
            let rows = uorch::bench::finetune::run(&store, &model, steps.max(1), batch.max(1), device, random_init)?;
            println!(
                "favorite-genre finetuning step (cross-attention every 3rd layer, batch {batch}, window 50) on {}, {} steps after a warm-up:",
                if device.is_cuda() { "GPU (bf16 autocast)".to_string() } else { format!("CPU ({} threads)", tch::get_num_threads()) },
                steps
            );
            print!("{}", uorch::bench::finetune::report(&rows, device));
        }
        Command::Bench(BenchCmd::Llm { shapes, steps, warmup, device, reference_python }) => {
            use uorch::bench::llm;
            let device = parse_device(device.as_deref())?;
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
        Command::Bench(BenchCmd::Pretrain { steps, global_batch, dir, reference_python }) => {
            if global_batch % 2 != 0 || steps < 4 {
                anyhow::bail!("--global-batch must be even and --steps at least 4");
            }
            let store = dir.join("ml-100k");
            if !store.join("manifest.json").exists() {
                let opts = PrepareOptions {
                    inputs: vec![uorch::paths::movielens_100k_dir()],
                    out: store.clone(),
                    format: None,
                    filters: Filters { min_user_interactions: 5, min_item_interactions: 5 },
                    skip_bad_lines: false,
                    force: true,
                    progress: false,
                };
                prepare::prepare(&opts)?;
            }
            let rows = uorch::bench::pretrain::bench(&dir, &store, steps, global_batch, &reference_python)?;
            println!("encoder pretraining on MovieLens-100K (dim 64, 2 layers, window 50, global batch {global_batch}), {} logical cores:", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
            print!("{}", uorch::bench::pretrain::report(&rows));
        }
        Command::Bench(BenchCmd::Efficiency { store, model, windows, cases }) => {
            let rows = uorch::bench::efficiency::run(&store, &model, &windows, cases.max(1))?;
            println!(
                "per example, one forward over the user's context (CPU, {} threads); ratios against TextPrompt:",
                tch::get_num_threads()
            );
            print!("{}", uorch::bench::efficiency::report(&rows));
        }
        Command::Bench(BenchCmd::Ingest { rows, dir }) => {
            let results = uorch::bench::ingest::bench(&dir, rows, &uorch::paths::venv_python())?;
            println!(
                "ingest benchmark, {} logical cores:",
                std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
            );
            print!("{}", uorch::bench::ingest::report(&results));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn stages(cfg: &RunConfig) -> String {
    let mut v = Vec::new();
    if let Some(p) = &cfg.pretrain {
        v.push(format!(
            "encoder pretraining ({} steps, batch {} per rank x {} rank(s)) and next-item evaluation",
            p.steps, p.batch_size, cfg.dist.nproc
        ));
    }
    if let Some(f) = &cfg.finetune {
        v.push(format!(
            "{} finetuning ({} integration, {} strategy, {} steps) and evaluation against baselines",
            config::value_name(&f.task),
            config::value_name(&f.integration),
            config::value_name(&f.strategy),
            f.steps
        ));
    }
    if v.is_empty() {
        "none (the config has no pretrain or finetune section)".into()
    } else {
        v.join(", then ")
    }
}

fn launch(src: &ConfigSource, dry_run: bool, topo: uorch::launch::Topology) -> Result<ExitCode> {
    let cfg = src.load()?.config;
    let dir = cfg.run_dir();
    if dry_run {
        println!("run `{}` would be written to {}", cfg.name, dir.display());
        println!(
            "seed {}, cpu threads {}, {} worker(s) per machine",
            cfg.seed,
            threads_text(cfg.cpu_threads),
            cfg.dist.nproc
        );
        println!("stages: {}", stages(&cfg));
        return Ok(ExitCode::SUCCESS);
    }
    tch::manual_seed(cfg.seed as i64);
    let env = env_report::collect();
    let fresh = !rundir::tb_dir(&dir).exists();
    let dir = rundir::prepare(&cfg, &env)?;
    let mut events = tb::EventWriter::create(&rundir::tb_dir(&dir))?;
    if fresh {
        rundir::log_run_start(&mut events, &cfg, &env_report::render(&env))?;
    }
    println!("run `{}` in {}", cfg.name, dir.display());
    println!("stages: {}", stages(&cfg));
    if cfg.pretrain.is_none() && cfg.finetune.is_none() {
        rundir::log_run_end(&mut events, &cfg, true)?;
        return Ok(ExitCode::SUCCESS);
    }
    let topo = uorch::launch::Topology { nproc: cfg.dist.nproc, ..topo }.resolve()?;
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    // A sweep running several trials at once shares the cores among them.
    let trials: usize = std::env::var("UORCH_CONCURRENT_TRIALS").ok().and_then(|t| t.parse().ok()).unwrap_or(1).max(1);
    let threads = if cfg.cpu_threads > 0 { cfg.cpu_threads as usize } else { (cores / (topo.nproc * trials)).max(1) };
    let ended = uorch::launch::launch(&dir.join(rundir::CONFIG_FILE), &topo, threads);
    match ended {
        Ok(uorch::launch::Ended::Completed) => {
            rundir::log_run_end(&mut events, &cfg, true)?;
            if topo.node_rank != 0 {
                // Rank 0 (on the first machine) writes the metrics.
                println!("done: machine {} of {}; results are written on machine 0", topo.node_rank, topo.nnodes);
                return Ok(ExitCode::SUCCESS);
            }
            if cfg.pretrain.is_some() {
                let m: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(uorch::train::pretrain::metrics_path(&dir))?)?;
                println!("pretraining done: final loss {:.4}", m["final_loss"].as_f64().unwrap_or(f64::NAN));
                println!("  {:<12} {:>9} {:>9} {:>9} {:>9}", "test", "recall@1", "recall@5", "recall@10", "ndcg@10");
                for who in ["encoder", "popularity"] {
                    let r = &m[who];
                    let f = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
                    println!(
                        "  {:<12} {:>9.4} {:>9.4} {:>9.4} {:>9.4}",
                        who,
                        f("recall@1"),
                        f("recall@5"),
                        f("recall@10"),
                        f("ndcg@10")
                    );
                }
            }
            if cfg.finetune.is_some() {
                let m: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(dir.join(uorch::train::finetune::METRICS_FILE))?)?;
                println!("finetuning done ({} of {} parameters trained):", m["trainable_parameters"], m["parameters"]);
                print!("{}", uorch::train::finetune::evaluate::table(&m));
            }
            Ok(ExitCode::SUCCESS)
        }
        Ok(uorch::launch::Ended::Interrupted) => {
            println!("interrupted: checkpoint written; run the same command again to resume");
            Ok(ExitCode::from(130))
        }
        Err(e) => {
            rundir::log_run_end(&mut events, &cfg, false)?;
            Err(e)
        }
    }
}

/// `uorch launch EXPERIMENT.yaml`: plan the trials, run what is not complete,
/// report the results.
fn launch_sweep(src: &ConfigSource, dry_run: bool, topo: uorch::launch::Topology) -> Result<ExitCode> {
    use uorch::sweep::{self, run};
    let gpus = if tch::Cuda::is_available() { tch::Cuda::device_count() as usize } else { 0 };
    let plan = sweep::plan::build(&src.file, &src.set, gpus)?;
    print!("{}", sweep::describe(&plan));
    if dry_run {
        println!("trials:");
        for t in &plan.trials {
            let axes: Vec<String> = t.axes.iter().map(|(a, l)| format!("{a}={l}")).collect();
            println!("  {:<40} {:<40} results from {}", t.name, axes.join(" "), t.stage);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let topo =
        uorch::launch::Topology { master_port: if topo.master_port == 0 { 29400 } else { topo.master_port }, ..topo }
            .resolve()?;
    let _lock = if topo.node_rank == 0 { Some(sweep::lock(&plan)?) } else { None };
    if topo.node_rank == 0 {
        plan.write()?;
    }
    let interrupts = uorch::launch::interrupt_counter()?;
    let o = run::Options {
        exe: std::env::current_exe()?,
        gpus: (0..gpus).collect(),
        nnodes: topo.nnodes,
        node_rank: topo.node_rank,
        master_addr: topo.master_addr.clone(),
        master_port: topo.master_port,
        progress_every: std::time::Duration::from_secs(
            std::env::var("UORCH_PROGRESS_S").ok().and_then(|s| s.parse().ok()).unwrap_or(20),
        ),
    };
    let outcome = run::run(&plan, &o, interrupts)?;
    if topo.node_rank == 0 {
        println!();
        print!("{}", sweep::report(&plan)?);
        println!(
            "results: {} and {}",
            plan.dir.join(sweep::results::CSV_FILE).display(),
            plan.dir.join(sweep::results::MD_FILE).display()
        );
        println!(
            "TensorBoard: {} --logdir {}",
            uorch::paths::venv_python().with_file_name("tensorboard").display(),
            plan.dir.join(sweep::plan::RUNS_DIR).display()
        );
    }
    match outcome {
        run::Outcome::Interrupted => {
            println!("interrupted: running stages checkpointed; run the same command again to resume");
            Ok(ExitCode::from(130))
        }
        run::Outcome::Completed { failed, .. } if failed > 0 => {
            eprintln!(
                "error: {failed} stage(s) failed (see the table and {})",
                plan.dir.join(sweep::state::LOGS_DIR).display()
            );
            Ok(ExitCode::from(1))
        }
        run::Outcome::Completed { .. } => Ok(ExitCode::SUCCESS),
    }
}

fn worker(config: &std::path::Path) -> Result<()> {
    let cfg = config::load::<RunConfig>(config, &[])?.config;
    let threads: i32 =
        std::env::var("UORCH_THREADS").ok().and_then(|t| t.parse().ok()).unwrap_or(cfg.cpu_threads as i32);
    if threads > 0 {
        tch::set_num_threads(threads);
    }
    let w = uorch::train::worker::Worker::from_env(std::time::Duration::from_secs(cfg.dist.timeout_s))?;
    {
        let stop = w.stop.clone();
        ctrlc::set_handler(move || stop.store(true, std::sync::atomic::Ordering::SeqCst))?;
    }
    if cfg.pretrain.is_some() {
        let out = uorch::train::pretrain::run(&cfg, &w)?;
        if w.rank == 0 {
            if out.interrupted {
                eprintln!("interrupted after step {}: checkpoint written", out.steps);
                return Ok(());
            }
            eprintln!("finished {} steps, final loss {:.6}", out.steps, out.final_loss);
        } else if out.interrupted {
            return Ok(());
        }
    }
    if cfg.finetune.is_some() {
        uorch::train::finetune::run(&cfg, &w)?;
    }
    Ok(())
}

fn data_command(cmd: DataCmd) -> Result<()> {
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
            let cat = uorch::data::catalog::Catalog::of_store(&s);
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

/// An export's answer for people: the top candidates with their titles and scores, or the text.
fn print_answer(loaded: &uorch::serve::export::Loaded, a: &serde_json::Value) {
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

fn parse_device(s: Option<&str>) -> Result<tch::Device> {
    Ok(match s {
        None => tch::Device::cuda_if_available(),
        Some("cpu") => tch::Device::Cpu,
        Some("cuda") => tch::Device::Cuda(0),
        Some(d) => match d.strip_prefix("cuda:").and_then(|n| n.parse().ok()) {
            Some(n) => tch::Device::Cuda(n),
            None => anyhow::bail!("--device {d:?}: expected cpu, cuda or cuda:N"),
        },
    })
}

/// The command-line spelling of an option value.
fn value_name(v: impl clap::ValueEnum) -> String {
    v.to_possible_value().map(|p| p.get_name().to_string()).unwrap_or_default()
}

fn threads_text(n: u32) -> String {
    if n == 0 {
        format!("libtorch default ({})", tch::get_num_threads())
    } else {
        n.to_string()
    }
}
