//! Choosing an answer from a closed set: the log-likelihood of each candidate
//! continuation of a prompt. Prompts (of one length) run once as a batch; their
//! key/value cache is then shared by every candidate of each prompt.

use crate::model::llama::KvCache;
use tch::{Kind, Tensor};

/// A model step for scoring: `(ids (batch, seq), cache, rows)` → logits
/// `(batch, seq, vocab)`, where `rows[i]` is the prompt that batch row `i`
/// belongs to (so per-prompt inputs such as user embeddings can be gathered).
pub type Step<'a> = dyn FnMut(&Tensor, &mut KvCache, &Tensor) -> Tensor + 'a;

/// Sum of log-probabilities of each candidate's tokens after each prompt:
/// `prompts` `(batch, len)` → `batch` rows of `candidates.len()` scores.
pub fn score_candidates_batch(
    layers: usize,
    prompts: &Tensor,
    candidates: &[Vec<i64>],
    pad: i64,
    forward: &mut Step,
) -> Vec<Vec<f64>> {
    tch::no_grad(|| {
        let device = prompts.device();
        let b = prompts.size()[0];
        let c = candidates.len() as i64;
        let mut cache = KvCache::new(layers);
        let rows = Tensor::arange(b, (Kind::Int64, device));
        let first = forward(prompts, &mut cache, &rows).select(1, -1).log_softmax(-1, Kind::Float); // (b, vocab)
                                                                                                    // First tokens, from the prompts' last positions: (b, c).
        let firsts: Vec<i64> = candidates.iter().map(|cand| cand[0]).collect();
        let first_ids = Tensor::from_slice(&firsts).to_device(device).unsqueeze(0).expand([b, c], false);
        let first_lp = first.gather(1, &first_ids, false);
        let mut total = Vec::<f64>::try_from(first_lp.to_kind(Kind::Double).to_device(tch::Device::Cpu).reshape([-1]))
            .expect("scores");
        // Later tokens only for candidates longer than one token: run their
        // tokens but the last, and read each next token's log-probability.
        let long: Vec<usize> = (0..candidates.len()).filter(|&i| candidates[i].len() > 1).collect();
        if !long.is_empty() {
            let n = long.len() as i64;
            let len = long.iter().map(|&i| candidates[i].len() - 1).max().expect("non-empty");
            let mut ids = vec![pad; long.len() * len];
            let mut next = vec![pad; long.len() * len];
            for (r, &i) in long.iter().enumerate() {
                let cand = &candidates[i];
                ids[r * len..r * len + cand.len() - 1].copy_from_slice(&cand[..cand.len() - 1]);
                next[r * len..r * len + cand.len() - 1].copy_from_slice(&cand[1..]);
            }
            let per_prompt = |v: Vec<i64>| {
                Tensor::from_slice(&v)
                    .view([1, n, len as i64])
                    .expand([b, n, len as i64], false)
                    .reshape([b * n, len as i64])
                    .to_device(device)
            };
            let (ids, next) = (per_prompt(ids), per_prompt(next));
            let cand_rows = rows.repeat_interleave_self_int(n, 0, None);
            let mut rest = cache.select_rows(&cand_rows);
            let lp = forward(&ids, &mut rest, &cand_rows)
                .log_softmax(-1, Kind::Float)
                .gather(2, &next.unsqueeze(-1), false)
                .squeeze_dim(-1);
            let lp = Vec::<f64>::try_from(lp.to_kind(Kind::Double).to_device(tch::Device::Cpu).reshape([-1]))
                .expect("scores");
            for p in 0..b as usize {
                for (r, &i) in long.iter().enumerate() {
                    let row = p * long.len() + r;
                    total[p * candidates.len() + i] +=
                        lp[row * len..row * len + candidates[i].len() - 1].iter().sum::<f64>();
                }
            }
        }
        total.chunks(c as usize).map(|s| s.to_vec()).collect()
    })
}
