//! A finished sweep opened in TensorBoard in a real browser (headless
//! Chromium through tests/tb_browser.py), started three times on the same
//! log root as a user would: each time the HParams table shows the sweep's
//! axes and metrics as its columns and one row per trial under the trial's
//! name, and the time series show the loss and throughput cards. A second
//! experiment record in a trial, run names ending in `/tb` or missing
//! throughput scalars each fail it.

use crate::common::{project_root, stderr, stdout, tiny_experiment, uorch};

/// What the browser must show: the scalar cards (pretraining and finetuning).
const CARDS: &[&str] = &[
    "finetune/loss",
    "finetune/examples_per_s",
    "finetune/tokens_per_s",
    "finetune/step_time/step_ms",
    "finetune/step_time/forward_backward_ms",
    "finetune/memory/peak_rss_mib",
    "pretrain/loss",
    "pretrain/examples_per_s",
];

#[test]
fn a_sweep_in_the_browser_shows_its_axes_metrics_trials_and_throughput_at_every_start() {
    let d = tempfile::tempdir().unwrap();
    let (file, exp) = tiny_experiment(
        d.path(),
        "seen",
        "steps: 4, batch_size: 8, checkpoint_every: 0, log_every: 2",
        "steps: 4, batch_size: 2, eval_examples: 3, text_prompt_baseline: false, log_every: 2",
        "  axes:\n    - {name: layers, key: finetune.cross_attention_layers, values: [[0], [1]]}\n\
         \x20 extra:\n    - {name: soft, set: {finetune.integration: soft_prompt}}\n  cpu_slots: 2\n",
    );
    let o = uorch().arg("launch").arg(&file).output().unwrap();
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    let root = exp.join("runs");

    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("tb-browser");
    let o = std::process::Command::new(project_root().join(".uorch/venv/bin/python"))
        .arg(project_root().join("tests/tb_browser.py"))
        .arg(&root)
        .args(["--starts", "3", "--sessions", "3", "--runs", "5", "--cards", &CARDS.join(",")])
        .arg("--screenshots")
        .arg(&shots)
        .output()
        .unwrap();
    assert!(o.status.success(), "the browser test could not run: {}", stderr(&o));
    let seen: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let starts = seen["starts"].as_array().unwrap();
    assert_eq!(starts.len(), 3);
    for (i, s) in starts.iter().enumerate() {
        let headers: Vec<&str> = s["headers"].as_array().unwrap().iter().map(|h| h.as_str().unwrap()).collect();
        assert_eq!(
            headers,
            ["Trial ID", "Show Metrics", "trial.layers", "finetune/test/accuracy", "finetune/test/gflops_per_example"],
            "start {i}: the table's columns"
        );
        let rows = s["rows"].as_array().unwrap();
        let mut trials: Vec<&str> = rows.iter().map(|r| r[0].as_str().unwrap()).collect();
        trials.sort();
        assert_eq!(trials, ["layers=0", "layers=1", "soft"], "start {i}: one row per trial, by name: {rows:?}");
        let layers0 = rows.iter().find(|r| r[0] == "layers=0").unwrap();
        assert_eq!(layers0[2], "0", "start {i}: the axis value: {layers0:?}");
        let accuracy: f64 = layers0[3].as_str().unwrap().parse().unwrap();
        assert!((0.0..=1.0).contains(&accuracy), "start {i}: {layers0:?}");
        // The runs under their names: the experiment record's root, each trial, the pretraining.
        let mut runs: Vec<&str> = s["runs"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
        runs.sort();
        assert_eq!(runs.len(), 5, "start {i}: {runs:?}");
        assert_eq!(runs[..3], [".", "layers=0", "layers=1"], "start {i}: {runs:?}");
        assert!(
            runs[3].starts_with("pretrain/ml-") && !runs[3].ends_with("/tb") && runs[4] == "soft",
            "start {i}: {runs:?}"
        );
        let cards: Vec<&str> = s["cards"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
        for c in CARDS {
            assert!(cards.contains(c), "start {i}: no {c} card among {cards:?}");
        }
    }
    for shot in seen["screenshots"].as_array().unwrap() {
        let png = std::fs::read(shot.as_str().unwrap()).unwrap();
        assert!(png.starts_with(b"\x89PNG") && png.len() > 20_000, "{shot}: {} bytes", png.len());
    }
}
