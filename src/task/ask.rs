//! A task's question put to a USER-LLM about one user: the prompt (the
//! question, with the history as text for TextPrompt), the user embeddings
//! (from the last `window` interactions), and the answer: candidates ranked by
//! likelihood (genre/category, next item) or a greedy generation (review).
//! Training builds its sequences with the same prompts and answer texts.

use super::candidates::rank;
use super::prompt::{question, text_prompt};
use crate::config::RunConfig;
use crate::data::catalog::{Catalog, Interaction};
use crate::data::tasks::Task;
use crate::model::batches::{catalog_history, history_inputs};
use crate::model::generate::{generate_with, Sampling};
use crate::model::scoring::score_candidates;
use crate::model::tokenizer::Tokenizer;
use crate::model::userllm::{Integration, UserLlm};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tch::Tensor;

/// What is asked and how; stored in an export so serving asks the same way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec {
    pub task: Task,
    /// Interactions the encoder reads (the most recent).
    pub window: usize,
    /// Interactions written out for TextPrompt.
    pub text_window: usize,
    /// Next item: candidates ranked per question (the held-out item and
    /// negatives drawn from items not in the history).
    pub candidates: usize,
    /// Review: the longest answer, in tokens.
    pub max_new_tokens: usize,
    /// Seeds the draw of next-item negatives.
    pub seed: u64,
}

impl TaskSpec {
    /// How a run's `finetune:` and `data:` sections ask their task.
    pub fn from_config(cfg: &RunConfig) -> Result<Self> {
        let f = cfg.finetune.as_ref().context("no finetune section")?;
        let d = cfg.data.as_ref().context("finetune needs a data section")?;
        Ok(TaskSpec {
            task: f.task,
            window: d.window,
            text_window: f.text_prompt_window,
            candidates: f.candidates,
            max_new_tokens: f.max_new_tokens,
            seed: cfg.seed,
        })
    }
}

/// A question about one user.
#[derive(Debug, Clone)]
pub enum Question {
    FavoriteCategory,
    /// Rank these items (indices into the catalog).
    NextItem {
        candidates: Vec<usize>,
    },
    /// Review this item.
    Review {
        item: usize,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Answer {
    /// Candidates best first: (category id or item index, score). Categories
    /// score by total log-likelihood of the name, items by mean per-token
    /// log-likelihood of the title (titles differ much in length).
    Ranked(Vec<(usize, f64)>),
    Text(String),
}

/// Cost of one answer, for the per-example figures.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cost {
    pub prompt_tokens: usize,
    /// User-embedding positions the LLM reads.
    pub user_tokens: usize,
    pub flops: f64,
}

pub struct Asker<'a> {
    pub model: &'a UserLlm,
    pub tok: &'a Tokenizer,
    pub cat: &'a Catalog,
    pub spec: TaskSpec,
    /// How the history reaches the LLM (the model's own integration, or
    /// TextPrompt to ask its bare LLM with the history as text).
    pub integration: Integration,
    eos: Vec<i64>,
    category_answers: Vec<Vec<i64>>,
}

impl<'a> Asker<'a> {
    pub fn new(model: &'a UserLlm, tok: &'a Tokenizer, cat: &'a Catalog, spec: TaskSpec) -> Result<Self> {
        let category_answers =
            cat.categories.iter().skip(1).map(|n| tok.encode(&format!(" {n}"))).collect::<Result<_>>()?;
        Ok(Self {
            integration: model.integration,
            eos: model.llm.config.eos_ids(),
            model,
            tok,
            cat,
            spec,
            category_answers,
        })
    }

    /// The same model's LLM alone, with the history as text (zero-shot TextPrompt).
    pub fn as_text_prompt(mut self) -> Self {
        self.integration = Integration::TextPrompt;
        self
    }

    pub fn eos(&self) -> i64 {
        self.eos.first().copied().unwrap_or(0)
    }

    /// Prompt token ids for a question.
    pub fn prompt(&self, history: &[Interaction], q: &Question) -> Result<Vec<i64>> {
        let target = match q {
            Question::Review { item } => Some(*item),
            _ => None,
        };
        let text = question(self.cat, self.spec.task, target);
        let text = if self.integration.mode().history_in_prompt() {
            text_prompt(self.cat, &history[history.len().saturating_sub(self.spec.text_window)..], &text)
        } else {
            text
        };
        self.tok.encode(&text)
    }

