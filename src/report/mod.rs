//! `uorch report EXPERIMENT_DIR`: an experiment's results as a reviewer
//! reads them, in `report.md` beside PNG and SVG plots (`plots/`):
//!
//! - the claims table: the USER-LLM paper's orderings, each checked on
//!   trials paired on the same test questions ([`claims`]);
//! - per task, every finished trial with its axis values, metrics (95%
//!   intervals) and cost, the baselines of those questions, and each trial
//!   against them, paired;
//! - each metric with its interval along each axis that varies (trials
//!   that differ only there form a line);
//! - quality against cost (forward GFLOPs and measured ms per example) with
//!   the Pareto front;
//! - learning curves (training loss, validation score) from the runs' logs.
//!
//! It reads only the experiment folder, so it works while a sweep runs (on
//! the trials finished so far) and after.

pub mod claims;
pub mod plot;
pub mod trials;

use crate::config::value_name;
use crate::data::tasks::Task;
use crate::task::baselines::{is_text_prompt_zero_shot, BEFORE};
use crate::task::evaluate::{finetuned_against_the_rest, headline, Evaluated, FINETUNED};
use crate::tb::EventWriter;
use anyhow::{bail, Context, Result};
use plot::{Costed, Figure, Point, Series};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use trials::{Axis, TrialResult};

/// What a report wrote.
pub struct Written {
    pub report: PathBuf,
    pub figures: Vec<PathBuf>,
    pub claims: Vec<claims::Checked>,
    /// The TensorBoard log folder of the plots and claims (`<experiment>/runs/report`).
    pub tensorboard: PathBuf,
}

pub const REPORT_FILE: &str = "report.md";
pub const PLOTS_DIR: &str = "plots";

/// Write the report on the experiment in `dir` into `out` (`report.md`, `plots/`).
pub fn write(dir: &Path, out: &Path) -> Result<Written> {
    let loaded = trials::load(dir)?;
    if loaded.trials.is_empty() {
        bail!(
            "{}: no finished finetuning trial to report on yet ({} trial(s) unfinished)",
            dir.display(),
            loaded.unfinished.len()
        );
    }
    let plots = out.join(PLOTS_DIR);
    std::fs::create_dir_all(&plots).with_context(|| format!("creating {}", plots.display()))?;
    let checked = claims::check(&loaded.trials);
    let mut md = String::new();
    let plan = &loaded.plan;
    let _ = writeln!(md, "# Report: {}\n", plan.experiment);
    let _ = writeln!(
        md,
        "From `{}` (experiment folder `{}`): {} finished finetuning trial(s){}. Every metric is measured on the test questions, with its 95% bootstrap interval; comparisons are paired on the same questions (a paired bootstrap of the difference). Where a trial validated, the validation split picked the checkpoint it tested.\n",
        plan.source.display(),
        plan.dir.display(),
        loaded.trials.len(),
        match loaded.unfinished.len() {
            0 => String::new(),
            n => format!(
                "; {n} not finished ({})",
                loaded.unfinished.iter().map(|(t, s)| format!("{t}: {s}")).collect::<Vec<_>>().join(", ")
            ),
        }
    );
    let claims_md = claims_section(&checked);
    md.push_str(&claims_md);
    let mut figures = Vec::new();
    let mut tasks: Vec<Task> = Vec::new();
    for t in &loaded.trials {
        if !tasks.contains(&t.task) {
            tasks.push(t.task);
        }
    }
    for task in tasks {
        let of: Vec<&TrialResult> = loaded.trials.iter().filter(|t| t.task == task).collect();
        md.push_str(&task_section(task, &of, &plots, &mut figures)?);
    }
    let report = out.join(REPORT_FILE);
    crate::fsutil::write_atomic(&report, md.as_bytes())?;
    let tensorboard = write_tensorboard(&plan.dir, &figures, &claims_md)?;
    Ok(Written { report, figures, claims: checked, tensorboard })
}

