//! The USER-LLM paper's orderings, checked on an experiment's trials: each
//! claim compares two results paired on the same test questions (the
//! difference of the task's headline metric with its 95% paired-bootstrap
//! interval) and is marked supported, contradicted or inconclusive.
//!
//! - "beats" claims (cross-attention over soft prompt, USER-LLM over
//!   TextPrompt): supported when the interval lies above 0, contradicted
//!   when below, inconclusive when it holds 0;
//! - "comes close" claims (16 Perceiver latents against none; Enc and LoRA
//!   against Full): supported when the interval lies above -[`MARGIN`] (no
//!   worse than the margin), contradicted when it lies below it,
//!   inconclusive otherwise.

use super::trials::{Axis, TrialResult};
use crate::data::tasks::Task;
use crate::task::baselines::is_text_prompt_zero_shot;
use crate::task::evaluate::{compare, headline, Evaluated};
use crate::task::stats::Paired;

/// How far below the reference a "comes close" claim may lie (absolute, on
/// the headline metric: accuracy, Recall@5, ROUGE-L).
pub const MARGIN: f64 = 0.05;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// The first is better.
    Beats,
    /// The first is no worse than the second by more than [`MARGIN`].
    ComesClose,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Supported,
    Contradicted,
    Inconclusive,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Supported => "supported",
            Verdict::Contradicted => "contradicted",
            Verdict::Inconclusive => "inconclusive",
        }
    }
}

/// The verdict on a claim from the interval of the difference (first − second).
pub fn verdict(expect: Expect, ci: [f64; 2]) -> Verdict {
    let bar = match expect {
        Expect::Beats => 0.0,
        Expect::ComesClose => -MARGIN,
    };
    if ci[0] > bar {
        Verdict::Supported
    } else if ci[1] < bar {
        Verdict::Contradicted
    } else {
        Verdict::Inconclusive
    }
}

/// One claim checked on one pair of results (or not checked: `paired` None).
#[derive(Debug, Clone)]
pub struct Checked {
    pub task: Task,
    pub claim: &'static str,
    /// What is compared, e.g. `task=fav vs softprompt,task=fav`.
    pub compared: String,
    pub paired: Option<Paired>,
    pub verdict: Option<Verdict>,
    /// Why it is not checked, or what qualifies it.
    pub note: String,
}

const CROSS_VS_SOFT: &str = "cross-attention beats soft prompt";
const PERCEIVER: &str = "a 16-latent Perceiver comes close to none";
const ENC_VS_FULL: &str = "Enc comes close to Full";
const LORA_VS_FULL: &str = "LoRA comes close to Full";
const VS_TEXT: &str = "USER-LLM beats TextPrompt";
const VS_TEXT_GROWS: &str = "USER-LLM's lead over TextPrompt grows with the history";

/// Every claim on every task of `trials`.
pub fn check(trials: &[TrialResult]) -> Vec<Checked> {
    let mut tasks: Vec<Task> = Vec::new();
    for t in trials {
        if !tasks.contains(&t.task) {
            tasks.push(t.task);
        }
    }
    let mut out = Vec::new();
    for task in tasks {
        let of: Vec<&TrialResult> = trials.iter().filter(|t| t.task == task).collect();
        let one_change = |claim, axis, a: &str, b: &str, ignore: &[Axis], expect, out: &mut Vec<Checked>| {
            let mut except = vec![axis];
            except.extend_from_slice(ignore);
            let mut pairs: Vec<(&TrialResult, &TrialResult)> = Vec::new();
            for x in of.iter().filter(|x| x.factor(axis) == a) {
                for y in of.iter().filter(|y| y.factor(axis) == b && x.same_but(y, &except)) {
                    pairs.push((*x, *y));
                }
            }
            if pairs.is_empty() {
                out.push(unchecked(
                    task,
                    claim,
                    format!("no two trials that differ only in {} ({a} vs {b})", axis.name()),
                ));
            }
            for (x, y) in pairs {
                out.push(pair(task, claim, x, y, expect));
            }
        };
        one_change(
            CROSS_VS_SOFT,
            Axis::Integration,
            "cross_attention",
            "soft_prompt",
            &[Axis::Placement],
            Expect::Beats,
            &mut out,
        );
        one_change(PERCEIVER, Axis::Latents, "16", "0", &[], Expect::ComesClose, &mut out);
        one_change(ENC_VS_FULL, Axis::Strategy, "enc", "full", &[], Expect::ComesClose, &mut out);
        one_change(LORA_VS_FULL, Axis::Strategy, "lora", "full", &[], Expect::ComesClose, &mut out);
        out.extend(against_text_prompt(task, &of));
    }
    out
}

