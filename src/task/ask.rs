//! A task's question put to a USER-LLM about one user: the prompt (the
//! question, with the history as text for TextPrompt), the user embeddings
//! (from the last `window` interactions), and the answer: candidates ranked by
//! likelihood (genre/category, next item) or a greedy generation (review).
//! Training builds its sequences with the same prompts and answer texts.

use super::candidates::rank;
use super::prompt::{question, text_prompt};
use crate::config::finetune::Scoring;
use crate::config::RunConfig;
use crate::data::catalog::{Catalog, Interaction};
use crate::data::tasks::Task;
use crate::model::batches::{catalog_history, history_inputs};
use crate::model::generate::{generate_with, Sampling};
use crate::model::llama::KvCache;
use crate::model::scoring::score_candidates_batch;
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
    /// How a closed-set answer is scored (exports from before it existed: mean).
    #[serde(default)]
    pub scoring: Scoring,
    /// Questions go through the model's chat template when it has one
    /// (exports from before it existed asked without).
    #[serde(default)]
    pub chat_template: bool,
}

impl TaskSpec {
    /// How a run's `finetune:` and `data:` sections ask their task.
    pub fn from_config(cfg: &RunConfig) -> Result<Self> {
        let f = cfg.finetune.as_ref().context("no finetune section")?;
        let d = cfg.data.as_ref().context("finetune needs a data section")?;
        Ok(TaskSpec {
            task: f.task,
            window: d.window,
            text_window: f.text_prompt_window.unwrap_or(d.window),
            candidates: f.candidates,
            max_new_tokens: f.max_new_tokens,
            seed: cfg.seed,
            scoring: f.scoring,
            chat_template: f.chat_template,
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
    /// Candidates best first: (category id or item index, score): the
    /// log-likelihood of the name or title followed by end of text, per
    /// token or summed ([`Scoring`]).
    Ranked(Vec<(usize, f64)>),
    Text(String),
}

/// Cost of one answer, for the per-example figures.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cost {
    pub prompt_tokens: usize,
    /// User-embedding positions the LLM reads (those that carry history;
    /// padded slots are masked out, though computed and counted in `flops`).
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
    /// Each category's answer tokens, end of text included (category id - 1).
    category_answers: Vec<Vec<i64>>,
    /// The most questions [`ask_batch`](Self::ask_batch) runs as one batch.
    pub batch: usize,
}

impl<'a> Asker<'a> {
    pub fn new(model: &'a UserLlm, tok: &'a Tokenizer, cat: &'a Catalog, spec: TaskSpec) -> Result<Self> {
        let eos = model.llm.config.eos_ids();
        let end = eos.first().copied().unwrap_or(0);
        let lead = answer_lead(&spec, tok);
        let category_answers = cat
            .categories
            .iter()
            .skip(1)
            .map(|n| Ok([tok.encode(&format!("{lead}{n}"))?, vec![end]].concat()))
            .collect::<Result<_>>()?;
        Ok(Self { integration: model.integration, eos, model, tok, cat, spec, category_answers, batch: 1 })
    }

    /// The same model's LLM alone, with the history as text (zero-shot TextPrompt).
    pub fn as_text_prompt(mut self) -> Self {
        self.integration = Integration::TextPrompt;
        self
    }

    /// Each category's answer tokens (end of text included), in the order of
    /// the category ids 1, 2, ...: the options of a favorite-category question.
    pub fn category_answers(&self) -> &[Vec<i64>] {
        &self.category_answers
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
        let q = question(self.cat, self.spec.task, target);
        if !self.integration.mode().history_in_prompt() {
            return self.encode_question(q);
        }
        // The last `text_window` interactions, fewer where they would not fit
        // the context with room for the answer: drop the oldest, by the
        // tokens an interaction takes on average, until the prompt fits.
        let room = (self.model.llm.rope.max_positions() as usize).saturating_sub(self.spec.max_new_tokens.max(32));
        let mut shown = history.len().min(self.spec.text_window);
        loop {
            let ids = self.encode_question(text_prompt(self.cat, &history[history.len() - shown..], &q))?;
            if ids.len() <= room || shown <= 1 {
                return Ok(ids);
            }
            let per = ids.len() / shown;
            shown -= ((ids.len() - room).div_ceil(per.max(1))).clamp(1, shown - 1);
        }
    }

    /// Token ids of a question's text, through the chat template when asked.
    fn encode_question(&self, text: String) -> Result<Vec<i64>> {
        let text = if self.spec.chat_template { self.tok.chat_prompt(&text)?.unwrap_or(text) } else { text };
        self.tok.encode(&text)
    }

    /// The answer text the model is trained to give: the category name, the
    /// item title or the review (its first `max_new_tokens - 1` tokens), after
    /// a space when it continues `Answer:` ([`answer_lead`]), then end of text.
    pub fn answer_tokens(&self, target: &TargetText) -> Result<Vec<i64>> {
        Ok(match target {
            TargetText::Category(c) => self.category_answers[*c - 1].clone(),
            TargetText::Item(i) => self.item_answer(*i)?,
            TargetText::Review(t) => {
                let mut v = self.tok.encode(&format!("{}{}", answer_lead(&self.spec, self.tok), t.trim()))?;
                v.truncate(self.spec.max_new_tokens.saturating_sub(1).max(1));
                v.push(self.eos());
                v
            }
        })
    }

    /// An item's answer tokens: its title, then end of text.
    fn item_answer(&self, item: usize) -> Result<Vec<i64>> {
        let lead = answer_lead(&self.spec, self.tok);
        Ok([self.tok.encode(&format!("{lead}{}", self.cat.title(item)))?, vec![self.eos()]].concat())
    }

    /// Encoder inputs for histories (the last `window` interactions of each).
    pub fn inputs(&self, histories: &[&[Interaction]]) -> Vec<Tensor> {
        let features: Vec<_> = self.model.encoder.shape.features.iter().map(|(f, _)| *f).collect();
        let h: Vec<_> = histories.iter().map(|h| catalog_history(self.cat, h)).collect();
        history_inputs(&h, &features, self.spec.window, self.model.llm.device())
    }

    /// Answer one question about the user with this history.
    pub fn ask(&self, history: &[Interaction], q: &Question) -> Result<(Answer, Cost)> {
        Ok(self.ask_batch(&[(history, q)])?.remove(0))
    }

    /// Answer several questions, each about its own user (history). Closed-set
    /// questions with the same options and prompts of one length (every
    /// favorite-category question of an integration that keeps the history out
    /// of the prompt) run as one batch, up to `batch` rows: one forward over
    /// the prompts, then every option from their cache. The others run one at
    /// a time. The answers are those of [`ask`](Self::ask) on each alone.
    pub fn ask_batch(&self, qs: &[(&[Interaction], &Question)]) -> Result<Vec<(Answer, Cost)>> {
        let mut out: Vec<Option<(Answer, Cost)>> = (0..qs.len()).map(|_| None).collect();
        let mut prompts = Vec::with_capacity(qs.len());
        for (history, q) in qs {
            if history.is_empty() {
                bail!("a question needs at least one interaction of history");
            }
            prompts.push(self.prompt(history, q)?);
        }
        // Favorite-category questions grouped by prompt length.
        let mut groups: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
        for (i, (_, q)) in qs.iter().enumerate() {
            match q {
                Question::FavoriteCategory => groups.entry(prompts[i].len()).or_default().push(i),
                Question::NextItem { candidates } => {
                    let toks: Vec<Vec<i64>> = candidates.iter().map(|&c| self.item_answer(c)).collect::<Result<_>>()?;
                    let (h, p) = ([qs[i].0], [prompts[i].as_slice()]);
                    let (ranked, user_tokens) = self.rank_options(&h, &p, candidates, &toks)?;
                    out[i] = Some((
                        Answer::Ranked(ranked.into_iter().next().expect("one row")),
                        self.cost(p[0], user_tokens[0]),
                    ));
                }
                Question::Review { .. } => out[i] = Some(self.review(qs[i].0, &prompts[i])?),
            }
        }
        let ids: Vec<usize> = (1..=self.category_answers.len()).collect();
        for rows in groups.values() {
            for chunk in rows.chunks(self.batch.max(1)) {
                let h: Vec<&[Interaction]> = chunk.iter().map(|&i| qs[i].0).collect();
                let p: Vec<&[i64]> = chunk.iter().map(|&i| prompts[i].as_slice()).collect();
                let (ranked, user_tokens) = self.rank_options(&h, &p, &ids, &self.category_answers)?;
                for ((&i, r), u) in chunk.iter().zip(ranked).zip(user_tokens) {
                    out[i] = Some((Answer::Ranked(r), self.cost(&prompts[i], u)));
                }
            }
        }
        Ok(out.into_iter().map(|a| a.expect("every question answered")).collect())
    }

    /// The user embeddings for histories (a placeholder for TextPrompt) and
    /// the number of real user positions of each.
    fn users(&self, histories: &[&[Interaction]]) -> (Tensor, Tensor, Vec<usize>) {
        if !self.integration.mode().reads_user() {
            let z = || Tensor::zeros([1], tch::kind::FLOAT_CPU);
            return (z(), z(), vec![0; histories.len()]);
        }
        let (user, mask) = tch::no_grad(|| self.model.user_embeddings(&self.inputs(histories), false));
        let counts = Vec::<i64>::try_from(mask.sum_dim_intlist(1, false, tch::Kind::Int64).to_device(tch::Device::Cpu))
            .expect("counts");
        (user, mask, counts.into_iter().map(|c| c as usize).collect())
    }

    /// One model step for prompts read with `user`/`mask` (batch row `r` of
    /// a step belongs to prompt `rows[r]`): the logits of every position.
    fn step<'s>(
        &'s self,
        user: &'s Tensor,
        mask: &'s Tensor,
    ) -> impl FnMut(&Tensor, &mut KvCache, Option<&Tensor>) -> Tensor + 's {
        let mut hidden = self.hidden_step(user, mask);
        move |ids, cache, rows| self.model.llm.logits(&hidden(ids, cache, rows))
    }

