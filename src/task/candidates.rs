//! Ranked answers and next-item candidates: how a ranking is ordered, and
//! which items a next-item question offers.

use crate::rng::SplitMix64;

/// Best first; ties go to the smaller id, so the order is reproducible.
pub fn rank(mut v: Vec<(usize, f64)>) -> Vec<(usize, f64)> {
    v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    v
}

/// Next-item candidates for a question: the held-out item and `n - 1`
/// negatives drawn uniformly from items neither in `seen` (everything the
/// user consumed before) nor the target, by a generator seeded from `seed`
/// and the target, returned in item order.
pub fn next_item_candidates(items: usize, seen: &[usize], target: usize, n: usize, seed: u64) -> Vec<usize> {
    let seen: std::collections::HashSet<usize> = seen.iter().copied().chain([target]).collect();
    let available = items.saturating_sub(seen.len());
    let want = (n.max(1) - 1).min(available);
    let mut rng = SplitMix64::new(seed ^ (target as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut out: std::collections::BTreeSet<usize> = [target].into();
    while out.len() < want + 1 {
        let i = (rng.next_u64() % items as u64) as usize;
        if !seen.contains(&i) {
            out.insert(i);
        }
    }
    out.into_iter().collect()
}