fn unchecked(task: Task, claim: &'static str, why: String) -> Checked {
    Checked { task, claim, compared: String::new(), paired: None, verdict: None, note: why }
}

/// Two trials' finetuned models compared.
fn pair(task: Task, claim: &'static str, a: &TrialResult, b: &TrialResult, expect: Expect) -> Checked {
    match (a.finetuned(), b.finetuned()) {
        (Some(x), Some(y)) => results(task, claim, format!("{} vs {}", a.name, b.name), x, y, expect),
        _ => unchecked(task, claim, format!("{} or {} has no finetuned result", a.name, b.name)),
    }
}

fn results(task: Task, claim: &'static str, compared: String, a: &Evaluated, b: &Evaluated, expect: Expect) -> Checked {
    match compare(a, b, headline(task)) {
        Some(p) => Checked {
            task,
            claim,
            compared,
            verdict: Some(verdict(expect, p.ci)),
            paired: Some(p),
            note: String::new(),
        },
        None => unchecked(task, claim, format!("{compared}: not asked the same test questions")),
    }
}

/// USER-LLM against TextPrompt at each history length (and dataset): the
/// cross-attention trial that validation rates best there (the first, where
/// nothing was validated) against the finetuned TextPrompt trial(s) and the
/// zero-shot TextPrompt; then whether the lead grows from the shortest
/// history to the longest.
fn against_text_prompt(task: Task, of: &[&TrialResult]) -> Vec<Checked> {
    let mut out = Vec::new();
    let mut leads: Vec<(usize, String, Paired)> = Vec::new();
    let mut places: Vec<(String, String)> = Vec::new();
    for t in of {
        let p = (t.factor(Axis::Dataset).to_string(), t.factor(Axis::History).to_string());
        if !places.contains(&p) {
            places.push(p);
        }
    }
    for (dataset, history) in &places {
        let here = |t: &&&TrialResult| t.factor(Axis::Dataset) == dataset && t.factor(Axis::History) == history;
        let users: Vec<&TrialResult> =
            of.iter().filter(here).filter(|t| t.factor(Axis::Integration) == "cross_attention").copied().collect();
        let Some(user) = users.iter().copied().reduce(|best, t| match (t.valid_score(), best.valid_score()) {
            (Some(a), Some(b)) if a > b => t,
            _ => best,
        }) else {
            out.push(unchecked(task, VS_TEXT, format!("no cross-attention trial on {dataset}, history {history}")));
            continue;
        };
        let Some(mine) = user.finetuned() else { continue };
        let at = format!(" (history {history}, {dataset})");
        let mut any = false;
        for text in of.iter().filter(here).filter(|t| t.factor(Axis::Integration) == "text_prompt") {
            if let Some(theirs) = text.finetuned() {
                let c = results(
                    task,
                    VS_TEXT,
                    format!("{} vs {} (finetuned){at}", user.name, text.name),
                    mine,
                    theirs,
                    Expect::Beats,
                );
                if let Some(p) = &c.paired {
                    leads.push((history.parse().unwrap_or(0), c.compared.clone(), p.clone()));
                }
                out.push(c);
                any = true;
            }
        }
        let zero_shot = of
            .iter()
            .filter(here)
            .flat_map(|t| t.results.iter())
            .find(|r| is_text_prompt_zero_shot(&r.who) && r.questions == mine.questions);
        if let Some(z) = zero_shot {
            out.push(results(task, VS_TEXT, format!("{} vs {}{at}", user.name, z.who), mine, z, Expect::Beats));
            any = true;
        }
        if !any {
            out.push(unchecked(task, VS_TEXT, format!("no TextPrompt result on {dataset}, history {history}")));
        }
    }
    leads.sort_by_key(|(h, _, _)| *h);
    match (leads.first(), leads.last()) {
        (Some((h0, _, short)), Some((h1, _, long))) if h1 > h0 => {
            let v = if long.ci[0] > short.ci[1] {
                Verdict::Supported
            } else if long.ci[1] < short.ci[0] {
                Verdict::Contradicted
            } else {
                Verdict::Inconclusive
            };
            out.push(Checked {
                task,
                claim: VS_TEXT_GROWS,
                compared: format!(
                    "lead {:+.4} [{:+.4}, {:+.4}] at history {h0}, {:+.4} [{:+.4}, {:+.4}] at {h1}",
                    short.difference, short.ci[0], short.ci[1], long.difference, long.ci[0], long.ci[1]
                ),
                paired: None,
                verdict: Some(v),
                note: "supported when the intervals of the two leads do not overlap".into(),
            });
        }
        _ => {
            out.push(unchecked(task, VS_TEXT_GROWS, "needs finetuned TextPrompt trials at two history lengths".into()))
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn verdicts_follow_where_the_interval_lies() {
        assert_eq!(verdict(Expect::Beats, [0.01, 0.2]), Verdict::Supported);
        assert_eq!(verdict(Expect::Beats, [-0.01, 0.2]), Verdict::Inconclusive);
        assert_eq!(verdict(Expect::Beats, [-0.2, -0.01]), Verdict::Contradicted);
        // Close enough: the interval lies above -0.05, even below 0.
        assert_eq!(verdict(Expect::ComesClose, [-0.04, -0.01]), Verdict::Supported);
        assert_eq!(verdict(Expect::ComesClose, [-0.07, 0.02]), Verdict::Inconclusive);
        assert_eq!(verdict(Expect::ComesClose, [-0.2, -0.06]), Verdict::Contradicted);
    }

    /// A finished trial whose finetuned model answered `right` of 200
    /// questions (the first ones), at the given axis values.
    pub(crate) fn trial(name: &str, at: &[(Axis, &str)], right: usize, extra: Vec<Evaluated>) -> TrialResult {
        let mut factors: std::collections::BTreeMap<Axis, String> = [
            (Axis::Integration, "cross_attention"),
            (Axis::Placement, "every_3"),
            (Axis::Latents, "16"),
            (Axis::Strategy, "enc"),
            (Axis::History, "20"),
            (Axis::Dataset, "ml-100k"),
        ]
        .into_iter()
        .map(|(a, v)| (a, v.to_string()))
        .collect();
        for (a, v) in at {
            factors.insert(*a, v.to_string());
        }
        let mut results = vec![answered(crate::task::evaluate::FINETUNED, right)];
        results.extend(extra);
        TrialResult {
            name: name.into(),
            task: Task::FavoriteCategory,
            factors,
            results,
            loss: vec![],
            validation: vec![],
            selected_step: 10,
        }
    }

    fn answered(who: &str, right: usize) -> Evaluated {
        let per: Vec<f64> = (0..200).map(|i| (i < right) as u8 as f64).collect();
        Evaluated {
            who: who.into(),
            cases: 200,
            metrics: [("accuracy".to_string(), right as f64 / 200.0)].into(),
            ci: [("accuracy".to_string(), crate::task::stats::bootstrap_ci(&per))].into(),
            per_question: [("accuracy".to_string(), per)].into(),
            questions: "same".into(),
            prompt_tokens: 0.0,
            user_tokens: 0.0,
            gflops: 0.0,
            ms: 0.0,
        }
    }

    fn find<'a>(all: &'a [Checked], claim: &str) -> Vec<&'a Checked> {
        all.iter().filter(|c| c.claim == claim).collect()
    }

    #[test]
    fn claims_pair_the_trials_that_differ_in_one_axis_and_judge_their_difference() {
        let zero_shot = answered(&crate::task::baselines::text_prompt_zero_shot(20), 60);
        let trials = vec![
            trial("base", &[], 120, vec![]),
            // Soft prompt: far behind (the placement means nothing to it, so it pairs).
            trial("soft", &[(Axis::Integration, "soft_prompt"), (Axis::Placement, "-")], 80, vec![]),
            // No Perceiver: 2 questions ahead, within the margin.
            trial("lat0", &[(Axis::Latents, "0")], 122, vec![]),
            // Full: far ahead of Enc, so Enc does not come close.
            trial("full", &[(Axis::Strategy, "full")], 160, vec![]),
            trial(
                "text",
                &[
                    (Axis::Integration, "text_prompt"),
                    (Axis::Placement, "-"),
                    (Axis::Latents, "-"),
                    (Axis::Strategy, "lora"),
                ],
                118,
                vec![zero_shot],
            ),
        ];
        let all = check(&trials);
        let one = |claim: &str| {
            let found = find(&all, claim);
            assert_eq!(found.len(), 1, "{claim}: {found:?}");
            found[0].clone()
        };
        let c = one(CROSS_VS_SOFT);
        assert_eq!((c.compared.as_str(), c.verdict), ("base vs soft", Some(Verdict::Supported)));
        assert!((c.paired.unwrap().difference - 0.2).abs() < 1e-12);
        assert_eq!(one(PERCEIVER).verdict, Some(Verdict::Supported), "-0.01 lies within the margin");
        assert_eq!(one(ENC_VS_FULL).verdict, Some(Verdict::Contradicted));
        let lora = one(LORA_VS_FULL);
        assert_eq!((lora.verdict, lora.paired.is_none()), (None, true), "no LoRA trial: not checked");
        // Against the finetuned TextPrompt (+0.01: inconclusive) and its zero-shot (+0.30).
        let text = find(&all, VS_TEXT);
        assert_eq!(text.len(), 2, "{text:?}");
        assert!(text[0].compared.starts_with("base vs text (finetuned)"), "{}", text[0].compared);
        assert_eq!(text[0].verdict, Some(Verdict::Inconclusive));
        assert!(text[1].compared.contains("no finetuning"), "{}", text[1].compared);
        assert_eq!(text[1].verdict, Some(Verdict::Supported));
        assert_eq!(one(VS_TEXT_GROWS).verdict, None, "one history length only");
    }

    #[test]
    fn the_lead_over_text_prompt_grows_only_when_the_leads_do_not_overlap() {
        let tp = [
            (Axis::Integration, "text_prompt"),
            (Axis::Placement, "-"),
            (Axis::Latents, "-"),
            (Axis::Strategy, "lora"),
        ];
        let at = |h: &'static str| [tp[0], tp[1], tp[2], tp[3], (Axis::History, h)];
        let mut trials = vec![
            trial("u20", &[(Axis::History, "20")], 110, vec![]),
            trial("t20", &at("20"), 100, vec![]),
            trial("u50", &[(Axis::History, "50")], 170, vec![]),
            trial("t50", &at("50"), 90, vec![]),
        ];
        // Questions differ between history lengths (their labels do).
        for t in &mut trials[2..] {
            t.results[0].questions = "other".into();
        }
        let all = check(&trials);
        let grows = find(&all, VS_TEXT_GROWS);
        assert_eq!(grows[0].verdict, Some(Verdict::Supported), "{grows:?}");
        // The same lead at both lengths: inconclusive.
        trials[2].results[0] = answered(crate::task::evaluate::FINETUNED, 100);
        trials[2].results[0].questions = "other".into();
        let all = check(&trials);
        assert_eq!(find(&all, VS_TEXT_GROWS)[0].verdict, Some(Verdict::Inconclusive));
    }
}
