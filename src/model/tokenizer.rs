//! A model folder's `tokenizer.json`, through the `tokenizers` crate, and
//! its chat template (`tokenizer_config.json`'s `chat_template`, which a
//! GGUF import writes from `tokenizer.chat_template`), rendered by a Jinja
//! engine (minijinja) as transformers' `apply_chat_template` renders it.

use anyhow::{anyhow, Context, Result};
use std::path::Path;

pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    chat: Option<ChatTemplate>,
}

/// A chat template with the special tokens it may name.
struct ChatTemplate {
    source: String,
    /// Where it was read, for errors.
    file: String,
    bos_token: String,
    eos_token: String,
}

/// A special token of `tokenizer_config.json`: a string, or `{"content": …}`.
fn token_text(v: Option<&serde_json::Value>) -> String {
    match v {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(o) => o.get("content").and_then(|c| c.as_str()).unwrap_or_default().to_string(),
        None => String::new(),
    }
}

impl Tokenizer {
    /// `tokenizer.json`, and the chat template of `tokenizer_config.json` when there is one.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let mut tok = Self::from_file(&dir.join("tokenizer.json"))?;
        let config = dir.join("tokenizer_config.json");
        if let Ok(text) = std::fs::read_to_string(&config) {
            let c: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{}: not a tokenizer_config.json", config.display()))?;
            if let Some(source) = c.get("chat_template").and_then(|t| t.as_str()) {
                tok.chat = Some(ChatTemplate {
                    source: source.to_string(),
                    file: config.display().to_string(),
                    bos_token: token_text(c.get("bos_token")),
                    eos_token: token_text(c.get("eos_token")),
                });
            }
        }
        Ok(tok)
    }

    pub fn from_file(path: &Path) -> Result<Self> {
        tokenizers::Tokenizer::from_file(path)
            .map(|inner| Self { inner, chat: None })
            .map_err(|e| anyhow!("{}: cannot load tokenizer: {e}", path.display()))
    }

    /// Token ids of `text`, adding no special tokens (as `tok(text, add_special_tokens=False)`).
    pub fn encode(&self, text: &str) -> Result<Vec<i64>> {
        let enc = self.inner.encode(text, false).map_err(|e| anyhow!("tokenizing: {e}"))?;
        Ok(enc.get_ids().iter().map(|&i| i as i64).collect())
    }

    /// Text of `ids`, special tokens included (as `tok.decode(ids)`).
    pub fn decode(&self, ids: &[i64]) -> Result<String> {
        let ids: Vec<u32> = ids.iter().map(|&i| i as u32).collect();
        self.inner.decode(&ids, false).map_err(|e| anyhow!("decoding: {e}"))
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    pub fn has_chat_template(&self) -> bool {
        self.chat.is_some()
    }

    /// `user` as the one user message of a chat, followed by the start of
    /// the assistant's turn (`add_generation_prompt=True`), as the model's
    /// chat template renders it; `None` without a template.
    pub fn chat_prompt(&self, user: &str) -> Result<Option<String>> {
        let Some(t) = &self.chat else { return Ok(None) };
        // As transformers renders chat templates: blocks trimmed, and
        // `raise_exception` for a template's own checks.
        let mut env = minijinja::Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.add_function("raise_exception", |message: String| -> Result<String, minijinja::Error> {
            Err(minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, message))
        });
        let rendered = env
            .template_from_str(&t.source)
            .and_then(|tmpl| {
                tmpl.render(minijinja::context! {
                    messages => vec![minijinja::context! { role => "user", content => user }],
                    add_generation_prompt => true,
                    bos_token => &t.bos_token,
                    eos_token => &t.eos_token,
                })
            })
            .map_err(|e| anyhow!("{}: the chat template does not render: {e:#}", t.file))?;
        Ok(Some(rendered))
    }
}
