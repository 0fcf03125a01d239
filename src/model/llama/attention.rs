//! Grouped-query self-attention through `scaled_dot_product_attention`, with
//! an optional key/value cache for generation.

use super::config::LlamaConfig;
use super::linear::Linear;
use super::rope::Rope;
use tch::{nn, Kind, Tensor};

#[derive(Debug)]
pub struct SelfAttention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub o_proj: Linear,
    heads: i64,
    kv_heads: i64,
    head_dim: i64,
}

/// Keys and values of the positions seen so far, per layer:
/// `(batch, kv_heads, seen, head_dim)`.
#[derive(Debug, Default)]
pub struct LayerCache {
    pub k: Option<Tensor>,
    pub v: Option<Tensor>,
}

impl SelfAttention {
    pub fn new(p: nn::Path, c: &LlamaConfig) -> Self {
        let (h, hd) = (c.hidden_size, c.head_dim());
        Self {
            q_proj: Linear::new(&p / "q_proj", h, c.num_attention_heads * hd, c.attention_bias),
            k_proj: Linear::new(&p / "k_proj", h, c.kv_heads() * hd, c.attention_bias),
            v_proj: Linear::new(&p / "v_proj", h, c.kv_heads() * hd, c.attention_bias),
            o_proj: Linear::new(&p / "o_proj", c.num_attention_heads * hd, h, false),
            heads: c.num_attention_heads as i64,
            kv_heads: c.kv_heads() as i64,
            head_dim: hd as i64,
        }
    }

    /// `x` `(batch, seq, hidden)` at positions `start..start+seq` → `(batch, seq, hidden)`.
    /// With a cache, its keys/values are attended to and this step's appended.
    /// `valid` `(batch, start+seq)`, when given, says which key positions may
    /// be attended to (each position always sees itself, so none is empty).
    pub fn forward(
        &self,
        x: &Tensor,
        rope: &Rope,
        start: i64,
        cache: Option<&mut LayerCache>,
        valid: Option<&Tensor>,
    ) -> Tensor {
        let (b, t, _) = x.size3().expect("(batch, seq, hidden)");
        let split = |y: Tensor, heads: i64| y.view([b, t, heads, self.head_dim]).transpose(1, 2);
        let q = rope.apply(&split(self.q_proj.forward(x), self.heads), start);
        let mut k = rope.apply(&split(self.k_proj.forward(x), self.kv_heads), start);
        let mut v = split(self.v_proj.forward(x), self.kv_heads);
        if let Some(c) = cache {
            if let (Some(pk), Some(pv)) = (&c.k, &c.v) {
                k = Tensor::cat(&[pk, &k], 2);
                v = Tensor::cat(&[pv, &v], 2);
            }
            c.k = Some(k.shallow_clone());
            c.v = Some(v.shallow_clone());
        }
        let total = k.size()[2];
        let y = if let Some(valid) = valid {
            let qi = Tensor::arange(t, (Kind::Int64, x.device())).unsqueeze(1) + (total - t);
            let ki = Tensor::arange(total, (Kind::Int64, x.device())).unsqueeze(0);
            let causal = ki.le_tensor(&qi).unsqueeze(0).logical_and(&valid.unsqueeze(1));
            let mask = causal.logical_or(&ki.eq_tensor(&qi).unsqueeze(0)).unsqueeze(1);
            Tensor::scaled_dot_product_attention(&q, &k, &v, Some(mask), 0.0, false, None, true)
        } else if t == 1 {
            // One new position attends to everything before it.
            Tensor::scaled_dot_product_attention(&q, &k, &v, None::<Tensor>, 0.0, false, None, true)
        } else if total == t {
            Tensor::scaled_dot_product_attention(&q, &k, &v, None::<Tensor>, 0.0, true, None, true)
        } else {
            // A chunk after cached positions: query i sees keys up to total - t + i.
            let qi = Tensor::arange(t, (Kind::Int64, x.device())).unsqueeze(1) + (total - t);
            let ki = Tensor::arange(total, (Kind::Int64, x.device())).unsqueeze(0);
            let mask = ki.le_tensor(&qi);
            Tensor::scaled_dot_product_attention(&q, &k, &v, Some(mask), 0.0, false, None, true)
        };
        self.o_proj.forward(&y.transpose(1, 2).reshape([b, t, self.heads * self.head_dim]))
    }
}
