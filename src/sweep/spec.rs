//! Experiment files: a run config (the base every trial starts from, with
//! `include:` presets as usual) plus a `sweep:` section of grid axes over any
//! config key, extra trials (e.g. baselines), and how trials are scheduled.
//!
//! ```yaml
//! sweep:
//!   axes:
//!     - {name: layers, key: finetune.cross_attention_layers, values: [every_3, upper_half]}
//!     - name: latents                 # labelled values: label -> keys to set
//!       values:
//!         "0": {finetune.perceiver: null}
//!         "16": {finetune.perceiver: {latents: 16, layers: 2, heads: 4}}
//!   extra:
//!     - {name: textprompt, set: {finetune.integration: text_prompt, finetune.strategy: lora}}
//!   retries: 1
//! ```
//!
//! Trials are the grid's cross product, named from their axis values
//! (`layers=every_3,latents=16`; stable across reruns), then the extras
//! (crossed with the axes they list under `over:`).

use crate::config::tree::{Node, Value};
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const SWEEP_KEY: &str = "sweep";

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SweepSpec {
    #[serde(default)]
    pub axes: Vec<Axis>,
    #[serde(default)]
    pub extra: Vec<Extra>,
    /// GPUs each trial uses (its workers: one per GPU).
    #[serde(default = "one")]
    pub gpus_per_trial: usize,
    /// Trials run at once on a machine without GPUs.
    #[serde(default = "one")]
    pub cpu_slots: usize,
    /// Extra attempts of a failed stage before it is marked failed.
    #[serde(default = "one")]
    pub retries: usize,
}

fn one() -> usize {
    1
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Axis {
    pub name: String,
    /// The config key a plain list of values sets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub values: AxisValues,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum AxisValues {
    /// Values of `key`.
    List(Vec<serde_json::Value>),
    /// Label → config keys to set.
    Labelled(BTreeMap<String, BTreeMap<String, serde_json::Value>>),
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Extra {
    pub name: String,
    /// Config keys to set.
    #[serde(default)]
    pub set: BTreeMap<String, serde_json::Value>,
    /// Axes this trial is crossed with (default: none).
    #[serde(default)]
    pub over: Vec<String>,
}

/// One trial before its config is built: name, axis labels, keys to set.
#[derive(Debug, Clone, PartialEq)]
pub struct TrialSpec {
    pub name: String,
    pub axes: Vec<(String, String)>,
    pub set: Vec<(String, serde_json::Value)>,
}

/// A value as part of a folder name: letters, digits, `.`, `_`, `-`.
pub fn label(v: &serde_json::Value) -> String {
    let raw = match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "none".into(),
        serde_json::Value::Array(a) => a.iter().map(label).collect::<Vec<_>>().join("-"),
        other => other.to_string(),
    };
    raw.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '-' }).collect()
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 40
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && !s.starts_with('-')
}

/// Config keys and the values a trial sets them to.
type Settings = Vec<(String, serde_json::Value)>;
/// (axis, label) of each axis a trial stands on.
type Labels = Vec<(String, String)>;

/// (label, keys to set) of each value of an axis.
fn axis_points(a: &Axis) -> Result<Vec<(String, Settings)>> {
    let points: Vec<(String, Settings)> = match (&a.values, &a.key) {
        (AxisValues::List(vs), Some(key)) => vs.iter().map(|v| (label(v), vec![(key.clone(), v.clone())])).collect(),
        (AxisValues::List(_), None) => {
            bail!("sweep.axes: axis `{}` lists plain values but has no `key:` to set", a.name)
        }
        (AxisValues::Labelled(m), None) => m
            .iter()
            .map(|(l, set)| {
                (
                    label(&serde_json::Value::String(l.clone())),
                    set.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                )
            })
            .collect(),
        (AxisValues::Labelled(_), Some(_)) => {
            bail!("sweep.axes: axis `{}` has labelled values (label: {{key: value}}), so `key:` must go", a.name)
        }
    };
    if points.is_empty() {
        bail!("sweep.axes: axis `{}` has no values", a.name);
    }
    let mut seen = std::collections::HashSet::new();
    for (l, _) in &points {
        if l.is_empty() || !seen.insert(l.clone()) {
            bail!("sweep.axes: axis `{}`: two values share the name {l:?} in trial names; use labelled values", a.name);
        }
    }
    Ok(points)
}

