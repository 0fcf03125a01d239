//! How sure a result is: 95% percentile-bootstrap intervals of a metric's
//! mean over the test questions, and paired comparisons of two models asked
//! the same questions (a paired bootstrap of the difference, and McNemar's
//! exact test for 0/1 metrics such as accuracy and Recall@K).
//!
//! The resampling is seeded, so a result file and its intervals are the same
//! on every rerun.

use crate::rng::SplitMix64;
use serde::{Deserialize, Serialize};

/// Resamples per interval: enough that the 2.5% and 97.5% quantiles move by
/// well under one question's weight on a few hundred questions.
pub const RESAMPLES: usize = 2000;
const SEED: u64 = 0x0b00_7579_a9c1;

/// A 95% interval `[low, high]`.
pub type Interval = [f64; 2];

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// The `q` quantile of sorted values (nearest rank).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// Means of `resamples` resamples (with replacement) of `n` cases, where
/// `value(i)` is case i's value.
fn resampled_means(n: usize, resamples: usize, value: impl Fn(usize) -> f64) -> Vec<f64> {
    let mut rng = SplitMix64::for_stream(SEED, n as u64);
    let mut means: Vec<f64> =
        (0..resamples).map(|_| (0..n).map(|_| value(rng.below(n as u64) as usize)).sum::<f64>() / n as f64).collect();
    means.sort_by(f64::total_cmp);
    means
}

/// The 95% percentile-bootstrap interval of the mean of `values` (one per
/// question); a single point for fewer than two values.
pub fn bootstrap_ci(values: &[f64]) -> Interval {
    if values.len() < 2 {
        let m = mean(values);
        return [m, m];
    }
    let means = resampled_means(values.len(), RESAMPLES, |i| values[i]);
    [quantile(&means, 0.025), quantile(&means, 0.975)]
}

/// Two models on the same questions, `a` minus `b`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Paired {
    pub cases: usize,
    /// Mean of `a - b`.
    pub difference: f64,
    /// 95% paired-bootstrap interval of the difference.
    pub ci: Interval,
    /// Questions `a` got and `b` missed, and the reverse (0/1 metrics only).
    pub a_only: Option<usize>,
    pub b_only: Option<usize>,
    /// McNemar's exact two-sided p-value (0/1 metrics), otherwise the
    /// two-sided bootstrap p-value of a zero difference.
    pub p_value: f64,
}

impl Paired {
    /// Whether the interval of the difference leaves out zero.
    pub fn significant(&self) -> bool {
        self.ci[0] > 0.0 || self.ci[1] < 0.0
    }
}

/// Compares per-question values of two models (same questions, same order).
pub fn paired(a: &[f64], b: &[f64]) -> Paired {
    assert_eq!(a.len(), b.len(), "paired values need the same questions");
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    let ci = bootstrap_ci(&d);
    let binary = a.iter().chain(b).all(|&x| x == 0.0 || x == 1.0);
    let (a_only, b_only, p_value) = if binary {
        let ao = a.iter().zip(b).filter(|(x, y)| **x > **y).count();
        let bo = a.iter().zip(b).filter(|(x, y)| **x < **y).count();
        (Some(ao), Some(bo), mcnemar_exact(ao, bo))
    } else {
        let means = if d.len() < 2 { vec![mean(&d)] } else { resampled_means(d.len(), RESAMPLES, |i| d[i]) };
        let below = means.iter().filter(|&&m| m <= 0.0).count() as f64 / means.len() as f64;
        let above = means.iter().filter(|&&m| m >= 0.0).count() as f64 / means.len() as f64;
        (None, None, (2.0 * below.min(above)).min(1.0))
    };
    Paired { cases: a.len(), difference: mean(&d), ci, a_only, b_only, p_value }
}

