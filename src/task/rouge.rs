//! ROUGE-1, ROUGE-2 and ROUGE-L for generated reviews, as Google's
//! `rouge-score` computes them (the package published ROUGE figures come
//! from), so uorch's figures can be set beside a paper's.
//!
//! Tokenization, rouge-score's: lower-case (Unicode), every run of
//! characters other than ASCII `a-z` and `0-9` is a separator (so `"café"`
//! is `caf`, and `"Great movie!!"` and `"great, MOVIE"` are the same two
//! tokens); with the stemmer, tokens longer than 3 characters are Porter
//! stemmed as NLTK does ([`super::porter`]). No stop words are removed.
//! ROUGE-N counts n-gram matches clipped by the reference's counts; ROUGE-L
//! uses the longest common subsequence. Precision = matches / candidate
//! n-grams, recall = matches / reference n-grams, F1 their harmonic mean (0
//! when both are 0). Corpus figures are the mean of the per-example F1.

use std::collections::HashMap;

/// F1 of each ROUGE variant.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct Rouge {
    pub rouge1: f64,
    pub rouge2: f64,
    pub rouge_l: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct Prf {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

/// Precision, recall and F1 of each ROUGE variant.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct Detailed {
    pub rouge1: Prf,
    pub rouge2: Prf,
    pub rouge_l: Prf,
}

impl Detailed {
    pub fn f1(&self) -> Rouge {
        Rouge { rouge1: self.rouge1.f1, rouge2: self.rouge2.f1, rouge_l: self.rouge_l.f1 }
    }
}

/// rouge-score's tokens of `text`, Porter stemmed when `stemmer`.
pub fn tokens(text: &str, stemmer: bool) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit()))
        .filter(|t| !t.is_empty())
        .map(|t| if stemmer && t.len() > 3 { super::porter::stem(t) } else { t.to_string() })
        .collect()
}

fn prf(matches: usize, cand: usize, refr: usize) -> Prf {
    let precision = matches as f64 / cand.max(1) as f64;
    let recall = matches as f64 / refr.max(1) as f64;
    let f1 = if precision + recall > 0.0 { 2.0 * precision * recall / (precision + recall) } else { 0.0 };
    Prf { precision, recall, f1 }
}

fn ngrams(t: &[String], n: usize) -> HashMap<&[String], usize> {
    let mut m = HashMap::new();
    for g in t.windows(n) {
        *m.entry(g).or_insert(0) += 1;
    }
    m
}

/// ROUGE-N over token lists.
pub fn rouge_n(cand: &[String], refr: &[String], n: usize) -> Prf {
    let (c, r) = (ngrams(cand, n), ngrams(refr, n));
    let matches: usize = c.iter().map(|(g, k)| (*k).min(r.get(g).copied().unwrap_or(0))).sum();
    prf(matches, cand.len().saturating_sub(n - 1), refr.len().saturating_sub(n - 1))
}

/// Length of the longest common subsequence.
fn lcs(a: &[String], b: &[String]) -> usize {
    let mut row = vec![0usize; b.len() + 1];
    for x in a {
        let mut diag = 0;
        for (j, y) in b.iter().enumerate() {
            let up = row[j + 1];
            row[j + 1] = if x == y { diag + 1 } else { up.max(row[j]) };
            diag = up;
        }
    }
    row[b.len()]
}

/// ROUGE-L over token lists (all 0 when either is empty).
pub fn rouge_l(cand: &[String], refr: &[String]) -> Prf {
    if cand.is_empty() || refr.is_empty() {
        return Prf::default();
    }
    prf(lcs(cand, refr), cand.len(), refr.len())
}

/// Every variant's precision, recall and F1 of `candidate` against `reference`.
pub fn detailed(candidate: &str, reference: &str, stemmer: bool) -> Detailed {
    let (c, r) = (tokens(candidate, stemmer), tokens(reference, stemmer));
    Detailed { rouge1: rouge_n(&c, &r, 1), rouge2: rouge_n(&c, &r, 2), rouge_l: rouge_l(&c, &r) }
}

/// The F1s evaluation reports (no stemmer).
pub fn score(candidate: &str, reference: &str) -> Rouge {
    detailed(candidate, reference, false).f1()
}

/// Mean of per-example precision, recall and F1 of every variant.
pub fn mean_detailed(scores: &[Detailed]) -> Detailed {
    let n = scores.len().max(1) as f64;
    let avg = |f: &dyn Fn(&Detailed) -> Prf| {
        let sum = scores.iter().map(f).fold((0.0, 0.0, 0.0), |a, p| (a.0 + p.precision, a.1 + p.recall, a.2 + p.f1));
        Prf { precision: sum.0 / n, recall: sum.1 / n, f1: sum.2 / n }
    };
    Detailed { rouge1: avg(&|d| d.rouge1), rouge2: avg(&|d| d.rouge2), rouge_l: avg(&|d| d.rouge_l) }
}

/// Mean of per-example scores.
pub fn mean(scores: &[Rouge]) -> Rouge {
    let n = scores.len().max(1) as f64;
    let s = |f: fn(&Rouge) -> f64| scores.iter().map(f).sum::<f64>() / n;
    Rouge { rouge1: s(|r| r.rouge1), rouge2: s(|r| r.rouge2), rouge_l: s(|r| r.rouge_l) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    }

    #[test]
    fn equal_lengths_counted_by_hand() {
        // the cat sat on the mat / the cat is on the mat:
        // unigrams the x2, cat, on, mat match: 5 of 6 each way;
        // bigrams the-cat, on-the, the-mat: 3 of 5; LCS "the cat on the mat": 5 of 6.
        let s = score("the cat sat on the mat", "the cat is on the mat");
        close(s.rouge1, 5.0 / 6.0);
        close(s.rouge2, 3.0 / 5.0);
        close(s.rouge_l, 5.0 / 6.0);
    }

    #[test]
    fn clipped_counts_and_unequal_lengths_counted_by_hand() {
        // [a a b] / [a b c d]: unigram matches min(2,1) + 1 = 2 → P 2/3, R 2/4, F1 4/7;
        // bigrams {a-a, a-b} / {a-b, b-c, c-d}: 1 → P 1/2, R 1/3, F1 2/5; LCS "a b" = 2 → 4/7.
        let s = score("A a b", "a b c d");
        close(s.rouge1, 4.0 / 7.0);
        close(s.rouge2, 2.0 / 5.0);
        close(s.rouge_l, 4.0 / 7.0);
        // LCS is order-aware where unigrams are not: [b a] / [a b] → unigram 1, LCS 1/2.
        let s = score("b a", "a b");
        close(s.rouge1, 1.0);
        close(s.rouge2, 0.0);
        close(s.rouge_l, 0.5);
    }

    #[test]
    fn case_punctuation_and_empty_text() {
        assert_eq!(tokens("Great movie!! It's 10/10", false), ["great", "movie", "it", "s", "10", "10"]);
        assert_eq!(tokens("Café naïve", false), ["caf", "na", "ve"]);
        assert_eq!(tokens("running cats ran", true), ["run", "cat", "ran"]);
        let s = score("Great movie!!", "great, MOVIE");
        close(s.rouge1, 1.0);
        close(s.rouge2, 1.0);
        close(s.rouge_l, 1.0);
        assert_eq!(score("", "anything at all"), Rouge::default());
        assert_eq!(score("!!", ""), Rouge::default());
        close(mean(&[score("a", "a"), score("b", "a")]).rouge1, 0.5);
    }
}
