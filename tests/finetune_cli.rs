//! The finetuning stage end to end with real worker processes: a tiny Llama
//! (random weights, SmolLM2's real tokenizer) on the real MovieLens-100K,
//! pretraining then favorite-genre finetuning on 2 workers, with every
//! baseline evaluated on the same cases.

use crate::common::{kill_rank, prepare_ml100k, stderr, stdout, tiny_model, uorch};
use std::path::Path;
use std::process::Command;

#[test]
fn pretrain_then_finetune_on_two_workers_reports_every_baseline() {
    let d = tempfile::tempdir().unwrap();
    let store = prepare_ml100k(d.path());
    let model = d.path().join("tiny");
    tiny_model(&model);
    let cfg = d.path().join("ft.yaml");
    std::fs::write(
        &cfg,
        format!(
            "name: ft\noutput_root: {}\nseed: 2\ndata: {{store: {}, window: 20, stride: 20}}\nencoder: {{dim: 16, layers: 1, heads: 2}}\n\
             pretrain: {{steps: 5, batch_size: 8, checkpoint_every: 0}}\n\
             finetune: {{model: {}, cross_attention_layers: [1], perceiver: {{latents: 4, layers: 1, heads: 2}}, steps: 6, batch_size: 4, log_every: 3, eval_examples: 10, text_prompt_window: 3}}\n\
             dist: {{nproc: 2}}\n",
            d.path().join("runs").display(),
            store.display(),
            model.display()
        ),
    )
    .unwrap();
    let o = uorch().arg("launch").arg(&cfg).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("finetuning done"), "{out}");
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.path().join("runs/ft/finetune_metrics.json")).unwrap()).unwrap();
    let who: Vec<&str> = m["results"].as_array().unwrap().iter().map(|r| r["who"].as_str().unwrap()).collect();
    assert_eq!(who.len(), 7, "{who:?}");
    assert!(
        who[0].contains("before finetuning")
            && who[1].contains("finetuned")
            && who[2].starts_with("majority")
            && who[3].starts_with("popularity (genre counts")
            && who[4] == "random"
            && who[5].starts_with("genre-count oracle")
            && who[6].starts_with("TextPrompt"),
        "{who:?}"
    );
    for r in m["results"].as_array().unwrap() {
        let a = r["metrics"]["accuracy"].as_f64().unwrap();
        let (lo, hi) = (r["ci"]["accuracy"][0].as_f64().unwrap(), r["ci"]["accuracy"][1].as_f64().unwrap());
        assert!(lo <= a && a <= hi, "{}: {a} outside [{lo}, {hi}]", r["who"]);
        assert_eq!(r["cases"], 10);
        assert_eq!(r["per_question"]["accuracy"].as_array().unwrap().len(), 10);
    }
    // The oracle counts the very interactions the label counts: it is always right.
    assert_eq!(m["results"][5]["metrics"]["accuracy"], 1.0);
    // Every baseline keeps its answer to each question.
    let kept = std::fs::read_to_string(d.path().join("runs/ft/finetune_baseline_predictions.jsonl")).unwrap();
    for w in who.iter().filter(|w| !w.contains("finetuned")) {
        let n = kept.lines().filter(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["who"] == *w).count();
        assert_eq!(n, 10, "{w}");
    }
    // With a Perceiver the LLM reads 4 user tokens; TextPrompt reads more text.
    assert_eq!(m["results"][1]["user_tokens"], 4.0);
    assert!(m["results"][6]["prompt_tokens"].as_f64().unwrap() > m["results"][1]["prompt_tokens"].as_f64().unwrap());
    assert_eq!(m["gates"].as_array().unwrap().len(), 1);
    // ZeRO-2 by default: each of the 2 ranks holds half (rounded up per bucket) of the two f32
    // moments per trainable parameter; the f32 parameters are their own master weights.
    let trainable = m["trainable_parameters"].as_i64().unwrap();
    let state = m["optimizer_state_bytes_per_rank"].as_i64().unwrap();
    assert!((2 * 4 * ((trainable + 1) / 2)..2 * 4 * (trainable / 2 + 8)).contains(&state), "{state} for {trainable}");
    assert_eq!(m["zero_stage"], 2);
    assert!(m["training_peak_memory_bytes"].as_i64().unwrap() > 0);
    // The trained parts are saved: with Enc, exactly the trainable parameters, by name, and
    // the encoder's pretraining heads (kept with the encoder; finetuning does not train them).
    let bytes = std::fs::read(d.path().join("runs/ft/finetune_weights.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let count: usize = st
        .tensors()
        .iter()
        .filter(|(n, _)| !n.starts_with("encoder.head."))
        .map(|(_, v)| v.shape().iter().product::<usize>())
        .sum();
    assert_eq!(count as i64, trainable);
    assert!(
        st.names().iter().any(|n| n.starts_with("xattn.1.")) && st.names().iter().all(|n| !n.starts_with("model.")),
        "{:?}",
        st.names()
    );
    let log = std::fs::read_to_string(d.path().join("runs/ft/finetune_log.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 6);

    // Throughput, memory and the step-time split at each logging step, for both stages.
    let tb = crate::common::read_tensorboard(&d.path().join("runs"));
    let scalars = &tb["runs"]["ft"]["scalars"];
    let at = |tag: &str, step: i64| -> f64 {
        let points = scalars[tag].as_array().unwrap_or_else(|| panic!("no {tag} in {scalars}"));
        points.iter().find(|p| p[0] == step).unwrap_or_else(|| panic!("{tag} at {step}: {points:?}"))[1]
            .as_f64()
            .unwrap()
    };
    for (stage, step, per_step) in [("finetune", 3, 8.0), ("finetune", 6, 8.0), ("pretrain", 5, 16.0)] {
        let (ex_s, step_ms) =
            (at(&format!("{stage}/examples_per_s"), step), at(&format!("{stage}/step_time/step_ms"), step));
        // Both ranks' examples (batch 4 or 8, 2 ranks) in each step.
        assert!(
            (ex_s * step_ms / 1000.0 - per_step).abs() < 1e-3 * per_step,
            "{stage} {step}: {ex_s} ex/s, {step_ms} ms/step"
        );
        let phases: Vec<f64> = ["data", "forward_backward", "optimizer", "communication"]
            .iter()
            .map(|p| at(&format!("{stage}/step_time/{p}_ms"), step))
            .collect();
        assert!(phases.iter().all(|&t| t > 0.0), "{stage} {step}: every phase took time: {phases:?}");
        let sum: f64 = phases.iter().sum();
        assert!((sum - step_ms).abs() < 1e-3 * step_ms, "{stage} {step}: the phases {phases:?} add up to {step_ms} ms");
        assert!(at(&format!("{stage}/memory/peak_rss_mib"), step) > 50.0);
        // No GPU here: neither the allocator's peak nor MFU.
        assert!(scalars.get(format!("{stage}/memory/cuda_max_allocated_mib")).is_none());
        assert!(scalars.get(format!("{stage}/mfu")).is_none());
    }
    // Finetuning tokens are the prompt (the same question for every example with cross-attention)
    // and the answer's few tokens (a genre name and the end of text).
    let per_example = at("finetune/tokens_per_s", 6) / at("finetune/examples_per_s", 6);
    let prompt = m["results"][1]["prompt_tokens"].as_f64().unwrap();
    assert!(
        per_example > prompt + 1.0 && per_example < prompt + 8.0,
        "{per_example} tokens per example, prompt {prompt}"
    );
    // Pretraining tokens are the positions with a target: at most the window (20) per example.
    let per_window = at("pretrain/tokens_per_s", 5) / at("pretrain/examples_per_s", 5);
    assert!(per_window > 1.0 && per_window <= 20.0, "{per_window}");
}

fn write_config(
    dir: &Path,
    name: &str,
    store: &Path,
    model: &Path,
    finetune: &str,
    nproc: usize,
) -> std::path::PathBuf {
    let cfg = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &cfg,
        format!(
            "name: {name}\noutput_root: {}\nseed: 3\ndata: {{store: {}, window: 12, stride: 12}}\nencoder: {{dim: 16, layers: 1, heads: 2}}\n\
             pretrain: {{steps: 3, batch_size: 8, checkpoint_every: 0}}\n\
             finetune: {{model: {}, {finetune}}}\ndist: {{nproc: {nproc}}}\n",
            dir.join("runs").display(),
            store.display(),
            model.display()
        ),
    )
    .unwrap();
    cfg
}

fn predictions(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("finetune_predictions.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn ask_export(export: &Path, args: &[&str]) -> serde_json::Value {
    ask_export_on(uorch(), export, args)
}

/// [`ask_export`] from `cmd` (a `uorch`, or one that runs it on fewer cores).
fn ask_export_on(mut cmd: Command, export: &Path, args: &[&str]) -> serde_json::Value {
    let o = cmd.args(["generate", "--json", "--device", "cpu", "--model"]).arg(export).args(args).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_str(String::from_utf8_lossy(&o.stdout).trim()).unwrap()
}

#[test]
fn next_item_with_lora_exports_a_folder_that_answers_exactly_as_evaluation() {
    let d = tempfile::tempdir().unwrap();
    let store = prepare_ml100k(d.path());
    let model = d.path().join("tiny");
    tiny_model(&model);
    let cfg = write_config(
        d.path(),
        "next",
        &store,
        &model,
        "task: next-item, cross_attention_layers: every_2, strategy: lora, lora: {rank: 4, alpha: 8}, candidates: 20, steps: 4, batch_size: 4, eval_examples: 6, text_prompt_baseline: false",
        1,
    );
    let o = uorch().arg("launch").arg(&cfg).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("recall@10") && out.contains("popularity"), "{out}");
    let run = d.path().join("runs/next");
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("finetune_metrics.json")).unwrap()).unwrap();
    let r = &m["results"][1];
    assert_eq!(r["who"], "USER-LLM finetuned");
    // Recall@K recomputed from the predictions (each lists its top 10 of 20 candidates).
    let lines = std::fs::read_to_string(run.join("finetune_predictions.jsonl")).unwrap();
    let preds: Vec<serde_json::Value> = lines.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(preds.len(), 6);
    for k in [1usize, 5, 10] {
        let hits =
            preds.iter().filter(|p| p["top"].as_array().unwrap().iter().take(k).any(|t| t[0] == p["truth"])).count();
        let got = r["metrics"][format!("recall@{k}")].as_f64().unwrap();
        assert!((got - hits as f64 / 6.0).abs() < 1e-12, "recall@{k} {got} vs {hits} of 6");
    }

    let export = d.path().join("export");
    let o = uorch().arg("export").arg(&run).arg("--out").arg(&export).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    // Readable by another account (a serving user's).
    crate::common::assert_readable_by_all(&export);
    // --json: the same folder described, integration.json included.
    let again = d.path().join("export-json");
    let o = uorch().arg("export").arg(&run).arg("--out").arg(&again).arg("--json").output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(&o)));
    let spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(again.join("integration.json")).unwrap()).unwrap();
    assert_eq!(v["integration"], spec);
    let files = v["files"].as_array().unwrap();
    let weights = files.iter().find(|f| f["name"] == "model.safetensors").expect("model.safetensors listed");
    assert_eq!(weights["bytes"].as_u64(), Some(std::fs::metadata(again.join("model.safetensors")).unwrap().len()));
    assert_eq!(files.len(), std::fs::read_dir(&again).unwrap().count());
    for f in [
        "config.json",
        "tokenizer.json",
        "model.safetensors",
        "user_llm.safetensors",
        "integration.json",
        "catalog.json",
    ] {
        assert!(export.join(f).exists(), "{f} missing");
    }
    // Exports never clobber: not the run folder they read (even with
    // --force), not a folder of someone else's files without --force; a
    // previous export is replaced.
    let exporting = |out: &Path, force: bool| {
        let mut c = uorch();
        c.arg("export").arg(&run).arg("--out").arg(out);
        if force {
            c.arg("--force");
        }
        c.output().unwrap()
    };
    let o = exporting(&run, true);
    assert!(!o.status.success() && stderr(&o).contains("which this command reads"), "{}", stderr(&o));
    assert!(run.join("finetune_metrics.json").exists() && run.join("finetune_checkpoints").exists());
    let mine = d.path().join("mine");
    std::fs::create_dir(&mine).unwrap();
    std::fs::write(mine.join("notes.txt"), "keep me").unwrap();
    let o = exporting(&mine, false);
    assert!(!o.status.success() && stderr(&o).contains("pass --force"), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(mine.join("notes.txt")).unwrap(), "keep me");
    assert!(exporting(&export, false).status.success(), "a previous export is replaced");
    assert!(exporting(&mine, true).status.success());
    assert!(mine.join("integration.json").exists() && !mine.join("notes.txt").exists());
    // An export is verified on load: one flipped byte is refused, not served as NaN scores.
    let w = mine.join("user_llm.safetensors");
    let mut bytes = std::fs::read(&w).unwrap();
    *bytes.last_mut().unwrap() ^= 0x55;
    std::fs::write(&w, bytes).unwrap();
    let o = uorch()
        .args(["generate", "--json", "--model"])
        .arg(&mine)
        .args(["--store"])
        .arg(&store)
        .args(["--user", "1"])
        .output()
        .unwrap();
    assert!(!o.status.success(), "a damaged export answered");
    assert!(
        stderr(&o).contains("user_llm.safetensors has SHA-256") && stderr(&o).contains("the export is damaged"),
        "{}",
        stderr(&o)
    );
    // The LLM is in Hugging Face layout with the adapters merged: the base's
    // tensor names only, and the adapted projections changed.
    let base = std::fs::read(model.join("model.safetensors")).unwrap();
    let base = safetensors::SafeTensors::deserialize(&base).unwrap();
    let merged = std::fs::read(export.join("model.safetensors")).unwrap();
    let merged = safetensors::SafeTensors::deserialize(&merged).unwrap();
    let mut a = base.names();
    let mut b = merged.names();
    a.sort();
    b.sort();
    assert_eq!(a, b);
    let q = "model.layers.0.self_attn.q_proj.weight";
    assert_ne!(base.tensor(q).unwrap().data(), merged.tensor(q).unwrap().data());
    let spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(export.join("integration.json")).unwrap()).unwrap();
    assert_eq!(spec["cross_attention_layers"], serde_json::json!([0]));
    assert_eq!(spec["task"]["task"], "next-item");

    // From the export alone, each user's test question gets evaluation's answer, scores and all.
    let preds = predictions(&run);
    assert_eq!(preds.len(), 6);
    // Every prediction records what answering it cost.
    assert!(preds.iter().all(|p| p["prompt_tokens"].as_u64().unwrap() > 5
        && p["user_tokens"].as_u64().unwrap() >= 1
        && p["gflops"].as_f64().unwrap() > 0.0));
    for p in &preds[..3] {
        let got = ask_export(&export, &["--store", store.to_str().unwrap(), "--user", p["user"].as_str().unwrap()]);
        assert_eq!(&got, p);
    }
    // The same history as a JSON file, with the same candidates: the same ranking.
    let s = uorch::data::store::Store::open(&store).unwrap();
    let u = s.user_index(preds[0]["user"].as_str().unwrap()).unwrap();
    let case = uorch::data::split::eval_cases(&s, uorch::data::split::Split::Test, 20)
        .into_iter()
        .find(|c| c.user as usize == u)
        .unwrap();
    let hist: Vec<serde_json::Value> = case.history.clone().map(|k| serde_json::json!({"item": s.vocab.item[s.arrays.item[k] as usize], "rating": s.vocab.rating[s.arrays.rating[k] as usize]})).collect();
    let file = d.path().join("history.json");
    std::fs::write(&file, serde_json::to_string(&hist).unwrap()).unwrap();
    let ids: Vec<&str> = preds[0]["top"].as_array().unwrap().iter().map(|x| x[0].as_str().unwrap()).collect();
    let got = ask_export(&export, &["--history", file.to_str().unwrap(), "--candidates", &ids.join(",")]);
    // Candidates in another order are scored in other batch rows: the same
    // ranking, the scores equal but for float rounding.
    let (a, b) = (got["top"].as_array().unwrap(), preds[0]["top"].as_array().unwrap());
    assert_eq!(a.iter().map(|x| &x[0]).collect::<Vec<_>>(), b.iter().map(|x| &x[0]).collect::<Vec<_>>());
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (x[1].as_f64().unwrap(), y[1].as_f64().unwrap());
        assert!((x - y).abs() <= 1e-5 * y.abs(), "{x} vs {y}");
    }
    // Bad input names what is wrong.
    std::fs::write(&file, r#"[{"item": "no-such-item", "rating": "4"}]"#).unwrap();
    let o = uorch().args(["generate", "--model"]).arg(&export).arg("--history").arg(&file).output().unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("entry 0: item \"no-such-item\" is not in the export's catalog"), "{}", stderr(&o));
}

