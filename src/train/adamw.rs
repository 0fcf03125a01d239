//! AdamW with its state held in named tensors (so checkpoints can save and
//! restore it exactly): decoupled weight decay, bias-corrected moments.

use crate::ffi::fused_adamw as ffi;
use anyhow::{bail, Result};
use std::collections::BTreeMap;
use tch::{Kind, Tensor};

pub struct AdamW {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// Steps taken (for bias correction).
    pub step: i64,
    /// Per parameter: (first moment, second moment), f32.
    pub state: BTreeMap<String, (Tensor, Tensor)>,
}

impl AdamW {
    pub fn new(weight_decay: f64) -> Self {
        Self { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay, step: 0, state: BTreeMap::new() }
    }

    /// One update of every named parameter that has a gradient. Parameters
    /// whose name marks them as biases or norms get no weight decay. f32
    /// parameters with dense f32 gradients go through ATen's fused kernel
    /// (the update PyTorch's `AdamW(fused=True)` makes); the others through
    /// the same update written out.
    pub fn step(&mut self, params: &[(String, Tensor)], lr: f64) -> Result<()> {
        self.step += 1;
        // [written out, fused][without weight decay, with it].
        let mut groups: [[Vec<Quad>; 2]; 2] = Default::default();
        for (name, p) in params {
            let g = p.grad();
            if !g.defined() {
                continue;
            }
            let fuse = usize::from(fusable(p, &g));
            let g = if g.kind() == Kind::Float { g } else { g.to_kind(Kind::Float) };
            let (m, v) = self.state.entry(name.clone()).or_insert_with(|| (g.zeros_like(), g.zeros_like()));
            let decay = usize::from(self.weight_decay > 0.0 && decays(name));
            groups[fuse][decay].push((p.shallow_clone(), g, m.shallow_clone(), v.shallow_clone()));
        }
        for decay in [0, 1] {
            let h = Hyper {
                step: self.step,
                lr,
                beta1: self.beta1,
                beta2: self.beta2,
                weight_decay: if decay == 1 { self.weight_decay } else { 0.0 },
                eps: self.eps,
            };
            fused_update(&groups[1][decay], &h)?;
            written_out_update(&groups[0][decay], &h);
        }
        Ok(())
    }
}

/// A parameter, its f32 gradient, its first and second moments.
pub type Quad = (Tensor, Tensor, Tensor, Tensor);

/// One AdamW update's settings; `step` counts this update.
pub struct Hyper {
    pub step: i64,
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub weight_decay: f64,
    pub eps: f64,
}

/// ATen's fused AdamW kernel on `group`'s (parameter, gradient, first
/// moment, second moment), all f32 and [`fusable`], updated in place.
pub fn fused_update(group: &[Quad], h: &Hyper) -> Result<()> {
    if group.is_empty() {
        return Ok(());
    }
    let ptrs = |pick: fn(&Quad) -> &Tensor| -> Vec<*mut torch_sys::C_tensor> {
        group.iter().map(|t| pick(t).as_ptr() as *mut torch_sys::C_tensor).collect()
    };
    let (p, g, m, v) = (ptrs(|t| &t.0), ptrs(|t| &t.1), ptrs(|t| &t.2), ptrs(|t| &t.3));
    // SAFETY: every pointer is a live tensor of `group` for the call; the
    // kernel updates parameters and moments in place and catches C++ errors.
    let rc = unsafe {
        ffi::uorch_fused_adamw(
            p.as_ptr(),
            g.as_ptr(),
            m.as_ptr(),
            v.as_ptr(),
            group.len() as i64,
            h.step,
            h.lr,
            h.beta1,
            h.beta2,
            h.weight_decay,
            h.eps,
        )
    };
    if rc != 0 {
        bail!("fused AdamW step: {}", ffi::last_error());
    }
    Ok(())
}

/// The update of [`fused_update`] written out, a few kernels per parameter
/// (for what the kernel does not take: bf16 parameters, sparse gradients).
pub fn written_out_update(group: &[Quad], h: &Hyper) {
    let bc1 = 1.0 - h.beta1.powi(h.step as i32);
    let bc2 = 1.0 - h.beta2.powi(h.step as i32);
    tch::no_grad(|| {
        for (p, g, m, v) in group {
            // m ← β1·m + (1−β1)·g ; v ← β2·v + (1−β2)·g²  (as lerps, in place)
            let _ = m.shallow_clone().lerp_(g, 1.0 - h.beta1);
            let _ = v.shallow_clone().lerp_(&g.square(), 1.0 - h.beta2);
            // p ← p·(1 − lr·wd) − lr · (m / bc1) / (sqrt(v / bc2) + eps)
            let mut denom = v.sqrt();
            let _ = denom.g_div_scalar_(bc2.sqrt()).g_add_scalar_(h.eps);
            let mut p = p.shallow_clone();
            if h.weight_decay > 0.0 {
                let _ = p.g_mul_scalar_(1.0 - h.lr * h.weight_decay);
            }
            let _ = p.addcdiv_(&(m * (-h.lr / bc1)), &denom);
        }
    });
}

