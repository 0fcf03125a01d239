//! The `uorch` command line.

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use uorch::config::{self, emit, ConfigErrors, RunConfig};
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
    /// Run a config: create its run folder (resolved config, environment,
    /// TensorBoard log) and execute its stages.
    Launch {
        #[command(flatten)]
        src: ConfigSource,
        /// Print what would run, change nothing.
        #[arg(long)]
        dry_run: bool,
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
            let resolved = src.load()?;
            let value = serde_json::to_value(&resolved.config)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else {
                print!("{}", emit::to_yaml(&value, origins.then_some(&resolved.tree)));
            }
        }
        Command::Config(ConfigCmd::Check { src }) => {
            src.load()?;
            println!("{}: ok", src.file.display());
        }
        Command::Config(ConfigCmd::Presets) => {
            for name in config::preset_names() {
                println!("{name}");
            }
        }
        Command::Launch { src, dry_run } => launch(&src, dry_run)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn launch(src: &ConfigSource, dry_run: bool) -> Result<()> {
    let cfg = src.load()?.config;
    let dir = cfg.run_dir();
    if dry_run {
        println!("run `{}` would be written to {}", cfg.name, dir.display());
        println!("seed {}, cpu threads {}", cfg.seed, threads_text(cfg.cpu_threads));
        println!("stages: none (this build has no data, pretraining or finetuning stages yet)");
        return Ok(());
    }
    if cfg.cpu_threads > 0 {
        tch::set_num_threads(cfg.cpu_threads as i32);
    }
    tch::manual_seed(cfg.seed as i64);
    let env = env_report::collect();
    let dir = rundir::prepare(&cfg, &env)?;
    let mut events = tb::EventWriter::create(&rundir::tb_dir(&dir))?;
    rundir::log_run_start(&mut events, &cfg, &env_report::render(&env))?;
    rundir::log_run_end(&mut events, true)?;
    println!("run `{}` recorded in {}", cfg.name, dir.display());
    println!(
        "  {}  resolved config\n  {}  environment\n  {}/  TensorBoard (hparams, config, env)",
        rundir::CONFIG_FILE,
        rundir::ENV_FILE,
        rundir::TB_DIR
    );
    println!("stages: none (this build has no data, pretraining or finetuning stages yet)");
    Ok(())
}

fn threads_text(n: u32) -> String {
    if n == 0 { format!("libtorch default ({})", tch::get_num_threads()) } else { n.to_string() }
}