/// An Amazon-format store whose reviews follow a pattern a tiny model can echo.
fn amazon_store(dir: &Path) -> std::path::PathBuf {
    let mut reviews = String::new();
    let mut meta = String::new();
    let kinds = ["Drama", "Comedy", "Horror"];
    for i in 0..24 {
        meta.push_str(&format!("{}\n", serde_json::json!({"asin": format!("P{i:02}"), "title": format!("Film number {i}"), "category": ["Movies & TV", kinds[i % 3]]})));
    }
    for u in 0..30 {
        for j in 0..8 {
            let item = (u * 5 + j * 7) % 24;
            let text = format!("A fine {} film, I liked it.", kinds[item % 3].to_lowercase());
            reviews.push_str(&format!("{}\n", serde_json::json!({"reviewerID": format!("U{u:02}"), "asin": format!("P{item:02}"), "overall": (1 + (u + j) % 5) as f64, "unixReviewTime": 1_000_000 + j * 100, "reviewText": text})));
        }
    }
    std::fs::write(dir.join("Movies_and_TV_5.json"), reviews).unwrap();
    std::fs::write(dir.join("meta_Movies_and_TV.json"), meta).unwrap();
    let store = dir.join("amazon");
    let o = uorch()
        .args(["data", "prepare"])
        .arg(dir.join("Movies_and_TV_5.json"))
        .arg(dir.join("meta_Movies_and_TV.json"))
        .arg("--out")
        .arg(&store)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    store
}