/// What the fused kernel takes: an f32 parameter and its dense f32
/// gradient on the same device, both contiguous.
pub fn fusable(p: &Tensor, g: &Tensor) -> bool {
    p.kind() == Kind::Float
        && g.kind() == Kind::Float
        && p.device() == g.device()
        && !g.is_sparse()
        && p.is_contiguous()
        && g.is_contiguous()
}

/// Weight decay applies to matrices and embeddings, not biases or norms.
pub fn decays(name: &str) -> bool {
    !(name.ends_with(".bias") || name.contains("norm"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_step_moves_each_weight_by_lr_against_the_gradient_sign() {
        // With bias correction, step 1's update is g / (|g| + eps) ≈ sign(g).
        let p = Tensor::from_slice(&[1.0f32, -2.0]).set_requires_grad(true);
        let loss = (&p * Tensor::from_slice(&[3.0f32, -0.5])).sum(Kind::Float);
        loss.backward();
        let mut opt = AdamW::new(0.0);
        opt.step(&[("w".into(), p.shallow_clone())], 0.1).unwrap();
        let v = Vec::<f32>::try_from(&p.detach()).unwrap();
        assert!((v[0] - 0.9).abs() < 1e-6 && (v[1] + 1.9).abs() < 1e-6, "{v:?}");
    }

    #[test]
    fn decoupled_weight_decay_shrinks_weights_but_not_norms() {
        let w = Tensor::from_slice(&[2.0f32]).set_requires_grad(true);
        let n = Tensor::from_slice(&[2.0f32]).set_requires_grad(true);
        (&w * 0.0 + &n * 0.0).sum(Kind::Float).backward();
        let mut opt = AdamW::new(0.5);
        opt.step(&[("layer.weight".into(), w.shallow_clone()), ("norm.weight".into(), n.shallow_clone())], 0.1)
            .unwrap();
        assert!((w.double_value(&[0]) - 2.0 * (1.0 - 0.05)).abs() < 1e-6);
        assert_eq!(n.double_value(&[0]), 2.0);
    }

    #[test]
    fn the_fused_kernel_makes_the_written_out_update_over_several_steps() {
        let names = ["layer.weight", "layer.bias", "norm.weight"];
        let a: Vec<(String, Tensor)> = names
            .iter()
            .map(|n| (n.to_string(), Tensor::randn([7, 5], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true)))
            .collect();
        // The same values, in tensors of their own.
        let b: Vec<(String, Tensor)> =
            a.iter().map(|(n, t)| (n.clone(), t.detach().copy().set_requires_grad(true))).collect();
        let mut fused = AdamW::new(0.1);
        let moments: Vec<(Tensor, Tensor)> = b.iter().map(|(_, t)| (t.zeros_like(), t.zeros_like())).collect();
        for step in 0..5 {
            let target = Tensor::randn([7, 5], (Kind::Float, tch::Device::Cpu));
            for params in [&a, &b] {
                for (_, p) in params.iter() {
                    let mut g = p.grad();
                    if g.defined() {
                        let _ = g.zero_();
                    }
                    ((p - &target).square().sum(Kind::Float) * (step + 1) as f64).backward();
                }
            }
            assert!(a.iter().all(|(_, p)| fusable(p, &p.grad())), "the fused kernel takes them all");
            fused.step(&a, 0.05).unwrap();
            for ((n, p), (m, v)) in b.iter().zip(&moments) {
                let wd = if decays(n) { 0.1 } else { 0.0 };
                let h = Hyper { step: step + 1, lr: 0.05, beta1: 0.9, beta2: 0.999, weight_decay: wd, eps: 1e-8 };
                written_out_update(&[(p.shallow_clone(), p.grad(), m.shallow_clone(), v.shallow_clone())], &h);
            }
            for ((n, x), (_, y)) in a.iter().zip(&b) {
                let d = (x - y).abs().max().double_value(&[]);
                assert!(d < 1e-6, "step {step}, {n}: fused and written-out differ by {d}");
            }
        }
        assert_eq!(fused.state.len(), 3);
    }
}
