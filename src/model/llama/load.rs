//! Loading a Hugging Face model folder: `config.json` and `model.safetensors`
//! (or shards listed in `model.safetensors.index.json`). Every variable must be
//! found with its exact shape; anything missing, unexpected or mis-shaped is an
//! error naming the tensor.

use super::{Llama, LlamaConfig};
use anyhow::{bail, Context, Result};
use safetensors::{Dtype, SafeTensors};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// Tensors a checkpoint may carry that the model does not need.
fn ignorable(name: &str, tied: bool) -> bool {
    name.ends_with("rotary_emb.inv_freq") || (tied && name == "lm_head.weight")
}

/// The safetensors files of a folder.
pub fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join("model.safetensors");
    if single.exists() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    let text = std::fs::read_to_string(&index)
        .with_context(|| format!("{}: neither model.safetensors nor model.safetensors.index.json", dir.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("{}: not JSON", index.display()))?;
    let map = v["weight_map"].as_object().with_context(|| format!("{}: no weight_map", index.display()))?;
    let files: BTreeSet<&str> = map.values().filter_map(|f| f.as_str()).collect();
    Ok(files.into_iter().map(|f| dir.join(f)).collect())
}

fn kind_of(d: Dtype) -> Option<Kind> {
    Some(match d {
        Dtype::F32 => Kind::Float,
        Dtype::F16 => Kind::Half,
        Dtype::BF16 => Kind::BFloat16,
        _ => return None,
    })
}

/// Copy the folder's weights into the model's variables.
pub fn load_weights(model: &mut Llama, dir: &Path) -> Result<()> {
    let files = weight_files(dir)?;
    let mut vars: BTreeMap<String, Tensor> = model.vs.variables().into_iter().collect();
    let tied = model.config.tie_word_embeddings;
    let mut unexpected = Vec::new();
    for file in &files {
        let f = std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
        // SAFETY: read-only mapping of a checkpoint we do not modify.
        let map = unsafe { memmap2::Mmap::map(&f)? };
        let st =
            SafeTensors::deserialize(&map).with_context(|| format!("{}: not a safetensors file", file.display()))?;
        for (name, view) in st.tensors() {
            let Some(var) = vars.remove(&name) else {
                if !ignorable(&name, tied) {
                    unexpected.push(name);
                }
                continue;
            };
            let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
            if shape != var.size() {
                bail!("{}: tensor {name} has shape {shape:?} but the model expects {:?}", file.display(), var.size());
            }
            let kind = kind_of(view.dtype()).with_context(|| {
                format!("{}: tensor {name} has unsupported dtype {:?}", file.display(), view.dtype())
            })?;
            let src = Tensor::from_data_size(view.data(), &shape, kind);
            tch::no_grad(|| var.shallow_clone().copy_(&src));
        }
    }
    if !vars.is_empty() {
        let missing: Vec<&String> = vars.keys().collect();
        bail!(
            "{}: missing tensors: {}",
            dir.display(),
            missing.iter().take(10).map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
        );
    }
    if !unexpected.is_empty() {
        unexpected.sort();
        bail!(
            "{}: unexpected tensors the model has no place for: {}",
            dir.display(),
            unexpected.iter().take(10).cloned().collect::<Vec<_>>().join(", ")
        );
    }
    Ok(())
}

/// The dtypes stored in the files, with their tensor counts.
pub fn stored_dtypes(files: &[PathBuf]) -> Result<BTreeMap<String, usize>> {
    let mut out = BTreeMap::new();
    for file in files {
        let f = std::fs::File::open(file)?;
        // SAFETY: read-only mapping; only the header is read.
        let map = unsafe { memmap2::Mmap::map(&f)? };
        let (_, meta) =
            SafeTensors::read_metadata(&map).with_context(|| format!("{}: not a safetensors file", file.display()))?;
        for info in meta.tensors().values() {
            *out.entry(format!("{:?}", info.dtype)).or_insert(0) += 1;
        }
    }
    Ok(out)
}

/// f32 on CPU, bf16 on GPU, unless asked otherwise.
pub fn default_kind(device: Device) -> Kind {
    if device.is_cuda() {
        Kind::BFloat16
    } else {
        Kind::Float
    }
}

/// Config + weights from a Hugging Face folder.
pub fn load(dir: &Path, device: Device, kind: Kind) -> Result<Llama> {
    let config = LlamaConfig::load(dir)?;
    let mut model = Llama::new(config, device, kind);
    load_weights(&mut model, dir)?;
    Ok(model)
}