#[test]
fn review_generation_with_a_soft_prompt_reports_rouge_and_the_export_writes_the_same_review() {
    let d = tempfile::tempdir().unwrap();
    let store = amazon_store(d.path());
    let model = d.path().join("tiny");
    tiny_model(&model);
    let cfg = write_config(
        d.path(),
        "review",
        &store,
        &model,
        "task: review, integration: soft_prompt, perceiver: {latents: 2, layers: 1, heads: 2}, strategy: enc, activation_checkpointing: true, max_new_tokens: 6, steps: 3, batch_size: 4, eval_examples: 4, samples: 2, text_prompt_window: 2",
        2,
    );
    let o = uorch().arg("launch").arg(&cfg).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let run = d.path().join("runs/review");
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("finetune_metrics.json")).unwrap()).unwrap();
    let who: Vec<&str> = m["results"].as_array().unwrap().iter().map(|r| r["who"].as_str().unwrap()).collect();
    assert_eq!(
        who,
        ["USER-LLM before finetuning", "USER-LLM finetuned", "TextPrompt (last 2 interactions as text, no finetuning)"]
    );
    // A soft prompt puts the 2 latents before the text.
    assert_eq!(m["results"][1]["user_tokens"], 2.0);
    let preds = predictions(&run);
    assert_eq!(preds.len(), 4);
    // The finetuned model's ROUGE is the mean over its predictions, scored again here.
    let again: Vec<_> = preds
        .iter()
        .map(|p| uorch::task::rouge::score(p["answer"].as_str().unwrap(), p["truth"].as_str().unwrap()))
        .collect();
    for (k, f) in [("rouge1", 0), ("rouge2", 1), ("rougeL", 2)] {
        let mean = again.iter().map(|s| [s.rouge1, s.rouge2, s.rouge_l][f]).sum::<f64>() / 4.0;
        let got = m["results"][1]["metrics"][k].as_f64().unwrap();
        assert!((got - mean).abs() < 1e-12, "{k}: {got} vs {mean}");
    }
    assert!(preds.iter().all(|p| p["answer"].is_string() && p["truth"].as_str().unwrap().starts_with("A fine")));
    // Sample generations are in TensorBoard's text tab.
    let tb = crate::common::read_tensorboard(&run);
    let text = tb.to_string();
    assert!(text.contains("finetune/samples") && text.contains("truth:"), "{text}");
    // A plain run's own HParams experiment: the keys that set what it measures first, its metrics declared.
    let exp = &tb["runs"]["."]["hparams"]["_hparams_/experiment"];
    let names: Vec<&str> =
        exp["hparam_infos"].as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap()).collect();
    assert_eq!(names[..3], ["finetune.task", "finetune.integration", "finetune.strategy"], "{names:?}");
    let tags: Vec<&str> =
        exp["metric_infos"].as_array().unwrap().iter().map(|i| i["name"]["tag"].as_str().unwrap()).collect();
    assert_eq!(tags[..3], ["finetune/test/rougeL", "finetune/test/rouge1", "finetune/test/rouge2"], "{tags:?}");
    let group = &tb["session_groups"][0];
    let rouge_l = group["metricValues"].as_array().unwrap().iter().find(|v| v["name"]["tag"] == "finetune/test/rougeL");
    assert_eq!(rouge_l.expect("rougeL in the table")["value"].as_f64(), m["results"][1]["metrics"]["rougeL"].as_f64());

    let export = d.path().join("export");
    let o = uorch().arg("export").arg(&run).arg("--out").arg(&export).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let got = ask_export(&export, &["--store", store.to_str().unwrap(), "--user", preds[1]["user"].as_str().unwrap()]);
    assert_eq!(got, preds[1]);
}

