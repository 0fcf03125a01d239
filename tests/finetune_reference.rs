//! uorch's finetuning step against Hugging Face transformers + PEFT: the
//! losses `benches/finetune_reference.py` computed from uorch's initial
//! weights and batches (tests/golden/finetune_reference.json, written by
//! `uorch bench finetune --write-golden`) are the ones uorch computes now,
//! for every strategy, on the real MovieLens-100K and SmolLM2-135M.

use crate::common::{prepare_ml100k, project_root, torch_rng};
use std::path::Path;
use uorch::bench::finetune::{self, Options, Row};

fn run(store: &Path, dir: &Path, steps: usize, batch: usize, reference: Option<&Path>) -> Vec<Row> {
    let model = project_root().join(".uorch/models/smollm2-135m-instruct");
    assert!(model.join("model.safetensors").exists(), "{} missing: run make setup", model.display());
    let _rng = torch_rng();
    finetune::run(&Options {
        store,
        model: &model,
        steps,
        batch,
        device: tch::Device::Cpu,
        random_init: false,
        reference,
        dir,
    })
    .unwrap()
}

/// The first loss (before any update) to 1e-4; the later ones, after
/// AdamW's first update (about lr · sign(g), so a gradient near zero may
/// take either sign in two implementations), to 1e-3.
fn assert_agree(strategy: &str, ours: &[f64], theirs: &[f64]) {
    assert_eq!(ours.len(), theirs.len(), "{strategy}: {ours:?} vs {theirs:?}");
    assert!(finetune::loss_gap(ours, theirs, 1) <= 1e-4, "{strategy}: first loss {} vs {}", ours[0], theirs[0]);
    assert!(finetune::loss_gap(ours, theirs, usize::MAX) <= 1e-3, "{strategy}: losses {ours:?} vs {theirs:?}");
}

#[test]
fn every_strategy_trains_like_transformers_and_peft_from_the_same_weights() {
    let path = project_root().join("tests/golden/finetune_reference.json");
    let golden: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let store = prepare_ml100k(tmp.path());
    let steps = golden["steps"].as_u64().unwrap() as usize;
    let batch = golden["batch"].as_u64().unwrap() as usize;
    let rows = run(&store, &tmp.path().join("bench"), steps, batch, None);
    assert_eq!(rows.len(), 4);
    for r in &rows {
        let name = format!("{:?}", r.strategy).to_lowercase();
        let want: Vec<f64> = golden["reference_losses"][&name]
            .as_array()
            .unwrap_or_else(|| panic!("{}: no losses for {name}", path.display()))
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        assert_agree(&name, &r.losses, &want);
    }
}

#[test]
#[ignore = "runs the reference itself: needs torch, transformers and peft in .uorch/golden (make bench-setup, ~4 GB)"]
fn the_reference_run_live_agrees() {
    let python = project_root().join(".uorch/golden/bin/python");
    let tmp = tempfile::tempdir().unwrap();
    let store = prepare_ml100k(tmp.path());
    for r in run(&store, &tmp.path().join("bench"), 1, 2, Some(&python)) {
        let x = r.reference.as_ref().expect("the reference ran");
        assert_agree(&format!("{:?}", r.strategy), &r.losses, &x.losses);
    }
}