/// McNemar's exact test: with `b` and `c` discordant pairs, the two-sided
/// p-value of the binomial test of `min(b, c)` successes in `b + c` trials
/// at one half.
pub fn mcnemar_exact(b: usize, c: usize) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    // log C(n, k) - n log 2, summed in probability space for k = 0..=min(b, c).
    let ln_choose = |k: usize| -> f64 { (1..=k).map(|i| ((n - k + i) as f64 / i as f64).ln()).sum() };
    let tail: f64 = (0..=b.min(c)).map(|k| (ln_choose(k) - n as f64 * std::f64::consts::LN_2).exp()).sum();
    (2.0 * tail).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` questions of which `correct` are right, in a scattered order.
    fn binary(n: usize, correct: usize) -> Vec<f64> {
        let mut v: Vec<f64> = (0..n).map(|i| (i < correct) as u8 as f64).collect();
        SplitMix64::new(7).shuffle(&mut v);
        v
    }

    #[test]
    fn bootstrap_interval_matches_the_closed_form_binomial_interval() {
        // The bootstrap distribution of a proportion's mean has variance
        // p(1-p)/n and is close to normal for n p (1-p) well above 10, so its
        // 2.5/97.5% quantiles are the Wald interval p ± 1.96 sqrt(p(1-p)/n),
        // up to one question's step (1/n) of discreteness.
        for (n, correct) in [(400, 120), (1000, 500), (250, 40)] {
            let p = correct as f64 / n as f64;
            let half = 1.959_964 * (p * (1.0 - p) / n as f64).sqrt();
            let [lo, hi] = bootstrap_ci(&binary(n, correct));
            let tol = 2.5 / n as f64;
            assert!((lo - (p - half)).abs() < tol, "n {n}: low {lo} vs {}", p - half);
            assert!((hi - (p + half)).abs() < tol, "n {n}: high {hi} vs {}", p + half);
        }
    }

    #[test]
    fn bootstrap_interval_is_reproducible_and_a_point_when_nothing_varies() {
        let v = binary(300, 100);
        assert_eq!(bootstrap_ci(&v), bootstrap_ci(&v));
        assert_eq!(bootstrap_ci(&[1.0; 50]), [1.0, 1.0]);
        assert_eq!(bootstrap_ci(&[0.25]), [0.25, 0.25]);
    }

    #[test]
    fn mcnemar_exact_p_values_by_hand() {
        // b = 0, c = 5: 2 * (1/2)^5.
        assert!((mcnemar_exact(0, 5) - 2.0 / 32.0).abs() < 1e-12);
        // b = 1, c = 4: 2 * (1 + 5) / 32.
        assert!((mcnemar_exact(1, 4) - 12.0 / 32.0).abs() < 1e-12);
        // Balanced discordance is no evidence at all.
        assert_eq!(mcnemar_exact(3, 3), 1.0);
        assert_eq!(mcnemar_exact(0, 0), 1.0);
        // b = 2, c = 10: 2 * (1 + 12 + 66) / 4096.
        assert!((mcnemar_exact(10, 2) - 158.0 / 4096.0).abs() < 1e-12);
    }

    #[test]
    fn paired_comparison_counts_discordant_questions() {
        // a right on 0..60, b right on 20..70 of 100: a_only 20, b_only 10.
        let a: Vec<f64> = (0..100).map(|i| (i < 60) as u8 as f64).collect();
        let b: Vec<f64> = (0..100).map(|i| (20..70).contains(&i) as u8 as f64).collect();
        let p = paired(&a, &b);
        assert_eq!((p.a_only, p.b_only), (Some(20), Some(10)));
        assert!((p.difference - 0.1).abs() < 1e-12);
        assert!((p.p_value - mcnemar_exact(20, 10)).abs() < 1e-12);
        assert!(p.ci[0] < 0.1 && p.ci[1] > 0.1, "{p:?}");
        // The same model against itself differs nowhere.
        let same = paired(&a, &a);
        assert_eq!((same.difference, same.ci, same.p_value), (0.0, [0.0, 0.0], 1.0));
        assert!(!same.significant());
    }

    #[test]
    fn paired_bootstrap_of_a_clear_difference_in_a_continuous_metric() {
        // ROUGE-like values: a beats b by 0.2 on every question, plus noise.
        let mut rng = SplitMix64::new(3);
        let b: Vec<f64> = (0..200).map(|_| (rng.below(1000) as f64) / 2000.0).collect();
        let a: Vec<f64> = b.iter().map(|x| x + 0.2 + (rng.below(100) as f64 - 50.0) / 1000.0).collect();
        let p = paired(&a, &b);
        assert_eq!(p.a_only, None);
        assert!(p.significant() && p.p_value < 0.01, "{p:?}");
        assert!(p.ci[0] > 0.18 && p.ci[1] < 0.22, "{p:?}");
    }
}