/// No two sources (axes, an extra trial) of one trial set the same key, or
/// a key inside another's (`finetune.perceiver` and
/// `finetune.perceiver.latents`): the later would silently overwrite the
/// earlier, and the trial would be labelled with a value it did not train.
fn no_clash(set: &Settings, from: &[String], trial: &str) -> Result<()> {
    let inside = |a: &str, b: &str| a == b || b.strip_prefix(a).is_some_and(|rest| rest.starts_with('.'));
    for (i, (a, _)) in set.iter().enumerate() {
        for (j, (b, _)) in set.iter().enumerate().skip(i + 1) {
            if from[i] != from[j] && (inside(a, b) || inside(b, a)) {
                let what = if a == b { format!("both set `{a}`") } else { format!("set `{a}` and `{b}`") };
                bail!(
                    "sweep: {} and {} {what}: in trial `{trial}` one would overwrite the other, and the trial would carry a label it did not train with; set each key in one place",
                    from[i],
                    from[j]
                );
            }
        }
    }
    Ok(())
}

impl SweepSpec {
    /// Read the `sweep:` section of an experiment tree (taking it out, so the
    /// rest is the base run config).
    pub fn take(tree: &mut Node) -> Result<Option<SweepSpec>> {
        let Value::Map(entries) = &mut tree.value else { return Ok(None) };
        let Some(pos) = entries.iter().position(|(k, _)| k.name == SWEEP_KEY) else { return Ok(None) };
        let (_, node) = entries.remove(pos);
        let spec: SweepSpec = serde_path_to_error::deserialize(&node.to_json())
            .map_err(|e| anyhow::anyhow!("{}: sweep.{}: {}", node.origin, e.path(), e.inner()))?;
        Ok(Some(spec))
    }

    /// Every trial, grid first (axes in order, values in order), then extras.
    pub fn trials(&self) -> Result<Vec<TrialSpec>> {
        if self.gpus_per_trial == 0 || self.cpu_slots == 0 {
            bail!("sweep: gpus_per_trial and cpu_slots must be at least 1");
        }
        let mut names = std::collections::HashSet::new();
        for a in &self.axes {
            if !is_identifier(&a.name) || !names.insert(a.name.clone()) {
                bail!("sweep.axes: axis name {:?} must be unique and made of letters, digits, _ and -", a.name);
            }
        }
        let points: Vec<_> = self.axes.iter().map(axis_points).collect::<Result<_>>()?;
        // Each setting with where it comes from, for the clash check.
        let cross = |axes: &[usize]| -> Vec<(Labels, Settings, Vec<String>)> {
            let mut out = vec![(Vec::new(), Vec::new(), Vec::new())];
            for &i in axes {
                let mut next = Vec::new();
                for (labels, set, from) in &out {
                    for (l, s) in &points[i] {
                        let mut labels = labels.clone();
                        labels.push((self.axes[i].name.clone(), l.clone()));
                        let (mut set, mut from) = (set.clone(), from.clone());
                        set.extend(s.iter().cloned());
                        from.extend(s.iter().map(|_| format!("axis `{}` (value `{l}`)", self.axes[i].name)));
                        next.push((labels, set, from));
                    }
                }
                out = next;
            }
            out
        };
        let name_of = |prefix: Option<&str>, labels: &[(String, String)]| -> String {
            let parts: Vec<String> =
                prefix.map(str::to_string).into_iter().chain(labels.iter().map(|(a, l)| format!("{a}={l}"))).collect();
            parts.join(",")
        };
        let mut trials = Vec::new();
        if !self.axes.is_empty() {
            let all: Vec<usize> = (0..self.axes.len()).collect();
            for (labels, set, from) in cross(&all) {
                let name = name_of(None, &labels);
                no_clash(&set, &from, &name)?;
                trials.push(TrialSpec { name, axes: labels, set });
            }
        }
        for e in &self.extra {
            if !is_identifier(&e.name) {
                bail!("sweep.extra: name {:?} must be made of letters, digits, _ and -", e.name);
            }
            if super::layout::RESERVED.contains(&e.name.as_str()) {
                bail!(
                    "sweep.extra: the name {:?} is taken: runs/{}/ holds the experiment's {}",
                    e.name,
                    e.name,
                    if e.name == super::layout::REPORT_RUN { "report for TensorBoard" } else { "pretraining runs" }
                );
            }
            let idx: Vec<usize> = e
                .over
                .iter()
                .map(|n| {
                    self.axes
                        .iter()
                        .position(|a| &a.name == n)
                        .ok_or_else(|| anyhow::anyhow!("sweep.extra `{}`: over: no axis named {n:?}", e.name))
                })
                .collect::<Result<_>>()?;
            for (labels, mut set, mut from) in cross(&idx) {
                set.extend(e.set.iter().map(|(k, v)| (k.clone(), v.clone())));
                from.extend(e.set.iter().map(|_| format!("extra trial `{}`", e.name)));
                let name = name_of(Some(&e.name), &labels);
                no_clash(&set, &from, &name)?;
                trials.push(TrialSpec { name, axes: labels, set });
            }
        }
        if trials.is_empty() {
            bail!("sweep: no trials (give at least one axis or extra trial)");
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(t) = trials.iter().find(|t| !seen.insert(t.name.clone())) {
            bail!("sweep: two trials are both named {:?}", t.name);
        }
        Ok(trials)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> SweepSpec {
        let mut tree =
            crate::config::tree::parse_str(yaml, crate::config::tree::Source::Override(std::sync::Arc::from("test")))
                .unwrap();
        SweepSpec::take(&mut tree).unwrap().unwrap()
    }

    #[test]
    fn an_extra_trial_cannot_take_the_pretraining_or_report_folder_name() {
        let s = spec("sweep:\n  extra:\n    - {name: pretrain, set: {seed: 1}}\n");
        let e = s.trials().unwrap_err().to_string();
        assert!(e.contains("\"pretrain\" is taken") && e.contains("runs/pretrain/"), "{e}");
        assert!(spec("sweep:\n  extra:\n    - {name: pretrain2, set: {seed: 1}}\n").trials().is_ok());
        let e = spec("sweep:\n  extra:\n    - {name: report, set: {seed: 1}}\n").trials().unwrap_err().to_string();
        assert!(e.contains("\"report\" is taken") && e.contains("runs/report/"), "{e}");
    }

    #[test]
    fn grid_then_extras_with_stable_names() {
        let s = spec(
            "sweep:\n  axes:\n    - {name: layers, key: finetune.cross_attention_layers, values: [all, [1, 3]]}\n    - name: latents\n      values: {\"0\": {finetune.perceiver: null}, \"16\": {finetune.perceiver: {latents: 16}}}\n  extra:\n    - {name: text, set: {finetune.integration: text_prompt}, over: [latents]}\n",
        );
        let t = s.trials().unwrap();
        let names: Vec<&str> = t.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "layers=all,latents=0",
                "layers=all,latents=16",
                "layers=1-3,latents=0",
                "layers=1-3,latents=16",
                "text,latents=0",
                "text,latents=16"
            ]
        );
        assert_eq!(
            t[2].set,
            vec![
                ("finetune.cross_attention_layers".to_string(), serde_json::json!([1, 3])),
                ("finetune.perceiver".to_string(), serde_json::Value::Null)
            ]
        );
        assert_eq!(t[5].set.last().unwrap(), &("finetune.integration".to_string(), serde_json::json!("text_prompt")));
        assert_eq!(t[5].axes, vec![("latents".to_string(), "16".to_string())]);
    }

