//! Evaluation of a finetuned USER-LLM and its baselines on the same test
//! questions: the task's metrics (accuracy; Recall@1/5/10; ROUGE-1/2/L F1),
//! the cost per example (prompt tokens, user tokens, forward FLOPs, measured
//! time), and every prediction (for `finetune_predictions.jsonl`, which
//! `uorch generate --model EXPORT` reproduces).

use crate::data::catalog::Catalog;
use crate::data::store::Store;
use crate::data::tasks::Task;
use crate::task::ask::{Answer, Asker, Cost};
use crate::task::examples::{EvalExample, Truth};
use crate::task::rouge;
use crate::task::stats::{bootstrap_ci, paired, Interval, Paired};
use anyhow::Result;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Instant;

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Evaluated {
    pub who: String,
    pub cases: usize,
    /// accuracy | recall@1, recall@5, recall@10, mrr | rouge1, rouge2, rougeL.
    pub metrics: BTreeMap<String, f64>,
    /// Each metric's 95% bootstrap interval over the questions.
    #[serde(default)]
    pub ci: BTreeMap<String, Interval>,
    /// Each metric per question, in question order (for paired comparisons).
    #[serde(default)]
    pub per_question: BTreeMap<String, Vec<f64>>,
    /// Which questions these are (a digest of their users and answers): two
    /// results compare pairwise only when it is the same.
    #[serde(default)]
    pub questions: String,
    /// Text tokens the LLM reads per example.
    pub prompt_tokens: f64,
    /// User-embedding positions the LLM reads per example.
    pub user_tokens: f64,
    /// Forward FLOPs per example (see `model::cost`).
    pub gflops: f64,
    /// Measured wall time per example (scoring every candidate, or generating).
    pub ms: f64,
}

/// A prediction as JSON: the user, the answer (category name, item id or
/// text), the top 10 candidates with scores, the truth, and what answering
/// cost (prompt tokens, user tokens, forward GFLOPs).
pub fn prediction_json(
    cat: &Catalog,
    task: Task,
    user: &str,
    answer: &Answer,
    truth: Option<&Truth>,
    cost: &Cost,
) -> serde_json::Value {
    let (best, top) = match answer {
        Answer::Ranked(r) => {
            let is_category = task == Task::FavoriteCategory;
            let name = |i: usize| if is_category { cat.categories[i].clone() } else { cat.items[i].clone() };
            (
                serde_json::json!(r.first().map(|x| name(x.0))),
                serde_json::json!(r.iter().take(10).map(|(i, s)| (name(*i), *s)).collect::<Vec<_>>()),
            )
        }
        Answer::Text(t) => (serde_json::json!(t), serde_json::Value::Null),
    };
    let truth = match truth {
        Some(Truth::Category(c)) => serde_json::json!(cat.categories[*c]),
        Some(Truth::Item(i)) => serde_json::json!(cat.items[*i]),
        Some(Truth::Review(t)) => serde_json::json!(t),
        None => serde_json::Value::Null,
    };
    serde_json::json!({"user": user, "answer": best, "top": top, "truth": truth,
        "prompt_tokens": cost.prompt_tokens, "user_tokens": cost.user_tokens, "gflops": cost.flops / 1e9})
}

/// The task's metrics for one answer.
fn score(answer: &Answer, truth: &Truth) -> Vec<(&'static str, f64)> {
    match (answer, truth) {
        (Answer::Ranked(r), Truth::Category(c)) => {
            vec![("accuracy", (r.first().map(|x| x.0) == Some(*c)) as u8 as f64)]
        }
        (Answer::Ranked(r), Truth::Item(i)) => {
            let rank = r.iter().position(|x| x.0 == *i).unwrap_or(usize::MAX);
            vec![
                ("recall@1", (rank < 1) as u8 as f64),
                ("recall@5", (rank < 5) as u8 as f64),
                ("recall@10", (rank < 10) as u8 as f64),
                ("mrr", if rank == usize::MAX { 0.0 } else { 1.0 / (rank + 1) as f64 }),
            ]
        }
        (Answer::Text(t), Truth::Review(r)) => {
            let s = rouge::score(t, r);
            vec![("rouge1", s.rouge1), ("rouge2", s.rouge2), ("rougeL", s.rouge_l)]
        }
        _ => Vec::new(),
    }
}