    /// The answer text the model is trained to give: a leading space, then the
    /// category name, the item title or the review (its first
    /// `max_new_tokens - 1` tokens), then end of text.
    pub fn answer_tokens(&self, target: &TargetText) -> Result<Vec<i64>> {
        let mut ids = match target {
            TargetText::Category(c) => self.category_answers[*c - 1].clone(),
            TargetText::Item(i) => self.item_tokens(*i)?,
            TargetText::Review(t) => {
                let mut v = self.tok.encode(&format!(" {}", t.trim()))?;
                v.truncate(self.spec.max_new_tokens.saturating_sub(1).max(1));
                v
            }
        };
        ids.push(self.eos());
        Ok(ids)
    }

    fn item_tokens(&self, item: usize) -> Result<Vec<i64>> {
        self.tok.encode(&format!(" {}", self.cat.title(item)))
    }

    /// Encoder inputs for histories (the last `window` interactions of each).
    pub fn inputs(&self, histories: &[&[Interaction]]) -> Vec<Tensor> {
        let features: Vec<_> = self.model.encoder.shape.features.iter().map(|(f, _)| *f).collect();
        let h: Vec<_> = histories.iter().map(|h| catalog_history(self.cat, h)).collect();
        history_inputs(&h, &features, self.spec.window, self.model.llm.device())
    }

    /// Answer one question about the user with this history.
    pub fn ask(&self, history: &[Interaction], q: &Question) -> Result<(Answer, Cost)> {
        if history.is_empty() {
            bail!("a question needs at least one interaction of history");
        }
        let prompt = self.prompt(history, q)?;
        let m = self.model;
        let text_only = !self.integration.mode().reads_user();
        let (user, mask) = if text_only {
            (Tensor::zeros([1], tch::kind::FLOAT_CPU), Tensor::zeros([1], tch::kind::FLOAT_CPU))
        } else {
            tch::no_grad(|| m.user_embeddings(&self.inputs(&[history]), false))
        };
        let user_tokens = if text_only { 0 } else { mask.sum(tch::Kind::Int64).int64_value(&[]) as usize };
        let step = |ids: &Tensor, cache: &mut crate::model::llama::KvCache, rows: Option<&Tensor>| -> Tensor {
            if text_only {
                m.llm.forward(ids, Some(cache))
            } else {
                match rows {
                    Some(r) => {
                        m.forward_with_user(ids, &user.index_select(0, r), &mask.index_select(0, r), Some(cache))
                    }
                    None => m.forward_with_user(ids, &user, &mask, Some(cache)),
                }
            }
        };
        let layers = m.llm.layers.len();
        let device = m.llm.device();
        let answer = match q {
            Question::FavoriteCategory => {
                let s = score_candidates(layers, &prompt, &self.category_answers, 0, device, &mut |ids, c, r| {
                    step(ids, c, Some(r))
                });
                Answer::Ranked(rank(s.into_iter().enumerate().map(|(i, x)| (i + 1, x)).collect()))
            }
            Question::NextItem { candidates } => {
                let toks: Vec<Vec<i64>> = candidates.iter().map(|&i| self.item_tokens(i)).collect::<Result<_>>()?;
                let s = score_candidates(layers, &prompt, &toks, 0, device, &mut |ids, c, r| step(ids, c, Some(r)));
                Answer::Ranked(rank(
                    candidates.iter().zip(s).zip(&toks).map(|((&i, x), t)| (i, x / t.len() as f64)).collect(),
                ))
            }
            Question::Review { .. } => {
                let out = generate_with(
                    layers,
                    device,
                    &prompt,
                    self.spec.max_new_tokens,
                    Sampling::GREEDY,
                    &self.eos,
                    &mut |ids, c| step(ids, c, None),
                );
                let text: Vec<i64> = out.into_iter().filter(|t| !self.eos.contains(t)).collect();
                Answer::Text(self.tok.decode(&text)?.trim().to_string())
            }
        };
        let history_len = history.len().min(self.spec.window) as f64;
        let flops = if text_only {
            crate::model::cost::llm(&m.llm.config, prompt.len() as f64)
        } else {
            crate::model::cost::user_llm(m, prompt.len() as f64, history_len)
        };
        Ok((answer, Cost { prompt_tokens: prompt.len(), user_tokens, flops }))
    }
}

/// What an example's answer is, as text to train on.
#[derive(Debug, Clone)]
pub enum TargetText {
    Category(usize),
    Item(usize),
    Review(String),
}
