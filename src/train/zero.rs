//! Data-parallel optimizers for finetuning, by ZeRO stage (DeepSpeed's names):
//!
//! - **stage 0** ([`Replicated`]): DDP. Gradients are all-reduced bucket by
//!   bucket after backward; every rank keeps the full gradient and the full
//!   AdamW moments.
//! - **stage 1** ([`ShardedAdamW`] at [`ZeroStage::One`]): the full gradient
//!   stays on every rank until the step; then each bucket is reduce-scattered,
//!   so a rank receives the summed gradient of its shard only, and updates its
//!   shard of the weights and moments (1/world of the optimizer state).
//! - **stage 2** ([`ZeroStage::Two`]): as stage 1, but each bucket is
//!   reduce-scattered during backward, as soon as autograd has accumulated
//!   the last gradient in it (a post-accumulate-grad hook, csrc/grad_hooks.cpp),
//!   and its full gradients are freed at once. What a rank holds of the
//!   gradient is its shard plus about a bucket.
//!
//! The shards: the trainable parameters go into buckets of about
//! `dist.bucket_mb` (in reverse order, as backward reaches them); each bucket
//! is padded to a multiple of the world size, and rank r owns chunk r of every
//! bucket. Buckets are reduced in the same order on every rank (a bucket that
//! completes early waits for the ones before it), so the collectives match.
//! After the update every rank gets every chunk back into its parameters by an
//! all-gather per bucket into one vector per bucket that the parameters are
//! views of. f32 parameters are their own master weights (no copy); bf16
//! parameters get fp32 master shards, which keep the updates that bf16 would
//! round away. The
//! arithmetic is AdamW's, element by element, so the result matches the
//! unsharded optimizer.

use super::adamw::{decays, fusable, fused_update, written_out_update, AdamW, Hyper};
use super::ddp;
use super::step_time::{phase, Phase};
pub use crate::config::finetune::ZeroStage;
use crate::dist::{ProcessGroup, ReduceOp, Work};
use crate::ffi::grad_hooks::{self as ffi, uorch_grad_hook_set, uorch_grad_reset};
use anyhow::{anyhow, bail, Result};
use std::collections::BTreeMap;
use std::ffi::c_void;
use tch::{Kind, Tensor};

/// What the finetuning loop needs of its optimizer, whatever the stage.
pub trait DataParallelOptimizer {
    /// After each micro-batch's backward (every rank the same number of times;
    /// a rank with no data calls it with no gradients).
    fn after_backward(&mut self) -> Result<()>;
    /// The update from the gradients of the step's micro-batches, summed over
    /// ranks, clipped to `max_norm` (0 = off); returns the norm before clipping.
    fn step(&mut self, lr: f64, max_norm: f64) -> Result<f64>;
    /// Bytes of optimizer state (moments, master weights) this rank holds.
    fn state_bytes(&self) -> i64;
    /// This rank's optimizer state, for its checkpoint file.
    fn state_tensors(&self) -> Vec<(String, Tensor)>;
    /// Restore [`state_tensors`](Self::state_tensors) (same parameters, ranks and rank).
    fn load_state(&mut self, t: &BTreeMap<String, Tensor>) -> Result<()>;
}

/// The optimizer of `stage` for `named` (the trainable parameters, identical
/// on every rank), over `group` (none: one process).
pub fn optimizer<'g>(
    stage: ZeroStage,
    named: &[(String, Tensor)],
    group: Option<&'g ProcessGroup>,
    bucket_bytes: usize,
    weight_decay: f64,
) -> Result<Box<dyn DataParallelOptimizer + 'g>> {
    Ok(match stage {
        ZeroStage::Zero => {
            if named.iter().any(|(_, t)| t.kind() != Kind::Float) {
                bail!("zero_stage 0 (DDP) updates the parameters themselves: it needs f32 parameters (bf16 needs the fp32 master weights of zero_stage 1 or 2)");
            }
            Box::new(Replicated::new(named, group, bucket_bytes, weight_decay))
        }
        ZeroStage::One | ZeroStage::Two => {
            Box::new(ShardedAdamW::new(named, group, bucket_bytes, weight_decay, stage)?)
        }
    })
}