/// Brings every rank's bytes for a name to rank 0, in rank order (`None`
/// on the other ranks), without a timed collective (a run's worker does).
pub trait Gather {
    fn gather(&self, name: &str, mine: Vec<u8>) -> Result<Option<Vec<Vec<u8>>>>;
}

/// How an evaluation is split over the ranks of a run: rank `rank` of
/// `world` answers the cases `i` with `i % world == rank`, and `gather`
/// brings the answers to rank 0.
pub struct Share<'a> {
    pub rank: usize,
    pub world: usize,
    pub gather: &'a dyn Gather,
}

/// One answered case, as it travels from its rank to rank 0.
#[derive(Serialize, serde::Deserialize)]
struct Answered {
    index: usize,
    scores: Vec<(String, f64)>,
    prompt_tokens: f64,
    user_tokens: f64,
    flops: f64,
    prediction: serde_json::Value,
}

/// Answer every example with `answer` and report under the name `who`; the
/// ranks of `share` answer their part. Rank 0 gets the result, summed in case
/// order so that it, and the predictions, equal one process's; the other
/// ranks get `None`.
pub fn evaluate(
    cat: &Catalog,
    task: Task,
    users: &[String],
    cases: &[EvalExample],
    who: &str,
    share: &Share,
    mut answer: impl FnMut(&EvalExample) -> Result<(Answer, Cost)>,
) -> Result<Option<(Evaluated, Vec<serde_json::Value>)>> {
    evaluate_batched(cat, task, users, cases, who, share, 1, |c| Ok(vec![answer(c[0])?]))
}

/// The model's own answers through [`Asker::ask_batch`], `asker.batch`
/// questions at a time.
pub fn evaluate_model(
    asker: &Asker,
    users: &[String],
    cases: &[EvalExample],
    who: &str,
    share: &Share,
) -> Result<Option<(Evaluated, Vec<serde_json::Value>)>> {
    evaluate_batched(asker.cat, asker.spec.task, users, cases, who, share, asker.batch, |cs| {
        let qs: Vec<_> = cs.iter().map(|c| (c.history.as_slice(), &c.question)).collect();
        asker.ask_batch(&qs)
    })
}

/// Seconds between progress lines of a long evaluation.
const PROGRESS_S: u64 = 30;

/// As [`evaluate`], with `answer` given up to `batch` examples at a time.
#[allow(clippy::too_many_arguments)]
pub fn evaluate_batched(
    cat: &Catalog,
    task: Task,
    users: &[String],
    cases: &[EvalExample],
    who: &str,
    share: &Share,
    batch: usize,
    mut answer: impl FnMut(&[&EvalExample]) -> Result<Vec<(Answer, Cost)>>,
) -> Result<Option<(Evaluated, Vec<serde_json::Value>)>> {
    let t0 = Instant::now();
    let mut mine = Vec::new();
    let my_cases: Vec<(usize, &EvalExample)> =
        cases.iter().enumerate().filter(|(i, _)| i % share.world == share.rank).collect();
    let mut shown = Instant::now();
    for (done, chunk) in my_cases.chunks(batch.max(1)).enumerate() {
        // Long evaluations (TextPrompt, generation) say how far they are.
        if share.rank == 0 && shown.elapsed().as_secs() >= PROGRESS_S {
            let n = done * batch.max(1);
            eprintln!(
                "evaluating {who}: {n} of {} questions on this rank, {:.0} s",
                my_cases.len(),
                t0.elapsed().as_secs_f64()
            );
            shown = Instant::now();
        }
        let cs: Vec<&EvalExample> = chunk.iter().map(|(_, c)| *c).collect();
        let answers = answer(&cs)?;
        for (&(index, c), (a, cost)) in chunk.iter().zip(answers) {
            mine.push(Answered {
                index,
                scores: score(&a, &c.truth).into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
                prompt_tokens: cost.prompt_tokens as f64,
                user_tokens: cost.user_tokens as f64,
                flops: cost.flops,
                prediction: prediction_json(cat, task, &users[c.user], &a, Some(&c.truth), &cost),
            });
        }
    }
    let seconds = t0.elapsed().as_secs_f64();
    let Some(parts) = share.gather.gather(&format!("eval/{who}"), serde_json::to_vec(&(seconds, mine))?)? else {
        return Ok(None);
    };
    let mut all: Vec<Answered> = Vec::with_capacity(cases.len());
    let mut busy = 0.0;
    for part in parts {
        let (s, answered): (f64, Vec<Answered>) = serde_json::from_slice(&part)?;
        busy += s;
        all.extend(answered);
    }
    all.sort_by_key(|a| a.index);
    let mut per_question: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let (mut prompt, mut user, mut flops) = (0.0, 0.0, 0.0);
    let mut predictions = Vec::with_capacity(cases.len());
    for a in all {
        for (k, v) in a.scores {
            per_question.entry(k).or_default().push(v);
        }
        prompt += a.prompt_tokens;
        user += a.user_tokens;
        flops += a.flops;
        predictions.push(a.prediction);
    }
    let n = cases.len().max(1) as f64;
    let metrics = per_question.iter().map(|(k, v)| (k.clone(), v.iter().sum::<f64>() / n)).collect();
    let ci = per_question.iter().map(|(k, v)| (k.clone(), bootstrap_ci(v))).collect();
    let e = Evaluated {
        who: who.into(),
        cases: cases.len(),
        metrics,
        ci,
        per_question,
        questions: question_set(users, cases),
        prompt_tokens: prompt / n,
        user_tokens: user / n,
        gflops: flops / n / 1e9,
        // Each case's answering time on its rank, averaged over the cases.
        ms: busy * 1000.0 / n,
    };
    Ok(Some((e, predictions)))
}

