//! Leave-last-out splits, fixed-length training windows, evaluation examples,
//! and per-rank sharding for data-parallel workers.
//!
//! Every index here is an interaction index into a [`Store`] (its arrays are
//! ordered by user, then time).

use super::store::Store;
use crate::rng::SplitMix64;
use std::ops::Range;

/// Which held-out interaction an evaluation example targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// The second-to-last interaction of each user.
    Valid,
    /// The last interaction of each user.
    Test,
}

/// A user's interactions by role under leave-last-out: the last one is the
/// test target, the one before it the validation target, the rest train.
/// Users with 2 interactions have no validation target; with 1, only training.
#[derive(Debug, Clone, PartialEq)]
pub struct UserSplit {
    pub train: Range<usize>,
    pub valid: Option<usize>,
    pub test: Option<usize>,
}

pub fn leave_last_out(r: Range<usize>) -> UserSplit {
    let n = r.len();
    match n {
        0 | 1 => UserSplit { train: r, valid: None, test: None },
        2 => UserSplit { train: r.start..r.start + 1, valid: None, test: Some(r.start + 1) },
        _ => UserSplit { train: r.start..r.end - 2, valid: Some(r.end - 2), test: Some(r.end - 1) },
    }
}

/// Training windows of `length` inputs: a window covers interactions
/// `start..end` (at most `length + 1` of them), the model reads
/// `start..end-1` and predicts `start+1..end`, one step ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WindowSpec {
    pub length: usize,
    pub stride: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub user: u32,
    pub start: usize,
    pub end: usize,
}

/// Windows over each user's training part, placed from its end backwards every
/// `stride` interactions (so the most recent history is always a full window)
/// until one reaches the first interaction. Users with fewer than 2 training
/// interactions give none. Ordered by user, then start.
pub fn training_windows(store: &Store, spec: WindowSpec) -> Vec<Window> {
    assert!(spec.length >= 1 && spec.stride >= 1, "window length and stride must be positive");
    let mut out = Vec::new();
    for u in 0..store.users() {
        let train = leave_last_out(store.range(u)).train;
        if train.len() < 2 {
            continue;
        }
        let first = out.len();
        let mut end = train.end;
        loop {
            let start = end.saturating_sub(spec.length + 1).max(train.start);
            out.push(Window { user: u as u32, start, end });
            if start == train.start || end < train.start + 2 + spec.stride {
                break;
            }
            end -= spec.stride;
        }
        out[first..].reverse();
    }
    out
}

/// One evaluation case: up to `length` interactions of history before the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalCase {
    pub user: u32,
    pub history: Range<usize>,
    pub target: usize,
}

/// The validation or test case of every user that has one (and some history).
pub fn eval_cases(store: &Store, split: Split, length: usize) -> Vec<EvalCase> {
    let mut out = Vec::new();
    for u in 0..store.users() {
        let r = store.range(u);
        let s = leave_last_out(r.clone());
        let Some(target) = (match split {
            Split::Valid => s.valid,
            Split::Test => s.test,
        }) else {
            continue;
        };
        let start = target.saturating_sub(length).max(r.start);
        if start < target {
            out.push(EvalCase { user: u as u32, history: start..target, target });
        }
    }
    out
}

/// How one rank of a data-parallel group walks through `n` examples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sharding {
    pub world: usize,
    pub rank: usize,
    pub batch_size: usize,
    pub seed: u64,
    pub shuffle: bool,
}

/// Number of batches every rank takes per epoch: the same on all ranks, so
/// their collective calls line up.
pub fn steps_per_epoch(n: usize, world: usize, batch_size: usize) -> usize {
    n.div_ceil(world).div_ceil(batch_size)
}

/// This rank's batches for `epoch`: example indices `0..n`, shuffled with
/// (seed, epoch) identically on every rank, dealt round-robin so each example
/// is used exactly once per epoch across the group. All ranks get
/// [`steps_per_epoch`] batches; where `n` does not divide evenly a rank's last
/// batch is one example short, or empty, and the trainer weights each rank's
/// loss by its batch size.
pub fn epoch_batches(n: usize, s: Sharding, epoch: u64) -> Vec<Vec<usize>> {
    assert!(s.world >= 1 && s.rank < s.world && s.batch_size >= 1);
    let mut order: Vec<usize> = (0..n).collect();
    if s.shuffle {
        SplitMix64::for_stream(s.seed, epoch).shuffle(&mut order);
    }
    let mine: Vec<usize> = order.into_iter().skip(s.rank).step_by(s.world).collect();
    let steps = steps_per_epoch(n, s.world, s.batch_size);
    (0..steps).map(|b| mine.iter().skip(b * s.batch_size).take(s.batch_size).copied().collect()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leave_last_out_holds_out_the_last_two() {
        assert_eq!(leave_last_out(10..15), UserSplit { train: 10..13, valid: Some(13), test: Some(14) });
        assert_eq!(leave_last_out(0..2), UserSplit { train: 0..1, valid: None, test: Some(1) });
        assert_eq!(leave_last_out(4..5), UserSplit { train: 4..5, valid: None, test: None });
    }

    #[test]
    fn sharding_covers_every_example_once_with_equal_step_counts() {
        for (n, world, bs) in [(10, 3, 2), (7, 2, 4), (100, 4, 8), (3, 4, 2), (64, 2, 32)] {
            let mut seen = vec![0; n];
            let steps = steps_per_epoch(n, world, bs);
            for rank in 0..world {
                let b = epoch_batches(n, Sharding { world, rank, batch_size: bs, seed: 1, shuffle: true }, 0);
                assert_eq!(b.len(), steps, "n={n} world={world}");
                for batch in &b {
                    assert!(batch.len() <= bs);
                    for &i in batch {
                        seen[i] += 1;
                    }
                }
            }
            assert!(seen.iter().all(|&c| c == 1), "n={n} world={world}: {seen:?}");
        }
    }

    #[test]
    fn epochs_reshuffle_and_ranks_agree_on_the_order() {
        let s = Sharding { world: 2, rank: 0, batch_size: 4, seed: 9, shuffle: true };
        assert_ne!(epoch_batches(40, s, 0), epoch_batches(40, s, 1));
        assert_eq!(epoch_batches(40, s, 3), epoch_batches(40, s, 3));
        let plain = epoch_batches(6, Sharding { shuffle: false, ..s }, 0);
        assert_eq!(plain, vec![vec![0, 2, 4]]);
    }
}
