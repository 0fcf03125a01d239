//! AdamW with its state held in named tensors (so checkpoints can save and
//! restore it exactly): decoupled weight decay, bias-corrected moments.

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
    /// whose name marks them as biases or norms get no weight decay.
    pub fn step(&mut self, params: &[(String, Tensor)], lr: f64) {
        self.step += 1;
        let bc1 = 1.0 - self.beta1.powi(self.step as i32);
        let bc2 = 1.0 - self.beta2.powi(self.step as i32);
        tch::no_grad(|| {
            for (name, p) in params {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                let g = if g.kind() == Kind::Float { g } else { g.to_kind(Kind::Float) };
                let (m, v) = self.state.entry(name.clone()).or_insert_with(|| (g.zeros_like(), g.zeros_like()));
                // m ← β1·m + (1−β1)·g ; v ← β2·v + (1−β2)·g²  (as lerps, in place)
                let _ = m.lerp_(&g, 1.0 - self.beta1);
                let _ = v.lerp_(&g.square(), 1.0 - self.beta2);
                // p ← p·(1 − lr·wd) − lr · (m / bc1) / (sqrt(v / bc2) + eps)
                let mut denom = v.sqrt();
                let _ = denom.g_div_scalar_(bc2.sqrt()).g_add_scalar_(self.eps);
                let mut p = p.shallow_clone();
                if self.weight_decay > 0.0 && decays(name) {
                    let _ = p.g_mul_scalar_(1.0 - lr * self.weight_decay);
                }
                let _ = p.addcdiv_(&(&*m * (-lr / bc1)), &denom);
            }
        });
    }
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
        opt.step(&[("w".into(), p.shallow_clone())], 0.1);
        let v = Vec::<f32>::try_from(&p.detach()).unwrap();
        assert!((v[0] - 0.9).abs() < 1e-6 && (v[1] + 1.9).abs() < 1e-6, "{v:?}");
    }

    #[test]
    fn decoupled_weight_decay_shrinks_weights_but_not_norms() {
        let w = Tensor::from_slice(&[2.0f32]).set_requires_grad(true);
        let n = Tensor::from_slice(&[2.0f32]).set_requires_grad(true);
        (&w * 0.0 + &n * 0.0).sum(Kind::Float).backward();
        let mut opt = AdamW::new(0.5);
        opt.step(&[("layer.weight".into(), w.shallow_clone()), ("norm.weight".into(), n.shallow_clone())], 0.1);
        assert!((w.double_value(&[0]) - 2.0 * (1.0 - 0.05)).abs() < 1e-6);
        assert_eq!(n.double_value(&[0]), 2.0);
    }
}
