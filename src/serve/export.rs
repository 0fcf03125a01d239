//! `uorch export RUN_DIR --out DIR`: a finetuned USER-LLM as a folder a
//! serving stack loads without the training config or store:
//!
//! - `config.json`, `model.safetensors`, `tokenizer.json` (+ the base
//!   model's other tokenizer/generation files): the LLM in Hugging Face
//!   layout, LoRA adapters merged into its weights;
//! - `user_llm.safetensors`: encoder, Perceiver, projection and
//!   cross-attention weights;
//! - `integration.json`: how they connect (integration, layers, latents,
//!   widths, encoder shape with its feature vocabularies, the task and how it
//!   is asked);
//! - `catalog.json`: item ids, titles, genres/categories and ratings, to turn
//!   a history of raw item ids into encoder inputs and prompt text.

use crate::config::RunConfig;
use crate::data::catalog::Catalog;
use crate::data::store::Store;
use crate::model::assemble;
use crate::model::encoder::EncoderShape;
use crate::model::llama::load::load;
use crate::model::lora::LoraConfig;
use crate::model::tokenizer::Tokenizer;
use crate::model::userllm::{Integration, Part, PerceiverConfig, ProjectionKind, Strategy, UserLlm, UserLlmConfig};
use crate::model::weights::{save_tensors, sha256_file};
use crate::model::xattn::Placement;
use crate::rundir::RunDir;
use crate::task::ask::TaskSpec;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;
use tch::{Device, Kind};

pub const INTEGRATION_FILE: &str = "integration.json";
pub const USER_WEIGHTS: &str = "user_llm.safetensors";
pub const CATALOG_FILE: &str = "catalog.json";
/// The SHA-256 of every other file of the export, written last, checked on load.
pub const CHECKSUMS_FILE: &str = "checksums.json";
const EXPORT_VERSION: u32 = 1;
/// Files of the base model folder copied when present (tokenizer and generation settings).
const BASE_FILES: [&str; 5] =
    ["config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"];

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IntegrationFile {
    pub export_version: u32,
    pub integration: Integration,
    /// Decoder layers with a gated cross-attention block.
    pub cross_attention_layers: Vec<usize>,
    pub perceiver: Option<PerceiverConfig>,
    pub projection: ProjectionKind,
    pub encoder: EncoderShape,
    pub llm_hidden_size: usize,
    pub llm_layers: usize,
    pub task: TaskSpec,
    /// Where it came from: run folder, strategy, finetuning steps, uorch commit.
    pub source: serde_json::Value,
}

/// What `user_llm.safetensors` holds: everything but the LLM (its adapters merged).
fn user_parts(model: &UserLlm) -> Vec<(String, tch::Tensor)> {
    model.named_parameters().into_iter().filter(|(n, _)| !matches!(Part::of(n), Part::Llm | Part::Lora)).collect()
}

