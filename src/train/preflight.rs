//! What a launch checks in the run folder before it writes anything there.

use super::skeleton::resumable;
use super::{checkpoint, finetune, pretrain};
use crate::config::RunConfig;
use crate::rundir::{RunDir, StageFiles};
use anyhow::{bail, Result};

/// Before a launch writes anything into the run folder: every stage's newest
/// checkpoint can resume this config on `world` workers (a refused run must
/// change nothing, not even the folder's config.yaml).
pub fn check_run_folder(cfg: &RunConfig, world: usize) -> Result<()> {
    let run = RunDir::of(cfg);
    // Logs are appended and old checkpoints deleted through these paths.
    let leaving = crate::fsutil::links_leaving(run.path());
    if !leaving.is_empty() {
        let list: Vec<String> =
            leaving.iter().map(|(link, to)| format!("{} -> {}", link.display(), to.display())).collect();
        bail!(
            "run folder {} has symbolic links that lead out of it, which uorch would write or delete through:\n  {}\nremove them (uorch writes only inside the run folder)",
            run.path().display(),
            list.join("\n  ")
        );
    }
    if let Some(old) = run.legacy_events() {
        let (from, to) = (sh_word(&old), sh_word(run.path()));
        bail!(
            "run folder {} was written by an older uorch, which kept its TensorBoard events in {} (TensorBoard showed the run as `{}/{}`); this uorch writes them in the run folder itself. Move them up, then launch again:\n  mv {from}/{}* {to}/ && rmdir {from}",
            run.path().display(),
            old.display(),
            cfg.name,
            crate::rundir::LEGACY_TB_DIR,
            crate::tb::EVENTS_PREFIX,
        );
    }
    if let Some(p) = &cfg.pretrain {
        let root = run.checkpoints(StageFiles::Pretrain);
        if let Some((dir, state)) = checkpoint::latest(&root)? {
            let hash = pretrain::config_hash(cfg, &cfg.encoder.clone().unwrap_or_default(), p);
            resumable::<pretrain::Pretraining<'static>>(&root, &dir, &state, &hash, world)?;
        }
    }
    if cfg.finetune.is_some() {
        let root = run.checkpoints(StageFiles::Finetune);
        if let Some((dir, state)) = checkpoint::latest(&root)? {
            resumable::<finetune::Finetuning<'static>>(&root, &dir, &state, &finetune::config_hash(cfg), world)?;
        }
    }
    Ok(())
}

/// A path as one shell word (quoted only where the shell would split or expand it).
fn sh_word(p: &std::path::Path) -> String {
    let s = p.display().to_string();
    if s.chars().all(|c| c.is_ascii_alphanumeric() || "/._-=+,:@%".contains(c)) {
        s
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}