    /// As [`step`](Self::step), the final hidden states before the LM head.
    fn hidden_step<'s>(
        &'s self,
        user: &'s Tensor,
        mask: &'s Tensor,
    ) -> impl FnMut(&Tensor, &mut KvCache, Option<&Tensor>) -> Tensor + 's {
        let m = self.model;
        let text_only = !self.integration.mode().reads_user();
        move |ids, cache, rows| {
            if text_only {
                m.llm.hidden_states(&m.llm.embed(ids), Some(cache))
            } else {
                match rows {
                    Some(r) => m.hidden_with_user(ids, &user.index_select(0, r), &mask.index_select(0, r), Some(cache)),
                    None => m.hidden_with_user(ids, user, mask, Some(cache)),
                }
            }
        }
    }

    /// Each prompt's options (`ids`, with their answer tokens) ranked by
    /// [`Scoring`], and each prompt's real user positions. The prompts have
    /// one length.
    fn rank_options(
        &self,
        histories: &[&[Interaction]],
        prompts: &[&[i64]],
        ids: &[usize],
        answers: &[Vec<i64>],
    ) -> Result<(Vec<Ranking>, Vec<usize>)> {
        let (user, mask, user_tokens) = self.users(histories);
        let device = self.model.llm.device();
        let flat: Vec<i64> = prompts.concat();
        let batch = Tensor::from_slice(&flat).view([prompts.len() as i64, -1]).to_device(device);
        let mut step = self.step(&user, &mask);
        let layers = self.model.llm.layers.len();
        let ranked = rank_answers(self.spec.scoring, layers, &batch, ids, answers, &mut |x, c, r| step(x, c, Some(r)));
        Ok((ranked, user_tokens))
    }

    /// A review: greedy generation after the prompt.
    fn review(&self, history: &[Interaction], prompt: &[i64]) -> Result<(Answer, Cost)> {
        let (user, mask, user_tokens) = self.users(&[history]);
        let mut step = self.hidden_step(&user, &mask);
        let m = self.model;
        let out = generate_with(
            m.llm.layers.len(),
            m.llm.device(),
            prompt,
            self.spec.max_new_tokens,
            Sampling::GREEDY,
            &self.eos,
            &mut |ids, c| m.llm.last_logits(&step(ids, c, None)),
        );
        let text: Vec<i64> = out.into_iter().filter(|t| !self.eos.contains(t)).collect();
        Ok((Answer::Text(self.tok.decode(&text)?.trim().to_string()), self.cost(prompt, user_tokens[0])))
    }

    /// What answering after `prompt` costs. FLOPs count every position
    /// computed: the encoder's input is always `window` long, padded slots
    /// included (masked, but computed).
    fn cost(&self, prompt: &[i64], user_tokens: usize) -> Cost {
        let m = self.model;
        let flops = if self.integration.mode().reads_user() {
            crate::model::cost::user_llm(m, prompt.len() as f64, self.spec.window as f64)
        } else {
            crate::model::cost::llm(&m.llm.config, prompt.len() as f64)
        };
        Cost { prompt_tokens: prompt.len(), user_tokens, flops }
    }
}