/// Write the export of a finished finetuning run to `out`: refused when
/// `out` overlaps the run folder, and (without `force`) when it holds files
/// that are not a previous export; written beside it and renamed into place.
pub fn export(run_dir: &Path, out: &Path, force: bool) -> Result<IntegrationFile> {
    crate::fsutil::check_output_dir(out, "--out", &[run_dir], force, is_export)?;
    let run = RunDir::new(run_dir);
    let cfg_path = run.config();
    let cfg: RunConfig = crate::config::load::<RunConfig>(&cfg_path, &[])
        .with_context(|| format!("{} is not a run folder", run_dir.display()))?
        .config;
    let f = cfg
        .finetune
        .as_ref()
        .with_context(|| format!("{}: the run has no finetune section: nothing to export", cfg_path.display()))?;
    let weights = run.finetune_weights();
    if !weights.exists() {
        bail!(
            "{}: no {} (has finetuning finished? run `uorch launch {}` to finish it)",
            run_dir.display(),
            crate::rundir::FINETUNE_WEIGHTS,
            cfg_path.display()
        );
    }
    let store = Store::open(&cfg.data.as_ref().context("no data section")?.store)?;
    let mut model = assemble::for_run(&cfg, &store, assemble::load_llm(f, Device::Cpu)?)?;
    model.load_weights(&weights, &model.trained_weights())?;
    model.merge_lora();

    let tmp = out.with_file_name(format!(
        ".{}.tmp-{}",
        out.file_name().context("an output folder name")?.to_string_lossy(),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let written = (|| -> Result<IntegrationFile> {
        for name in BASE_FILES {
            let src = f.model.join(name);
            if src.exists() {
                std::fs::copy(&src, tmp.join(name)).with_context(|| format!("copying {}", src.display()))?;
            }
        }
        let mut llm: Vec<_> = model.llm.vs.variables().into_iter().collect();
        llm.sort_by(|a, b| a.0.cmp(&b.0));
        save_tensors(&tmp.join("model.safetensors"), &llm)?;
        save_tensors(&tmp.join(USER_WEIGHTS), &user_parts(&model))?;
        Catalog::of_store(&store).save(&tmp.join(CATALOG_FILE))?;
        let spec = IntegrationFile {
            export_version: EXPORT_VERSION,
            integration: model.integration,
            cross_attention_layers: model.xattn.keys().copied().collect(),
            perceiver: f.perceiver.clone(),
            projection: f.projection,
            encoder: model.encoder.shape.clone(),
            llm_hidden_size: model.llm.config.hidden_size,
            llm_layers: model.llm.layers.len(),
            task: TaskSpec::from_config(&cfg)?,
            source: serde_json::json!({"run": run_dir, "strategy": f.strategy, "steps": f.steps, "uorch_commit": env!("UORCH_GIT_COMMIT")}),
        };
        crate::fsutil::write_atomic(&tmp.join(INTEGRATION_FILE), &serde_json::to_vec_pretty(&spec)?)?;
        let mut sums = std::collections::BTreeMap::new();
        for e in std::fs::read_dir(&tmp)?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            sums.insert(name, sha256_file(&e.path())?);
        }
        crate::fsutil::write_atomic(&tmp.join(CHECKSUMS_FILE), &serde_json::to_vec_pretty(&sums)?)?;
        Ok(spec)
    })();
    match written {
        Ok(spec) => {
            crate::fsutil::replace_dir(&tmp, out)?;
            Ok(spec)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            Err(e)
        }
    }
}

/// An export loaded for serving.
pub struct Loaded {
    pub model: UserLlm,
    pub tok: Tokenizer,
    pub catalog: Catalog,
    pub spec: IntegrationFile,
}

/// Every file the export recorded has the SHA-256 it recorded.
fn verify(dir: &Path) -> Result<()> {
    let path = dir.join(CHECKSUMS_FILE);
    let text = std::fs::read(&path).with_context(|| {
        format!("{}: no {CHECKSUMS_FILE}, so the export cannot be verified: export the run again", dir.display())
    })?;
    let sums: std::collections::BTreeMap<String, String> =
        serde_json::from_slice(&text).with_context(|| format!("{}: unreadable", path.display()))?;
    for (name, want) in &sums {
        let got = sha256_file(&dir.join(name)).with_context(|| format!("{}: missing {name}", dir.display()))?;
        if &got != want {
            bail!(
                "{}: {name} has SHA-256 {got}, the export recorded {want}: the export is damaged; export the run again",
                dir.display()
            );
        }
    }
    Ok(())
}

pub fn is_export(dir: &Path) -> bool {
    dir.join(INTEGRATION_FILE).exists()
}

pub fn load_export(dir: &Path, device: Device) -> Result<Loaded> {
    let path = dir.join(INTEGRATION_FILE);
    let spec: IntegrationFile =
        serde_json::from_slice(&std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?)
            .with_context(|| format!("{}: not a uorch export description", path.display()))?;
    if spec.export_version != EXPORT_VERSION {
        bail!("{}: export version {}, this uorch reads {EXPORT_VERSION}", path.display(), spec.export_version);
    }
    verify(dir)?;
    let llm = load(dir, device, Kind::Float)?;
    let cfg = UserLlmConfig {
        integration: spec.integration,
        cross_attention_layers: Placement::List(spec.cross_attention_layers.clone()),
        perceiver: spec.perceiver.clone(),
        projection: spec.projection,
        // Adapters are merged: nothing else to add.
        strategy: Strategy::Enc,
        lora: LoraConfig::default(),
    };
    let model = UserLlm::new(llm, spec.encoder.clone(), &cfg)?;
    if spec.integration.mode().reads_user() {
        model.load_weights(&dir.join(USER_WEIGHTS), &user_parts(&model))?;
    }
    model.set_training(false);
    Ok(Loaded { model, tok: Tokenizer::from_dir(dir)?, catalog: Catalog::load(&dir.join(CATALOG_FILE))?, spec })
}
