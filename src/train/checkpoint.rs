//! Checkpoints: weights and optimizer state in safetensors plus a state file
//! (step, config hash, world size, SHA-256 of each file), written into a
//! temporary folder and renamed into place, the newest K kept. Loading
//! verifies the checksums and refuses a checkpoint of a different config.
//!
//! With several ranks ([`save_together`]), rank 0 stages the folder, every
//! rank writes its files there and confirms each by its SHA-256 through the
//! store, and rank 0 seals only when it finds every confirmed file in its
//! staging folder: on machines that do not share the run's file system the
//! first checkpoint fails, saying so, instead of sealing without the shards.

use super::adamw::AdamW;
use super::worker::Worker;
use crate::model::weights::{read_tensors, sha256_file, write_tensors};
pub use crate::rundir::checkpoint::{optimizer_shard, MODEL, OPTIMIZER};
use crate::rundir::checkpoint::{staging_dir, step_dir, step_of, STATE};
use crate::task::evaluate::Gather;
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
    /// The validation score of the weights (higher is better), where the
    /// stage validated at this step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid: Option<f64>,
}

/// An empty staging folder for the checkpoint of `step` (its files are
/// written there, possibly by several ranks, then [`commit`]ted).
pub fn staging(root: &Path, step: u64) -> Result<PathBuf> {
    std::fs::create_dir_all(root).with_context(|| format!("creating the checkpoint folder {}", root.display()))?;
    let tmp = root.join(staging_dir(step));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir(&tmp).with_context(|| format!("creating the staging folder {}", tmp.display()))?;
    Ok(tmp)
}

/// Write one file of tensors into a staging folder.
pub fn write_file(staging: &Path, name: &str, tensors: &[(String, Tensor)]) -> Result<()> {
    write_tensors(&staging.join(name), tensors)
}

