//! `uorch report` on a real (tiny) sweep: a tiny Llama on the real
//! MovieLens-100K, trials that differ in one axis each, validated
//! checkpoints; the report's claims, tables and plots.

use crate::common::{stderr, stdout, tiny_experiment, uorch};

#[test]
fn a_sweep_reports_claims_tables_and_plots_and_says_what_is_unfinished() {
    let d = tempfile::tempdir().unwrap();
    let (file, exp) = tiny_experiment(
        d.path(),
        "rep",
        "steps: 4, batch_size: 8, checkpoint_every: 0",
        "cross_attention_layers: [1], perceiver: {latents: 16, layers: 1, heads: 2}, steps: 4, batch_size: 2, \
         checkpoint_every: 2, valid_examples: 6, eval_examples: 8, before_finetuning: false, text_prompt_baseline: false, log_every: 1",
        "  axes:\n    - {name: layers, key: finetune.cross_attention_layers, values: [[1]]}\n  extra:\n    - {name: soft, set: {finetune.integration: soft_prompt}}\n    - {name: lat0, set: {finetune.perceiver: null}}\n\
         \x20   - {name: text, set: {finetune.integration: text_prompt, finetune.strategy: lora, finetune.perceiver: null, finetune.before_finetuning: true}}\n\
         \x20 cpu_slots: 2\n",
    );
    let o = uorch().arg("launch").arg(&file).output().unwrap();
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    // Before a report: a folder that is not an experiment is named.
    let o = uorch().arg("report").arg(d.path()).output().unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("is not an experiment folder"), "{}", stderr(&o));

    let out = d.path().join("docs");
    let o = uorch().arg("report").arg(&exp).arg("--out").arg(&out).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("report written to"), "{}", stdout(&o));
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("4 finished finetuning trial(s)."), "{md}");
    // The claims this sweep can check, with a verdict; the one it cannot, said so.
    let row =
        |claim: &str| md.lines().find(|l| l.contains(claim)).unwrap_or_else(|| panic!("{claim}: {md}")).to_string();
    for (claim, pair) in [
        ("cross-attention beats soft prompt", "layers=1 vs soft"),
        ("a 16-latent Perceiver comes close to none", "layers=1 vs lat0"),
        ("USER-LLM beats TextPrompt", "layers=1 vs text (finetuned)"),
    ] {
        let r = row(claim);
        assert!(r.contains(pair), "{r}");
        assert!(["**supported**", "**contradicted**", "**inconclusive**"].iter().any(|v| r.contains(v)), "{r}");
    }
    assert!(row("Enc comes close to Full").contains("not checked"));
    // The zero-shot TextPrompt (the TextPrompt trial's model before finetuning) is compared too.
    assert!(md.contains("layers=1 vs TextPrompt (last 12 interactions as text, no finetuning)"), "{md}");
    // Each trial against its rule baselines, paired.
    assert!(md.lines().any(|l| l.starts_with("- soft: USER-LLM finetuned vs majority class")), "{md}");
    // Every plot the report shows is there, as a PNG and an SVG.
    let shown: Vec<&str> =
        md.match_indices("](plots/").map(|(i, _)| &md[i + 2..i + 2 + md[i + 2..].find(')').unwrap()]).collect();
    for want in [
        "accuracy-by-integration.png",
        "accuracy-by-latents.png",
        "accuracy-vs-GFLOPs.png",
        "training-loss.png",
        "validation-accuracy.png",
    ] {
        assert!(shown.iter().any(|s| s.ends_with(want)), "{want} in {shown:?}");
    }
    for s in &shown {
        let bytes = std::fs::read(out.join(s)).unwrap();
        if s.ends_with(".png") {
            assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 5000, "{s}");
        } else {
            assert!(String::from_utf8_lossy(&bytes).contains("<svg"), "{s}");
        }
    }
    // The PNG plots are TensorBoard images in the experiment's log root (run `report`), the claims its text.
    let tb = crate::common::read_tensorboard(&exp.join("runs"));
    let report = &tb["runs"]["report"];
    let pngs: Vec<&str> = shown.iter().copied().filter(|s| s.ends_with(".png")).collect();
    assert_eq!(report["images"].as_object().map(|o| o.len()), Some(pngs.len()), "{}", report["images"]);
    for s in &pngs {
        let tag = format!("report/{}", std::path::Path::new(s).file_stem().unwrap().to_string_lossy());
        let sha = uorch::model::weights::sha256_file(&out.join(s)).unwrap();
        assert_eq!(report["images"][&tag][0]["sha256"].as_str(), Some(sha.as_str()), "{tag}");
    }
    assert!(report["texts"]["report/claims"][0][1].as_str().unwrap().contains("cross-attention beats soft prompt"));

    // The tested step of each trial is the one validation picked.
    assert!(md.lines().any(|l| l.starts_with("| layers=1 |") && (l.contains("| 2 (") || l.contains("| 4 ("))), "{md}");

    // A trial without results yet is listed as unfinished, the rest reported.
    std::fs::remove_file(exp.join("runs/lat0/finetune_metrics.json")).unwrap();
    let o = uorch().arg("report").arg(&exp).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let md = std::fs::read_to_string(exp.join("report.md")).unwrap();
    assert!(md.contains("3 finished finetuning trial(s); 1 not finished (lat0: "), "{md}");
    // The second report replaced the first's TensorBoard events: one image per plot, not two.
    let tb = crate::common::read_tensorboard(&exp.join("runs"));
    let images = tb["runs"]["report"]["images"].as_object().unwrap();
    assert!(!images.is_empty() && images.values().all(|v| v.as_array().unwrap().len() == 1), "{images:?}");
    assert!(row_in(&md, "a 16-latent Perceiver comes close to none").contains("not checked"));
}

fn row_in(md: &str, claim: &str) -> String {
    md.lines().find(|l| l.contains(claim)).unwrap_or_default().to_string()
}