/// A digest of which questions were asked: each one's user and right answer.
fn question_set(users: &[String], cases: &[EvalExample]) -> String {
    let key: Vec<String> = cases.iter().map(|c| format!("{}\u{1f}{:?}", users[c.user], c.truth)).collect();
    crate::fsutil::config_digest(&serde_json::json!(key), 16)
}

/// Every metric a task's answers are scored on, the headline first.
pub fn metric_names(task: Task) -> &'static [&'static str] {
    match task {
        Task::FavoriteCategory => &["accuracy"],
        Task::NextItem => &["recall@5", "recall@1", "recall@10", "mrr"],
        Task::Review => &["rougeL", "rouge1", "rouge2"],
    }
}

/// The metric a task's results are compared on first.
pub fn headline(task: Task) -> &'static str {
    metric_names(task)[0]
}

/// `a` against `b` on `metric`, when both answered the same questions.
pub fn compare(a: &Evaluated, b: &Evaluated, metric: &str) -> Option<Paired> {
    if a.questions.is_empty() || a.questions != b.questions {
        return None;
    }
    Some(paired(a.per_question.get(metric)?, b.per_question.get(metric)?))
}

/// A metric with its interval, e.g. `0.6000 [0.4500, 0.7500]`.
fn with_ci(r: &Evaluated, k: &str, v: f64) -> String {
    match r.ci.get(k) {
        Some([lo, hi]) => format!("{v:.4} [{lo:.4}, {hi:.4}]"),
        None => format!("{v:.4}"),
    }
}

/// One line per result: the metrics (with 95% intervals) and the cost per example.
pub fn describe(r: &Evaluated) -> String {
    let m: Vec<String> = r.metrics.iter().map(|(k, v)| format!("{k} {}", with_ci(r, k, *v))).collect();
    format!(
        "{}: {} on {} cases; {:.0} prompt + {:.0} user tokens, {:.3} GFLOPs, {:.1} ms per example",
        r.who,
        m.join(", "),
        r.cases,
        r.prompt_tokens,
        r.user_tokens,
        r.gflops,
        r.ms
    )
}

