//! `uorch bench generate`: greedy generation with the key/value cache, new
//! tokens per second, one prompt at a time, beside Hugging Face `generate` on
//! the same model folder and the same prompt token ids in the same run
//! (`benches/generate_reference.py`), and whether the two produce the same
//! tokens. Both generate exactly `new_tokens` per prompt (end-of-sequence
//! does not stop either), so they do the same work.

use crate::data::catalog::Catalog;
use crate::data::store::Store;
use crate::model::generate::{generate, Sampling};
use crate::model::llama::load::load;
use crate::model::tokenizer::Tokenizer;
use anyhow::{Context, Result};
use std::path::Path;
use std::time::Instant;
use tch::{Device, Kind};

pub struct Options<'a> {
    /// The store whose item titles make the prompts.
    pub store: &'a Path,
    pub model: &'a Path,
    pub prompts: usize,
    pub new_tokens: usize,
    pub device: Device,
    /// The weights' and activations' dtype, on both sides (f32 or bf16).
    pub kind: Kind,
    /// A Python with torch and transformers, for the reference.
    pub reference: Option<&'a Path>,
}

/// One side's run over every prompt.
pub struct Side {
    pub who: String,
    pub seconds: f64,
    /// Each prompt's new tokens.
    pub tokens: Vec<Vec<i64>>,
}

impl Side {
    pub fn tokens_per_s(&self) -> f64 {
        self.tokens.iter().map(Vec::len).sum::<usize>() as f64 / self.seconds
    }
}

pub struct Outcome {
    /// Prompt lengths in tokens.
    pub prompt_tokens: Vec<usize>,
    pub ours: Side,
    pub reference: Option<Side>,
}

/// Review requests for the store's first `n` items, in the model's chat
/// template when it has one: real titles, prompts of a realistic length.
pub fn prompts(store: &Path, tok: &Tokenizer, n: usize) -> Result<Vec<Vec<i64>>> {
    let store = Store::open(store)?;
    let cat = Catalog::of_store(&store);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let request = format!(
            "Write a short review of the {} \"{}\", as a viewer who liked it.",
            cat.item_noun(),
            cat.title(i % store.items.len())
        );
        let text = tok.chat_prompt(&request)?.unwrap_or(request);
        out.push(tok.encode(&text)?);
    }
    Ok(out)
}

pub fn run(o: &Options) -> Result<Outcome> {
    let tok = Tokenizer::from_dir(o.model)?;
    let prompts = prompts(o.store, &tok, o.prompts)?;
    let model = load(o.model, o.device, o.kind)?;
    let greedy = |p: &[i64], n: usize| generate(&model, p, n, Sampling::GREEDY, &[]);
    eprintln!("uorch: {} prompts x {} new tokens ...", prompts.len(), o.new_tokens);
    greedy(&prompts[0], 4); // warm-up: first-call allocations and thread pools
    let t = Instant::now();
    let tokens: Vec<Vec<i64>> = prompts.iter().map(|p| greedy(p, o.new_tokens)).collect();
    let ours = Side { who: "uorch".into(), seconds: t.elapsed().as_secs_f64(), tokens };
    let reference = match o.reference {
        Some(python) if o.device == Device::Cpu && super::python_imports(python, "torch, transformers") => {
            Some(run_reference(python, o, &prompts)?)
        }
        Some(python) => {
            eprintln!("reference skipped: it runs on CPU with torch + transformers ({} has none)", python.display());
            None
        }
        None => None,
    };
    Ok(Outcome { prompt_tokens: prompts.iter().map(Vec::len).collect(), ours, reference })
}

fn run_reference(python: &Path, o: &Options, prompts: &[Vec<i64>]) -> Result<Side> {
    let args = serde_json::json!({
        "model": o.model, "prompts": prompts, "new_tokens": o.new_tokens, "threads": tch::get_num_threads(),
        "dtype": if o.kind == Kind::BFloat16 { "bfloat16" } else { "float32" },
    });
    eprintln!("transformers generate: the same prompts ...");
    let v = super::reference_json(python, "generate_reference.py", &args)?;
    let tokens: Vec<Vec<i64>> = serde_json::from_value(v["tokens"].clone()).context("reference: no tokens")?;
    let seconds = v["seconds"].as_f64().context("reference: no seconds")?;
    let who = format!("HF transformers {} generate", v["transformers"].as_str().unwrap_or("?"));
    Ok(Side { who, seconds, tokens })
}

/// Of two prompts' continuations, how many leading tokens agree.
pub fn agreeing_prefix(a: &[i64], b: &[i64]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

pub fn report(o: &Outcome) -> String {
    let n = o.prompt_tokens.len();
    let mean_prompt = o.prompt_tokens.iter().sum::<usize>() as f64 / n.max(1) as f64;
    let new: usize = o.ours.tokens.iter().map(Vec::len).sum();
    let mut out =
        format!("{n} prompts (mean {mean_prompt:.0} tokens), {} new tokens each, greedy, batch 1:\n", new / n.max(1));
    out.push_str(&format!("  {:<36} {:>10} {:>12} {:>14}\n", "", "tokens/s", "ms/token", "uorch speed-up"));
    let ours = o.ours.tokens_per_s();
    for s in std::iter::once(&o.ours).chain(&o.reference) {
        let r = s.tokens_per_s();
        out.push_str(&format!("  {:<36} {:>10.1} {:>12.1} {:>13.2}x\n", s.who, r, 1000.0 / r, ours / r));
    }
    if let Some(r) = &o.reference {
        let same = o.ours.tokens.iter().zip(&r.tokens).filter(|(a, b)| a == b).count();
        let agreeing: usize = o.ours.tokens.iter().zip(&r.tokens).map(|(a, b)| agreeing_prefix(a, b)).sum();
        out.push_str(&format!(
            "  same tokens as the reference: {same}/{n} prompts, {agreeing}/{new} tokens before the first difference\n"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::agreeing_prefix;

    #[test]
    fn agreeing_prefix_stops_at_the_first_difference() {
        assert_eq!(agreeing_prefix(&[1, 2, 3, 4], &[1, 2, 9, 4]), 2);
        assert_eq!(agreeing_prefix(&[1, 2], &[1, 2, 3]), 2);
        assert_eq!(agreeing_prefix(&[], &[1]), 0);
    }
}
