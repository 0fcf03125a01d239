//! Data parallelism over a process group: parameters broadcast from rank 0 at
//! the start, gradients flattened into buckets and summed across ranks in as
//! few collectives as the bucket size allows.

use super::step_time::{phase, Phase};
use crate::dist::{ProcessGroup, ReduceOp};
use anyhow::Result;
use tch::{Kind, Tensor};

/// One f32 vector of the bucket's tensors (as `pick` chooses them from each parameter).
fn flatten(params: &[Tensor], bucket: &[usize], pick: impl Fn(&Tensor) -> Tensor) -> Tensor {
    Tensor::cat(&bucket.iter().map(|&i| pick(&params[i]).to_kind(Kind::Float).reshape([-1])).collect::<Vec<_>>(), 0)
}

/// Copy a flat vector back into the bucket's tensors (as `pick` chooses them).
fn unflatten(flat: &Tensor, params: &[Tensor], bucket: &[usize], pick: impl Fn(&Tensor) -> Tensor) {
    let mut offset = 0;
    for &i in bucket {
        let n = params[i].numel() as i64;
        pick(&params[i]).copy_(&flat.narrow(0, offset, n).view_as(&params[i]));
        offset += n;
    }
}

/// Copy rank 0's parameters to every rank, one flattened bucket at a time.
pub fn broadcast_parameters(pg: &ProcessGroup, params: &[Tensor], buckets: &[Vec<usize>]) -> Result<()> {
    if pg.size == 1 {
        return Ok(());
    }
    tch::no_grad(|| -> Result<()> {
        for bucket in buckets {
            let flat = flatten(params, bucket, Tensor::shallow_clone);
            pg.broadcast(&[&flat], 0)?.wait()?;
            unflatten(&flat, params, bucket, Tensor::shallow_clone);
        }
        Ok(())
    })
}

/// Groups of parameter indices whose gradients fit in `bucket_bytes` together
/// (a parameter larger than a bucket gets one of its own).
pub fn buckets(params: &[Tensor], bucket_bytes: usize) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut size = 0usize;
    for (i, p) in params.iter().enumerate() {
        let bytes = p.numel() * 4;
        if out.is_empty() || size + bytes > bucket_bytes {
            out.push(Vec::new());
            size = 0;
        }
        out.last_mut().expect("a bucket").push(i);
        size += bytes;
    }
    out
}

/// Give every parameter a (zero) gradient, so a rank that had no data this
/// step still takes part in the gradient all-reduce.
pub fn ensure_gradients(params: &[Tensor]) {
    if params.iter().any(|p| !p.grad().defined()) {
        let zero = params
            .iter()
            .map(|p| p.sum(Kind::Float) * 0.0)
            .fold(Tensor::zeros([], (Kind::Float, params[0].device())), |a, b| a + b);
        zero.backward();
    }
}

/// Sum every parameter's gradient across ranks (in place), bucket by bucket.
/// Every parameter must have a gradient ([`ensure_gradients`]).
pub fn all_reduce_gradients(pg: &ProcessGroup, params: &[Tensor], buckets: &[Vec<usize>]) -> Result<()> {
    if pg.size == 1 {
        return Ok(());
    }
    let _waiting = phase(Phase::Communication);
    tch::no_grad(|| -> Result<()> {
        for bucket in buckets {
            let flat = flatten(params, bucket, Tensor::grad);
            pg.all_reduce(&[&flat], ReduceOp::Sum)?.wait()?;
            unflatten(&flat, params, bucket, Tensor::grad);
        }
        Ok(())
    })
}

/// The end of a data-parallel step: gradients summed across ranks, clipped to
/// `max_norm`, AdamW applied at `lr`, gradients zeroed. `named` are the same
/// tensors as `params`, with names. Returns the gradient norm before clipping.
pub fn apply_gradients(
    group: Option<&ProcessGroup>,
    params: &[Tensor],
    named: &[(String, Tensor)],
    buckets: &[Vec<usize>],
    max_norm: f64,
    opt: &mut super::adamw::AdamW,
    lr: f64,
) -> Result<f64> {
    // One rank has nothing to sum, and no peer to keep in step with.
    if let Some(pg) = group.filter(|g| g.size > 1) {
        ensure_gradients(params);
        all_reduce_gradients(pg, params, buckets)?;
    }
    let _updating = phase(Phase::Optimizer);
    let norm = clip_grad_norm(params, max_norm);
    opt.step(named, lr)?;
    for p in params {
        let mut g = p.grad();
        if g.defined() {
            let _ = g.zero_();
        }
    }
    Ok(norm)
}

/// Scale gradients so their global L2 norm is at most `max_norm`; returns the
/// norm before clipping.
pub fn clip_grad_norm(params: &[Tensor], max_norm: f64) -> f64 {
    tch::no_grad(|| {
        let sq: Vec<Tensor> = params
            .iter()
            .map(|p| p.grad())
            .filter(|g| g.defined())
            .map(|g| g.to_kind(Kind::Float).square().sum(Kind::Float))
            .collect();
        if sq.is_empty() {
            return 0.0;
        }
        let norm = Tensor::stack(&sq, 0).sum(Kind::Float).sqrt().double_value(&[]);
        if max_norm > 0.0 && norm > max_norm {
            let scale = max_norm / (norm + 1e-6);
            for p in params {
                let mut g = p.grad();
                if g.defined() {
                    let _ = g.g_mul_scalar_(scale);
                }
            }
        }
        norm
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_respect_the_size_and_keep_order() {
        let p = |n: i64| Tensor::zeros([n], (Kind::Float, tch::Device::Cpu));
        let params = vec![p(10), p(10), p(30), p(5)];
        assert_eq!(buckets(&params, 80), vec![vec![0, 1], vec![2], vec![3]]);
        assert_eq!(buckets(&params, 1 << 20), vec![vec![0, 1, 2, 3]]);
    }

    #[test]
    fn clipping_scales_to_the_max_norm() {
        let w = Tensor::from_slice(&[0.0f32, 0.0]).set_requires_grad(true);
        (&w * Tensor::from_slice(&[3.0f32, 4.0])).sum(Kind::Float).backward();
        let norm = clip_grad_norm(&[w.shallow_clone()], 1.0);
        assert!((norm - 5.0).abs() < 1e-6);
        let g = Vec::<f32>::try_from(&w.grad()).unwrap();
        assert!((g[0] - 0.6).abs() < 1e-5 && (g[1] - 0.8).abs() < 1e-5, "{g:?}");
    }
}
