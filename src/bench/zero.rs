//! `uorch bench zero`: what each rank keeps under DDP, ZeRO-1 and ZeRO-2 on
//! the same finetuning run (`uorch launch` with only `finetune.zero_stage`
//! changed): optimizer state and the resident-memory high-water mark of the
//! step loop per rank, step time, and the final loss (which should agree, as
//! the stages compute the same update).

use anyhow::{bail, Result};
use std::path::Path;
use std::process::Command;

pub struct Row {
    pub stage: u8,
    pub optimizer_mib: f64,
    pub peak_mib: f64,
    pub added_mib: f64,
    pub step_ms: f64,
    pub final_loss: f64,
}

/// What a rank keeps at each stage.
fn keeps(stage: u8) -> &'static str {
    match stage {
        0 => "DDP: full gradient, full moments",
        1 => "ZeRO-1: full gradient, sharded moments",
        _ => "ZeRO-2: gradient shard + a bucket, sharded moments",
    }
}

/// Seconds per step after the first, from a run's finetuning log.
fn step_seconds(run: &Path) -> Result<f64> {
    let t = super::logged_elapsed(&run.join("finetune_log.jsonl"))?;
    if t.len() < 2 {
        bail!("{}: fewer than 2 steps logged", run.display());
    }
    Ok((t[t.len() - 1] - t[0]) / (t.len() - 1) as f64)
}

/// One run per stage: `strategy` finetuning of `model` with the history as
/// text (no pretraining needed), `nproc` workers, `steps` steps.
pub fn bench(dir: &Path, store: &Path, model: &Path, strategy: &str, nproc: usize, steps: u64) -> Result<Vec<Row>> {
    let exe = std::env::current_exe()?;
    std::fs::create_dir_all(dir)?;
    let mut rows = Vec::new();
    for stage in [0u8, 1, 2] {
        let name = format!("zero-{stage}");
        let cfg = dir.join(format!("{name}.yaml"));
        std::fs::write(
            &cfg,
            format!(
                "name: {name}\noutput_root: {}\nseed: 1\ndata: {{store: {}, window: 20, stride: 20}}\n\
                 finetune: {{model: {}, integration: text_prompt, strategy: {strategy}, steps: {steps}, batch_size: 2, \
                 text_prompt_window: 10, eval_examples: 2, text_prompt_baseline: false, samples: 0, zero_stage: {stage}}}\n\
                 dist: {{nproc: {nproc}}}\n",
                dir.display(),
                store.display(),
                model.display()
            ),
        )?;
        let run = dir.join(&name);
        let _ = std::fs::remove_dir_all(&run);
        eprintln!("{}: {steps} {strategy} finetuning steps on {nproc} workers ...", keeps(stage));
        let o = Command::new(&exe).arg("launch").arg(&cfg).output()?;
        if !o.status.success() {
            bail!("launch of {} failed:\n{}", cfg.display(), String::from_utf8_lossy(&o.stderr));
        }
        let m: serde_json::Value = serde_json::from_slice(&std::fs::read(run.join("finetune_metrics.json"))?)?;
        let mib = |k: &str| m[k].as_f64().unwrap_or(0.0) / (1 << 20) as f64;
        rows.push(Row {
            stage,
            optimizer_mib: mib("optimizer_state_bytes_per_rank"),
            peak_mib: mib("training_peak_memory_bytes"),
            added_mib: mib("training_added_memory_bytes"),
            step_ms: step_seconds(&run)? * 1000.0,
            final_loss: m["final_loss"].as_f64().unwrap_or(f64::NAN),
        });
    }
    Ok(rows)
}

pub fn report(rows: &[Row]) -> String {
    let ddp = rows.iter().find(|r| r.stage == 0).map(|r| r.added_mib).unwrap_or(f64::NAN);
    let mut s = String::from(
        "| stage | what each rank keeps | optimizer state MiB / rank | memory the step loop adds, MiB / rank | vs DDP | peak resident MiB / rank | ms / step | final loss |\n|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        s += &format!(
            "| {} | {} | {:.1} | {:.0} | {:.2}x | {:.0} | {:.0} | {:.6} |\n",
            r.stage,
            keeps(r.stage),
            r.optimizer_mib,
            r.added_mib,
            r.added_mib / ddp,
            r.peak_mib,
            r.step_ms,
            r.final_loss
        );
    }
    s
}
