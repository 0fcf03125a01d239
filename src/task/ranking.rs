//! Next-item ranking metrics over all items: Recall@K and NDCG@10, and the
//! popularity baseline scored by the same code.

use crate::data::split::leave_last_out;
use crate::data::store::Store;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// 0-based rank of each row's target among all items by score, descending;
/// ties go to the smaller item id. `scores` `(batch, items)`, `targets` `(batch)`.
pub fn ranks(scores: &Tensor, targets: &Tensor) -> Vec<i64> {
    let scores = scores.to_kind(Kind::Float);
    let target_scores = scores.gather(1, &targets.unsqueeze(1), false);
    let higher = scores.gt_tensor(&target_scores).sum_dim_intlist(1, false, Kind::Int64);
    let items = Tensor::arange(scores.size()[1], (Kind::Int64, scores.device())).unsqueeze(0);
    let tied_before = scores
        .eq_tensor(&target_scores)
        .logical_and(&items.lt_tensor(&targets.unsqueeze(1)))
        .sum_dim_intlist(1, false, Kind::Int64);
    Vec::<i64>::try_from((higher + tied_before).to_device(tch::Device::Cpu)).expect("int64 ranks")
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RankingMetrics {
    pub cases: usize,
    #[serde(rename = "recall@1")]
    pub recall_1: f64,
    #[serde(rename = "recall@5")]
    pub recall_5: f64,
    #[serde(rename = "recall@10")]
    pub recall_10: f64,
    #[serde(rename = "ndcg@10")]
    pub ndcg_10: f64,
}

pub fn summarize(ranks: &[i64]) -> RankingMetrics {
    let n = ranks.len().max(1) as f64;
    let recall = |k: i64| ranks.iter().filter(|&&r| r < k).count() as f64 / n;
    let ndcg = ranks.iter().filter(|&&r| r < 10).map(|&r| 1.0 / ((r + 2) as f64).log2()).sum::<f64>() / n;
    RankingMetrics {
        cases: ranks.len(),
        recall_1: recall(1),
        recall_5: recall(5),
        recall_10: recall(10),
        ndcg_10: ndcg,
    }
}

/// Each item's interaction count over every user's training part.
pub fn popularity_scores(store: &Store) -> Tensor {
    let mut counts = vec![0f32; store.manifest.counts.items];
    for u in 0..store.users() {
        for k in leave_last_out(store.range(u)).train {
            counts[store.arrays.item[k] as usize] += 1.0;
        }
    }
    Tensor::from_slice(&counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_count_higher_scores_and_earlier_ties() {
        let s = Tensor::from_slice(&[0.1f32, 0.9, 0.5, 0.9, 0.2, 0.3]).view([2, 3]);
        // Row 0: target item 2 (0.5), one higher → rank 1. Row 1: target 2 (0.3); 0.9 higher → 1.
        assert_eq!(ranks(&s, &Tensor::from_slice(&[2i64, 2])), vec![1, 1]);
        // Row 0 target item 1 (0.9): best → 0. Row 1 target 0 (0.9): best → 0.
        assert_eq!(ranks(&s, &Tensor::from_slice(&[1i64, 0])), vec![0, 0]);
        let tie = Tensor::from_slice(&[1.0f32, 1.0, 1.0]).view([1, 3]);
        assert_eq!(ranks(&tie, &Tensor::from_slice(&[2i64])), vec![2]);
    }

    #[test]
    fn recall_and_ndcg_by_hand() {
        let m = summarize(&[0, 3, 9, 10]);
        assert_eq!((m.recall_1, m.recall_5, m.recall_10), (0.25, 0.5, 0.75));
        let want = (1.0 + 1.0 / 5f64.log2() + 1.0 / 11f64.log2()) / 4.0;
        assert!((m.ndcg_10 - want).abs() < 1e-12);
    }
}