/// Stage 0: DDP's all-reduce and AdamW on every rank.
pub struct Replicated<'g> {
    group: Option<&'g ProcessGroup>,
    named: Vec<(String, Tensor)>,
    params: Vec<Tensor>,
    buckets: Vec<Vec<usize>>,
    opt: AdamW,
}

impl<'g> Replicated<'g> {
    pub fn new(named: &[(String, Tensor)], group: Option<&'g ProcessGroup>, bucket_bytes: usize, wd: f64) -> Self {
        let params: Vec<Tensor> = named.iter().map(|(_, t)| t.shallow_clone()).collect();
        let buckets = ddp::buckets(&params, bucket_bytes);
        let named = named.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect();
        Replicated { group, named, params, buckets, opt: AdamW::new(wd) }
    }
}

impl DataParallelOptimizer for Replicated<'_> {
    fn after_backward(&mut self) -> Result<()> {
        Ok(())
    }

    fn step(&mut self, lr: f64, max_norm: f64) -> Result<f64> {
        ddp::apply_gradients(self.group, &self.params, &self.named, &self.buckets, max_norm, &mut self.opt, lr)
    }

    fn state_bytes(&self) -> i64 {
        2 * self.params.iter().map(|p| p.numel() as i64).sum::<i64>() * 4
    }

    fn state_tensors(&self) -> Vec<(String, Tensor)> {
        super::checkpoint::optimizer_tensors(&self.opt)
    }

    fn load_state(&mut self, t: &BTreeMap<String, Tensor>) -> Result<()> {
        super::checkpoint::load_optimizer(t, &self.named, &mut self.opt);
        Ok(())
    }
}

/// One bucket of the sharded layout.
struct Bucket {
    /// Parameter indices, in the order their values sit in the bucket.
    params: Vec<usize>,
    numel: i64,
    /// This rank's chunk of the padded bucket: `numel` rounded up to the world size, over it.
    chunk: i64,
    /// Where the chunk sits in this rank's shard.
    at: i64,
}

/// The gradient side: buckets, their reduction into this rank's shard, and
/// (stage 2) the hook state that autograd's callbacks update during backward.
struct Reducer<'g> {
    group: Option<&'g ProcessGroup>,
    params: Vec<Tensor>,
    buckets: Vec<Bucket>,
    /// Bucket of each parameter.
    bucket_of: Vec<usize>,
    /// Per bucket: its parameters whose gradient this backward has accumulated.
    arrived: Vec<usize>,
    /// Per parameter: accumulated in this backward already.
    seen: Vec<bool>,
    /// The next bucket to reduce (buckets are reduced in order).
    next: usize,
    /// This rank's summed gradient shard, f32 (allocated by the first
    /// reduction, then reused), and whether it holds this step's gradient yet.
    grad: Option<Tensor>,
    holds: bool,
    /// Elements of this rank's shard, and where it lives.
    len: i64,
    device: tch::Device,
    /// The collective in flight, with its input (kept alive) and output.
    pending: Option<(Work, Tensor, Tensor, i64)>,
    /// The first failure inside a hook, reported after backward.
    error: Option<anyhow::Error>,
    /// Free each bucket's full gradients once reduced (stage 2).
    free: bool,
}