/// Options best first, with their scores.
pub type Ranking = Vec<(usize, f64)>;

/// What comes before an answer: a space after the plain prompt's
/// `Answer:`, nothing at the start of the assistant's turn of a chat.
fn answer_lead(spec: &TaskSpec, tok: &Tokenizer) -> &'static str {
    if spec.chat_template && tok.has_chat_template() {
        ""
    } else {
        " "
    }
}

/// A closed set of answers (`ids`, each with its tokens, end of text
/// included) ranked by `scoring` after each of `prompts` `(batch, len)`,
/// best first: one ranking per prompt.
pub fn rank_answers(
    scoring: Scoring,
    layers: usize,
    prompts: &Tensor,
    ids: &[usize],
    answers: &[Vec<i64>],
    step: &mut crate::model::scoring::Step,
) -> Vec<Ranking> {
    score_candidates_batch(layers, prompts, answers, 0, step)
        .into_iter()
        .map(|totals| {
            rank(ids.iter().zip(totals).zip(answers).map(|((&i, total), t)| (i, scoring.of(total, t.len()))).collect())
        })
        .collect()
}

/// What an example's answer is, as text to train on.
#[derive(Debug, Clone)]
pub enum TargetText {
    Category(usize),
    Item(usize),
    Review(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::llama::KvCache;

    const V: usize = 8;
    const EOS: i64 = 7;

    /// A bigram language model: the next-token distribution at a position
    /// depends on that position's token only. `next[t]` lists (token,
    /// probability); what is left is spread evenly over the other tokens.
    fn bigram(next: &[(i64, &[(i64, f64)])]) -> Vec<[f64; V]> {
        let mut table = vec![[1.0 / V as f64; V]; V];
        for (t, probs) in next {
            let left = 1.0 - probs.iter().map(|(_, p)| p).sum::<f64>();
            let others = V - probs.len();
            let mut row = [left / others as f64; V];
            for &(u, p) in probs.iter() {
                row[u as usize] = p;
            }
            table[*t as usize] = row;
        }
        table
    }

    fn prob(table: &[[f64; V]], from: i64, to: i64) -> f64 {
        table[from as usize][to as usize]
    }

    /// The exact log-likelihood of `answer` after `prompt` under the bigram.
    fn log_likelihood(table: &[[f64; V]], prompt: &[i64], answer: &[i64]) -> f64 {
        let mut prev = *prompt.last().unwrap();
        answer
            .iter()
            .map(|&t| {
                let lp = prob(table, prev, t).ln();
                prev = t;
                lp
            })
            .sum()
    }

    fn ranked(table: &[[f64; V]], scoring: Scoring, prompt: &[i64], answers: &[Vec<i64>]) -> Vec<(usize, f64)> {
        let logits = Tensor::from_slice(&table.iter().flatten().map(|p| p.ln() as f32).collect::<Vec<_>>())
            .view([V as i64, V as i64]);
        let mut step = |ids: &Tensor, _: &mut KvCache, _: &Tensor| -> Tensor {
            let (b, s) = (ids.size()[0], ids.size()[1]);
            logits.index_select(0, &ids.reshape([-1])).view([b, s, V as i64])
        };
        let ids: Vec<usize> = (0..answers.len()).collect();
        let prompts = Tensor::from_slice(prompt).unsqueeze(0);
        rank_answers(scoring, 1, &prompts, &ids, answers, &mut step).remove(0)
    }

    #[test]
    fn with_end_of_text_a_name_that_begins_another_no_longer_always_wins() {
        // "Sci" = [2], "Sci-Fi" = [2, 3]; after "Sci" the model expects "-Fi", rarely the end.
        let table = bigram(&[(1, &[(2, 0.9)]), (2, &[(3, 0.8), (EOS, 0.1)]), (3, &[(EOS, 0.9)])]);
        let prompt = [1];
        // Summed without end of text (the old scoring), the prefix wins whatever follows it.
        let bare = ranked(&table, Scoring::Sum, &prompt, &[vec![2], vec![2, 3]]);
        assert_eq!(bare[0].0, 0, "{bare:?}");
        for scoring in [Scoring::Sum, Scoring::Mean] {
            let with_end = ranked(&table, scoring, &prompt, &[vec![2, EOS], vec![2, 3, EOS]]);
            assert_eq!(with_end[0].0, 1, "{scoring:?}: {with_end:?}");
        }
    }

    #[test]
    fn mean_and_sum_scoring_each_pick_their_answer_with_the_exact_scores() {
        // A short answer of middling tokens against a long one of likely tokens:
        // its product is smaller (sum prefers the short), its tokens likelier (mean prefers the long).
        let table = bigram(&[
            (1, &[(2, 0.5), (4, 0.3)]),
            (2, &[(3, 0.8)]),
            (3, &[(5, 0.5)]),
            (4, &[(EOS, 0.3)]),
            (5, &[(6, 0.5)]),
            (6, &[(EOS, 0.5)]),
        ]);
        let prompt = [0, 1];
        let answers = [vec![4, EOS], vec![2, 3, 5, 6, EOS]];
        let exact: Vec<f64> = answers.iter().map(|a| log_likelihood(&table, &prompt, a)).collect();
        let sum = ranked(&table, Scoring::Sum, &prompt, &answers);
        let mean = ranked(&table, Scoring::Mean, &prompt, &answers);
        assert_eq!((sum[0].0, mean[0].0), (0, 1), "sum {sum:?}, mean {mean:?}");
        for (i, total) in exact.iter().enumerate() {
            let got = |r: &[(usize, f64)]| r.iter().find(|(j, _)| *j == i).unwrap().1;
            assert!((got(&sum) - total).abs() < 1e-5, "sum of {i}: {} vs {total}", got(&sum));
            let want = total / answers[i].len() as f64;
            assert!((got(&mean) - want).abs() < 1e-5, "mean of {i}: {} vs {want}", got(&mean));
        }
    }
}
