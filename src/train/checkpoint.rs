//! Checkpoints: weights and optimizer state in safetensors plus a state file
//! (step, config hash, world size, SHA-256 of each file), written into a
//! temporary folder and renamed into place, the newest K kept. Loading
//! verifies the checksums and refuses a checkpoint of a different config.

use super::adamw::AdamW;
use crate::model::weights::{read_tensors, sha256_file, write_tensors};
pub use crate::rundir::checkpoint::{optimizer_shard, MODEL};
use crate::rundir::checkpoint::{staging_dir, step_dir, step_of, OPTIMIZER, STATE};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::Tensor;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrainState {
    /// Optimizer steps completed.
    pub step: u64,
    pub config_hash: String,
    pub world_size: usize,
    pub loss: f64,
    /// SHA-256 of each file.
    pub files: BTreeMap<String, String>,
}

/// An empty staging folder for the checkpoint of `step` (its files are
/// written there, possibly by several ranks, then [`commit`]ted).
pub fn staging(root: &Path, step: u64) -> Result<PathBuf> {
    std::fs::create_dir_all(root)?;
    let tmp = root.join(staging_dir(step));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir(&tmp)?;
    Ok(tmp)
}

/// Write one file of tensors into a staging folder.
pub fn write_file(staging: &Path, name: &str, tensors: &[(String, Tensor)]) -> Result<()> {
    write_tensors(&staging.join(name), tensors)
}

/// Seal a staging folder: the SHA-256 of every file goes into the state file,
/// then the folder is renamed into place; the newest `keep` are kept.
pub fn commit(root: &Path, staging: &Path, mut state: TrainState, keep: usize) -> Result<PathBuf> {
    let result = (|| -> Result<PathBuf> {
        let mut names: Vec<String> =
            std::fs::read_dir(staging)?.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        for name in names.into_iter().filter(|n| n != STATE) {
            state.files.insert(name.clone(), sha256_file(&staging.join(&name))?);
        }
        std::fs::write(staging.join(STATE), serde_json::to_vec_pretty(&state)?)?;
        std::fs::File::open(staging.join(STATE))?.sync_all()?;
        let dest = root.join(step_dir(state.step));
        let _ = std::fs::remove_dir_all(&dest);
        std::fs::rename(staging, &dest)?;
        std::fs::File::open(root)?.sync_all()?;
        Ok(dest)
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(staging);
    }
    let dest = result?;
    let mut all = list(root)?;
    while all.len() > keep {
        let (_, old) = all.remove(0);
        let _ = std::fs::remove_dir_all(old);
    }
    Ok(dest)
}

/// Save a checkpoint of `params` and `opt` after `state.step` steps into
/// `root`; keep the newest `keep`.
pub fn save(root: &Path, params: &[(String, Tensor)], opt: &AdamW, state: TrainState, keep: usize) -> Result<PathBuf> {
    let tmp = staging(root, state.step)?;
    let written = (|| -> Result<()> {
        write_file(&tmp, MODEL, params)?;
        let mut opt_tensors = vec![("step".to_string(), Tensor::from_slice(&[opt.step as f32]))];
        for (name, (m, v)) in &opt.state {
            opt_tensors.push((format!("m/{name}"), m.shallow_clone()));
            opt_tensors.push((format!("v/{name}"), v.shallow_clone()));
        }
        write_file(&tmp, OPTIMIZER, &opt_tensors)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    commit(root, &tmp, state, keep)
}

/// Complete checkpoints, oldest first.
fn list(root: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let Ok(entries) = std::fs::read_dir(root) else { return Ok(Vec::new()) };
    let mut out: Vec<(u64, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let step = step_of(&name)?;
            Some((step, e.path()))
        })
        .collect();
    out.sort();
    Ok(out)
}

/// Read and verify a checkpoint's state and files.
pub fn verify(dir: &Path) -> Result<TrainState> {
    let state: TrainState = serde_json::from_slice(
        &std::fs::read(dir.join(STATE)).with_context(|| format!("{}: no {STATE}", dir.display()))?,
    )
    .with_context(|| format!("{}: unreadable {STATE}", dir.display()))?;
    for (file, sha) in &state.files {
        let got = sha256_file(&dir.join(file)).with_context(|| format!("{}: missing {file}", dir.display()))?;
        if &got != sha {
            bail!("{}: {file} has SHA-256 {got}, the state file says {sha}: the checkpoint is damaged", dir.display());
        }
    }
    Ok(state)
}

/// The newest checkpoint in `root` that verifies (damaged ones are reported and skipped).
pub fn latest(root: &Path) -> Result<Option<(PathBuf, TrainState)>> {
    for (_, dir) in list(root)?.into_iter().rev() {
        match verify(&dir) {
            Ok(state) => return Ok(Some((dir, state))),
            Err(e) => eprintln!("warning: skipping checkpoint: {e:#}"),
        }
    }
    Ok(None)
}

/// Copy the checkpoint's tensors whose names start with `prefix` into the
/// matching `params` (e.g. a pretrained encoder into a USER-LLM); returns how
/// many were copied.
pub fn load_matching(dir: &Path, prefix: &str, params: &[(String, Tensor)]) -> Result<usize> {
    let weights = read_tensors(&dir.join(MODEL))?;
    let mut n = 0;
    tch::no_grad(|| -> Result<()> {
        for (name, p) in params.iter().filter(|(n, _)| n.starts_with(prefix)) {
            let src = weights
                .get(name)
                .with_context(|| format!("{}: no tensor {name} for the model's {name}", dir.display()))?;
            if src.size() != p.size() {
                bail!("{}: tensor {name} has shape {:?}, the model {:?}: was the encoder pretrained with another shape or store?", dir.display(), src.size(), p.size());
            }
            p.shallow_clone().copy_(&src.to_device(p.device()));
            n += 1;
        }
        Ok(())
    })?;
    Ok(n)
}

/// Restore weights and optimizer state from a verified checkpoint folder.
pub fn load(dir: &Path, params: &[(String, Tensor)], opt: &mut AdamW) -> Result<()> {
    let weights = read_tensors(&dir.join(MODEL))?;
    tch::no_grad(|| -> Result<()> {
        for (name, p) in params {
            let src = weights.get(name).with_context(|| format!("{}: no tensor {name}", dir.display()))?;
            if src.size() != p.size() {
                bail!("{}: tensor {name} has shape {:?}, the model {:?}", dir.display(), src.size(), p.size());
            }
            p.shallow_clone().copy_(src);
        }
        Ok(())
    })?;
    let o = read_tensors(&dir.join(OPTIMIZER))?;
    opt.step = o.get("step").map(|t| t.double_value(&[0]) as i64).unwrap_or(0);
    opt.state.clear();
    for (name, p) in params {
        if let (Some(m), Some(v)) = (o.get(&format!("m/{name}")), o.get(&format!("v/{name}"))) {
            opt.state.insert(name.clone(), (m.to_device(p.device()), v.to_device(p.device())));
        }
    }
    Ok(())
}
