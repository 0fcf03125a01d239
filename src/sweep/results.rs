//! The sweep's results: one row per trial with its axis values, state, test
//! metrics and cost (tokens and FLOPs per example, wall time, GPU-hours), as
//! a table on the terminal, `results.csv` and `results.md` in the experiment
//! folder, and the HParams dashboard's experiment record at the TensorBoard
//! log root (the trials' own logs hold their sessions and metrics).

use super::layout;
use super::plan::{Plan, StageKind};
use super::state::{self, State};
use crate::data::tasks::Task;
use crate::task::evaluate::{compare, comparisons, finetuned, finetuned_against_the_rest, headline, Evaluated};
use crate::tb::{EventWriter, HParamInfo, HParamType, HValue};
use anyhow::Result;
use std::collections::BTreeMap;

pub struct Row {
    pub trial: String,
    /// The trial's value of each axis of the plan, in order.
    pub axes: Vec<String>,
    pub state: State,
    pub metrics: BTreeMap<String, f64>,
    /// The 95% bootstrap interval of each metric, where the trial has them.
    pub ci: BTreeMap<String, [f64; 2]>,
    pub prompt_tokens: Option<f64>,
    pub user_tokens: Option<f64>,
    pub gflops: Option<f64>,
    pub ms: Option<f64>,
    /// Wall time of the trial's own stage(s) and of its shared pretraining.
    pub wall_s: f64,
    pub gpu_hours: f64,
    /// A finetuning trial's task and results (the finetuned model's among them).
    pub evaluated: Option<(Task, Vec<Evaluated>)>,
}

fn read_json(path: &std::path::Path) -> Option<serde_json::Value> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

pub fn rows(plan: &Plan) -> Vec<Row> {
    plan.trials
        .iter()
        .map(|t| {
            let stage = plan.stage(&t.stage).expect("trial stage in plan");
            let st = state::read(&plan.dir, &stage.name);
            let mut wall_s = st.wall_s;
            let mut gpu_hours = st.wall_s * st.gpus as f64 / 3600.0;
            for need in &stage.needs {
                let s = state::read(&plan.dir, need);
                wall_s += s.wall_s;
                gpu_hours += s.wall_s * s.gpus as f64 / 3600.0;
            }
            let mut row = Row {
                trial: t.name.clone(),
                // One value per axis of the plan; extras without an axis show "-" there.
                axes: plan
                    .axes
                    .iter()
                    .map(|a| t.axes.iter().find(|(n, _)| n == a).map(|(_, l)| l.clone()).unwrap_or_else(|| "-".into()))
                    .collect(),
                state: if state::complete(stage) { State::Done } else { st.state },
                metrics: BTreeMap::new(),
                ci: BTreeMap::new(),
                prompt_tokens: None,
                user_tokens: None,
                gflops: None,
                ms: None,
                wall_s,
                gpu_hours,
                evaluated: None,
            };
            if let Some(m) = read_json(&state::metrics_file(stage)) {
                match stage.kind {
                    StageKind::Finetune => {
                        let results: Vec<Evaluated> = serde_json::from_value(m["results"].clone()).unwrap_or_default();
                        if let Some(f) = finetuned(&results) {
                            row.metrics = f.metrics.clone();
                            row.ci = f.ci.clone();
                            row.prompt_tokens = Some(f.prompt_tokens);
                            row.user_tokens = Some(f.user_tokens);
                            row.gflops = Some(f.gflops);
                            row.ms = Some(f.ms);
                        }
                        let task = serde_json::from_value::<Task>(m["task"].clone()).ok();
                        row.evaluated = task.map(|t| (t, results));
                    }
                    StageKind::Pretrain => {
                        if let Some(e) = m["encoder"].as_object() {
                            row.metrics = e
                                .iter()
                                .filter(|(k, _)| k.contains('@'))
                                .filter_map(|(k, v)| Some((k.clone(), v.as_f64()?)))
                                .collect();
                        }
                    }
                }
            }
            row
        })
        .collect()
}

fn metric_keys(rows: &[Row]) -> Vec<String> {
    rows.iter().flat_map(|r| r.metrics.keys().cloned()).collect::<std::collections::BTreeSet<_>>().into_iter().collect()
}

/// How a metric's interval is laid out: in the metric's cell (tables people
/// read), or as `<metric>_ci_low` and `<metric>_ci_high` columns (CSV).
#[derive(Clone, Copy, PartialEq)]
enum Intervals {
    InCell,
    Columns,
}

