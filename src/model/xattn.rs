//! Gated cross-attention, inserted in a decoder layer between self-attention
//! and the MLP: `h + tanh(alpha) · CrossAttn(RMSNorm(h), E)` with queries from
//! the LLM's hidden states and keys/values from the projected user embeddings
//! `E`. `alpha` starts at 0, so at initialisation the LLM is exactly unchanged.

use crate::model::llama::linear::Linear;
use crate::model::llama::rms_norm::RmsNorm;
use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

#[derive(Debug)]
pub struct GatedCrossAttention {
    pub norm: RmsNorm,
    pub q: Linear,
    pub k: Linear,
    pub v: Linear,
    pub o: Linear,
    /// The gate's pre-activation, `(1)`, initialised to 0.
    pub alpha: Tensor,
    heads: i64,
}

impl GatedCrossAttention {
    pub fn new(p: nn::Path, hidden: usize, heads: usize, eps: f64) -> Self {
        let init = nn::Init::Randn { mean: 0.0, stdev: 0.02 };
        let lin = |name: &str| Linear::with_init(&p / name, hidden, hidden, false, init);
        Self {
            norm: RmsNorm::new(&p / "norm", hidden, eps),
            q: lin("q_proj"),
            k: lin("k_proj"),
            v: lin("v_proj"),
            o: lin("o_proj"),
            alpha: p.var("alpha", &[1], nn::Init::Const(0.0)),
            heads: heads as i64,
        }
    }

    /// The gate value `tanh(alpha)`.
    pub fn gate(&self) -> f64 {
        self.alpha.tanh().double_value(&[0])
    }

    /// `h` `(batch, seq, hidden)`, `user` `(batch, k, hidden)`, `mask` `(batch, k)`
    /// true where a user position is real → `(batch, seq, hidden)`.
    pub fn forward(&self, h: &Tensor, user: &Tensor, mask: &Tensor) -> Tensor {
        let (b, t, d) = h.size3().expect("(batch, seq, hidden)");
        let k_len = user.size()[1];
        let hd = d / self.heads;
        let split = |x: Tensor, n: i64| x.view([b, n, self.heads, hd]).transpose(1, 2);
        let q = split(self.q.forward(&self.norm.forward(h)), t);
        let user = user.to_kind(h.kind());
        let k = split(self.k.forward(&user), k_len);
        let v = split(self.v.forward(&user), k_len);
        let m = mask.view([b, 1, 1, k_len]);
        let a = Tensor::scaled_dot_product_attention(&q, &k, &v, Some(&m), 0.0, false, None, false);
        let out = self.o.forward(&a.transpose(1, 2).reshape([b, t, d]));
        h + out * self.alpha.tanh().to_kind(h.kind())
    }
}

/// Which decoder layers get a cross-attention block: `all`, `upper_half`,
/// `lower_half`, `every_K` (layers 0, K, 2K, ...), or an explicit list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Placement {
    Named(String),
    List(Vec<usize>),
}

impl Placement {
    /// The layer indices for a model of `n` layers, or what is wrong.
    pub fn layers(&self, n: usize) -> Result<Vec<usize>, String> {
        let v: Vec<usize> = match self {
            Placement::List(l) => {
                if let Some(bad) = l.iter().find(|&&i| i >= n) {
                    return Err(format!("layer {bad} does not exist (the model has {n}: 0..{})", n - 1));
                }
                let mut l = l.clone();
                l.sort();
                l.dedup();
                l
            }
            Placement::Named(s) => match s.as_str() {
                "all" => (0..n).collect(),
                "upper_half" => (n / 2..n).collect(),
                "lower_half" => (0..n / 2).collect(),
                other => match other.strip_prefix("every_").and_then(|k| k.parse::<usize>().ok()).filter(|&k| k >= 1) {
                    Some(k) => (0..n).step_by(k).collect(),
                    None => return Err(format!(
                        "{other:?} is not a placement: use all, upper_half, lower_half, every_K or a list of layers"
                    )),
                },
            },
        };
        if v.is_empty() {
            return Err("no layer selected".into());
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placements_select_the_documented_layers() {
        let p = |s: &str| Placement::Named(s.into());
        assert_eq!(p("upper_half").layers(30).unwrap(), (15..30).collect::<Vec<_>>());
        assert_eq!(p("lower_half").layers(4).unwrap(), vec![0, 1]);
        assert_eq!(p("every_10").layers(30).unwrap(), vec![0, 10, 20]);
        assert_eq!(p("all").layers(3).unwrap(), vec![0, 1, 2]);
        assert_eq!(Placement::List(vec![5, 1, 5]).layers(6).unwrap(), vec![1, 5]);
        assert!(Placement::List(vec![6]).layers(6).unwrap_err().contains("layer 6 does not exist"));
        assert!(p("upper").layers(6).is_err());
        assert!(p("every_0").layers(6).is_err());
    }
}