/// The plots (PNG) as TensorBoard images `report/<plot>` and the claims as
/// text `report/claims`, in the run `report` of the experiment's log root;
/// the events of an earlier report are removed once the new ones are written.
fn write_tensorboard(dir: &Path, figures: &[PathBuf], claims_md: &str) -> Result<PathBuf> {
    let run = crate::sweep::layout::report_run(dir);
    let earlier = crate::tb::event_files(&run);
    let mut w = EventWriter::create(&run)?;
    for f in figures.iter().filter(|f| f.extension().is_some_and(|x| x == "png")) {
        let png = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
        let name = f.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        w.image(&format!("report/{name}"), 0, &png)?;
    }
    w.text("report/claims", 0, claims_md)?;
    w.flush()?;
    for old in earlier {
        std::fs::remove_file(&old).with_context(|| format!("removing the earlier report's {}", old.display()))?;
    }
    Ok(run)
}

fn claims_section(checked: &[claims::Checked]) -> String {
    let mut md = String::from("## Claims\n\n");
    let _ = writeln!(
        md,
        "The paper's orderings, each on two results asked the same test questions (difference of the task's headline metric, first minus second, with its 95% paired-bootstrap interval). A \"beats\" claim is supported when the interval lies above 0, contradicted when below, inconclusive when it holds 0; a \"comes close\" claim is supported when the interval lies above -{m}, contradicted when below -{m}, inconclusive otherwise.\n",
        m = claims::MARGIN
    );
    md.push_str("| task | claim | compared | difference [95% CI] | verdict |\n|---|---|---|---|---|\n");
    for c in checked {
        let diff = match &c.paired {
            Some(p) => format!("{:+.4} [{:+.4}, {:+.4}]", p.difference, p.ci[0], p.ci[1]),
            None => "-".into(),
        };
        let verdict = match c.verdict {
            Some(v) => format!("**{}**", v.name()),
            None => "not checked".into(),
        };
        let compared = match (c.compared.is_empty(), c.note.is_empty()) {
            (false, true) => c.compared.clone(),
            (true, _) => c.note.clone(),
            (false, false) => format!("{} ({})", c.compared, c.note),
        };
        let _ = writeln!(md, "| {} | {} | {} | {diff} | {verdict} |", value_name(&c.task), c.claim, cell(&compared));
    }
    md.push('\n');
    md
}

/// Text for a Markdown table cell.
fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

fn with_ci(r: &Evaluated, metric: &str) -> String {
    match (r.metrics.get(metric), r.ci.get(metric)) {
        (Some(v), Some([lo, hi])) => format!("{v:.4} [{lo:.4}, {hi:.4}]"),
        (Some(v), None) => format!("{v:.4}"),
        _ => "-".into(),
    }
}