/// Header and cells of every row, as text.
fn cells(plan: &Plan, rows: &[Row], intervals: Intervals) -> (Vec<String>, Vec<Vec<String>>) {
    let keys = metric_keys(rows);
    let mut head = vec!["trial".to_string()];
    head.extend(plan.axes.iter().cloned());
    head.push("state".into());
    for k in &keys {
        match intervals {
            Intervals::InCell => head.push(format!("{k} [95% CI]")),
            Intervals::Columns => head.extend([k.clone(), format!("{k}_ci_low"), format!("{k}_ci_high")]),
        }
    }
    head.extend(["prompt tok", "user tok", "GFLOPs/ex", "ms/ex", "wall s", "GPU-h"].map(String::from));
    let opt = |v: Option<f64>, p: usize| v.map(|x| format!("{x:.p$}")).unwrap_or_else(|| "-".into());
    let body = rows
        .iter()
        .map(|r| {
            let mut c = vec![r.trial.clone()];
            c.extend(r.axes.iter().cloned());
            c.push(crate::config::value_name(&r.state));
            for k in &keys {
                let ci = r.ci.get(k);
                match intervals {
                    Intervals::InCell => c.push(match (r.metrics.get(k), ci) {
                        (Some(v), Some([lo, hi])) => format!("{v:.4} [{lo:.4}, {hi:.4}]"),
                        (v, _) => opt(v.copied(), 4),
                    }),
                    Intervals::Columns => c.extend([
                        opt(r.metrics.get(k).copied(), 4),
                        opt(ci.map(|c| c[0]), 4),
                        opt(ci.map(|c| c[1]), 4),
                    ]),
                }
            }
            c.extend([
                opt(r.prompt_tokens, 0),
                opt(r.user_tokens, 0),
                opt(r.gflops, 3),
                opt(r.ms, 1),
                format!("{:.0}", r.wall_s),
                format!("{:.3}", r.gpu_hours),
            ]);
            c
        })
        .collect();
    (head, body)
}

/// Paired comparisons on the same test questions, one line each: every
/// finetuned trial against its own baselines, then every two finetuned
/// trials of one task asked the same questions (on the task's headline
/// metric; "no clear difference" where the interval of the difference holds 0).
pub fn comparison_lines(rows: &[Row]) -> Vec<String> {
    let mut out = Vec::new();
    for r in rows {
        if let Some((task, results)) = &r.evaluated {
            out.extend(finetuned_against_the_rest(*task, results).into_iter().map(|l| format!("{}: {l}", r.trial)));
        }
    }
    let trials: Vec<(&Row, Task, &Evaluated)> = rows
        .iter()
        .filter_map(|r| {
            let (task, results) = r.evaluated.as_ref()?;
            Some((r, *task, finetuned(results)?))
        })
        .collect();
    for (i, (a, task, fa)) in trials.iter().enumerate() {
        for (b, task_b, fb) in &trials[i + 1..] {
            if task != task_b || compare(fa, fb, headline(*task)).is_none() {
                continue;
            }
            let named = |row: &Row, e: &Evaluated| Evaluated { who: row.trial.clone(), ..e.clone() };
            out.extend(comparisons(*task, &named(a, fa), &[&named(b, fb)]));
        }
    }
    out
}

/// The table for the terminal, then the paired comparisons.
/// `sweep status --json`: the counts by state, every trial's axes, state,
/// metrics (with their 95% intervals) and cost, and the paired comparisons.
pub fn status_json(plan: &Plan, rows: &[Row]) -> serde_json::Value {
    use super::state::State;
    let counts: serde_json::Map<String, serde_json::Value> =
        [State::Done, State::Running, State::Failed, State::Interrupted, State::Pending]
            .into_iter()
            .map(|st| {
                let name = serde_json::to_value(st).expect("a state").as_str().expect("a name").to_string();
                (name, rows.iter().filter(|r| r.state == st).count().into())
            })
            .collect();
    let trials: Vec<_> = rows
        .iter()
        .map(|r| {
            let axes: serde_json::Map<_, _> =
                plan.axes.iter().cloned().zip(r.axes.iter().map(|v| serde_json::json!(v))).collect();
            serde_json::json!({
                "trial": r.trial, "axes": axes, "state": r.state, "metrics": r.metrics, "ci95": r.ci,
                "prompt_tokens": r.prompt_tokens, "user_tokens": r.user_tokens, "gflops": r.gflops, "ms": r.ms,
                "wall_s": r.wall_s, "gpu_hours": r.gpu_hours,
            })
        })
        .collect();
    serde_json::json!({
        "experiment": plan.experiment, "dir": plan.dir, "axes": plan.axes, "counts": counts,
        "trials": trials, "paired": comparison_lines(rows),
    })
}

