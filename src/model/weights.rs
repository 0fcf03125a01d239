//! Named tensors in safetensors files (f32, as the models train): read,
//! written through a temporary name and renamed, hashed. Checkpoints, the
//! finetuned weights and exports are all written with these.

use anyhow::{Context, Result};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;
use tch::{Device, Kind, Tensor};

fn to_bytes(t: &Tensor) -> (Vec<usize>, Vec<u8>) {
    let t = t.detach().to_kind(Kind::Float).to_device(Device::Cpu).contiguous();
    let shape = t.size().iter().map(|&d| d as usize).collect();
    let v = Vec::<f32>::try_from(t.reshape([-1])).expect("float tensor");
    (shape, v.iter().flat_map(|x| x.to_le_bytes()).collect())
}

/// SHA-256 (first 16 hex digits) of tensors' names, shapes and f32 values:
/// equal on every rank of a data-parallel run that trains in lockstep.
pub fn digest(tensors: &[(String, Tensor)]) -> String {
    let mut h = Sha256::new();
    for (name, t) in tensors {
        let (shape, bytes) = to_bytes(t);
        h.update(name.as_bytes());
        h.update(format!("{shape:?}").as_bytes());
        h.update(&bytes);
    }
    format!("{:x}", h.finalize())[..16].to_string()
}

/// SHA-256 of a file, as hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(format!("{:x}", Sha256::digest(&bytes)))
}

/// Write `tensors` as f32 safetensors and sync the file.
pub fn write_tensors(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    let data: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, t)| {
            let (s, b) = to_bytes(t);
            (n.clone(), s, b)
        })
        .collect();
    let views: Vec<(String, TensorView)> = data
        .iter()
        .map(|(n, s, b)| Ok((n.clone(), TensorView::new(Dtype::F32, s.clone(), b)?)))
        .collect::<Result<_>>()?;
    let written = (|| -> Result<()> {
        safetensors::serialize_to_file(views, None, path)?;
        crate::fsutil::share(path)?;
        std::fs::File::open(path)?.sync_all()?;
        Ok(())
    })();
    if written.is_err() {
        // No half file that a later read could take for tensors.
        let _ = std::fs::remove_file(path);
    }
    written.with_context(|| format!("writing tensors to {}", path.display()))
}

/// Every tensor of a safetensors file, as f32 on the CPU.
pub fn read_tensors(path: &Path) -> Result<BTreeMap<String, Tensor>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let st = SafeTensors::deserialize(&bytes).with_context(|| format!("{}: not safetensors", path.display()))?;
    Ok(st
        .tensors()
        .into_iter()
        .map(|(n, v)| {
            let shape: Vec<i64> = v.shape().iter().map(|&d| d as i64).collect();
            (n, Tensor::from_data_size(v.data(), &shape, Kind::Float))
        })
        .collect())
}

/// Write `tensors` to `path` through a temporary file renamed into place;
/// returns the file's SHA-256.
pub fn save_tensors(path: &Path, tensors: &[(String, Tensor)]) -> Result<String> {
    let dir = path.parent().context("a file path")?;
    std::fs::create_dir_all(dir)?;
    let tmp =
        dir.join(format!(".{}.tmp-{}", path.file_name().unwrap_or_default().to_string_lossy(), std::process::id()));
    match write_tensors(&tmp, tensors).and_then(|_| sha256_file(&tmp)) {
        Ok(sha) => {
            std::fs::rename(&tmp, path)?;
            std::fs::File::open(dir)?.sync_all()?;
            Ok(sha)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}
