//! A Hugging Face `tokenizer.json` from a GGUF file's tokenizer metadata
//! (`tokenizer.ggml.*`): byte-level BPE vocabularies (`model = gpt2`), with the
//! pre-tokenizer split the file's `pre` names, control tokens as special added
//! tokens and user-defined ones as plain added tokens. This follows how
//! Hugging Face transformers reads the same file, so both tokenize alike.

use super::Gguf;
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

/// Split patterns of the pre-tokenizers that differ from GPT-2's, by the
/// `tokenizer.ggml.pre` names that use them (patterns as published with each model).
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_SPLIT: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

fn split_for(pre: &str) -> Option<&'static str> {
    match pre {
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "smaug-bpe" | "dbrx" => Some(LLAMA3_SPLIT),
        "qwen2" | "deepseek-r1-qwen" => Some(QWEN2_SPLIT),
        _ => None,
    }
}

/// GPT-2's reversible byte → printable character table.
pub fn byte_alphabet() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut extra = 0u32;
    for b in 0..256u32 {
        let printable = (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
        table[b as usize] = if printable {
            char::from_u32(b).unwrap()
        } else {
            extra += 1;
            char::from_u32(255 + extra).unwrap()
        };
    }
    table
}

pub struct GgufTokenizer {
    pub json: Value,
    /// `tokenizer_config.json` contents (special tokens, chat template).
    pub config: Value,
}

const CONTROL: i64 = 3;
const USER_DEFINED: i64 = 4;

pub fn from_gguf(g: &Gguf) -> Result<GgufTokenizer> {
    let model = g.require("tokenizer.ggml.model")?.as_str().unwrap_or("");
    if model != "gpt2" {
        bail!("{}: tokenizer model {model:?} is not supported (byte-level BPE, `gpt2`, is)", g.path.display());
    }
    let tokens: Vec<&str> = g
        .require("tokenizer.ggml.tokens")?
        .as_array()
        .context("tokenizer.ggml.tokens is not an array")?
        .iter()
        .map(|v| v.as_str().context("a token is not a string"))
        .collect::<Result<_>>()?;
    let types: Vec<i64> = match g.get("tokenizer.ggml.token_type").and_then(|v| v.as_array()) {
        Some(a) => a.iter().map(|v| v.as_f64().map(|x| x as i64).unwrap_or(1)).collect(),
        None => vec![1; tokens.len()],
    };
    let merges: Vec<Value> = g
        .require("tokenizer.ggml.merges")?
        .as_array()
        .context("tokenizer.ggml.merges is not an array")?
        .iter()
        .map(|v| {
            let m = v.as_str().context("a merge is not a string")?;
            let (a, b) = m.split_once(' ').with_context(|| format!("merge {m:?} is not two tokens"))?;
            Ok(json!([a, b]))
        })
        .collect::<Result<_>>()?;

    let alphabet = byte_alphabet();
    let spelled: std::collections::HashSet<char> = alphabet.iter().copied().collect();
    let in_alphabet = |t: &str| t.chars().all(|c| spelled.contains(&c));
    let mut vocab = serde_json::Map::new();
    for (id, t) in tokens.iter().enumerate() {
        let key = if in_alphabet(t) { t.to_string() } else { t.bytes().map(|b| alphabet[b as usize]).collect() };
        vocab.insert(key, json!(id));
    }
    let mut added = Vec::new();
    for (id, (t, ty)) in tokens.iter().zip(&types).enumerate() {
        // A control token spelled outside the byte alphabet is a mislabel: skip it.
        if (*ty == CONTROL && in_alphabet(t)) || *ty == USER_DEFINED {
            added.push(json!({
                "id": id, "content": t, "single_word": false, "lstrip": false, "rstrip": false,
                "normalized": *ty != CONTROL, "special": *ty == CONTROL,
            }));
        }
    }
    let pre = g.get("tokenizer.ggml.pre").and_then(|v| v.as_str()).unwrap_or("default");
    let pre_tokenizer = match split_for(pre) {
        Some(re) => json!({"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": re}, "behavior": "Isolated", "invert": false},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false},
        ]}),
        None => json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}),
    };
    let tokenizer = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": "",
            "end_of_word_suffix": "", "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
            "vocab": vocab, "merges": merges,
        },
    });
    let special =
        |key: &str| g.get(key).and_then(|v| v.as_u64()).and_then(|i| tokens.get(i as usize)).map(|s| s.to_string());
    let config = json!({
        "bos_token": special("tokenizer.ggml.bos_token_id"),
        "eos_token": special("tokenizer.ggml.eos_token_id"),
        "unk_token": special("tokenizer.ggml.unknown_token_id"),
        "pad_token": special("tokenizer.ggml.padding_token_id"),
        "add_bos_token": g.get("tokenizer.ggml.add_bos_token").map(|v| matches!(v, super::Value::Bool(true))).unwrap_or(false),
        "chat_template": g.get("tokenizer.chat_template").and_then(|v| v.as_str()),
        "tokenizer_class": "PreTrainedTokenizerFast",
    });
    Ok(GgufTokenizer { json: tokenizer, config })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_alphabet_is_gpt2s() {
        let a = byte_alphabet();
        assert_eq!(a[b' ' as usize], 'Ġ');
        assert_eq!(a[b'\n' as usize], 'Ċ');
        assert_eq!(a[b'A' as usize], 'A');
        assert_eq!(a[0], 'Ā');
        let unique: std::collections::HashSet<char> = a.iter().copied().collect();
        assert_eq!(unique.len(), 256);
    }
}
