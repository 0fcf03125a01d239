//! The `uorch` command line: the clap definitions, one file per command
//! group, each with the function that runs its commands through the layers
//! below. `main.rs` only calls [`main`].

mod bench;
mod config;
mod data;
mod env;
mod launch;
mod metrics;
mod model;
mod report;
mod serve;

use crate::config::ConfigErrors;
use anyhow::Result;
use clap::{Parser, Subcommand};
use std::process::ExitCode;

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
    Env(env::EnvArgs),
    /// Inspect configuration files.
    #[command(subcommand)]
    Config(config::ConfigCmd),
    /// Datasets: prepare timeline stores and inspect them.
    #[command(subcommand)]
    Data(data::DataCmd),
    /// LLMs: import, inspect, tokenize.
    #[command(subcommand)]
    Model(model::ModelCmd),
    /// Continue a prompt with a model folder (greedy unless --temperature > 0;
    /// prints only the continuation), or ask an export (`uorch export`) its
    /// task about a user: `--store S --user ID` (the user's test question, as
    /// evaluation asked it) or `--history FILE` (JSON list of {item, rating}).
    Generate(serve::GenerateArgs),
    /// Write a finetuned run as a self-contained folder for serving: the LLM
    /// with LoRA merged (Hugging Face layout), the user encoder, Perceiver,
    /// projection and cross-attention weights, and how they connect.
    Export(serve::ExportArgs),
    /// Evaluation metrics on text files (ROUGE as rouge-score computes it).
    #[command(subcommand)]
    Metrics(metrics::MetricsCmd),
    /// Benchmarks that print their figures beside a reference.
    #[command(subcommand)]
    Bench(bench::BenchCmd),
    /// Run a config: create its run folder (resolved config, environment,
    /// TensorBoard log) and execute its stages.
    Launch(launch::LaunchArgs),
    /// Write an experiment's report (report.md with PNG and SVG plots): the
    /// paper's claims checked on paired trials, every metric with its 95%
    /// interval along each axis, quality against cost, learning curves.
    Report(report::ReportArgs),
    /// Experiments (sweeps) started by `uorch launch EXPERIMENT.yaml`.
    #[command(subcommand)]
    Sweep(launch::SweepCmd),
    /// Print a shell completion script: `uorch completions bash > /etc/bash_completion.d/uorch`,
    /// `uorch completions zsh > "${fpath[1]}/_uorch"`, `uorch completions fish > ~/.config/fish/completions/uorch.fish`.
    Completions { shell: clap_complete::Shell },
    /// One worker of a launch (started by `uorch launch` with RANK, WORLD_SIZE,
    /// MASTER_ADDR, MASTER_PORT set).
    #[command(hide = true)]
    Worker(launch::WorkerArgs),
}

/// The program: parse the arguments, run the command, map errors to exit
/// statuses (2 for configuration errors, 1 for others).
pub fn main() -> ExitCode {
    // A closed pipe (`uorch ... | head`) ends the program quietly, as for other tools.
    // SAFETY: restoring the default disposition of one signal at start-up.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    // Before any tensor work: make libtorch's CUDA half visible when it exists.
    crate::torch_runtime::init();
    crate::ffi::quiet_cpp_logs();
    match run(Cli::parse().command) {
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

fn run(command: Command) -> Result<ExitCode> {
    match command {
        Command::Env(a) => env::run(a).map(done),
        Command::Config(c) => config::run(c).map(done),
        Command::Data(c) => data::run(c).map(done),
        Command::Model(c) => model::run(c).map(done),
        Command::Generate(a) => serve::generate(a).map(done),
        Command::Export(a) => serve::export(a).map(done),
        Command::Metrics(c) => metrics::run(c).map(done),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "uorch", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(c) => bench::run(c).map(done),
        Command::Launch(a) => launch::launch(a),
        Command::Report(a) => report::run(a).map(done),
        Command::Sweep(c) => launch::sweep(c).map(done),
        Command::Worker(a) => launch::worker(a),
    }
}

fn done(_: ()) -> ExitCode {
    ExitCode::SUCCESS
}

/// `--device`: cpu, cuda or cuda:N (default: cuda:0 when available).
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

/// Logical cores of this machine.
fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}
