//! uorch's batched closed-set evaluation against Hugging Face transformers:
//! the option scores `benches/eval_reference.py` computed from uorch's
//! user-side weights and questions (tests/golden/eval_reference.json,
//! written by `uorch bench eval --write-golden`) are the ones uorch computes
//! now, on the real MovieLens-100K and SmolLM2-135M with cross-attention.

use crate::common::{prepare_ml100k, project_root, torch_rng};
use std::path::Path;
use uorch::bench::eval::{self, ReferenceRun, Row};

fn usize_of(v: &serde_json::Value, key: &str) -> usize {
    v[key].as_u64().unwrap_or_else(|| panic!("golden: no {key}")) as usize
}

fn cross_attention(rows: Vec<Row>) -> Row {
    rows.into_iter().find(|r| r.integration == "cross-attention").expect("a cross-attention row")
}

fn run(store: &Path, golden: &serde_json::Value, reference: Option<ReferenceRun>) -> Row {
    let model = project_root().join(".uorch/models/smollm2-135m-instruct");
    assert!(model.join("model.safetensors").exists(), "{} missing: run make setup", model.display());
    let _rng = torch_rng();
    let (q, b, w) = (usize_of(golden, "questions"), usize_of(golden, "batch"), usize_of(golden, "window"));
    cross_attention(eval::run(store, &model, q, b, w, reference).unwrap())
}

fn golden() -> serde_json::Value {
    let path = project_root().join("tests/golden/eval_reference.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

#[test]
fn batched_answers_score_like_transformers_from_the_same_weights() {
    let golden = golden();
    let tmp = tempfile::tempdir().unwrap();
    let row = run(&prepare_ml100k(tmp.path()), &golden, None);
    let theirs: Vec<Vec<f64>> = serde_json::from_value(golden["reference_scores"].clone()).unwrap();
    assert_eq!(row.scores.len(), theirs.len());
    let theirs: Vec<eval::Ranking> = theirs.iter().map(|s| eval::ranking(s)).collect();
    let (max_diff, differ) = eval::compare(&row.scores, &theirs);
    assert!(max_diff <= 1e-4, "largest option score difference {max_diff:e}");
    assert_eq!(differ, 0, "questions whose best option differs from the reference's");
}

#[test]
#[ignore = "runs the reference itself: needs torch and transformers in .uorch/golden (make bench-setup, ~4 GB)"]
fn the_reference_run_live_agrees() {
    let python = project_root().join(".uorch/golden/bin/python");
    let tmp = tempfile::tempdir().unwrap();
    let store = prepare_ml100k(tmp.path());
    let dir = tmp.path().join("bench");
    let row = run(&store, &golden(), Some(ReferenceRun { python: &python, dir: &dir }));
    let r = row.reference.expect("the reference ran");
    assert!(r.max_diff <= 1e-4 && r.answers_differ == 0, "{:e}, {} differ", r.max_diff, r.answers_differ);
}
