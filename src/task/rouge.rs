//! ROUGE-1, ROUGE-2 and ROUGE-L F1 for generated reviews.
//!
//! Tokenization: lower-case, every character that is not a letter or digit
//! (Unicode) is a separator, no stemming and no stop-word removal; so
//! `"Great movie!!"` and `"great, MOVIE"` are the same two tokens. ROUGE-N
//! counts n-gram matches clipped by the reference's counts; ROUGE-L uses the
//! longest common subsequence. Precision = matches / candidate length,
//! recall = matches / reference length, F1 their harmonic mean (0 when
//! either is 0). Corpus figures are the mean of the per-example F1.

use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct Rouge {
    pub rouge1: f64,
    pub rouge2: f64,
    pub rouge_l: f64,
}

pub fn tokens(text: &str) -> Vec<String> {
    text.to_lowercase().split(|c: char| !c.is_alphanumeric()).filter(|t| !t.is_empty()).map(str::to_string).collect()
}

fn f1(matches: usize, cand: usize, refr: usize) -> f64 {
    if matches == 0 || cand == 0 || refr == 0 {
        return 0.0;
    }
    let p = matches as f64 / cand as f64;
    let r = matches as f64 / refr as f64;
    2.0 * p * r / (p + r)
}

fn ngrams(t: &[String], n: usize) -> HashMap<&[String], usize> {
    let mut m = HashMap::new();
    for g in t.windows(n) {
        *m.entry(g).or_insert(0) += 1;
    }
    m
}

/// ROUGE-N F1 over token lists.
pub fn rouge_n(cand: &[String], refr: &[String], n: usize) -> f64 {
    let (c, r) = (ngrams(cand, n), ngrams(refr, n));
    let matches: usize = c.iter().map(|(g, k)| (*k).min(r.get(g).copied().unwrap_or(0))).sum();
    f1(matches, cand.len().saturating_sub(n - 1), refr.len().saturating_sub(n - 1))
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

pub fn score(candidate: &str, reference: &str) -> Rouge {
    let (c, r) = (tokens(candidate), tokens(reference));
    Rouge { rouge1: rouge_n(&c, &r, 1), rouge2: rouge_n(&c, &r, 2), rouge_l: f1(lcs(&c, &r), c.len(), r.len()) }
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
        assert_eq!(tokens("Great movie!! It's 10/10"), ["great", "movie", "it", "s", "10", "10"]);
        let s = score("Great movie!!", "great, MOVIE");
        close(s.rouge1, 1.0);
        close(s.rouge2, 1.0);
        close(s.rouge_l, 1.0);
        assert_eq!(score("", "anything at all"), Rouge::default());
        assert_eq!(score("!!", ""), Rouge::default());
        close(mean(&[score("a", "a"), score("b", "a")]).rouge1, 0.5);
    }
}