pub fn summary(plan: &Plan, rows: &[Row]) -> String {
    let mut s = table(plan, rows);
    let lines = comparison_lines(rows);
    if !lines.is_empty() {
        s.push_str("\n  paired on the same test questions (difference, 95% interval):\n");
        for l in lines {
            s.push_str(&format!("  - {l}\n"));
        }
    }
    s
}

/// The table for the terminal.
pub fn table(plan: &Plan, rows: &[Row]) -> String {
    let (head, body) = cells(plan, rows, Intervals::InCell);
    let widths: Vec<usize> =
        (0..head.len()).map(|i| body.iter().map(|r| r[i].len()).chain([head[i].len()]).max().unwrap_or(0)).collect();
    let line = |c: &[String]| -> String {
        c.iter()
            .enumerate()
            .map(|(i, x)| if i == 0 { format!("{x:<w$}", w = widths[i]) } else { format!("{x:>w$}", w = widths[i]) })
            .collect::<Vec<_>>()
            .join("  ")
    };
    let mut s = format!("  {}\n", line(&head));
    for r in &body {
        s.push_str(&format!("  {}\n", line(r)));
    }
    s
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Write `results.csv` and `results.md`.
pub fn write(plan: &Plan, rows: &[Row]) -> Result<()> {
    let (head, body) = cells(plan, rows, Intervals::Columns);
    let mut csv = head.iter().map(|h| csv_field(h)).collect::<Vec<_>>().join(",") + "\n";
    for r in &body {
        csv.push_str(&(r.iter().map(|c| csv_field(c)).collect::<Vec<_>>().join(",") + "\n"));
    }
    crate::fsutil::write_atomic(&layout::results_csv(&plan.dir), csv.as_bytes())?;
    let (head, body) = cells(plan, rows, Intervals::InCell);
    let mut md = format!(
        "# {}\n\nFrom `{}`; test metrics of each finetuned model with 95% bootstrap intervals over the test questions, cost per example.\n\n",
        plan.experiment,
        plan.source.display()
    );
    md.push_str(&format!("| {} |\n|{}|\n", head.join(" | "), head.iter().map(|_| "---").collect::<Vec<_>>().join("|")));
    for r in &body {
        md.push_str(&format!("| {} |\n", r.join(" | ")));
    }
    let lines = comparison_lines(rows);
    if !lines.is_empty() {
        md.push_str("\nPaired on the same test questions (difference, 95% paired-bootstrap interval; McNemar's exact p for 0/1 metrics):\n\n");
        for l in lines {
            md.push_str(&format!("- {l}\n"));
        }
    }
    crate::fsutil::write_atomic(&layout::results_md(&plan.dir), md.as_bytes())?;
    Ok(())
}

/// The HParams experiment record at the log root: the axes (with their
/// values) and the test metrics, so the dashboard lists every trial's
/// session with them. Replaces an earlier record.
pub fn write_hparams(plan: &Plan, rows: &[Row]) -> Result<()> {
    let root = layout::runs(&plan.dir);
    std::fs::create_dir_all(&root)?;
    for old in crate::tb::event_files(&root) {
        std::fs::remove_file(old)?;
    }
    let hparams: Vec<HParamInfo> = plan
        .sweep
        .axes
        .iter()
        .map(|a| {
            let mut labels: Vec<String> = plan
                .trials
                .iter()
                .filter_map(|t| t.axes.iter().find(|(n, _)| *n == a.name).map(|(_, l)| l.clone()))
                .collect();
            labels.sort();
            labels.dedup();
            (format!("trial.{}", a.name), HParamType::String, labels.into_iter().map(HValue::Str).collect())
        })
        .collect();
    let metrics: Vec<String> = metric_keys(rows)
        .iter()
        .map(|k| format!("finetune/test/{k}"))
        .chain(["finetune/test/gflops_per_example".to_string()])
        .collect();
    let mut w = EventWriter::create(&root)?;
    w.hparams_experiment(&hparams, &metrics)?;
    w.flush()?;
    Ok(())
}