#[test]
fn text_prompt_integration_trains_lora_only_and_a_config_with_nothing_to_train_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let store = prepare_ml100k(d.path());
    let model = d.path().join("tiny");
    tiny_model(&model);
    let cfg = write_config(
        d.path(),
        "text",
        &store,
        &model,
        "integration: text_prompt, strategy: lora, text_prompt_window: 3, steps: 2, batch_size: 2, eval_examples: 3",
        1,
    );
    let o = uorch().arg("launch").arg(&cfg).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.path().join("runs/text/finetune_metrics.json")).unwrap()).unwrap();
    // Only LoRA adapters train: rank 8 on q/k/v/o_proj of 2 layers of width 32 (k and v: 16 wide).
    let lora = 2 * (2 * 8 * (32 + 32) + 2 * 8 * (32 + 16));
    assert_eq!(m["trainable_parameters"], lora);
    assert_eq!(m["results"][1]["user_tokens"], 0.0);
    assert!(m["results"][1]["prompt_tokens"].as_f64().unwrap() > 20.0);
    let cfg = write_config(d.path(), "bad", &store, &model, "integration: text_prompt, strategy: enc, steps: 1", 1);
    let o = uorch().args(["config", "check"]).arg(&cfg).output().unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("finetune.strategy"), "{}", stderr(&o));
}

