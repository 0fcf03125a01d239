//! One worker process of a launch: its rank and process group come from the
//! launcher's torchrun-style environment; it runs the config's stages
//! (pretraining, then finetuning) and checkpoints when asked to stop.

use crate::config::{self, RunConfig};
use crate::train::worker::Worker;
use anyhow::Result;
use std::path::Path;

/// The exit status of a worker that stopped on request after checkpointing
/// (as after SIGINT): the launcher tells it from a finished run by it, so a
/// stop that came too late to cut anything short is reported as completed.
pub const STOPPED: i32 = 130;

/// The body of `uorch worker --config CONFIG`; `Ok(true)` when it stopped on
/// request with a checkpoint before its stages were done.
pub fn run(config: &Path) -> Result<bool> {
    // A socket to a peer that died must fail the collective with an error,
    // not kill this worker by SIGPIPE: the launcher would then name this
    // rank, not the one that died (the CLI restores SIGPIPE for pipes).
    // SAFETY: setting one signal's disposition at start-up, before threads.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let cfg = config::load::<RunConfig>(config, &[])?.config;
    let threads: i32 =
        std::env::var("UORCH_THREADS").ok().and_then(|t| t.parse().ok()).unwrap_or(cfg.cpu_threads as i32);
    if threads > 0 {
        tch::set_num_threads(threads);
    }
    let w = Worker::from_env(std::time::Duration::from_secs(cfg.dist.timeout_s), cfg.dist.backend)?;
    {
        let stop = w.stop.clone();
        ctrlc::set_handler(move || stop.store(true, std::sync::atomic::Ordering::SeqCst))?;
    }
    if cfg.pretrain.is_some() {
        let out = crate::train::pretrain::run(&cfg, &w)?;
        if out.interrupted {
            return Ok(true);
        }
        if w.rank == 0 {
            eprintln!("finished {} steps, final loss {:.6}", out.steps, out.final_loss);
        }
    }
    if cfg.finetune.is_some() && crate::train::finetune::run(&cfg, &w)? {
        return Ok(true);
    }
    Ok(false)
}