/// A figure's file stem: letters, digits and `-`.
fn stem(parts: &[&str]) -> String {
    parts
        .iter()
        .map(|p| p.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-')).collect::<String>())
        .collect::<Vec<_>>()
        .join("-")
}

/// Draw a figure into `plots` and say where, as Markdown.
fn figure(plots: &Path, name: &str, fig: &Figure, alt: &str, figures: &mut Vec<PathBuf>) -> Result<String> {
    let [png, svg] = plot::write(&plots.join(name), fig)?;
    figures.extend([png.clone(), svg.clone()]);
    let file = |p: &Path| format!("{PLOTS_DIR}/{}", p.file_name().unwrap().to_string_lossy());
    Ok(format!("![{alt}]({}) ([SVG]({}))\n\n", file(&png), file(&svg)))
}

fn task_section(task: Task, of: &[&TrialResult], plots: &Path, figures: &mut Vec<PathBuf>) -> Result<String> {
    let metric = headline(task);
    let mut md = format!("## {}\n\n", value_name(&task));
    let questions = of.iter().filter_map(|t| t.finetuned()).map(|r| r.cases).max().unwrap_or(0);
    let _ = writeln!(md, "{} trial(s), {questions} test questions each; headline metric {metric}.\n", of.len());
    let keys: Vec<String> = of
        .iter()
        .filter_map(|t| t.finetuned())
        .flat_map(|r| r.metrics.keys().cloned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();

    // The trials.
    md.push_str("### Trials\n\n| trial |");
    for a in Axis::ALL {
        let _ = write!(md, " {} |", a.name());
    }
    for k in &keys {
        let _ = write!(md, " {k} [95% CI] |");
    }
    md.push_str(" user tok | prompt tok | GFLOPs/ex | ms/ex | tested step (validation) |\n|---|");
    md.push_str(&"---|".repeat(Axis::ALL.len() + keys.len() + 5));
    md.push('\n');
    for t in of {
        let _ = write!(md, "| {} |", cell(&t.name));
        for a in Axis::ALL {
            let _ = write!(md, " {} |", t.factor(a));
        }
        let Some(f) = t.finetuned() else {
            md.push_str(&" - |".repeat(keys.len() + 5));
            md.push('\n');
            continue;
        };
        for k in &keys {
            let _ = write!(md, " {} |", with_ci(f, k));
        }
        let tested = match (t.selected_step, t.valid_score()) {
            (0, _) => "-".to_string(), // written before runs recorded it
            (s, Some(v)) => format!("{s} ({v:.4})"),
            (s, None) => s.to_string(),
        };
        let _ =
            writeln!(md, " {:.0} | {:.0} | {:.3} | {:.1} | {tested} |", f.user_tokens, f.prompt_tokens, f.gflops, f.ms);
    }
    md.push('\n');

    // The baselines, each once (every trial of a task asks the same
    // questions in a well-formed ablation; a baseline is listed with the first
    // trial that has it).
    let mut seen: Vec<(String, String)> = Vec::new();
    let mut rows = String::new();
    for t in of {
        for r in t.results.iter().filter(|r| r.who != FINETUNED && r.who != BEFORE) {
            let key = (r.who.clone(), r.questions.clone());
            if seen.contains(&key) {
                continue;
            }
            seen.push(key);
            let _ = writeln!(
                rows,
                "| {} | {} | {:.0} | {:.3} | {} |",
                cell(&r.who),
                with_ci(r, metric),
                r.prompt_tokens,
                r.gflops,
                cell(&t.name)
            );
        }
    }
    if !rows.is_empty() {
        let _ = writeln!(
            md,
            "### Baselines\n\nOn the same test questions (the TextPrompt trials' models before finetuning are the zero-shot TextPrompt).\n\n| baseline | {metric} [95% CI] | prompt tok | GFLOPs/ex | from trial |\n|---|---|---|---|---|\n{rows}"
        );
    }

    // Each trial against its run's baselines, paired.
    let lines: Vec<String> = of
        .iter()
        .flat_map(|t| {
            finetuned_against_the_rest(task, &t.results).into_iter().map(move |l| format!("- {}: {l}", t.name))
        })
        .collect();
    if !lines.is_empty() {
        let _ = writeln!(
            md,
            "### Each trial against the baselines\n\nPaired on the same questions ({metric}; difference with its 95% paired-bootstrap interval, McNemar's exact p for 0/1 metrics; \"no clear difference\" when the interval holds 0):\n\n{}\n",
            lines.join("\n")
        );
    }

    // Along each axis.
    let mut along = String::new();
    for axis in Axis::ALL {
        if let Some(fig) = along_axis(task, of, axis, metric) {
            let name = stem(&[&value_name(&task), metric, "by", axis.name()]);
            along.push_str(&figure(plots, &name, &fig, &format!("{metric} by {}", axis.name()), figures)?);
        }
    }
    if !along.is_empty() {
        let _ = write!(
            md,
            "### Along each axis\n\nEach line joins trials that differ only in the axis plotted (its label: where they stand on the others); bars are 95% intervals.\n\n{along}"
        );
    }

    // Quality against cost.
    let mut points: Vec<(Costed, Costed)> = Vec::new();
    let mut zero_shot_done = false;
    for t in of {
        let mut add = |label: String, r: &Evaluated| {
            let (Some(&v), Some(&ci)) = (r.metrics.get(metric), r.ci.get(metric)) else { return };
            points.push((
                Costed { label: label.clone(), cost: r.gflops, value: v, ci },
                Costed { label, cost: r.ms, value: v, ci },
            ));
        };
        if let Some(f) = t.finetuned() {
            add(t.name.clone(), f);
        }
        if !zero_shot_done {
            if let Some(z) = t.results.iter().find(|r| is_text_prompt_zero_shot(&r.who)) {
                add("TextPrompt zero-shot".into(), z);
                zero_shot_done = true;
            }
        }
    }
    if points.len() >= 2 {
        md.push_str("### Quality against cost\n\nPer test example: forward FLOPs as counted for the model, and the measured time (on this machine). The line is the Pareto front (marked *): nothing else scores as well for as little.\n\n");
        let task_name = value_name(&task);
        for (i, (what, unit)) in
            [("GFLOPs", "forward GFLOPs per example"), ("ms", "ms per example")].into_iter().enumerate()
        {
            let pts: Vec<Costed> = points.iter().map(|p| if i == 0 { p.0.clone() } else { p.1.clone() }).collect();
            let front = plot::pareto_front(&pts.iter().map(|p| (p.cost, p.value)).collect::<Vec<_>>());
            let members: Vec<String> =
                pts.iter().zip(&front).filter(|(_, f)| **f).map(|(p, _)| p.label.clone()).collect();
            let fig = Figure::Cost {
                title: format!("{task_name}: {metric} against {unit}"),
                metric: metric.into(),
                cost: unit.into(),
                points: pts,
            };
            md.push_str(&figure(
                plots,
                &stem(&[&task_name, metric, "vs", what]),
                &fig,
                &format!("{metric} against {unit}"),
                figures,
            )?);
            let _ = writeln!(md, "Pareto front by {unit}: {}.\n", members.join(", "));
        }
    }

    // Learning curves.
    let loss: Vec<(String, Vec<(f64, f64)>)> = of
        .iter()
        .filter(|t| !t.loss.is_empty())
        .map(|t| (t.name.clone(), t.loss.iter().map(|&(s, l)| (s as f64, l)).collect()))
        .collect();
    let valid: Vec<(String, Vec<(f64, f64)>)> = of
        .iter()
        .filter(|t| !t.validation.is_empty())
        .map(|t| (t.name.clone(), t.validation.iter().map(|v| (v.step as f64, v.value)).collect()))
        .collect();
    if !loss.is_empty() || !valid.is_empty() {
        md.push_str("### Learning curves\n\n");
        let task_name = value_name(&task);
        if !loss.is_empty() {
            let fig = Figure::Curves {
                title: format!("{task_name}: training loss"),
                y: "loss (answer tokens)".into(),
                lines: loss,
            };
            md.push_str(&figure(plots, &stem(&[&task_name, "training", "loss"]), &fig, "training loss", figures)?);
        }
        if !valid.is_empty() {
            let fig = Figure::Curves {
                title: format!("{task_name}: validation {metric}"),
                y: format!("validation {metric}"),
                lines: valid,
            };
            md.push_str(&figure(plots, &stem(&[&task_name, "validation", metric]), &fig, "validation", figures)?);
        }
    }
    Ok(md)
}

/// The figure of `metric` along `axis`, when some trials differ only there.
fn along_axis(task: Task, of: &[&TrialResult], axis: Axis, metric: &str) -> Option<Figure> {
    let mut values: Vec<String> = Vec::new();
    for t in of {
        if !values.iter().any(|v| v == t.factor(axis)) {
            values.push(t.factor(axis).to_string());
        }
    }
    if values.iter().all(|v| v.parse::<f64>().is_ok()) {
        values.sort_by(|a, b| a.parse::<f64>().unwrap().total_cmp(&b.parse::<f64>().unwrap()));
    }
    // Group the trials by where they stand on the other axes. Along the
    // integration, a trial without a placement (soft prompt, TextPrompt:
    // placement means nothing to them) joins the line of each placement.
    let key = |t: &TrialResult, skip: &[Axis]| -> Vec<String> {
        Axis::ALL
            .iter()
            .filter(|a| **a != axis && !skip.contains(a))
            .map(|a| format!("{}={}", a.name(), t.factor(*a)))
            .collect()
    };
    let placeless = |t: &TrialResult| axis == Axis::Integration && t.factor(Axis::Placement) == trials::NOT_APPLICABLE;
    let mut groups: BTreeMap<Vec<String>, Vec<&TrialResult>> = BTreeMap::new();
    for t in of.iter().filter(|t| !placeless(t)) {
        groups.entry(key(t, &[])).or_default().push(t);
    }
    for t in of.iter().filter(|t| placeless(t)) {
        let mut joined = false;
        for ts in groups.values_mut() {
            if key(ts[0], &[Axis::Placement]) == key(t, &[Axis::Placement]) && !placeless(ts[0]) {
                ts.push(t);
                joined = true;
            }
        }
        if !joined {
            groups.entry(key(t, &[])).or_default().push(t);
        }
    }
    // Only the groups that vary in the axis make lines, and only their values ticks.
    let distinct =
        |ts: &[&TrialResult]| ts.iter().map(|t| t.factor(axis).to_string()).collect::<std::collections::BTreeSet<_>>();
    groups.retain(|_, ts| distinct(ts).len() >= 2);
    let used: std::collections::BTreeSet<String> = groups.values().flat_map(|ts| distinct(ts)).collect();
    values.retain(|v| used.contains(v));
    // Label a line by the other axes that vary among the task's trials.
    let varies = |a: &Axis| of.iter().any(|t| t.factor(*a) != of[0].factor(*a));
    let shown: Vec<Axis> = Axis::ALL.iter().filter(|a| **a != axis && varies(a)).copied().collect();
    let series: Vec<Series> = groups
        .values()
        .map(|ts| {
            let label =
                shown.iter().map(|a| format!("{}={}", a.name(), ts[0].factor(*a))).collect::<Vec<_>>().join(", ");
            let mut points: Vec<Point> = ts
                .iter()
                .filter_map(|t| {
                    let f = t.finetuned()?;
                    let x = values.iter().position(|v| v == t.factor(axis))?;
                    Some(Point { x, value: *f.metrics.get(metric)?, ci: *f.ci.get(metric)? })
                })
                .collect();
            points.sort_by_key(|p| p.x);
            Series { label: if label.is_empty() { "trials".into() } else { label }, points }
        })
        .collect();
    if series.is_empty() {
        return None;
    }
    Some(Figure::Along {
        title: format!("{}: {metric} by {}", value_name(&task), axis.name()),
        metric: metric.into(),
        axis: axis.name().into(),
        x: values,
        series,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use claims::tests::trial;

    /// Along the integration, the soft prompt (no placement) is compared with
    /// each placement's cross-attention trial, one line each, not one line
    /// holding both placements at the same x.
    #[test]
    fn along_the_integration_a_trial_without_placement_joins_each_placements_line() {
        let every_3 = trial("every_3", &[], 80, vec![]);
        let upper = trial("upper", &[(Axis::Placement, "upper_half")], 100, vec![]);
        let soft =
            trial("soft", &[(Axis::Integration, "soft_prompt"), (Axis::Placement, trials::NOT_APPLICABLE)], 60, vec![]);
        let lora = trial("lora", &[(Axis::Strategy, "lora")], 90, vec![]);
        let of = [&every_3, &upper, &soft, &lora];
        let Some(Figure::Along { x, series, .. }) =
            along_axis(Task::FavoriteCategory, &of, Axis::Integration, "accuracy")
        else {
            panic!("no figure along the integration");
        };
        assert_eq!(x, ["cross_attention", "soft_prompt"]);
        let lines: Vec<(&str, Vec<usize>)> =
            series.iter().map(|s| (s.label.as_str(), s.points.iter().map(|p| p.x).collect())).collect();
        assert_eq!(
            lines,
            [("placement=every_3, strategy=enc", vec![0, 1]), ("placement=upper_half, strategy=enc", vec![0, 1])]
        );
        let values: Vec<f64> = series.iter().flat_map(|s| s.points.iter().map(|p| p.value)).collect();
        assert_eq!(values, [0.4, 0.3, 0.5, 0.3]);
        // The strategy's one trial varies in no axis but the strategy: no line along the placement holds it.
        let Some(Figure::Along { series, .. }) = along_axis(Task::FavoriteCategory, &of, Axis::Placement, "accuracy")
        else {
            panic!("no figure along the placement");
        };
        assert_eq!(series.len(), 1, "{:?}", series.iter().map(|s| &s.label).collect::<Vec<_>>());
        assert_eq!(series[0].points.len(), 2);
    }
}