/// A temp folder with the real MovieLens-100K store and the tiny model in it.
fn workspace() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let store = prepare_ml100k(d.path());
    let model = d.path().join("tiny");
    tiny_model(&model);
    (d, store, model)
}

/// Finetuning on 2 workers as `body` sets it: run straight through as
/// `straight`, then started again as `cut` (with `args`) in the background
/// until its log has `steps` lines. Returns the temp folder, `cut`'s config
/// and run folder, and its launcher.
fn straight_then_cut_at(
    body: &str,
    args: &[&str],
    steps: usize,
) -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf, std::process::Child) {
    let (d, store, model) = workspace();
    let straight = write_config(d.path(), "straight", &store, &model, body, 2);
    let o = uorch().arg("launch").arg(&straight).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let cut = write_config(d.path(), "cut", &store, &model, body, 2);
    let run = d.path().join("runs/cut");
    let child = launch_until_logged(&cut, args, &run, steps);
    (d, cut, run, child)
}

/// `uorch launch CFG ARGS` in the background, once `run`'s finetuning log has `steps` lines.
fn launch_until_logged(cfg: &Path, args: &[&str], run: &Path, steps: usize) -> std::process::Child {
    let child = uorch()
        .arg("launch")
        .arg(cfg)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let log = run.join("finetune_log.jsonl");
    let t0 = std::time::Instant::now();
    while std::fs::read_to_string(&log).map(|s| s.lines().count()).unwrap_or(0) < steps {
        assert!(t0.elapsed().as_secs() < 300, "finetuning did not get to step {steps}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child
}

fn finetune_metrics(run: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(run.join("finetune_metrics.json")).unwrap()).unwrap()
}

#[test]
fn ctrl_c_during_finetuning_checkpoints_every_shard_and_the_rerun_resumes_to_the_uninterrupted_result() {
    let body = "cross_attention_layers: all, strategy: enc, steps: 150, batch_size: 4, lr: 0.003, eval_examples: 2, text_prompt_baseline: false";
    let (d, cut, run, child) = straight_then_cut_at(body, &[], 5);
    let log = run.join("finetune_log.jsonl");
    // SAFETY: signalling the launcher this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
    let ckpts: Vec<_> =
        std::fs::read_dir(run.join("finetune_checkpoints")).unwrap().flatten().map(|e| e.path()).collect();
    assert_eq!(ckpts.len(), 1, "{ckpts:?}");
    let files: Vec<String> =
        std::fs::read_dir(&ckpts[0]).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    for f in ["model.safetensors", "optimizer-rank-0.safetensors", "optimizer-rank-1.safetensors", "state.json"] {
        assert!(files.iter().any(|x| x == f), "{f} not in {files:?}");
    }
    assert!(!run.join("finetune_metrics.json").exists());
    let o = uorch().arg("launch").arg(&cut).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("finetune: resuming from"), "{}", stderr(&o));
    let loss = |r: &Path| finetune_metrics(r)["final_loss"].as_f64().unwrap();
    let (a, b) = (loss(&d.path().join("runs/straight")), loss(&run));
    assert!((a - b).abs() <= 1e-6 * a.abs(), "uninterrupted {a} vs resumed {b}");
    assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 150);
}

