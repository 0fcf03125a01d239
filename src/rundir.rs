//! A run's folder: the resolved config it ran with, the environment it ran in,
//! and its TensorBoard log (hyperparameters, config text, session status).

use crate::config::{emit, RunConfig};
use crate::fsutil::write_atomic;
use crate::tb::{EventWriter, HValue, SessionStatus};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

pub const CONFIG_FILE: &str = "config.yaml";
pub const ENV_FILE: &str = "env.json";
pub const TB_DIR: &str = "tb";

/// Leaf values of a JSON tree as `a.b.c` → value, for the HParams dashboard.
pub fn flatten(value: &serde_json::Value) -> Vec<(String, HValue)> {
    fn go(v: &serde_json::Value, prefix: &str, out: &mut Vec<(String, HValue)>) {
        use serde_json::Value as J;
        let leaf = match v {
            J::Object(m) => {
                for (k, v) in m {
                    let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    go(v, &key, out);
                }
                return;
            }
            J::Null => return,
            J::Bool(b) => HValue::Bool(*b),
            J::Number(n) => HValue::Num(n.as_f64().unwrap_or(f64::NAN)),
            J::String(s) => HValue::Str(s.clone()),
            J::Array(_) => HValue::Str(v.to_string()),
        };
        out.push((prefix.to_string(), leaf));
    }
    let mut out = Vec::new();
    go(value, "", &mut out);
    out
}

/// Create the run folder and record what the run is. Returns the folder.
pub fn prepare(config: &RunConfig, env: &crate::env_report::EnvReport) -> Result<PathBuf> {
    let dir = config.run_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create run folder {}", dir.display()))?;
    let json = serde_json::to_value(config)?;
    let yaml = emit::to_yaml(&json, None);
    write_atomic(&dir.join(CONFIG_FILE), yaml.as_bytes())
        .with_context(|| format!("writing {}", dir.join(CONFIG_FILE).display()))?;
    write_atomic(&dir.join(ENV_FILE), serde_json::to_string_pretty(env)?.as_bytes())?;
    Ok(dir)
}

/// TensorBoard records that describe a run: its hyperparameters (HParams
/// session), its resolved config and environment as text.
pub fn log_run_start(tb: &mut EventWriter, config: &RunConfig, env_text: &str) -> Result<()> {
    let json = serde_json::to_value(config)?;
    let hparams = flatten(&json);
    // A sweep's experiment record is at its log root; its shared stages are no sessions.
    if config.trial.is_empty() && config.hparams_session {
        let infos: Vec<_> = hparams.iter().map(|(k, v)| (k.clone(), v.kind(), Vec::new())).collect();
        tb.hparams_experiment(&infos, &[])?;
    }
    if config.hparams_session {
        tb.hparams_session_start(&hparams, &config.name)?;
    }
    tb.text("config", 0, &format!("```yaml\n{}```", emit::to_yaml(&json, None)))?;
    tb.text("env", 0, &format!("```\n{env_text}```"))?;
    Ok(())
}

pub fn log_run_end(tb: &mut EventWriter, config: &RunConfig, ok: bool) -> Result<()> {
    if config.hparams_session {
        tb.hparams_session_end(if ok { SessionStatus::Success } else { SessionStatus::Failure })?;
    }
    tb.flush()?;
    Ok(())
}

pub fn tb_dir(run_dir: &Path) -> PathBuf {
    run_dir.join(TB_DIR)
}
