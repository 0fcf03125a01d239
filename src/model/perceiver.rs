//! A Perceiver resampler: `K` learned latent queries cross-attend to the
//! encoder's output sequence over a few layers (each cross-attention, then a
//! feed-forward block, both pre-norm and residual), so the LLM sees `K` user
//! tokens whatever the history length. The keys and values are the history's
//! positions, or (Flamingo's resampler) those followed by the latents.

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
    /// Keys and values are `[inputs; latents]`, not the inputs alone.
    with_latents: bool,
}

impl Perceiver {
    pub fn new(p: &nn::Path, dim: i64, latents: i64, layers: i64, heads: i64, with_latents: bool) -> Self {
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
            with_latents,
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
        let (m, n) = if self.with_latents {
            let ones = Tensor::ones([b, k], (tch::Kind::Bool, mask.device()));
            (Tensor::cat(&[mask.to_kind(tch::Kind::Bool), ones], 1).view([b, 1, 1, len + k]), len + k)
        } else {
            (mask.view([b, 1, 1, len]), len)
        };
        for l in &self.layers {
            let latents_in = l.norm_latents.forward(&lat);
            let q = l.q.forward(&latents_in).view([b, k, self.heads, hd]).transpose(1, 2);
            let inputs = l.norm_inputs.forward(x);
            let source = if self.with_latents { Tensor::cat(&[&inputs, &latents_in], 1) } else { inputs };
            let kv = l.kv.forward(&source).view([b, n, 2, self.heads, hd]).permute([2, 0, 3, 1, 4]);
            let a = Tensor::scaled_dot_product_attention(&q, &kv.get(0), &kv.get(1), Some(&m), 0.0, false, None, false);
            lat = &lat + l.o.forward(&a.transpose(1, 2).reshape([b, k, self.dim]));
            lat = &lat + l.ff2.forward(&l.ff1.forward(&l.norm_ff.forward(&lat)).gelu("none"));
        }
        self.final_norm.forward(&lat)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    /// One layer by hand: single-head attention of the normed latents over
    /// `source(inputs, latents)` with explicit matmuls and a masked softmax,
    /// then the feed-forward block and the final norm.
    fn by_hand(p: &Perceiver, x: &Tensor, mask: &Tensor, with_latents: bool) -> Tensor {
        let l = &p.layers[0];
        let lat = p.latents.unsqueeze(0);
        let latents_in = l.norm_latents.forward(&lat);
        let inputs = l.norm_inputs.forward(x);
        let (source, keep) = if with_latents {
            let k = p.latents();
            (
                Tensor::cat(&[&inputs, &latents_in], 1),
                Tensor::cat(&[mask.shallow_clone(), Tensor::ones([1, k], (Kind::Bool, Device::Cpu))], 1),
            )
        } else {
            (inputs, mask.shallow_clone())
        };
        let q = l.q.forward(&latents_in);
        let kv = l.kv.forward(&source);
        let (key, value) = (kv.narrow(2, 0, p.dim), kv.narrow(2, p.dim, p.dim));
        let scores = q.matmul(&key.transpose(1, 2)) / (p.dim as f64).sqrt();
        let scores = scores.masked_fill(&keep.logical_not().unsqueeze(1), f64::NEG_INFINITY);
        let a = scores.softmax(-1, Kind::Float).matmul(&value);
        let lat = &lat + l.o.forward(&a);
        let lat = &lat + l.ff2.forward(&l.ff1.forward(&l.norm_ff.forward(&lat)).gelu("none"));
        p.final_norm.forward(&lat)
    }

    #[test]
    fn both_key_choices_match_attention_written_out() {
        tch::manual_seed(4);
        for with_latents in [false, true] {
            let vs = nn::VarStore::new(Device::Cpu);
            let p = Perceiver::new(&vs.root(), 8, 3, 1, 1, with_latents);
            let x = Tensor::randn([1, 5, 8], tch::kind::FLOAT_CPU);
            let mask = Tensor::from_slice(&[true, true, true, false, false]).view([1, 5]);
            let got = tch::no_grad(|| p.forward(&x, &mask));
            let want = tch::no_grad(|| by_hand(&p, &x, &mask, with_latents));
            let diff = (&got - &want).abs().max().double_value(&[]);
            assert!(diff < 1e-5, "with_latents {with_latents}: differs by {diff}");
        }
        // The same weights give other latents when they also attend to themselves.
        let vs = nn::VarStore::new(Device::Cpu);
        let mut p = Perceiver::new(&vs.root(), 8, 3, 1, 1, false);
        let x = Tensor::randn([1, 5, 8], tch::kind::FLOAT_CPU);
        let mask = Tensor::ones([1, 5], (Kind::Bool, Device::Cpu));
        let inputs_only = tch::no_grad(|| p.forward(&x, &mask));
        p.with_latents = true;
        let flamingo = tch::no_grad(|| p.forward(&x, &mask));
        assert!((inputs_only - flamingo).abs().max().double_value(&[]) > 1e-4);
    }
}
