//! An experiment folder's finetuning trials as the report reads them: each
//! one's task, where it stands on every ablation axis (from its resolved
//! config, so a grid and a list of one-change arms read alike), every result
//! of its run (the finetuned model's and the baselines', with per-question
//! scores), its training loss and its validation scores.

use crate::config::finetune::Integration;
use crate::config::{self, value_name, RunConfig};
use crate::data::tasks::Task;
use crate::sweep::plan::{Plan, StageKind};
use crate::sweep::state;
use crate::task::evaluate::{finetuned, Evaluated};
use crate::train::metrics::{FinetuneMetrics, Validation};
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::path::Path;

/// The ablation axes of USER-LLM a trial stands on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Axis {
    Integration,
    Placement,
    Latents,
    Strategy,
    History,
    Dataset,
}

impl Axis {
    pub const ALL: [Axis; 6] =
        [Axis::Integration, Axis::Placement, Axis::Latents, Axis::Strategy, Axis::History, Axis::Dataset];

    pub fn name(self) -> &'static str {
        match self {
            Axis::Integration => "integration",
            Axis::Placement => "placement",
            Axis::Latents => "latents",
            Axis::Strategy => "strategy",
            Axis::History => "history",
            Axis::Dataset => "dataset",
        }
    }
}

/// What an axis value is where the axis does not apply (the placement of a
/// soft prompt, the latents of TextPrompt).
pub const NOT_APPLICABLE: &str = "-";

/// Where a finetuning config stands on each axis.
pub fn factors(cfg: &RunConfig) -> Result<BTreeMap<Axis, String>> {
    let f = cfg.finetune.as_ref().context("no finetune section")?;
    let d = cfg.data.as_ref().context("no data section")?;
    let na = || NOT_APPLICABLE.to_string();
    let placement = match f.integration {
        Integration::CrossAttention => crate::sweep::spec::label(&serde_json::to_value(&f.cross_attention_layers)?),
        _ => na(),
    };
    let latents = match f.integration {
        Integration::TextPrompt => na(),
        _ => f.perceiver.as_ref().map_or(0, |p| p.latents).to_string(),
    };
    let dataset =
        d.store.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| d.store.display().to_string());
    Ok(BTreeMap::from([
        (Axis::Integration, value_name(&f.integration)),
        (Axis::Placement, placement),
        (Axis::Latents, latents),
        (Axis::Strategy, value_name(&f.strategy)),
        (Axis::History, d.window.to_string()),
        (Axis::Dataset, dataset),
    ]))
}

/// One finished finetuning trial.
pub struct TrialResult {
    pub name: String,
    pub task: Task,
    pub factors: BTreeMap<Axis, String>,
    /// Every result of its run: the finetuned model, the model before
    /// finetuning where evaluated, the baselines.
    pub results: Vec<Evaluated>,
    /// Training loss by step.
    pub loss: Vec<(u64, f64)>,
    pub validation: Vec<Validation>,
    /// The step whose weights were tested.
    pub selected_step: u64,
}

impl TrialResult {
    pub fn finetuned(&self) -> Option<&Evaluated> {
        finetuned(&self.results)
    }

    pub fn factor(&self, a: Axis) -> &str {
        self.factors.get(&a).map_or(NOT_APPLICABLE, String::as_str)
    }

    /// The validation score of the tested checkpoint, where it was validated.
    pub fn valid_score(&self) -> Option<f64> {
        self.validation.iter().find(|v| v.step == self.selected_step).map(|v| v.value)
    }

    /// Whether it stands where `other` does on every axis but `except`.
    pub fn same_but(&self, other: &TrialResult, except: &[Axis]) -> bool {
        self.task == other.task && Axis::ALL.iter().all(|a| except.contains(a) || self.factor(*a) == other.factor(*a))
    }
}

/// An experiment's finished finetuning trials, and the others by state.
pub struct Loaded {
    pub plan: Plan,
    pub trials: Vec<TrialResult>,
    /// (trial, state) of those without results yet.
    pub unfinished: Vec<(String, String)>,
}

pub fn load(dir: &Path) -> Result<Loaded> {
    let plan = Plan::load(dir)?;
    let mut trials = Vec::new();
    let mut unfinished = Vec::new();
    for t in &plan.trials {
        let stage = plan.stage(&t.stage).context("trial stage in the plan")?;
        if stage.kind != StageKind::Finetune {
            continue;
        }
        let metrics_path = state::metrics_file(stage);
        let Ok(bytes) = std::fs::read(&metrics_path) else {
            unfinished.push((t.name.clone(), value_name(&state::read(&plan.dir, &stage.name).state)));
            continue;
        };
        let m: FinetuneMetrics =
            serde_json::from_slice(&bytes).with_context(|| format!("{}: unreadable", metrics_path.display()))?;
        let config_path = plan.config_path(&stage.name);
        let cfg = config::load::<RunConfig>(&config_path, &[])
            .map_err(|e| anyhow::anyhow!("{}: {e}", config_path.display()))?
            .config;
        trials.push(TrialResult {
            name: t.name.clone(),
            task: m.task,
            factors: factors(&cfg)?,
            results: m.results,
            loss: loss_curve(&stage.run_dir.join(stage.kind.files().log())),
            validation: m.validation,
            selected_step: m.selected_step,
        });
    }
    Ok(Loaded { plan, trials, unfinished })
}

/// (step, loss) of each line of a step log; lines that do not parse are skipped.
fn loss_curve(path: &Path) -> Vec<(u64, f64)> {
    let Ok(text) = std::fs::read_to_string(path) else { return Vec::new() };
    text.lines()
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            Some((v["step"].as_u64()?, v["loss"].as_f64()?))
        })
        .collect()
}