/// Results as a table: one row per model or baseline, the task's metrics
/// with their 95% bootstrap intervals, then the cost per example.
pub fn table(task: Task, rows: &[Evaluated]) -> String {
    let keys: Vec<String> = rows
        .iter()
        .flat_map(|r| r.metrics.keys().cloned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let width = rows.iter().map(|r| r.who.len()).max().unwrap_or(10).max(10);
    let mut s = format!("  {:<width$}", format!("{}, test", crate::config::value_name(&task)));
    for k in &keys {
        s.push_str(&format!(" {:>24}", format!("{k} [95% CI]")));
    }
    s.push_str(&format!(" {:>7} {:>6} {:>8} {:>10}\n", "prompt", "user", "GFLOPs", "ms/example"));
    for r in rows {
        s.push_str(&format!("  {:<width$}", r.who));
        for k in &keys {
            match r.metrics.get(k) {
                Some(v) => s.push_str(&format!(" {:>24}", with_ci(r, k, *v))),
                None => s.push_str(&format!(" {:>24}", "-")),
            }
        }
        s.push_str(&format!(" {:>7.0} {:>6.0} {:>8.3} {:>10.1}\n", r.prompt_tokens, r.user_tokens, r.gflops, r.ms));
    }
    s
}

/// The name the finetuned model's result goes by.
pub const FINETUNED: &str = "USER-LLM finetuned";

/// The finetuned model's result among a run's `results`.
pub fn finetuned(results: &[Evaluated]) -> Option<&Evaluated> {
    results.iter().find(|r| r.who == FINETUNED)
}

/// [`comparisons`] of the finetuned model with every other result of its run.
pub fn finetuned_against_the_rest(task: Task, results: &[Evaluated]) -> Vec<String> {
    let Some(f) = finetuned(results) else { return Vec::new() };
    let others: Vec<&Evaluated> = results.iter().filter(|r| r.who != FINETUNED).collect();
    comparisons(task, f, &others)
}

/// How one result compares with each of `others` on the task's headline
/// metric, one line each: the paired difference with its interval, the
/// discordant questions and McNemar's p, and whether it is a difference.
pub fn comparisons(task: Task, of: &Evaluated, others: &[&Evaluated]) -> Vec<String> {
    let metric = headline(task);
    others
        .iter()
        .filter_map(|b| {
            let p = compare(of, b, metric)?;
            let counts = match (p.a_only, p.b_only) {
                (Some(x), Some(y)) => format!("; right only here {x}, only there {y}, McNemar p = {:.3}", p.p_value),
                _ => format!("; p = {:.3}", p.p_value),
            };
            let verdict = if !p.significant() {
                "no clear difference"
            } else if p.difference > 0.0 {
                "better"
            } else {
                "worse"
            };
            Some(format!(
                "{} vs {}: {metric} {:+.4} [{:+.4}, {:+.4}]{counts}: {verdict}",
                of.who, b.who, p.difference, p.ci[0], p.ci[1]
            ))
        })
        .collect()
}

/// The first `n` test questions with the finetuned model's answer and the truth, as Markdown.
pub fn samples(
    asker: &Asker,
    store: &Store,
    cases: &[EvalExample],
    predictions: &[serde_json::Value],
    n: usize,
) -> Result<String> {
    let mut out = Vec::new();
    for (c, p) in cases.iter().zip(predictions).take(n) {
        let prompt = asker.tok.decode(&asker.prompt(&c.history, &c.question)?)?;
        let truth = match &c.truth {
            Truth::Category(x) => asker.cat.categories[*x].clone(),
            Truth::Item(i) => asker.cat.title(*i).to_string(),
            Truth::Review(t) => t.clone(),
        };
        let answer = match p["answer"].as_str() {
            Some(a) if matches!(c.truth, Truth::Item(_)) => {
                asker.cat.item_index(a).map(|i| asker.cat.title(i).to_string()).unwrap_or_default()
            }
            Some(a) => a.to_string(),
            None => String::new(),
        };
        out.push(format!(
            "**user {}** ({} interactions)\n\n    {}\n\n**answer:** {answer}\n\n**truth:** {truth}",
            store.vocab.user[c.user],
            c.history.len(),
            prompt.replace('\n', "\n    ")
        ));
    }
    Ok(out.join("\n\n---\n\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names declared to TensorBoard are exactly those an answer is scored on.
    #[test]
    fn each_tasks_metric_names_are_those_it_scores() {
        let cases = [
            (Task::FavoriteCategory, Answer::Ranked(vec![(0, -1.0)]), Truth::Category(0)),
            (Task::NextItem, Answer::Ranked(vec![(3, -1.0)]), Truth::Item(3)),
            (Task::Review, Answer::Text("a fine film".into()), Truth::Review("a fine film".into())),
        ];
        for (task, answer, truth) in cases {
            let mut scored: Vec<&str> = score(&answer, &truth).into_iter().map(|(k, _)| k).collect();
            let mut named = metric_names(task).to_vec();
            scored.sort();
            named.sort();
            assert_eq!(scored, named, "{task:?}");
        }
    }
}
