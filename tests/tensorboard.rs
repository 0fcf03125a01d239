//! TensorBoard round trip: what uorch writes, TensorBoard's own readers read back
//! exactly (tags, steps, values), and the HParams dashboard lists the runs.

use crate::common::{project_root, read_tensorboard};
use serde_json::Value;
use std::path::Path;
use uorch::tb::{EventWriter, HParamType, HValue, SessionStatus};

fn scalars(run: &Value, tag: &str) -> Vec<(i64, f64)> {
    run["scalars"][tag]
        .as_array()
        .unwrap_or_else(|| panic!("no scalar tag {tag}: {run}"))
        .iter()
        .map(|p| (p[0].as_i64().unwrap(), p[1].as_f64().unwrap()))
        .collect()
}

fn write_trial(dir: &Path, lr: f64, strategy: &str, recall: &[f32], status: SessionStatus) {
    let mut w = EventWriter::create(dir).unwrap();
    w.hparams_session_start(
        &[
            ("lr".into(), HValue::Num(lr)),
            ("strategy".into(), HValue::Str(strategy.into())),
            ("perceiver".into(), HValue::Bool(true)),
        ],
        strategy,
    )
    .unwrap();
    for (step, r) in recall.iter().enumerate() {
        w.scalar("eval/recall@10", step as i64 * 10, *r).unwrap();
    }
    w.hparams_session_end(status).unwrap();
}

