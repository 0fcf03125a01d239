//! A model folder's `tokenizer.json`, through the `tokenizers` crate.

use anyhow::{anyhow, Result};
use std::path::Path;

pub struct Tokenizer(tokenizers::Tokenizer);

impl Tokenizer {
    pub fn from_dir(dir: &Path) -> Result<Self> {
        Self::from_file(&dir.join("tokenizer.json"))
    }

    pub fn from_file(path: &Path) -> Result<Self> {
        tokenizers::Tokenizer::from_file(path)
            .map(Self)
            .map_err(|e| anyhow!("{}: cannot load tokenizer: {e}", path.display()))
    }

    /// Token ids of `text`, adding no special tokens (as `tok(text, add_special_tokens=False)`).
    pub fn encode(&self, text: &str) -> Result<Vec<i64>> {
        let enc = self.0.encode(text, false).map_err(|e| anyhow!("tokenizing: {e}"))?;
        Ok(enc.get_ids().iter().map(|&i| i as i64).collect())
    }

    /// Text of `ids`, special tokens included (as `tok.decode(ids)`).
    pub fn decode(&self, ids: &[i64]) -> Result<String> {
        let ids: Vec<u32> = ids.iter().map(|&i| i as u32).collect();
        self.0.decode(&ids, false).map_err(|e| anyhow!("decoding: {e}"))
    }

    pub fn vocab_size(&self) -> usize {
        self.0.get_vocab_size(true)
    }
}
