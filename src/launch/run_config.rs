//! Running one config (`uorch launch RUN.yaml`): create the run folder,
//! open the run's TensorBoard session (HParams, config and environment text;
//! its end status), split this machine's cores among the workers, start and
//! supervise them, and summarise the stages' metrics.

use super::supervise::{launch, Ended};
use super::topology::Topology;
use crate::config::{emit, value_name, RunConfig};
use crate::env_report;
use crate::rundir::{RunDir, StageFiles};
use crate::task::evaluate::metric_names;
use crate::tb::{EventWriter, HParamInfo, HValue, SessionStatus};
use crate::train::metrics::{self, FinetuneMetrics, PretrainMetrics};
use anyhow::Result;

/// What `--dry-run` prints and the run then does.
pub fn describe(cfg: &RunConfig) -> String {
    format!(
        "run `{}` would be written to {}\nseed {}, cpu threads per worker {}, {} worker(s) per machine\nstages: {}\n",
        cfg.name,
        cfg.run_dir().display(),
        cfg.seed,
        threads_text(cfg.cpu_threads, cfg.dist.nproc.count()),
        cfg.dist.nproc.count(),
        stages(cfg, cfg.dist.nproc.count())
    )
}

/// Run `cfg` on this machine's part of `topo` (its `nproc` is the config's),
/// restarting the workers after a failure up to `max_restarts` times.
pub fn run(cfg: &RunConfig, topo: Topology, max_restarts: usize) -> Result<Ended> {
    tch::manual_seed(cfg.seed as i64);
    let missing: Vec<String> = cfg.missing_paths(true).into_iter().map(|(k, m)| format!("{k}: {m}")).collect();
    if !missing.is_empty() {
        anyhow::bail!(
            "run `{}` cannot start, {} input path(s) missing:\n  {}",
            cfg.name,
            missing.len(),
            missing.join("\n  ")
        );
    }
    // One launch per run folder (the first machine's launcher holds it; the
    // others of a multi-machine run share it), and a launch that will be
    // refused is refused before it writes a byte.
    let _lock = if topo.node_rank == 0 {
        let lock = crate::fsutil::lock_folder(RunDir::of(cfg).path(), crate::rundir::LOCK);
        Some(lock.map_err(|e| anyhow::anyhow!("another `uorch launch` is running run `{}`: {e:#}", cfg.name))?)
    } else {
        None
    };
    let workers = Topology { nproc: cfg.dist.nproc.count(), ..topo.clone() }.resolve()?;
    crate::train::preflight::check_run_folder(cfg, workers.nproc * workers.nnodes)?;
    let env = env_report::collect();
    // A resumed run keeps the session it started.
    let fresh = !crate::tb::holds_events(RunDir::of(cfg).events());
    let dir = RunDir::create(cfg, &env)?;
    let mut events = EventWriter::create(dir.events())?;
    if fresh {
        session_start(&mut events, cfg, &env_report::render(&env))?;
    }
    println!("run `{}` in {}", cfg.name, dir.path().display());
    println!("stages: {}", stages(cfg, workers.nproc * workers.nnodes));
    if cfg.pretrain.is_none() && cfg.finetune.is_none() {
        session_end(&mut events, cfg, true)?;
        return Ok(Ended::Completed);
    }
    let topo = workers;
    let (threads, _) = threads_per_worker(cfg.cpu_threads, topo.nproc);
    let timeout = std::time::Duration::from_secs(cfg.dist.timeout_s);
    match launch(&dir.config(), &topo, threads, max_restarts, &dir, timeout) {
        Ok(Ended::Completed) => {
            session_end(&mut events, cfg, true)?;
            if topo.node_rank != 0 {
                // Rank 0 (on the first machine) writes the metrics.
                println!("done: machine {} of {}; results are written on machine 0", topo.node_rank, topo.nnodes);
            } else {
                print!("{}", summary(cfg, &dir)?);
                // The run shows under its name on its output root.
                println!("TensorBoard: {}", crate::paths::tensorboard_command(&cfg.output_root));
            }
            Ok(Ended::Completed)
        }
        Ok(Ended::Interrupted) => Ok(Ended::Interrupted),
        Err(e) => {
            session_end(&mut events, cfg, false)?;
            Err(e)
        }
    }
}

/// CPU threads per worker and where the number came from: the config's
/// `cpu_threads`, else an exported `OMP_NUM_THREADS` (torchrun's per-worker
/// setting), else this machine's cores shared by the workers (and by the
/// trials a sweep runs at once).
fn threads_per_worker(configured: u32, workers: usize) -> (usize, &'static str) {
    if configured > 0 {
        return (configured as usize, "cpu_threads");
    }
    if let Some(n) =
        std::env::var("OMP_NUM_THREADS").ok().and_then(|t| t.trim().parse::<usize>().ok()).filter(|&n| n > 0)
    {
        return (n, "OMP_NUM_THREADS");
    }
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let trials: usize = std::env::var("UORCH_CONCURRENT_TRIALS").ok().and_then(|t| t.parse().ok()).unwrap_or(1).max(1);
    ((cores / (workers * trials)).max(1), "the cores over the workers")
}

