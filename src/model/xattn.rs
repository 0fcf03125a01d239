//! Gated cross-attention, inserted in a decoder layer between self-attention
//! and the MLP: `h + tanh(alpha) · CrossAttn(RMSNorm(h), E)` with queries from
//! the LLM's hidden states and keys/values from the projected user embeddings
//! `E`. `alpha` starts at 0, so at initialisation the LLM is exactly unchanged.

use crate::model::llama::linear::Linear;
use crate::model::llama::rms_norm::RmsNorm;
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

pub use crate::config::finetune::Placement;