    #[test]
    fn mistakes_are_named() {
        let err = |y: &str| spec(y).trials().unwrap_err().to_string();
        assert!(err("sweep:\n  axes: [{name: a, values: [1, 2]}]\n")
            .contains("axis `a` lists plain values but has no `key:`"));
        assert!(err("sweep:\n  axes: [{name: a, key: x, values: [\"a b\", \"a-b\"]}]\n")
            .contains("two values share the name \"a-b\""));
        assert!(err("sweep:\n  extra: [{name: t, over: [nope]}]\n").contains("no axis named \"nope\""));
        // Two axes on one key: both trials would train with the last value.
        let e = err("sweep:\n  axes:\n    - {name: a, key: finetune.steps, values: [1, 2]}\n    - {name: b, key: finetune.steps, values: [3]}\n");
        assert!(e.contains("axis `a` (value `1`) and axis `b` (value `3`) both set `finetune.steps`"), "{e}");
        // A key inside another axis's value.
        let e = err("sweep:\n  axes:\n    - {name: p, key: finetune.perceiver, values: [null]}\n    - {name: l, key: finetune.perceiver.latents, values: [8]}\n");
        assert!(e.contains("set `finetune.perceiver` and `finetune.perceiver.latents`"), "{e}");
        // An extra trial that overrides an axis it is crossed with.
        let e = err("sweep:\n  axes: [{name: a, key: finetune.lr, values: [0.1]}]\n  extra: [{name: t, set: {finetune.lr: 0.5}, over: [a]}]\n");
        assert!(e.contains("axis `a` (value `0.1`) and extra trial `t` both set `finetune.lr`"), "{e}");
        // Different keys that share a prefix of letters only are fine.
        assert!(spec("sweep:\n  axes:\n    - {name: a, key: finetune.lr, values: [1]}\n    - {name: b, key: finetune.lr_min, values: [2]}\n").trials().is_ok());
        assert!(err("sweep: {}\n").contains("no trials"));
    }
}