impl Reducer<'_> {
    fn world(&self) -> i64 {
        self.group.map(|g| g.size as i64).unwrap_or(1)
    }

    /// A parameter's gradient landed (the hook); reduce what is complete, in order.
    fn arrived(&mut self, index: usize) {
        if self.error.is_some() {
            return;
        }
        if std::mem::replace(&mut self.seen[index], true) {
            self.error = Some(anyhow!(
                "zero_stage 2: the gradient of trainable parameter {index} was accumulated twice in one backward pass; use zero_stage 1"
            ));
            return;
        }
        self.arrived[self.bucket_of[index]] += 1;
        while self.next < self.buckets.len() && self.arrived[self.next] == self.buckets[self.next].params.len() {
            if let Err(e) = self.reduce(self.next) {
                self.error = Some(e);
                return;
            }
            self.next += 1;
        }
    }

    /// Reduce every bucket not reduced yet (missing gradients count as zero),
    /// wait for the last collective, and get ready for the next backward.
    fn flush(&mut self) -> Result<()> {
        let _waiting = phase(Phase::Communication);
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        while self.next < self.buckets.len() {
            self.reduce(self.next)?;
            self.next += 1;
        }
        self.settle()?;
        self.next = 0;
        self.arrived.iter_mut().for_each(|a| *a = 0);
        self.seen.iter_mut().for_each(|s| *s = false);
        Ok(())
    }

    /// Reduce-scatter bucket `b`'s gradients into this rank's shard; free them
    /// (stage 2) or zero them (stage 1, whose memory stays allocated).
    fn reduce(&mut self, b: usize) -> Result<()> {
        let world = self.world();
        let (params, chunk, at) = (self.buckets[b].params.clone(), self.buckets[b].chunk, self.buckets[b].at);
        let device = self.device;
        let grads: Vec<Option<Tensor>> = tch::no_grad(|| {
            params
                .iter()
                .map(|&i| {
                    let g = self.params[i].grad();
                    g.defined().then(|| g.to_kind(Kind::Float).reshape([-1]))
                })
                .collect()
        });
        let group = self.group.filter(|g| g.size > 1);
        // One process: each gradient added straight into its place in the
        // shard (before it is freed or zeroed below: these are views of it).
        // Several: copied into one padded vector for the collective.
        let flat = match group {
            None => {
                let shard = self.shard_grad().narrow(0, at, chunk);
                let mut offset = 0;
                tch::no_grad(|| {
                    for (g, &i) in grads.iter().zip(&params) {
                        let n = self.params[i].numel() as i64;
                        if let Some(g) = g {
                            let _ = shard.narrow(0, offset, n).g_add_(g);
                        }
                        offset += n;
                    }
                });
                None
            }
            Some(_) => {
                let parts = grads
                    .into_iter()
                    .zip(&params)
                    .map(|(g, &i)| {
                        g.unwrap_or_else(|| Tensor::zeros([self.params[i].numel() as i64], (Kind::Float, device)))
                    })
                    .collect();
                Some(tch::no_grad(|| padded_parts(parts, &self.buckets[b], world, (Kind::Float, device))))
            }
        };
        for &i in &params {
            let p = &self.params[i];
            if self.free {
                reset_grad(p)?;
            } else {
                let mut g = p.grad();
                if g.defined() {
                    let _ = g.zero_();
                }
            }
        }
        self.settle()?;
        if let (Some(pg), Some(flat)) = (group, flat) {
            let out = Tensor::zeros([chunk], (Kind::Float, device));
            let work = pg.reduce_scatter(&out, &flat, ReduceOp::Sum)?;
            self.pending = Some((work, flat, out, at));
        }
        Ok(())
    }

    /// Wait for the collective in flight and add its chunk into the shard.
    fn settle(&mut self) -> Result<()> {
        if let Some((work, _input, out, at)) = self.pending.take() {
            let _waiting = phase(Phase::Communication);
            work.wait()?;
            tch::no_grad(|| {
                let _ = self.shard_grad().narrow(0, at, out.size()[0]).g_add_(&out);
            });
        }
        Ok(())
    }

    /// The step's gradient shard, zero at its first use in a step. Allocated
    /// once and kept: a fresh vector the size of the trainable parameters
    /// every step costs its page faults again (about a second per step for a
    /// 135M LLM on CPU, where the allocator maps such sizes anew each time).
    fn shard_grad(&mut self) -> &mut Tensor {
        let (len, device) = (self.len, self.device);
        let g = self.grad.get_or_insert_with(|| Tensor::zeros([len], (Kind::Float, device)));
        if !std::mem::replace(&mut self.holds, true) {
            let _ = g.zero_();
        }
        g
    }

    /// The step's summed gradient shard (zero if nothing arrived), handed to
    /// the update; the next use starts from zero again.
    fn take_grad(&mut self) -> Tensor {
        let g = self.shard_grad().shallow_clone();
        self.holds = false;
        g
    }
}

