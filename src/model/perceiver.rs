//! A Perceiver resampler: `K` learned latent queries cross-attend to the
//! encoder's output sequence over a few layers (each cross-attention, then a
//! feed-forward block, both pre-norm and residual), so the LLM sees `K` user
//! tokens whatever the history length.

use tch::{nn, nn::Module, Tensor};

#[derive(Debug)]
struct Layer {
    norm_latents: nn::LayerNorm,
    norm_inputs: nn::LayerNorm,
    q: nn::Linear,
    kv: nn::Linear,
    o: nn::Linear,
    norm_ff: nn::LayerNorm,
    ff1: nn::Linear,
    ff2: nn::Linear,
}

#[derive(Debug)]
pub struct Perceiver {
    latents: Tensor,
    layers: Vec<Layer>,
    final_norm: nn::LayerNorm,
    heads: i64,
    dim: i64,
}

impl Perceiver {
    pub fn new(p: &nn::Path, dim: i64, latents: i64, layers: i64, heads: i64) -> Self {
        let latents_t = p.var("latents", &[latents, dim], nn::Init::Randn { mean: 0.0, stdev: 0.02 });
        let layers = (0..layers)
            .map(|i| {
                let l = p / "layers" / i;
                Layer {
                    norm_latents: nn::layer_norm(&l / "norm_latents", vec![dim], Default::default()),
                    norm_inputs: nn::layer_norm(&l / "norm_inputs", vec![dim], Default::default()),
                    q: nn::linear(&l / "q", dim, dim, Default::default()),
                    kv: nn::linear(&l / "kv", dim, 2 * dim, Default::default()),
                    o: nn::linear(&l / "o", dim, dim, Default::default()),
                    norm_ff: nn::layer_norm(&l / "norm_ff", vec![dim], Default::default()),
                    ff1: nn::linear(&l / "ff1", dim, 4 * dim, Default::default()),
                    ff2: nn::linear(&l / "ff2", 4 * dim, dim, Default::default()),
                }
            })
            .collect();
        Self {
            latents: latents_t,
            layers,
            final_norm: nn::layer_norm(p / "final_norm", vec![dim], Default::default()),
            heads,
            dim,
        }
    }

    pub fn latents(&self) -> i64 {
        self.latents.size()[0]
    }

    /// `x` `(batch, len, dim)` with `mask` `(batch, len)` true where real → `(batch, K, dim)`.
    pub fn forward(&self, x: &Tensor, mask: &Tensor) -> Tensor {
        let (b, len, _) = x.size3().expect("(batch, len, dim)");
        let k = self.latents();
        let hd = self.dim / self.heads;
        let mut lat = self.latents.unsqueeze(0).expand([b, k, self.dim], false).to_kind(x.kind());
        let m = mask.view([b, 1, 1, len]);
        for l in &self.layers {
            let q = l.q.forward(&l.norm_latents.forward(&lat)).view([b, k, self.heads, hd]).transpose(1, 2);
            let kv = l.kv.forward(&l.norm_inputs.forward(x)).view([b, len, 2, self.heads, hd]).permute([2, 0, 3, 1, 4]);
            let a = Tensor::scaled_dot_product_attention(&q, &kv.get(0), &kv.get(1), Some(&m), 0.0, false, None, false);
            lat = &lat + l.o.forward(&a.transpose(1, 2).reshape([b, k, self.dim]));
            lat = &lat + l.ff2.forward(&l.ff1.forward(&l.norm_ff.forward(&lat)).gelu("none"));
        }
        self.final_norm.forward(&lat)
    }
}