#[test]
fn with_max_restarts_a_killed_finetuning_worker_restarts_from_its_checkpoint_to_the_uninterrupted_result() {
    let body = "cross_attention_layers: all, strategy: enc, steps: 60, batch_size: 4, lr: 0.003, checkpoint_every: 20, eval_examples: 2, text_prompt_baseline: false";
    let (d, _, run, child) = straight_then_cut_at(body, &["--max-restarts", "2"], 25);
    assert!(run.join("finetune_checkpoints/step-00000020").exists(), "no checkpoint to restart from");
    kill_rank(child.id(), 1);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("restarting every worker from the newest checkpoint (restart 1 of 2)"), "{err}");
    assert!(err.contains("finetune: resuming from"), "{err}");
    let straight = d.path().join("runs/straight");
    let (a, b) = (finetune_metrics(&straight), finetune_metrics(&run));
    assert_eq!((a["restarts"].as_u64(), b["restarts"].as_u64()), (Some(0), Some(1)));
    let (a, b) = (a["final_loss"].as_f64().unwrap(), b["final_loss"].as_f64().unwrap());
    assert!((a - b).abs() <= 1e-6 * a.abs(), "uninterrupted {a} vs restarted {b}");
    assert_eq!(predictions(&run), predictions(&straight), "the same answers");
}

