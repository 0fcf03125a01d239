//! `uorch model import-gguf|tokenize|info`.

use anyhow::Result;
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum ModelCmd {
    /// Convert a GGUF file (F32/F16/BF16/Q8_0/Q4_0/Q4_1/Q4_K/Q6_K) into a Hugging
    /// Face folder: config.json, model.safetensors (f32), tokenizer.json.
    ImportGguf {
        file: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        force: bool,
    },
    /// Token ids of a text.
    Tokenize {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        text: String,
        #[arg(long)]
        json: bool,
    },
    /// Architecture, sizes, parameter counts and dtype of a model folder.
    Info {
        dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: ModelCmd) -> Result<()> {
    match cmd {
        ModelCmd::Tokenize { model, text, json } => {
            let ids = crate::model::tokenizer::Tokenizer::from_dir(&model)?.encode(&text)?;
            if json {
                println!("{}", serde_json::json!(ids));
            } else {
                println!("{}", ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(" "));
            }
        }
        ModelCmd::Info { dir, json } => {
            let c = crate::model::llama::LlamaConfig::load(&dir)?;
            let files = crate::model::llama::load::weight_files(&dir)?;
            let dtypes = crate::model::llama::load::stored_dtypes(&files)?;
            let info = serde_json::json!({
                "architecture": c.model_type, "layers": c.num_hidden_layers, "hidden_size": c.hidden_size,
                "intermediate_size": c.intermediate_size, "attention_heads": c.num_attention_heads,
                "kv_heads": c.kv_heads(), "head_dim": c.head_dim(), "vocab_size": c.vocab_size,
                "tied_embeddings": c.tie_word_embeddings, "rope_theta": c.rope_theta,
                "max_positions": c.max_position_embeddings, "parameters": c.parameter_count(),
                "stored_dtypes": dtypes,
            });
            if json {
                println!("{}", serde_json::to_string_pretty(&info)?);
            } else {
                for (k, v) in info.as_object().unwrap() {
                    println!("  {k:<18} {v}");
                }
            }
        }
        ModelCmd::ImportGguf { file, out, force } => {
            let t0 = std::time::Instant::now();
            let m = crate::model::gguf::import::import(&file, &out, force)?;
            println!(
                "imported {} ({} tensors, {:.1}M parameters{}) in {:.1} s -> {}",
                m.architecture,
                m.tensors,
                m.parameters as f64 / 1e6,
                if m.tied_embeddings { ", tied embeddings" } else { "" },
                t0.elapsed().as_secs_f64(),
                out.display()
            );
        }
    }
    Ok(())
}
