//! Pretraining throughput: the same encoder and global batch trained by 1 and
//! by 2 workers (`uorch launch` on the real MovieLens-100K store), sequences
//! per second after warm-up and the 2-worker scaling ratio, beside the plain
//! PyTorch encoder of `benches/encoder_reference.py` in the same run when a
//! Python with torch is given.

use anyhow::{bail, Result};
use std::path::Path;
use std::process::Command;

pub struct Figures {
    pub who: String,
    pub sequences_per_s: f64,
}

/// Sequences/s of a finished run from its train log: steps after `warmup`.
fn throughput(run: &Path, global_batch: usize, warmup: usize) -> Result<f64> {
    let times = super::logged_elapsed(&run.join("train_log.jsonl"))?;
    if times.len() <= warmup + 1 {
        bail!("{}: only {} steps logged", run.display(), times.len());
    }
    let (t0, t1) = (times[warmup - 1], times[times.len() - 1]);
    Ok((times.len() - warmup) as f64 * global_batch as f64 / (t1 - t0))
}

pub fn bench(dir: &Path, store: &Path, steps: usize, global_batch: usize, python: &Path) -> Result<Vec<Figures>> {
    let exe = std::env::current_exe()?;
    let warmup = 10.min(steps / 2).max(1);
    let mut out = Vec::new();
    for nproc in [1usize, 2] {
        let name = format!("workers-{nproc}");
        let cfg = dir.join(format!("{name}.yaml"));
        std::fs::create_dir_all(dir)?;
        std::fs::write(
            &cfg,
            format!(
                "name: {name}\noutput_root: {}\nseed: 1\ndata: {{store: {}, window: 50, stride: 25}}\nencoder: {{dim: 64, layers: 2, heads: 4, dropout: 0.1}}\npretrain: {{steps: {steps}, batch_size: {}, checkpoint_every: 0, log_every: 1000000}}\ndist: {{nproc: {nproc}}}\n",
                dir.display(),
                store.display(),
                global_batch / nproc
            ),
        )?;
        let _ = std::fs::remove_dir_all(dir.join(&name));
        eprintln!("{nproc} worker(s): {steps} steps at global batch {global_batch} ...");
        let o = Command::new(&exe).arg("launch").arg(&cfg).output()?;
        if !o.status.success() {
            bail!("launch failed: {}", String::from_utf8_lossy(&o.stderr));
        }
        out.push(Figures {
            who: format!("uorch, {nproc} CPU worker(s)"),
            sequences_per_s: throughput(&dir.join(&name), global_batch, warmup)?,
        });
    }
    if super::python_imports(python, "torch") {
        let s = crate::data::store::Store::open(store)?;
        let args = serde_json::json!({
            "features": [["item", s.manifest.counts.items], ["category", s.vocab.category.len()], ["rating", s.vocab.rating.len()]],
            "dim": 64, "layers": 2, "heads": 4, "ffn_mult": 4, "window": 50, "dropout": 0.1, "batch": global_batch,
            "steps": steps - warmup, "warmup": warmup, "device": "cpu",
            "threads": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        });
        eprintln!("PyTorch reference ...");
        let script = crate::paths::project_root().join("benches/encoder_reference.py");
        let o = Command::new(python).arg(script).arg(args.to_string()).output()?;
        if !o.status.success() {
            bail!("reference failed: {}", String::from_utf8_lossy(&o.stderr));
        }
        out.push(Figures {
            who: "PyTorch eager, 1 process".into(),
            sequences_per_s: String::from_utf8_lossy(&o.stdout).trim().parse()?,
        });
    } else {
        eprintln!("no torch at {}: reference skipped", python.display());
    }
    Ok(out)
}

pub fn report(rows: &[Figures]) -> String {
    let one = rows.first().map(|r| r.sequences_per_s).unwrap_or(1.0);
    let mut s = format!("  {:<28} {:>14} {:>10}\n", "", "sequences/s", "vs 1 worker");
    for r in rows {
        s.push_str(&format!("  {:<28} {:>14.0} {:>9.2}x\n", r.who, r.sequences_per_s, r.sequences_per_s / one));
    }
    s
}