#[test]
fn two_workers_share_the_evaluation_and_their_predictions_equal_one_process_even_past_the_collective_timeout() {
    let (d, store, model) = workspace();
    let cfg = write_config(
        d.path(),
        "shared",
        &store,
        &model,
        "task: next-item, cross_attention_layers: every_2, strategy: lora, lora: {rank: 4, alpha: 8}, candidates: 30, steps: 2, batch_size: 4, eval_examples: 60, text_prompt_baseline: false",
        2,
    );
    // A collective may wait 1 s; each evaluation takes longer than that.
    let o = uorch().arg("launch").arg(&cfg).args(["--set", "dist.timeout_s=1"]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let run = d.path().join("runs/shared");
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("finetune_metrics.json")).unwrap()).unwrap();
    let busy_s = |r: &serde_json::Value| r["ms"].as_f64().unwrap() * r["cases"].as_f64().unwrap() / 1000.0;
    let (before, after) = (&m["results"][0], &m["results"][1]);
    assert_eq!(
        (before["who"].as_str(), after["who"].as_str()),
        (Some("USER-LLM before finetuning"), Some("USER-LLM finetuned"))
    );
    assert!(busy_s(before) > 2.0 && busy_s(after) > 2.0, "the evaluations are too short to test the timeout: {m}");
    // Every case once, in order, whichever rank answered it; and from the
    // export one process with a rank's thread count (its share of the cores)
    // gives the same answers, scores and all, for cases of both ranks. (With
    // another thread count the scores may differ in the last bits.)
    let preds = predictions(&run);
    assert_eq!(preds.len(), 60);
    let export = d.path().join("export");
    let o = uorch().arg("export").arg(&run).arg("--out").arg(&export).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    for p in [&preds[0], &preds[1], &preds[58], &preds[59]] {
        let cores = std::thread::available_parallelism().unwrap().get();
        let mut on_a_ranks_cores = Command::new("taskset");
        on_a_ranks_cores.args(["-c", &format!("0-{}", (cores / 2).max(1) - 1), env!("CARGO_BIN_EXE_uorch")]);
        let args = ["--store", store.to_str().unwrap(), "--user", p["user"].as_str().unwrap()];
        let got = ask_export_on(on_a_ranks_cores, &export, &args);
        assert_eq!(&got, p);
    }
    let s = uorch::data::store::Store::open(&store).unwrap();
    let users: Vec<&str> = preds.iter().map(|p| p["user"].as_str().unwrap()).collect();
    let order: Vec<usize> = users.iter().map(|u| s.user_index(u).unwrap()).collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "predictions in case order: {users:?}");
}

