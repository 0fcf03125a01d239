//! ZeRO-2 style sharded AdamW for data-parallel finetuning: the trainable
//! parameters are viewed as one flat f32 vector split into equal shards, one
//! per rank. Each step, gradients are reduce-scattered (each rank receives
//! the summed gradient of its shard only), each rank updates its shard's fp32
//! master weights and AdamW moments (so optimizer memory is 1/world of the
//! unsharded optimizer's), and the updated shards are all-gathered back into
//! every rank's parameters. The arithmetic is AdamW's, element by element, so
//! the result matches the unsharded optimizer.

use super::adamw::decays;
use crate::dist::{ProcessGroup, ReduceOp};
use anyhow::Result;
use tch::{Kind, Tensor};

pub struct ShardedAdamW {
    params: Vec<Tensor>,
    total: i64,
    shard: i64,
    /// This rank's fp32 master weights, first and second moments: `(shard)`.
    master: Tensor,
    m: Tensor,
    v: Tensor,
    /// 1 where weight decay applies, 0 elsewhere (and in the padding).
    decay: Tensor,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub step: i64,
}

fn flat(ts: impl Iterator<Item = Tensor>, padded: i64) -> Tensor {
    let mut parts: Vec<Tensor> = ts.map(|t| t.to_kind(Kind::Float).reshape([-1])).collect();
    let n: i64 = parts.iter().map(|p| p.size()[0]).sum();
    if padded > n {
        let device = parts.first().map(|p| p.device()).unwrap_or(tch::Device::Cpu);
        parts.push(Tensor::zeros([padded - n], (Kind::Float, device)));
    }
    Tensor::cat(&parts, 0)
}

impl ShardedAdamW {
    /// Shard `named` (the trainable parameters, identical on every rank) over
    /// `world` ranks; this is `rank`.
    pub fn new(named: &[(String, Tensor)], rank: usize, world: usize, weight_decay: f64) -> Self {
        let params: Vec<Tensor> = named.iter().map(|(_, t)| t.shallow_clone()).collect();
        let total: i64 = params.iter().map(|p| p.numel() as i64).sum();
        let shard = (total + world as i64 - 1) / world as i64;
        let padded = shard * world as i64;
        let rank = rank as i64;
        let all = tch::no_grad(|| flat(params.iter().map(|p| p.detach()), padded));
        let master = all.narrow(0, rank * shard, shard).copy();
        let mask = flat(named.iter().map(|(n, t)| if decays(n) { t.ones_like() } else { t.zeros_like() }), padded);
        let decay = mask.narrow(0, rank * shard, shard).copy();
        Self {
            m: master.zeros_like(),
            v: master.zeros_like(),
            params,
            total,
            shard,
            master,
            decay,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
            step: 0,
        }
    }

    /// Bytes of optimizer state this rank holds (master weights and two moments).
    pub fn state_bytes(&self) -> i64 {
        3 * self.shard * 4
    }

    /// This rank's shard of the optimizer state, for a checkpoint.
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        vec![
            ("step".into(), Tensor::from_slice(&[self.step as f64])),
            ("master".into(), self.master.shallow_clone()),
            ("m".into(), self.m.shallow_clone()),
            ("v".into(), self.v.shallow_clone()),
        ]
    }

    /// Restore this rank's shard from [`state_tensors`](Self::state_tensors)
    /// (the same parameters, ranks and rank).
    pub fn load_state(&mut self, t: &std::collections::BTreeMap<String, Tensor>) -> anyhow::Result<()> {
        for (name, dst) in [("master", &mut self.master), ("m", &mut self.m), ("v", &mut self.v)] {
            let src = t.get(name).ok_or_else(|| anyhow::anyhow!("optimizer shard has no `{name}`"))?;
            if src.size() != dst.size() {
                anyhow::bail!("optimizer shard `{name}` has shape {:?}, this rank's is {:?}", src.size(), dst.size());
            }
            *dst = src.to_device(dst.device());
        }
        self.step = t.get("step").map(|s| s.double_value(&[0]) as i64).unwrap_or(0);
        Ok(())
    }

    /// One step from the accumulated gradients (summed over ranks here);
    /// returns the global gradient norm before clipping to `max_norm` (0 = off).
    pub fn step(&mut self, group: Option<&ProcessGroup>, lr: f64, max_norm: f64) -> Result<f64> {
        let padded = self.shard * group.map(|g| g.size as i64).unwrap_or(1);
        tch::no_grad(|| -> Result<f64> {
            let grads = flat(
                self.params.iter().map(|p| {
                    let g = p.grad();
                    if g.defined() {
                        g
                    } else {
                        p.zeros_like()
                    }
                }),
                padded,
            );
            let g = match group {
                Some(pg) => {
                    let out = Tensor::zeros([self.shard], (Kind::Float, grads.device()));
                    pg.reduce_scatter(&out, &grads, ReduceOp::Sum)?.wait()?;
                    out
                }
                None => grads,
            };
            let sq = g.square().sum(Kind::Float).reshape([1]);
            if let Some(pg) = group {
                pg.all_reduce(&[&sq], ReduceOp::Sum)?.wait()?;
            }
            let norm = sq.sqrt().double_value(&[0]);
            let g = if max_norm > 0.0 && norm > max_norm { g * (max_norm / (norm + 1e-6)) } else { g };
            self.step += 1;
            let bc1 = 1.0 - self.beta1.powi(self.step as i32);
            let bc2 = 1.0 - self.beta2.powi(self.step as i32);
            let _ = self.m.lerp_(&g, 1.0 - self.beta1);
            let _ = self.v.lerp_(&g.square(), 1.0 - self.beta2);
            let mut denom = self.v.sqrt();
            let _ = denom.g_div_scalar_(bc2.sqrt()).g_add_scalar_(self.eps);
            if self.weight_decay > 0.0 {
                let shrink = (&self.decay * (-lr * self.weight_decay)) + 1.0;
                let _ = self.master.g_mul_(&shrink);
            }
            let _ = self.master.addcdiv_(&(&self.m * (-lr / bc1)), &denom);
            // Every rank gets every shard back, into its parameters.
            let full = match group {
                Some(pg) => {
                    let out = Tensor::zeros([padded], (Kind::Float, self.master.device()));
                    pg.all_gather(&out, &self.master)?.wait()?;
                    out
                }
                None => self.master.shallow_clone(),
            };
            let mut offset = 0;
            for p in &self.params {
                let n = p.numel() as i64;
                p.shallow_clone().copy_(&full.narrow(0, offset, n).view_as(p));
                offset += n;
                let mut gr = p.grad();
                if gr.defined() {
                    let _ = gr.zero_();
                }
            }
            debug_assert_eq!(offset, self.total);
            Ok(norm)
        })
    }
}