fn reset_grad(p: &Tensor) -> Result<()> {
    // SAFETY: `p` is a live tensor for the call.
    if unsafe { uorch_grad_reset(p.as_ptr() as *mut _) } != 0 {
        bail!("freeing a gradient: {}", ffi::last_error());
    }
    Ok(())
}

extern "C" fn gradient_arrived(data: *mut c_void, index: i64) {
    // SAFETY: `data` is the boxed `Reducer` of a live `ShardedAdamW`, which
    // removes its hooks before it is dropped; autograd calls hooks while the
    // owner is blocked in backward, so nothing else touches it meanwhile.
    let r = unsafe { &mut *(data as *mut Reducer<'static>) };
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| r.arrived(index as usize))).is_err() {
        r.error.get_or_insert_with(|| anyhow!("zero_stage 2: the gradient hook panicked"));
    }
}

/// Stages 1 and 2: AdamW with the moments and master weights sharded.
pub struct ShardedAdamW<'g> {
    reducer: Box<Reducer<'g>>,
    stage: ZeroStage,
    /// Per bucket: its values, padded, in the parameters' dtype; the
    /// parameters are views into it, so the all-gather lands in them.
    flat: Vec<Tensor>,
    /// Per bucket: this rank's fp32 master chunk. For f32 parameters it is a
    /// view of `flat` (the parameters are their own master weights); for
    /// bf16 ones an fp32 copy, which keeps updates that bf16 rounds away.
    master: Vec<Tensor>,
    /// This rank's first and second moments: `(shard)` each, from the first
    /// step on (allocated there, as plain AdamW does, so that the step
    /// loop's memory figures compare across stages).
    moments: Option<(Tensor, Tensor)>,
    /// 1 where weight decay applies, 0 elsewhere (and in the padding).
    decay: Tensor,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub step: i64,
}

/// The buckets over `params` and this rank's chunk of each, padded.
fn layout(params: &[Tensor], bucket_bytes: usize, world: i64) -> Vec<Bucket> {
    // Reverse order: backward produces the last parameters' gradients first.
    let reversed: Vec<Tensor> = params.iter().rev().map(Tensor::shallow_clone).collect();
    let n = params.len();
    let mut at = 0;
    ddp::buckets(&reversed, bucket_bytes)
        .into_iter()
        .map(|idx| {
            let params: Vec<usize> = idx.into_iter().map(|i| n - 1 - i).collect();
            let numel = params.iter().map(|&i| reversed[n - 1 - i].numel() as i64).sum::<i64>();
            let chunk = (numel + world - 1) / world;
            let b = Bucket { params, numel, chunk, at };
            at += chunk;
            b
        })
        .collect()
}

/// Bucket `b` of `values` (one tensor per parameter) as one padded vector of `kind`.
fn padded(values: &[Tensor], b: &Bucket, world: i64, kind: Kind) -> Tensor {
    let device = values[b.params[0]].device();
    padded_parts(
        b.params.iter().map(|&i| values[i].detach().to_kind(kind).reshape([-1])).collect(),
        b,
        world,
        (kind, device),
    )
}