/// Seal a staging folder: the SHA-256 of every file goes into the state file
/// (those already in `state.files` were verified by the caller), then the
/// folder is renamed into place; the newest `keep` are kept, and the one
/// validation rates best (which the run will test and export).
pub fn commit(root: &Path, staging: &Path, mut state: TrainState, keep: usize) -> Result<PathBuf> {
    let result = (|| -> Result<PathBuf> {
        let mut names: Vec<String> = std::fs::read_dir(staging)
            .with_context(|| format!("reading {}", staging.display()))?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names.retain(|n| n != STATE && !state.files.contains_key(n));
        for name in names {
            state.files.insert(name.clone(), sha256_file(&staging.join(&name))?);
        }
        let state_file = staging.join(STATE);
        std::fs::write(&state_file, serde_json::to_vec_pretty(&state)?)
            .with_context(|| format!("writing {}", state_file.display()))?;
        std::fs::File::open(&state_file)
            .and_then(|f| f.sync_all())
            .with_context(|| format!("syncing {}", state_file.display()))?;
        let dest = root.join(step_dir(state.step));
        let _ = std::fs::remove_dir_all(&dest);
        std::fs::rename(staging, &dest)
            .with_context(|| format!("renaming {} to {}", staging.display(), dest.display()))?;
        std::fs::File::open(root).and_then(|f| f.sync_all()).with_context(|| format!("syncing {}", root.display()))?;
        Ok(dest)
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(staging);
    }
    let dest = result?;
    let all = list(root)?;
    let best = by_validation(root).into_iter().next().map(|(dir, _)| dir);
    let old = all.len().saturating_sub(keep);
    for (_, dir) in &all[..old] {
        if best.as_ref() != Some(dir) {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    Ok(dest)
}

/// The checkpoints that were validated, best first (the later of equal
/// scores first: more training for the same score); their state files are
/// read, their files not verified.
pub fn by_validation(root: &Path) -> Vec<(PathBuf, TrainState)> {
    let mut out: Vec<(PathBuf, TrainState)> = list(root)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(_, dir)| {
            let state: TrainState = serde_json::from_slice(&std::fs::read(dir.join(STATE)).ok()?).ok()?;
            state.valid.is_some().then_some((dir, state))
        })
        .collect();
    out.sort_by(|(_, a), (_, b)| {
        b.valid.partial_cmp(&a.valid).unwrap_or(std::cmp::Ordering::Equal).then(b.step.cmp(&a.step))
    });
    out
}

/// The best validated checkpoint that verifies (damaged ones are reported
/// and skipped).
pub fn best_validated(root: &Path) -> Option<(PathBuf, TrainState)> {
    by_validation(root).into_iter().find_map(|(dir, _)| match verify(&dir) {
        Ok(state) => Some((dir, state)),
        Err(e) => {
            eprintln!("warning: skipping checkpoint: {e:#}");
            None
        }
    })
}

/// The tensors of `params` for a checkpoint's model file.
pub fn model_tensors(params: &[(String, Tensor)]) -> Vec<(String, Tensor)> {
    params.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect()
}

/// An unsharded AdamW's state for a checkpoint's optimizer file (see [`load`]).
pub fn optimizer_tensors(opt: &AdamW) -> Vec<(String, Tensor)> {
    let mut out = vec![("step".to_string(), Tensor::from_slice(&[opt.step as f32]))];
    for (name, (m, v)) in &opt.state {
        out.push((format!("m/{name}"), m.shallow_clone()));
        out.push((format!("v/{name}"), v.shallow_clone()));
    }
    out
}

/// The file in a staging folder that tells the other ranks it is rank 0's:
/// it holds a token that rank 0 also sends through the store.
const STAGED_BY: &str = "staged-by-rank0";

/// What one rank reports of its part of a checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Confirmation {
    pub rank: usize,
    pub host: String,
    /// The files it wrote with their SHA-256, or why it wrote none.
    pub files: std::result::Result<BTreeMap<String, String>, String>,
}

/// Every rank's part of the checkpoint of `state.step` into `root`: `mine`
/// are the files this rank writes (rank 0's include the model). Rank 0
/// stages and, once every rank has confirmed its files and each is in the
/// staging folder with the confirmed checksum, seals; every rank returns the
/// same verdict. Called on every rank at the same point.
pub fn save_together(
    w: &Worker,
    root: &Path,
    mut state: TrainState,
    keep: usize,
    mine: &[(&str, &[(String, Tensor)])],
) -> Result<()> {
    let key = w.exchange("checkpoint");
    let tmp = root.join(staging_dir(state.step));
    let token = if w.rank == 0 {
        staging(root, state.step)?;
        let token = format!("{} {} {:?}", std::process::id(), state.step, std::time::SystemTime::now());
        std::fs::write(tmp.join(STAGED_BY), &token)
            .with_context(|| format!("writing {}", tmp.join(STAGED_BY).display()))?;
        token.into_bytes()
    } else {
        Vec::new()
    };
    let token = w.from_rank0(&format!("{key}/token"), token)?;
    let files = if std::fs::read(tmp.join(STAGED_BY)).ok().as_deref() == Some(&token[..]) {
        let mut out = BTreeMap::new();
        for (name, tensors) in mine {
            write_file(&tmp, name, tensors)?;
            out.insert(name.to_string(), sha256_file(&tmp.join(name))?);
        }
        Ok(out)
    } else {
        Err(format!("the staging folder {} that rank 0 created is not there", tmp.display()))
    };
    let me = Confirmation { rank: w.rank, host: w.host.clone(), files };
    let verdict = match w.gather(&format!("{key}/confirm"), serde_json::to_vec(&me)?)? {
        Some(all) => {
            let all: Vec<Confirmation> = all.iter().map(|b| serde_json::from_slice(b)).collect::<Result<_, _>>()?;
            pause_before_seal(&tmp, state.step);
            let sealed = check_confirmations(&all, &tmp).and_then(|verified| {
                state.files = verified;
                let staged_by = tmp.join(STAGED_BY);
                std::fs::remove_file(&staged_by).with_context(|| format!("removing {}", staged_by.display()))?;
                commit(root, &tmp, state, keep)
            });
            if sealed.is_err() {
                let _ = std::fs::remove_dir_all(&tmp);
            }
            sealed.map(drop).map_err(|e| format!("{e:#}"))
        }
        None => Ok(()),
    };
    let verdict = w.from_rank0(&format!("{key}/verdict"), verdict.err().unwrap_or_default().into_bytes())?;
    if !verdict.is_empty() {
        // Rank 0 leaves only once every rank has read why.
        w.gather(&format!("{key}/read"), Vec::new())?;
        bail!("{}", String::from_utf8_lossy(&verdict));
    }
    Ok(())
}

/// Fault injection for the test suite: with `UORCH_FAULT_PAUSE_BEFORE_SEAL`
/// set to `STEP:MS`, rank 0 waits MS milliseconds with every file of step
/// STEP's checkpoint staged but not yet sealed, saying so, so that a test
/// can kill the run at exactly that moment.
fn pause_before_seal(staging: &Path, step: u64) {
    let Ok(spec) = std::env::var("UORCH_FAULT_PAUSE_BEFORE_SEAL") else { return };
    let parsed = spec.split_once(':').and_then(|(s, ms)| Some((s.parse::<u64>().ok()?, ms.parse::<u64>().ok()?)));
    if let Some((at, ms)) = parsed.filter(|(at, _)| *at == step) {
        eprintln!("fault injection: pausing {ms} ms before sealing {} (step {at})", staging.display());
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

/// Rank 0's check before sealing: every rank confirmed its files, and each
/// is in `staging` with the checksum its rank confirmed. Returns the
/// verified checksums by file.
pub fn check_confirmations(all: &[Confirmation], staging: &Path) -> Result<BTreeMap<String, String>> {
    let shared = "checkpoints need a file system that every machine of the run shares (put output_root on it)";
    let mut verified = BTreeMap::new();
    for c in all {
        let files = match &c.files {
            Ok(f) => f,
            Err(why) => bail!("checkpoint not written: rank {} on {}: {why}: {shared}", c.rank, c.host),
        };
        for (name, sha) in files {
            let here = sha256_file(&staging.join(name)).ok();
            if here.as_ref() != Some(sha) {
                let found = if here.is_some() { "a different file" } else { "nothing" };
                bail!(
                    "checkpoint not written: rank {} on {} wrote {name}, and rank 0 finds {found} at {}: {shared}",
                    c.rank,
                    c.host,
                    staging.join(name).display()
                );
            }
            verified.insert(name.clone(), sha.clone());
        }
    }
    Ok(verified)
}

/// How many checkpoint folders `root` holds, usable or not.
pub fn count(root: &Path) -> usize {
    list(root).map(|l| l.len()).unwrap_or(0)
}

/// The newest sealed checkpoint folder in `root` and its step, unverified
/// (cheap: no file is read).
pub fn newest(root: &Path) -> Option<(u64, PathBuf)> {
    list(root).ok()?.pop()
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
    load_optimizer(&read_tensors(&dir.join(OPTIMIZER))?, params, opt);
    Ok(())
}

/// Restore an unsharded AdamW from [`optimizer_tensors`] onto `params`' devices.
pub fn load_optimizer(o: &BTreeMap<String, Tensor>, params: &[(String, Tensor)], opt: &mut AdamW) {
    opt.step = o.get("step").map(|t| t.double_value(&[0]) as i64).unwrap_or(0);
    opt.state.clear();
    for (name, p) in params {
        if let (Some(m), Some(v)) = (o.get(&format!("m/{name}")), o.get(&format!("v/{name}"))) {
            opt.state.insert(name.clone(), (m.to_device(p.device()), v.to_device(p.device())));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn confirm(rank: usize, files: &[(&str, &str)]) -> Confirmation {
        let files = files.iter().map(|(n, s)| (n.to_string(), s.to_string())).collect();
        Confirmation { rank, host: format!("host{rank}"), files: Ok(files) }
    }

    #[test]
    fn pruning_keeps_the_newest_and_the_best_validated_and_the_best_is_the_latest_of_equals() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("ck");
        let seal = |step: u64, valid: Option<f64>| {
            let tmp = staging(&root, step).unwrap();
            std::fs::write(tmp.join(MODEL), format!("weights of step {step}")).unwrap();
            let state = TrainState {
                step,
                config_hash: "h".into(),
                world_size: 1,
                loss: 0.0,
                files: Default::default(),
                valid,
            };
            commit(&root, &tmp, state, 2).unwrap();
        };
        let steps = || list(&root).unwrap().into_iter().map(|(s, _)| s).collect::<Vec<_>>();
        seal(10, Some(0.30));
        seal(20, Some(0.55));
        seal(30, Some(0.40));
        seal(40, Some(0.20));
        // Two kept by age (30, 40) and 20, the best, which the newest two do not hold.
        assert_eq!(steps(), vec![20, 30, 40]);
        assert_eq!(best_validated(&root).unwrap().0, root.join(step_dir(20)));
        seal(50, None); // a checkpoint written on a stop is not validated
        assert_eq!(steps(), vec![20, 40, 50]);
        seal(60, Some(0.55));
        assert_eq!(steps(), vec![50, 60], "the later of two equal scores is the best; the earlier goes");
        assert_eq!(best_validated(&root).unwrap().1.step, 60);
        // A damaged best is skipped for the next one.
        seal(70, Some(0.9));
        std::fs::write(root.join(step_dir(70)).join(MODEL), b"torn").unwrap();
        assert_eq!(best_validated(&root).unwrap().1.step, 60);
    }

    #[test]
    fn rank_0_seals_only_what_every_rank_confirmed_and_it_finds() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("model.safetensors"), b"weights").unwrap();
        std::fs::write(d.path().join("optimizer-rank0.safetensors"), b"shard 0").unwrap();
        let sha = |name: &str| sha256_file(&d.path().join(name)).unwrap();
        let (model, shard0) = (sha("model.safetensors"), sha("optimizer-rank0.safetensors"));
        let ok = [confirm(0, &[("model.safetensors", &model), ("optimizer-rank0.safetensors", &shard0)])];
        assert_eq!(check_confirmations(&ok, d.path()).unwrap().len(), 2);

        // Rank 1 wrote its shard on a disk rank 0 does not see.
        let missing = [ok[0].clone(), confirm(1, &[("optimizer-rank1.safetensors", "ab12")])];
        let e = check_confirmations(&missing, d.path()).unwrap_err().to_string();
        assert!(e.contains("rank 1 on host1 wrote optimizer-rank1.safetensors, and rank 0 finds nothing"), "{e}");
        assert!(e.contains("file system that every machine of the run shares"), "{e}");

        // A file of that name that is not the one rank 1 wrote (a stale one on rank 0's disk).
        std::fs::write(d.path().join("optimizer-rank1.safetensors"), b"old").unwrap();
        let e = check_confirmations(&missing, d.path()).unwrap_err().to_string();
        assert!(e.contains("finds a different file"), "{e}");

        // A rank that could not see the staging folder at all.
        let blind = [ok[0].clone(), Confirmation { rank: 1, host: "host1".into(), files: Err("no folder".into()) }];
        let e = check_confirmations(&blind, d.path()).unwrap_err().to_string();
        assert!(e.contains("rank 1 on host1: no folder"), "{e}");
    }
}
