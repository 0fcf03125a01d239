//! `uorch bench ...`: measured speed of uorch's pieces, with a reference run
//! in the same invocation where one is available.

pub mod efficiency;
pub mod eval;
pub mod finetune;
pub mod generate;
pub mod ingest;
pub mod llm;
pub mod pretrain;
pub mod zero;

/// Peak resident memory of the largest child waited for so far, in bytes.
pub fn children_peak_rss() -> u64 {
    // SAFETY: getrusage fills the struct we pass; no other effects.
    unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru);
        ru.ru_maxrss as u64 * 1024
    }
}

/// The `elapsed_s` of every step in a run's step log (`train_log.jsonl`,
/// `finetune_log.jsonl`).
pub(crate) fn logged_elapsed(log: &std::path::Path) -> anyhow::Result<Vec<f64>> {
    use anyhow::Context;
    let text = std::fs::read_to_string(log).with_context(|| format!("{}: no step log", log.display()))?;
    Ok(text.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()?["elapsed_s"].as_f64()).collect())
}

/// Whether `python` runs and can import `modules` (`"torch, transformers"`):
/// a reference is run only then.
pub(crate) fn python_imports(python: &std::path::Path, modules: &str) -> bool {
    std::process::Command::new(python)
        .args(["-c", &format!("import {modules}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Runs the reference script `benches/<script>` with `python`, its one
/// argument the JSON `args`, and parses the JSON line it prints last.
pub(crate) fn reference_json(
    python: &std::path::Path,
    script: &str,
    args: &serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    use anyhow::Context;
    let script = crate::paths::project_root().join("benches").join(script);
    let out = std::process::Command::new(python).arg(&script).arg(args.to_string()).output()?;
    if !out.status.success() {
        anyhow::bail!("{} failed: {}", script.display(), String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim().lines().last().unwrap_or(""))
        .with_context(|| format!("{}: expected a JSON line, printed {text:?}", script.display()))
}
