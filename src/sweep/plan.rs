//! From an experiment file to stages: each trial's run config, split into
//! encoder pretraining (one run per distinct data, encoder, pretraining and
//! worker settings, shared by every trial that needs it) and finetuning
//! (which waits for its encoder). TextPrompt trials need no encoder.

use super::layout::{self, PLAN_FILE};
use super::spec::{SweepSpec, TrialSpec};
use crate::config::{self, emit, RunConfig};
use crate::rundir::StageFiles;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StageKind {
    Pretrain,
    Finetune,
}

impl StageKind {
    /// Which of the run folder's stage files this stage writes.
    pub fn files(self) -> StageFiles {
        match self {
            StageKind::Pretrain => StageFiles::Pretrain,
            StageKind::Finetune => StageFiles::Finetune,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stage {
    pub name: String,
    pub kind: StageKind,
    pub run_dir: PathBuf,
    /// Stages that must be complete first.
    pub needs: Vec<String>,
    /// Worker processes (GPUs with GPUs).
    pub nproc: usize,
    /// Optimizer steps (for progress and ETA).
    pub steps: u64,
    #[serde(skip)]
    pub config: Option<RunConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Trial {
    pub name: String,
    pub axes: Vec<(String, String)>,
    /// The stage whose results are the trial's (its last).
    pub stage: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    pub experiment: String,
    pub source: PathBuf,
    pub dir: PathBuf,
    pub axes: Vec<String>,
    pub trials: Vec<Trial>,
    pub stages: Vec<Stage>,
    pub sweep: SweepSpec,
}

/// Whether a config file is an experiment (has a `sweep:` section).
pub fn is_experiment(path: &Path) -> Result<bool> {
    let tree = config::tree::parse_file(path).map_err(|e| anyhow::anyhow!("{}: {}", e.origin, e.message))?;
    Ok(tree.get(super::spec::SWEEP_KEY).is_some())
}

/// A config file's run config and, for an experiment, its sweep section
/// (the run config is then the base every trial starts from).
pub fn load_base(path: &Path, overrides: &[String]) -> Result<(config::Resolved<RunConfig>, Option<SweepSpec>)> {
    let mut tree = config::load_tree(path, overrides)?;
    let sweep = SweepSpec::take(&mut tree)?;
    let config = config::from_tree(&tree)?;
    Ok((config::Resolved { config, tree }, sweep))
}

/// A pretraining run's name (its folder under `runs/pretrain/`): the data
/// store's name and a digest of everything that sets what it trains.
fn pretrain_run_name(cfg: &RunConfig) -> String {
    let key = serde_json::json!({"seed": cfg.seed, "data": cfg.data, "encoder": cfg.encoder, "pretrain": cfg.pretrain, "nproc": cfg.dist.nproc, "cpu_threads": cfg.cpu_threads});
    let store = cfg
        .data
        .as_ref()
        .and_then(|d| d.store.file_name())
        .map(|n| format!("{}-", super::spec::label(&serde_json::json!(n.to_string_lossy()))))
        .unwrap_or_default();
    format!("{store}{}", crate::fsutil::config_digest(&key, 10))
}

/// Build the plan of an experiment file (with `--set` overrides applied to
/// the base config). `gpus`: GPUs on this machine (0 = CPU slots).
pub fn build(path: &Path, overrides: &[String], gpus: usize) -> Result<Plan> {
    let mut base = config::load_tree(path, overrides)?;
    let sweep = SweepSpec::take(&mut base)?.with_context(|| format!("{}: no `sweep:` section", path.display()))?;
    let head: RunConfig = config::from_tree(&{
        let mut b = base.clone();
        config::apply_override(&mut b, "name=experiment")?;
        b
    })
    .map_err(|e| anyhow::anyhow!("{}: the base config: {e}", path.display()))?;
    let experiment =
        base.get("name").map(|n| n.to_json()).and_then(|j| j.as_str().map(str::to_string)).unwrap_or_default();
    if !config::run::is_valid_name(&experiment) {
        bail!("{}: `name` (the experiment's folder name) must be a folder name, found {experiment:?}", path.display());
    }
    let dir = head.output_root.join(&experiment);
    let runs = layout::runs(&dir);
    let mut stages: Vec<Stage> = Vec::new();
    let mut trials = Vec::new();
    let add = |stages: &mut Vec<Stage>, name: String, kind: StageKind, needs: Vec<String>, cfg: RunConfig| {
        if stages.iter().any(|s| s.name == name) {
            return;
        }
        let steps = match kind {
            StageKind::Pretrain => cfg.pretrain.as_ref().map(|p| p.steps).unwrap_or(0),
            StageKind::Finetune => cfg.finetune.as_ref().map(|f| f.steps).unwrap_or(0),
        };
        stages.push(Stage {
            name,
            kind,
            run_dir: cfg.run_dir(),
            needs,
            nproc: cfg.dist.nproc.count(),
            steps,
            config: Some(cfg),
        });
    };
    for t in sweep.trials()? {
        let cfg = trial_config(&base, &t, &experiment, &runs, gpus, sweep.gpus_per_trial)
            .with_context(|| format!("{}: trial {}", path.display(), t.name))?;
        let needs_encoder =
            cfg.finetune.as_ref().is_some_and(|f| f.integration.mode().reads_user() && f.encoder_from.is_none());
        let stage = match (&cfg.pretrain, &cfg.finetune) {
            (Some(_), Some(_)) if !needs_encoder => {
                let mut f = cfg.clone();
                f.pretrain = None;
                add(&mut stages, t.name.clone(), StageKind::Finetune, Vec::new(), f);
                t.name.clone()
            }
            (Some(_), ft) => {
                let mut p = cfg.clone();
                p.finetune = None;
                p.trial.clear();
                p.experiment = None;
                p.hparams_session = false;
                p.name = pretrain_run_name(&p);
                p.output_root = layout::pretrain_runs(&dir);
                let pname = format!("pretrain-{}", p.name);
                let encoder = p.run_dir();
                add(&mut stages, pname.clone(), StageKind::Pretrain, Vec::new(), p);
                if ft.is_some() {
                    let mut f = cfg.clone();
                    f.pretrain = None;
                    if let Some(ft) = &mut f.finetune {
                        ft.encoder_from = Some(encoder);
                    }
                    add(&mut stages, t.name.clone(), StageKind::Finetune, vec![pname], f);
                    t.name.clone()
                } else {
                    pname
                }
            }
            (None, Some(_)) => {
                add(&mut stages, t.name.clone(), StageKind::Finetune, Vec::new(), cfg.clone());
                t.name.clone()
            }
            (None, None) => {
                bail!("{}: trial {}: no pretrain or finetune section: nothing to run", path.display(), t.name)
            }
        };
        trials.push(Trial { name: t.name, axes: t.axes, stage });
    }
    let axes = sweep.axes.iter().map(|a| a.name.clone()).collect();
    Ok(Plan { experiment, source: path.to_path_buf(), dir, axes, trials, stages, sweep })
}

/// A trial's run config: the base with the trial's keys set, named after the
/// trial, its folder under `runs`.
fn trial_config(
    base: &config::tree::Node,
    t: &TrialSpec,
    experiment: &str,
    runs: &Path,
    gpus: usize,
    gpus_per_trial: usize,
) -> Result<RunConfig> {
    let mut tree = base.clone();
    for (k, v) in &t.set {
        config::apply_override(&mut tree, &format!("{k}={v}"))?;
    }
    config::apply_override(&mut tree, &format!("name={}", serde_json::json!(t.name)))?;
    config::apply_override(&mut tree, &format!("output_root={}", serde_json::json!(runs)))?;
    if gpus > 0 {
        config::apply_override(&mut tree, &format!("dist.nproc={gpus_per_trial}"))?;
    }
    let mut cfg: RunConfig = config::from_tree(&tree)?;
    // The stage configs hold the worker count, as a plain run's folder does.
    let workers = crate::launch::gpus::workers(&cfg.dist.nproc, cfg.dist.backend, gpus)
        .map_err(|e| anyhow::anyhow!("trial {}: {e}", t.name))?;
    cfg.dist.nproc = config::run::Nproc::Count(workers);
    cfg.trial = t.axes.iter().cloned().collect();
    cfg.experiment = Some(experiment.to_string());
    Ok(cfg)
}

impl Plan {
    pub fn stage(&self, name: &str) -> Option<&Stage> {
        self.stages.iter().find(|s| s.name == name)
    }

    pub fn config_path(&self, stage: &str) -> PathBuf {
        layout::stage_config(&self.dir, stage)
    }

    /// Write the stage configs and the plan into the experiment folder. A
    /// stage folder that already holds a run of another config is an error
    /// (its results would be mixed up with this config's).
    pub fn write(&self) -> Result<()> {
        let legacy = legacy_runs(&self.dir);
        if !legacy.is_empty() {
            let list: Vec<String> = legacy.iter().map(|p| p.display().to_string()).collect();
            bail!(
                "{} was run by an older uorch, which kept each stage's TensorBoard events in a `tb` subfolder and its pretraining in runs/pretrain-*:\n  {}\nthis uorch lays out runs/ differently and cannot resume it; `uorch sweep status` and `uorch report` still read it. To run the experiment again, give it another `name` or delete {}",
                self.dir.display(),
                list.join("\n  "),
                self.dir.display()
            );
        }
        std::fs::create_dir_all(layout::stages(&self.dir))?;
        for s in &self.stages {
            let cfg = s.config.as_ref().context("stage config")?;
            let yaml = emit::to_yaml(&serde_json::to_value(cfg)?, None);
            let previous = s.run_dir.join(crate::rundir::CONFIG_FILE);
            if let Ok(old) = std::fs::read_to_string(&previous) {
                if old != yaml {
                    bail!(
                        "{} ran with another configuration than this experiment now gives it ({}): use another experiment name, or delete {} to rerun it",
                        s.run_dir.display(),
                        self.config_path(&s.name).display(),
                        s.run_dir.display()
                    );
                }
            }
            crate::fsutil::write_atomic(&self.config_path(&s.name), yaml.as_bytes())?;
        }
        crate::fsutil::write_atomic(&layout::plan(&self.dir), serde_json::to_string_pretty(self)?.as_bytes())?;
        Ok(())
    }

    /// Read the plan an experiment folder holds (any layout: `uorch sweep
    /// status` and `uorch report` read old experiments too).
    pub fn load(dir: &Path) -> Result<Plan> {
        let path = layout::plan(dir);
        serde_json::from_slice(
            &std::fs::read(&path)
                .with_context(|| format!("{} is not an experiment folder (no {PLAN_FILE})", dir.display()))?,
        )
        .with_context(|| format!("{}: unreadable", path.display()))
    }
}

/// The stage run folders of an experiment in the layout before 2026-12-04
/// (their TensorBoard events in `<run>/tb/`).
fn legacy_runs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(layout::runs(dir)) else { return Vec::new() };
    let mut old: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| crate::rundir::RunDir::new(p).legacy_events().is_some())
        .collect();
    old.sort();
    old
}
