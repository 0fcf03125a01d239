//! The sweep controller end to end with real launchers and workers: a tiny
//! Llama (SmolLM2's tokenizer) on the real MovieLens-100K. Trials share their
//! encoder pretraining; a failing trial is retried then marked failed while
//! the others complete; the HParams dashboard lists one session per trial;
//! a rerun skips what is complete; a killed controller's interrupted trial
//! resumes from its checkpoint.

use crate::common::{prepare_ml100k, read_tensorboard, stderr, stdout, tiny_model, uorch};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn setup(dir: &Path) -> (PathBuf, PathBuf) {
    let store = prepare_ml100k(dir);
    let model = dir.join("tiny");
    tiny_model(&model);
    (store, model)
}

fn experiment(dir: &Path, name: &str, store: &Path, model: &Path, steps: u64, sweep: &str) -> PathBuf {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &path,
        format!(
            "name: {name}\noutput_root: {}\nseed: 5\ndata: {{store: {}, window: 12, stride: 12}}\nencoder: {{dim: 16, layers: 1, heads: 2}}\n\
             pretrain: {{steps: 4, batch_size: 8, checkpoint_every: 0}}\n\
             finetune: {{model: {}, steps: {steps}, batch_size: 2, eval_examples: 3, text_prompt_baseline: false, log_every: 1}}\n\
             dist: {{nproc: 1}}\nsweep:\n{sweep}",
            dir.join("out").display(),
            store.display(),
            model.display()
        ),
    )
    .unwrap();
    path
}

fn status(exp: &Path, stage: &str) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(exp.join("status").join(format!("{stage}.json"))).unwrap_or_default())
        .unwrap_or_default()
}

#[test]
fn a_failing_trial_is_retried_then_failed_while_the_others_complete_and_report() {
    let d = tempfile::tempdir().unwrap();
    let (store, model) = setup(d.path());
    let sweep = "  axes:\n    - {name: layers, key: finetune.cross_attention_layers, values: [[0], [1]]}\n\
                 \x20 extra:\n    - {name: both, set: {finetune.cross_attention_layers: [0, 1]}}\n\
                 \x20   - {name: broken, set: {finetune.model: /nonexistent/model}}\n  retries: 1\n  cpu_slots: 2\n";
    let file = experiment(d.path(), "mixed", &store, &model, 3, sweep);
    let o = uorch().arg("launch").arg(&file).arg("--dry-run").output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let dry = stdout(&o);
    assert!(dry.contains("4 trial(s), 5 stage(s) (1 encoder pretraining, shared; 4 finetuning)"), "{dry}");
    let exp = d.path().join("out/mixed");
    assert!(!exp.exists(), "a dry run writes nothing");

    let o = uorch().arg("launch").arg(&file).env("UORCH_PROGRESS_S", "1").output().unwrap();
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}\n{}", stderr(&o));
    assert!(
        out.contains("failed   broken") && out.contains("retrying (1 of 1 retries)") && out.contains("FAILED   broken"),
        "{out}"
    );
    assert!(out.contains("/nonexistent/model"), "the failure shows the end of its log:\n{out}");
    // One pretraining run served the three cross-attention trials.
    assert_eq!(out.matches("started  pretrain-").count(), 1, "{out}");
    assert_eq!(status(&exp, "broken")["state"], "failed");
    assert_eq!(status(&exp, "broken")["attempts"], 2);
    let csv = std::fs::read_to_string(exp.join("results.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "trial,layers,state,accuracy,accuracy_ci_low,accuracy_ci_high,prompt tok,user tok,GFLOPs/ex,ms/ex,wall s,GPU-h"
    );
    assert!(lines[1].starts_with("layers=0,0,done,"), "{csv}");
    assert!(lines[2].starts_with("layers=1,1,done,"), "{csv}");
    assert!(lines[3].starts_with("both,-,done,"), "{csv}");
    assert!(lines[4].starts_with("broken,-,failed,-,-,-,"), "{csv}");
    for line in &lines[1..4] {
        let v: Vec<f64> = line.split(',').skip(3).take(3).map(|x| x.parse().unwrap()).collect();
        assert!(v[1] <= v[0] && v[0] <= v[2], "the accuracy lies in its interval: {line}");
    }
    assert!(std::fs::read_to_string(exp.join("results.md")).unwrap().contains("| layers=0 | 0 | done |"));

    // TensorBoard's own HParams handler: one session per trial that ran, with the axis value and
    // the metric (the broken trial was refused before its run folder was written: its model is missing).
    assert!(out.contains("input path(s) missing"), "{out}");
    let tb = read_tensorboard(&exp.join("runs"));
    let groups = tb["session_groups"].as_array().unwrap();
    assert_eq!(groups.len(), 3, "{}", serde_json::to_string_pretty(&tb["session_groups"]).unwrap());
    // Exactly one experiment record, the sweep's, at the log root: the extra trial
    // without axis values is a session only (the retried one never started a run).
    assert_eq!(experiment_records(&tb), ["."]);
    // TensorBoard names each run after its trial, the shared pretraining `pretrain/<data>-<hash>`.
    let mut names: Vec<&String> = tb["runs"].as_object().unwrap().keys().collect();
    names.sort();
    assert_eq!(names.len(), 5, "{names:?}");
    assert_eq!(names[..4], [".", "both", "layers=0", "layers=1"], "{names:?}");
    assert!(names[4].starts_with("pretrain/") && !names[4].ends_with("/tb"), "{names:?}");
    let layers0 = groups.iter().find(|g| g.to_string().contains("layers=0")).expect("layers=0 session");
    assert!(layers0.to_string().contains("trial.layers"), "{layers0}");
    assert!(layers0.to_string().contains("finetune/test/accuracy"), "{layers0}");

    // Rerun: the complete trials and the shared pretraining are skipped; the failed one gets a fresh budget.
    let o = uorch().arg("launch").arg(&file).output().unwrap();
    let out = stdout(&o);
    assert!(out.contains("5 stage(s): 4 complete, 1 to run"), "{out}");
    assert!(!out.contains("started  layers") && !out.contains("started  pretrain"), "{out}");
    let o = uorch().args(["sweep", "status"]).arg(&exp).output().unwrap();
    assert!(stdout(&o).contains("4 trials): 3 done, 0 running, 1 failed"), "{}", stdout(&o));
    let o = uorch().args(["sweep", "status", "--json"]).arg(&exp).output().unwrap();
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(&o)));
    assert_eq!(s["counts"], serde_json::json!({"done": 3, "running": 0, "failed": 1, "interrupted": 0, "pending": 0}));
    let trials = s["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 4);
    let done = trials.iter().find(|t| t["trial"] == "layers=0").expect("layers=0");
    assert_eq!(done["state"], "done");
    assert!(done["metrics"]["accuracy"].as_f64().is_some(), "{done}");
    assert!(done["axes"].as_object().is_some_and(|a| !a.is_empty()), "{done}");

    // The layout before clean run names (each run's events in `<run>/tb/`): `sweep status` and
    // `report` still read it; a launch is refused, naming the old folders, before it writes.
    for trial in ["layers=0", "layers=1", "both"] {
        let run = exp.join("runs").join(trial);
        std::fs::create_dir(run.join("tb")).unwrap();
        for e in std::fs::read_dir(&run).unwrap().flatten() {
            if e.file_name().to_string_lossy().starts_with("events.out.tfevents.") {
                std::fs::rename(e.path(), run.join("tb").join(e.file_name())).unwrap();
            }
        }
    }
    let o = uorch().args(["sweep", "status"]).arg(&exp).output().unwrap();
    assert!(stdout(&o).contains("4 trials): 3 done, 0 running, 1 failed"), "{}", stdout(&o));
    let o = uorch().arg("report").arg(&exp).arg("--out").arg(d.path().join("report")).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let plan_before = std::fs::read(exp.join("experiment.json")).unwrap();
    let o = uorch().arg("launch").arg(&file).output().unwrap();
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("run by an older uorch") && err.contains("runs/layers=0") && err.contains("another `name`"),
        "{err}"
    );
    assert_eq!(std::fs::read(exp.join("experiment.json")).unwrap(), plan_before, "the refused launch wrote nothing");
}