#[test]
fn every_written_tag_step_and_value_reads_back_exactly() {
    let d = tempfile::tempdir().unwrap();
    let run = d.path().join("trial-a");
    let mut w = EventWriter::create(&run).unwrap();

    // Scalars across magnitudes and signs; f32 is what TensorBoard stores.
    let loss: Vec<f32> = (0..200).map(|i| ((i as f32) * 0.37).sin() * 10f32.powi(i % 9 - 4)).collect();
    for (step, v) in loss.iter().enumerate() {
        w.scalar("train/loss", step as i64, *v).unwrap();
    }
    w.scalars(7, &[("eval/recall@1", 0.125), ("eval/ndcg@10", 1.0 / 3.0)]).unwrap();
    w.scalar("train/loss", 1_000_000_007, -0.0).unwrap();

    let texts = [
        (0i64, "plain"),
        (3, "unicode: héllo — 世界 ✓"),
        (9, "```yaml\nlr: 3e-4\nlayers: [1, 2]\n```\n| a | b |\n|---|---|\n| 1 | 2 |"),
    ];
    for (step, t) in texts {
        w.text("samples", step, t).unwrap();
    }

    let weights: Vec<f64> = (0..1000).map(|i| ((i * 7919) % 1000) as f64 / 250.0 - 2.0).collect();
    w.histogram("params/gate", 4, &weights, 20).unwrap();
    w.histogram("params/gate", 5, &[0.5, 0.5, 0.5], 20).unwrap();
    // A plot the report drew (900 x 560 RGB, as `file` reads it), and something that is no PNG.
    let plot = project_root().join("docs/ablation-cpu/plots/favorite-category-accuracy-by-latents.png");
    let png = std::fs::read(&plot).unwrap();
    w.image("report/plot", 2, &png).unwrap();
    let e = w.image("report/bad", 2, b"GIF89a not a png").unwrap_err();
    assert!(e.to_string().contains("report/bad: not a PNG"), "{e}");
    drop(w);

    let tb = read_tensorboard(d.path());
    assert_eq!(tb["warnings"], serde_json::json!([]), "reader complained");
    let r = &tb["runs"]["trial-a"];

    let mut expected: Vec<(i64, f64)> = loss.iter().enumerate().map(|(s, v)| (s as i64, *v as f64)).collect();
    expected.push((1_000_000_007, 0.0));
    assert_eq!(scalars(r, "train/loss"), expected);
    assert_eq!(scalars(r, "eval/recall@1"), vec![(7, 0.125)]);
    assert_eq!(scalars(r, "eval/ndcg@10"), vec![(7, (1.0f32 / 3.0) as f64)]);

    let got_texts: Vec<(i64, String)> = r["texts"]["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_i64().unwrap(), p[1].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(got_texts, texts.iter().map(|(s, t)| (*s, t.to_string())).collect::<Vec<_>>());

    let h = r["histograms"]["params/gate"].as_array().unwrap();
    assert_eq!(h.len(), 2);
    assert_eq!(h[0]["step"], 4);
    // Independent expectations: the values are the multiples of 0.004 from -2 to 1.996.
    assert_eq!(h[0]["num"].as_f64().unwrap(), 1000.0);
    assert_eq!(h[0]["min"].as_f64().unwrap(), -2.0);
    assert_eq!(h[0]["max"].as_f64().unwrap(), 1.996);
    let counts: Vec<f64> = h[0]["bucket"].as_array().unwrap().iter().map(|c| c.as_f64().unwrap()).collect();
    assert_eq!(counts.len(), 20);
    assert_eq!(counts.iter().sum::<f64>(), 1000.0);
    let sum: f64 = weights.iter().sum();
    assert!((h[0]["sum"].as_f64().unwrap() - sum).abs() < 1e-9);
    assert_eq!(h[1]["bucket_limit"], serde_json::json!([0.5]));
    assert_eq!(h[1]["bucket"], serde_json::json!([3.0]));

    let img = &r["images"]["report/plot"];
    assert_eq!(img.as_array().unwrap().len(), 1, "{}", r["images"]);
    assert_eq!(
        (img[0]["step"].as_i64(), img[0]["width"].as_i64(), img[0]["height"].as_i64()),
        (Some(2), Some(900), Some(560))
    );
    let sha = uorch::model::weights::sha256_file(&plot).unwrap();
    assert_eq!(img[0]["sha256"].as_str().unwrap(), sha, "the PNG comes back byte for byte");
    assert!(r["images"].get("report/bad").is_none());
}

#[test]
fn hparams_dashboard_lists_each_run_with_its_hyperparameters_and_final_metric() {
    let d = tempfile::tempdir().unwrap();
    {
        let mut root = EventWriter::create(d.path()).unwrap();
        root.hparams_experiment(
            &[
                ("lr".into(), HParamType::Float64, vec![]),
                ("strategy".into(), HParamType::String, vec![HValue::Str("lora".into()), HValue::Str("full".into())]),
                ("perceiver".into(), HParamType::Bool, vec![]),
            ],
            &["eval/recall@10".into()],
        )
        .unwrap();
    }
    write_trial(&d.path().join("lora"), 3e-4, "lora", &[0.1, 0.2, 0.375], SessionStatus::Success);
    write_trial(&d.path().join("full"), 1e-5, "full", &[0.05, 0.5], SessionStatus::Failure);

    let tb = read_tensorboard(d.path());
    assert_eq!(tb["warnings"], serde_json::json!([]));
    let exp = &tb["runs"]["."]["hparams"]["_hparams_/experiment"];
    let names: Vec<&str> =
        exp["hparam_infos"].as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["lr", "strategy", "perceiver"]);
    assert_eq!(exp["hparam_infos"][1]["type"], "DATA_TYPE_STRING");
    assert_eq!(exp["hparam_infos"][1]["domain_discrete"], serde_json::json!(["lora", "full"]));
    assert_eq!(exp["metric_infos"][0]["name"]["tag"], "eval/recall@10");

    let start = &tb["runs"]["lora"]["hparams"]["_hparams_/session_start_info"];
    assert_eq!(start["hparams"]["lr"], 3e-4);
    assert_eq!(start["hparams"]["strategy"], "lora");
    assert_eq!(start["hparams"]["perceiver"], true);
    assert_eq!(start["group_name"], "lora");
    assert_eq!(tb["runs"]["full"]["hparams"]["_hparams_/session_end_info"]["status"], "STATUS_FAILURE");

    // What the dashboard's table shows: one row per run, final metric = last value.
    let groups = tb["session_groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2, "{groups:?}");
    let row =
        |name: &str| groups.iter().find(|g| g["name"] == name).unwrap_or_else(|| panic!("no group {name}: {groups:?}"));
    let lora = row("lora");
    assert_eq!(lora["hparams"]["strategy"], "lora");
    assert_eq!(lora["metricValues"][0]["value"], 0.375);
    assert_eq!(lora["metricValues"][0]["trainingStep"], 20);
    let full = row("full");
    assert_eq!(full["hparams"]["lr"], 1e-5);
    assert_eq!(full["metricValues"][0]["value"], 0.5);
    assert_eq!(full["sessions"][0]["status"], "STATUS_FAILURE");
}

const CHILD_ENV: &str = "UORCH_TEST_TB_CHILD_DIR";

/// Writes scalar `x` = step * 0.5 at steps 0, 1, 2, ... until killed.
fn write_until_killed(dir: &Path) -> ! {
    let mut w = EventWriter::create(dir).unwrap();
    let mut step = 0i64;
    loop {
        w.scalar("x", step, step as f32 * 0.5).unwrap();
        w.text("note", step, &"padding so records are of different sizes ".repeat((step % 5) as usize)).unwrap();
        step += 1;
    }
}

#[test]
fn a_writer_killed_mid_run_leaves_only_complete_records() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        write_until_killed(Path::new(&dir)); // This process is the child spawned below.
    }
    let d = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "tensorboard::a_writer_killed_mid_run_leaves_only_complete_records",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, d.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let size = || -> u64 { std::fs::read_dir(d.path()).unwrap().flatten().map(|e| e.metadata().unwrap().len()).sum() };
    let t0 = std::time::Instant::now();
    while size() < 2_000_000 {
        assert!(t0.elapsed().as_secs() < 60, "child wrote too little");
        assert!(child.try_wait().unwrap().is_none(), "child exited early");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL: no destructor, no flush runs.
    child.wait().unwrap();

    let tb = read_tensorboard(d.path());
    assert_eq!(tb["warnings"], serde_json::json!([]), "reader found damaged records");
    let xs = scalars(&tb["runs"]["."], "x");
    assert!(xs.len() > 1000, "only {} records", xs.len());
    for (i, (step, v)) in xs.iter().enumerate() {
        assert_eq!((*step, *v), (i as i64, i as f64 * 0.5), "record {i}");
    }
}