/// The finished stages' results, as the launcher prints them.
fn summary(cfg: &RunConfig, dir: &RunDir) -> Result<String> {
    let mut s = String::new();
    if cfg.pretrain.is_some() {
        let m: PretrainMetrics = metrics::read(&dir.metrics(StageFiles::Pretrain))?;
        s += &format!("pretraining done: final loss {:.4}\n", m.final_loss);
        s += &format!("  {:<12} {:>9} {:>9} {:>9} {:>9}\n", "test", "recall@1", "recall@5", "recall@10", "ndcg@10");
        for (who, r) in [("encoder", &m.encoder), ("popularity", &m.popularity)] {
            s += &format!(
                "  {:<12} {:>9.4} {:>9.4} {:>9.4} {:>9.4}\n",
                who, r.recall_1, r.recall_5, r.recall_10, r.ndcg_10
            );
        }
    }
    if cfg.finetune.is_some() {
        let m: FinetuneMetrics = metrics::read(&dir.metrics(StageFiles::Finetune))?;
        s += &format!("finetuning done ({} of {} parameters trained):\n", m.trainable_parameters, m.parameters);
        s += &crate::task::evaluate::table(m.task, &m.results);
        for line in crate::task::evaluate::finetuned_against_the_rest(m.task, &m.results) {
            s += &format!("  {line}\n");
        }
    }
    Ok(s)
}

/// What the run will do, `world` ranks in all.
fn stages(cfg: &RunConfig, world: usize) -> String {
    let mut v = Vec::new();
    if let Some(p) = &cfg.pretrain {
        v.push(format!(
            "encoder pretraining ({} steps, batch {} per rank x {} rank(s)) and next-item evaluation",
            p.steps, p.batch_size, world
        ));
    }
    if let Some(f) = &cfg.finetune {
        v.push(format!(
            "{} finetuning ({} integration, {} strategy, {} steps) and evaluation against baselines",
            value_name(&f.task),
            value_name(&f.integration),
            value_name(&f.strategy),
            f.steps
        ));
    }
    if v.is_empty() {
        "none (the config has no pretrain or finetune section)".into()
    } else {
        v.join(", then ")
    }
}

fn threads_text(configured: u32, workers: usize) -> String {
    let (n, from) = threads_per_worker(configured, workers);
    format!("{n} ({from})")
}

/// Leaf values of a JSON tree as `a.b.c` → value, for the HParams dashboard.
fn flatten(value: &serde_json::Value) -> Vec<(String, HValue)> {
    fn go(v: &serde_json::Value, prefix: &str, out: &mut Vec<(String, HValue)>) {
        use serde_json::Value as J;
        let leaf = match v {
            J::Object(m) => {
                for (k, v) in m {
                    let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    go(v, &key, out);
                }
                return;
            }
            J::Null => return,
            J::Bool(b) => HValue::Bool(*b),
            J::Number(n) => HValue::Num(n.as_f64().unwrap_or(f64::NAN)),
            J::String(s) => HValue::Str(s.clone()),
            J::Array(_) => HValue::Str(v.to_string()),
        };
        out.push((prefix.to_string(), leaf));
    }
    let mut out = Vec::new();
    go(value, "", &mut out);
    out
}

/// TensorBoard records that describe a run: its hyperparameters (HParams
/// session), its resolved config and environment as text.
fn session_start(tb: &mut EventWriter, config: &RunConfig, env_text: &str) -> Result<()> {
    let json = serde_json::to_value(config)?;
    let hparams = flatten(&json);
    // A sweep's one experiment record is at its log root (its trials are
    // sessions of it, its shared stages no sessions); a plain run has its own.
    if config.experiment.is_none() && config.hparams_session {
        let (infos, metrics) = experiment(config, &hparams);
        tb.hparams_experiment(&infos, &metrics)?;
    }
    if config.hparams_session {
        tb.hparams_session_start(&hparams, &config.name)?;
    }
    tb.text("config", 0, &format!("```yaml\n{}```", emit::to_yaml(&json, None)))?;
    tb.text("env", 0, &format!("```\n{env_text}```"))?;
    Ok(())
}

/// The keys that set what a run measures, shown first in its HParams table.
const LEADING_KEYS: &[&str] = &[
    "finetune.task",
    "finetune.integration",
    "finetune.strategy",
    "finetune.cross_attention_layers",
    "finetune.perceiver.latents",
    "finetune.steps",
    "finetune.batch_size",
    "finetune.lr",
    "data.window",
    "pretrain.steps",
    "pretrain.batch_size",
    "pretrain.lr",
    "encoder.dim",
    "seed",
];

/// A plain run's HParams experiment record: its config keys (those of
/// [`LEADING_KEYS`] first) and the metrics its stages write last.
fn experiment(config: &RunConfig, hparams: &[(String, HValue)]) -> (Vec<HParamInfo>, Vec<String>) {
    let rank = |k: &str| LEADING_KEYS.iter().position(|l| *l == k).unwrap_or(LEADING_KEYS.len());
    let mut keys: Vec<&(String, HValue)> = hparams.iter().collect();
    keys.sort_by_key(|(k, _)| rank(k));
    let infos = keys.into_iter().map(|(k, v)| (k.clone(), v.kind(), Vec::new())).collect();
    let mut metrics = Vec::new();
    if let Some(f) = &config.finetune {
        metrics.extend(metric_names(f.task).iter().map(|m| format!("finetune/test/{m}")));
        metrics.push("finetune/test/gflops_per_example".into());
        metrics.push("finetune/loss".into());
    }
    if config.pretrain.is_some() {
        metrics.push("pretrain/loss".into());
    }
    (infos, metrics)
}

fn session_end(tb: &mut EventWriter, config: &RunConfig, ok: bool) -> Result<()> {
    if config.hparams_session {
        tb.hparams_session_end(if ok { SessionStatus::Success } else { SessionStatus::Failure })?;
    }
    tb.flush()?;
    Ok(())
}