/// A bucket's flattened `parts`, zero-padded to `world` equal chunks.
fn padded_parts(mut parts: Vec<Tensor>, b: &Bucket, world: i64, options: (Kind, tch::Device)) -> Tensor {
    let pad = b.chunk * world - b.numel;
    if pad > 0 {
        parts.push(Tensor::zeros([pad], options));
    }
    Tensor::cat(&parts, 0)
}

/// This rank's chunks of `values`, as one f32 shard.
fn shard_of(values: &[Tensor], buckets: &[Bucket], rank: i64, world: i64) -> Tensor {
    let chunks: Vec<Tensor> =
        buckets.iter().map(|b| padded(values, b, world, Kind::Float).narrow(0, rank * b.chunk, b.chunk)).collect();
    Tensor::cat(&chunks, 0)
}

impl<'g> ShardedAdamW<'g> {
    /// Shard `named` (the trainable parameters, identical on every rank) over
    /// `group`'s ranks (none: one process holds it all). The parameters
    /// become views into one vector per bucket.
    pub fn new(
        named: &[(String, Tensor)],
        group: Option<&'g ProcessGroup>,
        bucket_bytes: usize,
        weight_decay: f64,
        stage: ZeroStage,
    ) -> Result<Self> {
        let params: Vec<Tensor> = named.iter().map(|(_, t)| t.shallow_clone()).collect();
        let (rank, world) = group.map(|g| (g.rank as i64, g.size as i64)).unwrap_or((0, 1));
        let buckets = layout(&params, bucket_bytes, world);
        let mut bucket_of = vec![0; params.len()];
        let (mut flat, mut master) = (Vec::new(), Vec::new());
        tch::no_grad(|| -> Result<()> {
            for (k, b) in buckets.iter().enumerate() {
                let kind = params[b.params[0]].kind();
                if b.params.iter().any(|&i| params[i].kind() != kind) {
                    bail!("the trainable parameters of one bucket mix dtypes ({kind:?} and others)");
                }
                let values = padded(&params, b, world, kind);
                let mut offset = 0;
                for &i in &b.params {
                    bucket_of[i] = k;
                    let n = params[i].numel() as i64;
                    params[i].shallow_clone().set_data(&values.narrow(0, offset, n).view_as(&params[i]));
                    offset += n;
                }
                let mine = values.narrow(0, rank * b.chunk, b.chunk);
                master.push(if kind == Kind::Float { mine } else { mine.to_kind(Kind::Float) });
                flat.push(values);
            }
            Ok(())
        })?;
        let mask: Vec<Tensor> = named
            .iter()
            .map(|(n, t)| if decays(n) { t.detach().ones_like() } else { t.detach().zeros_like() })
            .collect();
        let decay = shard_of(&mask, &buckets, rank, world);
        let reducer = Box::new(Reducer {
            group,
            arrived: vec![0; buckets.len()],
            seen: vec![false; params.len()],
            params,
            buckets,
            bucket_of,
            next: 0,
            grad: None,
            holds: false,
            len: decay.size()[0],
            device: decay.device(),
            pending: None,
            error: None,
            free: stage == ZeroStage::Two,
        });
        let mut opt = Self {
            moments: None,
            reducer,
            stage,
            flat,
            master,
            decay,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
            step: 0,
        };
        if stage == ZeroStage::Two {
            opt.set_hooks(true)?;
        }
        Ok(opt)
    }

    fn set_hooks(&mut self, on: bool) -> Result<()> {
        let data = &mut *self.reducer as *mut Reducer as *mut c_void;
        for (i, p) in self.reducer.params.iter().enumerate() {
            let f: Option<ffi::ReadyFn> = if on { Some(gradient_arrived) } else { None };
            // SAFETY: `p` is live; `data` outlives the hook (removed in drop).
            if unsafe { uorch_grad_hook_set(p.as_ptr() as *mut _, f, data, i as i64) } != 0 {
                bail!("registering a gradient hook: {}", ffi::last_error());
            }
        }
        Ok(())
    }

