//! `uorch config show|check|presets`, and how every command names a config
//! file with its overrides.

use crate::config::{self, emit, ConfigError, ConfigErrors, RunConfig};
use crate::sweep::plan;
use anyhow::Result;
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum ConfigCmd {
    /// Print the fully resolved config (presets merged, overrides applied, defaults filled).
    Show {
        #[command(flatten)]
        src: ConfigSource,
        /// JSON instead of YAML.
        #[arg(long)]
        json: bool,
        /// Comment each value with the file:line:col or override that set it.
        #[arg(long)]
        origins: bool,
    },
    /// Check a config and report every problem found; exit status 2 if any.
    Check {
        #[command(flatten)]
        src: ConfigSource,
        /// Also print one JSON object on stdout: `ok` and every diagnostic
        /// with its file, line, column, key, message and hint.
        #[arg(long)]
        json: bool,
    },
    /// List the presets under configs/ that `include:` can name.
    Presets,
}

#[derive(Args)]
pub struct ConfigSource {
    /// The run config (YAML).
    pub file: PathBuf,
    /// Overrides in Hydra's grammar: `finetune.lr=3e-4` (the value is YAML),
    /// `+key=value` (a new key), `++key=value` (new or not), `~key` (delete),
    /// `encoder=base` (a preset of configs/encoder/ instead of the file's).
    #[arg(value_name = "OVERRIDE")]
    pub overrides: Vec<String>,
    /// An override, as a flag (repeatable; applied before the positional ones).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

impl ConfigSource {
    pub fn load(&self) -> Result<config::Resolved<RunConfig>, ConfigErrors> {
        config::load::<RunConfig>(&self.file, &self.all())
    }

    /// Every override: the `--set` ones, then the positional ones.
    pub fn all(&self) -> Vec<String> {
        self.set.iter().chain(&self.overrides).cloned().collect()
    }
}

pub fn run(cmd: ConfigCmd) -> Result<()> {
    match cmd {
        ConfigCmd::Show { src, json, origins } => {
            let (resolved, sweep) = plan::load_base(&src.file, &src.all())?;
            let mut value = serde_json::to_value(&resolved.config)?;
            if json {
                if let Some(s) = &sweep {
                    value["sweep"] = serde_json::to_value(s)?;
                }
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else {
                print!("{}", emit::to_yaml(&value, origins.then_some(&resolved.tree)));
                if let Some(s) = &sweep {
                    print!("{}", emit::to_yaml(&serde_json::json!({ "sweep": s }), None));
                }
            }
        }
        ConfigCmd::Check { src, json } => {
            let checked = check(&src);
            if json {
                // Only the JSON on stdout; the diagnostics' text still goes to
                // stderr, with exit status 2, as without --json.
                println!("{}", check_json(&src, &checked));
                checked?;
            } else {
                println!("{}", checked?);
            }
        }
        ConfigCmd::Presets => {
            for name in config::preset_names() {
                println!("{name}");
            }
        }
    }
    Ok(())
}

/// Every problem at once (type errors, out-of-range values, missing paths),
/// or what was checked.
fn check(src: &ConfigSource) -> Result<String> {
    if plan::is_experiment(&src.file)? {
        let plan = plan::build(&src.file, &src.all(), 0)?;
        let mut missing: Vec<(String, String)> =
            plan.stages.iter().filter_map(|st| st.config.as_ref()).flat_map(|c| c.missing_paths(false)).collect();
        missing.sort();
        missing.dedup();
        fail_on(&config::load_tree(&src.file, &src.all())?, &missing)?;
        Ok(format!(
            "{}: ok (an experiment: {} trial(s), {} stage(s))",
            src.file.display(),
            plan.trials.len(),
            plan.stages.len()
        ))
    } else {
        let tree = config::load_tree(&src.file, &src.all())?;
        let (cfg, mut errors) = config::check_tree::<RunConfig>(&tree);
        for (key, message) in cfg.map(|c| c.missing_paths(true)).unwrap_or_default() {
            if !config::covered(&errors, &key) {
                errors.push(ConfigError::at_key(&tree, &key, message));
            }
        }
        if !errors.is_empty() {
            return Err(ConfigErrors(errors).into());
        }
        Ok(format!("{}: ok", src.file.display()))
    }
}

/// `config check --json`: `{"file", "ok", "summary", "diagnostics": [{"file",
/// "line", "column", "override", "key", "message", "hint"}]}` (a diagnostic
/// from an override has `override` and no file; any other error is one
/// diagnostic with only its message).
fn check_json(src: &ConfigSource, checked: &Result<String>) -> serde_json::Value {
    use crate::config::tree::Origin;
    let diagnostic = |e: &ConfigError| {
        let (file, line, column, over) = match &e.origin {
            Origin::File { path, line, col } => (Some(path.display().to_string()), Some(*line), Some(*col), None),
            Origin::Override(s) => (None, None, None, Some(s.to_string())),
            Origin::Default => (None, None, None, None),
        };
        serde_json::json!({"file": file, "line": line, "column": column, "override": over,
                           "key": e.key, "message": e.message, "hint": e.hint})
    };
    let (summary, diagnostics): (Option<&String>, Vec<serde_json::Value>) = match checked {
        Ok(s) => (Some(s), Vec::new()),
        Err(e) => match e.downcast_ref::<ConfigErrors>() {
            Some(ce) => (None, ce.0.iter().map(diagnostic).collect()),
            None => (None, vec![serde_json::json!({"message": format!("{e:#}")})]),
        },
    };
    serde_json::json!({"file": src.file, "ok": checked.is_ok(), "summary": summary, "diagnostics": diagnostics})
}

/// The missing paths as config errors at the keys that name them (every
/// one listed, exit status 2 as for other config errors).
fn fail_on(tree: &config::tree::Node, missing: &[(String, String)]) -> Result<()> {
    if missing.is_empty() {
        return Ok(());
    }
    let errors = missing.iter().map(|(key, message)| ConfigError::at_key(tree, key, message.clone())).collect();
    Err(ConfigErrors(errors).into())
}