#[test]
fn a_killed_controller_leaves_checkpoints_and_the_rerun_resumes_only_the_interrupted_trial() {
    let d = tempfile::tempdir().unwrap();
    let (store, model) = setup(d.path());
    let sweep = "  axes:\n    - {name: layers, key: finetune.cross_attention_layers, values: [[0], [1]]}\n";
    let file = experiment(d.path(), "cut", &store, &model, 200, sweep);
    let exp = d.path().join("out/cut");
    let mut child = uorch()
        .arg("launch")
        .arg(&file)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the first trial is done and the second is a few steps in.
    let log = exp.join("runs/layers=1/finetune_log.jsonl");
    let t0 = Instant::now();
    while std::fs::read_to_string(&log).map(|s| s.lines().count()).unwrap_or(0) < 5 {
        assert!(t0.elapsed() < Duration::from_secs(300), "the second trial did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(status(&exp, "layers=0")["state"], "done");
    child.kill().unwrap();
    child.wait().unwrap();
    // The orphaned launcher got SIGTERM: its workers checkpoint and stop.
    let ckpts = exp.join("runs/layers=1/finetune_checkpoints");
    let t0 = Instant::now();
    while std::fs::read_dir(&ckpts)
        .map(|r| r.flatten().filter(|e| e.file_name().to_string_lossy().starts_with("step-")).count())
        .unwrap_or(0)
        == 0
    {
        assert!(t0.elapsed() < Duration::from_secs(60), "no checkpoint after the controller was killed");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    let stopped_at = std::fs::read_to_string(&log).unwrap().lines().count();
    assert!(stopped_at < 200, "{stopped_at}");
    let o = uorch().arg("launch").arg(&file).output().unwrap();
    let out = stdout(&o);
    assert!(o.status.success(), "{out}\n{}", stderr(&o));
    assert!(out.contains("3 stage(s): 2 complete, 1 to run"), "{out}");
    assert!(out.contains("started  layers=1") && !out.contains("started  layers=0"), "{out}");
    let launch_log = std::fs::read_to_string(exp.join("logs/layers=1.log")).unwrap();
    assert!(launch_log.contains("finetune: resuming from"), "{launch_log}");
    assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 200);
    assert!(out.contains("layers=1") && out.contains("done"), "{out}");
    // The resumed trial keeps its session and adds no experiment record; the log root keeps its one.
    let tb = read_tensorboard(&exp.join("runs"));
    assert_eq!(experiment_records(&tb), ["."]);
    let starts = |run: &str| tb["runs"][run]["hparams"].get("_hparams_/session_start_info").is_some();
    assert!(starts("layers=0") && starts("layers=1"), "{tb}");
}

/// The runs (log folders) under a TensorBoard root that hold an HParams experiment record.
fn experiment_records(tb: &serde_json::Value) -> Vec<String> {
    let runs = tb["runs"].as_object().unwrap();
    runs.iter().filter(|(_, r)| r["hparams"].get("_hparams_/experiment").is_some()).map(|(k, _)| k.clone()).collect()
}