#[test]
fn sigterm_during_the_final_evaluation_lets_it_finish_and_the_launch_reports_the_run_completed() {
    let (d, store, model) = workspace();
    // Evaluation of 60 next-item cases takes seconds; training 2 steps does not.
    let body = "task: next-item, cross_attention_layers: every_2, strategy: lora, lora: {rank: 4, alpha: 8}, candidates: 30, steps: 2, batch_size: 4, eval_examples: 60, text_prompt_baseline: false";
    let cfg = write_config(d.path(), "late", &store, &model, body, 2);
    let run = d.path().join("runs/late");
    let child = launch_until_logged(&cfg, &[], &run, 2);
    // The last step is logged: the stop flag is read no more, what is left is the final evaluation.
    assert!(!run.join("finetune_metrics.json").exists(), "the evaluation ended before the signal");
    // SAFETY: signalling the launcher this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    let (so, se) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{so}\n{se}");
    assert!(se.contains("asking the workers to checkpoint and stop"), "{se}");
    assert!(!so.contains("resume"), "nothing is left to resume: {so}");
    assert!(so.contains("finetuning done"), "{so}");
    let results = finetune_metrics(&run)["results"].as_array().unwrap().clone();
    assert!(results.iter().any(|r| r["who"] == "USER-LLM finetuned"), "{results:?}");
}

#[test]
fn validation_picks_the_checkpoint_that_is_tested_and_written() {
    let d = tempfile::tempdir().unwrap();
    let store = prepare_ml100k(d.path());
    let model = d.path().join("tiny");
    tiny_model(&model);
    let finetune =
        "cross_attention_layers: [1], steps: 6, batch_size: 4, lr: 0.05, checkpoint_every: 2, keep_checkpoints: 3, \
                    valid_examples: 24, eval_examples: 8, text_prompt_baseline: false";
    let cfg = write_config(d.path(), "val", &store, &model, finetune, 2);
    let o = uorch().arg("launch").arg(&cfg).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let run = d.path().join("runs/val");
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("finetune_metrics.json")).unwrap()).unwrap();
    // Validated at every checkpoint, on the validation questions.
    let history = m["validation"].as_array().unwrap();
    let steps: Vec<u64> = history.iter().map(|v| v["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, vec![2, 4, 6]);
    assert!(history.iter().all(|v| v["metric"] == "accuracy" && v["questions"] == 24), "{history:?}");
    // The pick is the best score, the later of equals.
    let values: Vec<f64> = history.iter().map(|v| v["value"].as_f64().unwrap()).collect();
    let best = values.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let want = steps[values.iter().rposition(|&v| v == best).unwrap()];
    eprintln!("validation {values:?} at steps {steps:?}: picked {want}");
    assert_eq!(m["selected_step"].as_u64().unwrap(), want, "{values:?}");
    let err = stderr(&o);
    assert!(err.contains(&format!("validation picked step {want}")), "{err}");
    // Its weights are the ones written (pruning around the best: checkpoint's unit tests).
    let ck = run.join("finetune_checkpoints");
    let weights_of = |step: u64| std::fs::read(ck.join(format!("step-{step:08}/model.safetensors"))).unwrap();
    assert!(ck.join("step-00000006").exists(), "{:?}", std::fs::read_dir(&ck).unwrap().collect::<Vec<_>>());
    same_tensors(&weights_of(want), &std::fs::read(run.join("finetune_weights.safetensors")).unwrap());

    // Rate step 2 best by hand and finish the run again (it resumes at step 6, trains
    // nothing): the weights written are now step 2's, not the last step's.
    let state_file = ck.join("step-00000002/state.json");
    let mut state: serde_json::Value = serde_json::from_slice(&std::fs::read(&state_file).unwrap()).unwrap();
    state["valid"] = serde_json::json!(2.0);
    std::fs::write(&state_file, serde_json::to_vec(&state).unwrap()).unwrap();
    std::fs::remove_file(run.join("finetune_metrics.json")).unwrap();
    let o = uorch().arg("launch").arg(&cfg).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("validation picked step 2"), "{}", stderr(&o));
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("finetune_metrics.json")).unwrap()).unwrap();
    assert_eq!(m["selected_step"], 2);
    let written = std::fs::read(run.join("finetune_weights.safetensors")).unwrap();
    same_tensors(&weights_of(2), &written);
    assert_ne!(weights_of(2), weights_of(6));
}

/// Every tensor of the safetensors `a` is in `b`, with the same values.
fn same_tensors(a: &[u8], b: &[u8]) {
    let (a, b) = (safetensors::SafeTensors::deserialize(a).unwrap(), safetensors::SafeTensors::deserialize(b).unwrap());
    for (name, t) in a.tensors() {
        assert_eq!(t.data(), b.tensor(&name).unwrap().data(), "{name}");
    }
}