    /// A moment for a checkpoint (zeros before the first step).
    fn moment(&self, pick: impl Fn(&(Tensor, Tensor)) -> &Tensor) -> Tensor {
        match &self.moments {
            Some(mv) => pick(mv).shallow_clone(),
            None => Tensor::zeros([self.shard_len()], (Kind::Float, self.reducer.device)),
        }
    }

    /// Elements of this rank's shard.
    pub fn shard_len(&self) -> i64 {
        self.reducer.len
    }
}

impl Drop for ShardedAdamW<'_> {
    /// The parameters get storage of their own again: as views into a bucket
    /// they may sit at offsets that change which kernels a CPU matmul takes,
    /// and the model evaluated after training must compute what its export
    /// (loaded fresh) computes, to the last bit.
    fn drop(&mut self) {
        if self.stage == ZeroStage::Two {
            let _ = self.set_hooks(false);
        }
        tch::no_grad(|| {
            for p in &self.reducer.params {
                p.shallow_clone().set_data(&p.detach().copy());
            }
        });
    }
}

impl DataParallelOptimizer for ShardedAdamW<'_> {
    fn after_backward(&mut self) -> Result<()> {
        match self.stage {
            ZeroStage::Two => self.reducer.flush(),
            // Stage 1 reduces the accumulated gradients once, at the step.
            _ => Ok(()),
        }
    }

    fn step(&mut self, lr: f64, max_norm: f64) -> Result<f64> {
        if self.stage != ZeroStage::Two {
            self.reducer.flush()?;
        }
        let _updating = phase(Phase::Optimizer);
        let group = self.reducer.group.filter(|g| g.size > 1);
        tch::no_grad(|| -> Result<f64> {
            let g = self.reducer.take_grad();
            // The squared norm without a temporary the size of the shard.
            let norm = g.norm();
            let sq = (&norm * &norm).reshape([1]);
            if let Some(pg) = group {
                let _waiting = phase(Phase::Communication);
                pg.all_reduce(&[&sq], ReduceOp::Sum)?.wait()?;
            }
            let norm = sq.sqrt().double_value(&[0]);
            let mut g = g;
            if max_norm > 0.0 && norm > max_norm {
                let _ = g.g_mul_scalar_(max_norm / (norm + 1e-6));
            }
            self.step += 1;
            let (m, v) = self.moments.get_or_insert_with(|| (g.zeros_like(), g.zeros_like()));
            // Weight decay by its mask (not every element decays), then
            // AdamW without decay, in ATen's fused kernel: one pass over each
            // bucket's chunk where the update written out took ten over the
            // shard (a second of a full-finetuning step of a 135M LLM on CPU).
            let shrink = (self.weight_decay > 0.0).then(|| (&self.decay * (-lr * self.weight_decay)) + 1.0);
            let mut chunks = Vec::with_capacity(self.master.len());
            for (b, master) in self.reducer.buckets.iter().zip(&self.master) {
                if let Some(s) = &shrink {
                    let _ = master.shallow_clone().g_mul_(&s.narrow(0, b.at, b.chunk));
                }
                let part = |t: &Tensor| t.narrow(0, b.at, b.chunk);
                chunks.push((master.shallow_clone(), part(&g), part(m), part(v)));
            }
            let h =
                Hyper { step: self.step, lr, beta1: self.beta1, beta2: self.beta2, weight_decay: 0.0, eps: self.eps };
            if chunks.iter().all(|(p, g, _, _)| fusable(p, g)) {
                fused_update(&chunks, &h)?;
            } else {
                written_out_update(&chunks, &h);
            }
            // Each bucket: every rank's updated chunk gathered into the
            // bucket's vector, which the parameters view.
            for (master, flat) in self.master.iter().zip(&self.flat) {
                match group {
                    // A copy: the input must not alias the output's chunk.
                    Some(pg) => {
                        let _waiting = phase(Phase::Communication);
                        pg.all_gather(flat, &master.to_kind(flat.kind()).copy())?.wait()?
                    }
                    // One rank: its chunk is the whole bucket, and f32 master
                    // weights are the parameters already.
                    None if flat.kind() != Kind::Float => flat.shallow_clone().copy_(&master.to_kind(flat.kind())),
                    None => {}
                }
            }
            Ok(norm)
        })
    }

    /// Moments always; master weights only where they are copies (bf16).
    fn state_bytes(&self) -> i64 {
        let copies: i64 = self
            .reducer
            .buckets
            .iter()
            .zip(&self.flat)
            .filter(|(_, f)| f.kind() != Kind::Float)
            .map(|(b, _)| b.chunk)
            .sum();
        (2 * self.shard_len() + copies) * 4
    }

    fn state_tensors(&self) -> Vec<(String, Tensor)> {
        vec![
            ("step".into(), Tensor::from_slice(&[self.step as f64])),
            ("master".into(), Tensor::cat(&self.master, 0)),
            ("m".into(), self.moment(|(m, _)| m)),
            ("v".into(), self.moment(|(_, v)| v)),
        ]
    }

    fn load_state(&mut self, t: &BTreeMap<String, Tensor>) -> Result<()> {
        let get = |name: &str| {
            let src = t.get(name).ok_or_else(|| anyhow!("optimizer shard has no `{name}`"))?;
            if src.size() != [self.shard_len()] {
                bail!("optimizer shard `{name}` has shape {:?}, this rank's is [{}]", src.size(), self.shard_len());
            }
            Ok(src.to_device(self.reducer.device))
        };
        let (master, m, v) = (get("master")?, get("m")?, get("v")?);
        tch::no_grad(|| {
            for (b, dst) in self.reducer.buckets.iter().zip(&self.master) {
                dst.shallow_clone().copy_(&master.narrow(0, b.at, b.chunk));
            }
        });
        self.moments = Some((m, v));
        self.step = t.get("step").map(|s| s.double_value(&[0]) as i64).unwrap_or(0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_run_backwards_and_each_rank_owns_a_padded_chunk_of_each() {
        let p = |n: i64| Tensor::zeros([n], (Kind::Float, tch::Device::Cpu));
        // 4-byte elements, 40-byte buckets: [3] gets 7+3 values, then [1, 0].
        let params = vec![p(2), p(5), p(3), p(7)];
        let b = layout(&params, 40, 3);
        let got: Vec<(Vec<usize>, i64, i64, i64)> =
            b.iter().map(|b| (b.params.clone(), b.numel, b.chunk, b.at)).collect();
        assert_eq!(got, vec![(vec![3, 2], 10, 4, 0), (vec![1, 0], 7, 3, 4)]);
        // Rank 1's shard: values 4..8 of bucket 0 (param 3 then 2), 3..6 of bucket 1 (param 1 then 0).
        let vals: Vec<Tensor> = (0..4).map(|i| params[i].ones_like() * (i as f64 + 1.0)).collect();
        let s = Vec::<f32>::try_from(&shard_of(&vals, &b, 1, 3)).unwrap();
        assert_eq!(s, vec![4.0, 4.0, 4.0, 3.0, 2.0, 2.0, 1.0]);
        // Rank 2 holds padding past the last value of each bucket.
        let s = Vec::<f32>::try_from(&shard_of(&vals, &b, 2, 3)).unwrap();
        assert_eq!(s, vec![3.0, 3.0, 0.0, 0.0, 1.0, 0.0, 0.0]);
    }

    #[test]
    fn zero_stage_reads_0_1_2_and_names_the_choices_otherwise() {
        let s: ZeroStage = serde_json::from_str("1").unwrap();
        assert_eq!(s, ZeroStage::One);
        let e = serde_json::from_str::<ZeroStage>("3").unwrap_err().to_string();
        assert!(e.contains("expected 0 (DDP), 1"), "{e}");
    }
}
