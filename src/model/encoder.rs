//! The USER-LLM user encoder: per-feature embedding tables (item, genre /
//! category, rating), concatenated per position and projected to the encoder
//! width, plus learned positions, through a causal pre-norm Transformer
//! (SDPA attention). Output: one embedding per history position, `(batch,
//! seq, dim)`. Pretraining adds one next-item head per feature.
//!
//! Feature ids are shifted by one so that 0 is padding.

use serde::{Deserialize, Serialize};
use tch::{nn, nn::Module, Kind, Tensor};

pub use crate::config::encoder::Feature;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EncoderShape {
    pub features: Vec<(Feature, i64)>,
    pub dim: i64,
    pub layers: i64,
    pub heads: i64,
    pub ffn_mult: i64,
    pub max_len: i64,
    pub dropout: f64,
}

#[derive(Debug)]
struct Block {
    norm1: nn::LayerNorm,
    qkv: nn::Linear,
    out: nn::Linear,
    norm2: nn::LayerNorm,
    ff1: nn::Linear,
    ff2: nn::Linear,
}

#[derive(Debug)]
pub struct UserEncoder {
    pub shape: EncoderShape,
    embeddings: Vec<nn::Embedding>,
    project: nn::Linear,
    positions: nn::Embedding,
    blocks: Vec<Block>,
    final_norm: nn::LayerNorm,
    /// One next-interaction head per feature (pretraining).
    heads: Vec<nn::Linear>,
}

impl UserEncoder {
    pub fn new(p: &nn::Path, shape: EncoderShape) -> Self {
        let d = shape.dim;
        let emb_dim = d;
        let embeddings = shape
            .features
            .iter()
            .map(|(f, vocab)| {
                nn::embedding(
                    p / "embed" / f.name(),
                    vocab + 1,
                    emb_dim,
                    nn::EmbeddingConfig { padding_idx: 0, ..Default::default() },
                )
            })
            .collect();
        let project = nn::linear(p / "project", emb_dim * shape.features.len() as i64, d, Default::default());
        let positions = nn::embedding(p / "positions", shape.max_len, d, Default::default());
        let blocks = (0..shape.layers)
            .map(|i| {
                let b = p / "blocks" / i;
                Block {
                    norm1: nn::layer_norm(&b / "norm1", vec![d], Default::default()),
                    qkv: nn::linear(&b / "qkv", d, 3 * d, Default::default()),
                    out: nn::linear(&b / "out", d, d, Default::default()),
                    norm2: nn::layer_norm(&b / "norm2", vec![d], Default::default()),
                    ff1: nn::linear(&b / "ff1", d, shape.ffn_mult * d, Default::default()),
                    ff2: nn::linear(&b / "ff2", shape.ffn_mult * d, d, Default::default()),
                }
            })
            .collect();
        let final_norm = nn::layer_norm(p / "final_norm", vec![d], Default::default());
        let heads = shape
            .features
            .iter()
            .map(|(f, vocab)| nn::linear(p / "head" / f.name(), d, *vocab, Default::default()))
            .collect();
        Self { shape, embeddings, project, positions, blocks, final_norm, heads }
    }

    /// Feature ids `[(batch, seq); features]` (0 = padding; real ids + 1) →
    /// embeddings `(batch, seq, dim)`. Positions attend only to themselves and
    /// earlier positions; padding keys are masked out.
    // `h += x` on a Tensor adds in place, overwriting what autograd saved
    // for the backward pass: the residuals stay `h = h + x`.
    #[allow(clippy::assign_op_pattern)]
    pub fn forward(&self, ids: &[Tensor], train: bool) -> Tensor {
        let (b, t) = ids[0].size2().expect("(batch, seq)");
        let feats: Vec<Tensor> = self.embeddings.iter().zip(ids).map(|(e, x)| e.forward(x)).collect();
        let pos = Tensor::arange(t, (Kind::Int64, ids[0].device()));
        let mut h = self.project.forward(&Tensor::cat(&feats, -1)) + self.positions.forward(&pos).unsqueeze(0);
        h = h.dropout(self.shape.dropout, train);
        // (batch, 1, seq, seq): causal and not padding.
        let valid = ids[0].ne(0);
        let causal = Tensor::ones([t, t], (Kind::Bool, h.device())).tril(0);
        let mask = causal.unsqueeze(0).logical_and(&valid.unsqueeze(1)).unsqueeze(1);
        // A fully padded query row would have no key: let it see itself.
        let eye = Tensor::eye(t, (Kind::Bool, h.device())).unsqueeze(0).unsqueeze(0);
        let mask = mask.logical_or(&eye);
        let heads = self.shape.heads;
        let hd = self.shape.dim / heads;
        for blk in &self.blocks {
            let x = blk.norm1.forward(&h);
            let qkv = blk.qkv.forward(&x).view([b, t, 3, heads, hd]).permute([2, 0, 3, 1, 4]);
            let (q, k, v) = (qkv.get(0), qkv.get(1), qkv.get(2));
            let p = if train { self.shape.dropout } else { 0.0 };
            let a = Tensor::scaled_dot_product_attention(&q, &k, &v, Some(&mask), p, false, None, false);
            h = h + blk
                .out
                .forward(&a.transpose(1, 2).reshape([b, t, self.shape.dim]))
                .dropout(self.shape.dropout, train);
            let y = blk.ff2.forward(&blk.ff1.forward(&blk.norm2.forward(&h)).gelu("none"));
            h = h + y.dropout(self.shape.dropout, train);
        }
        self.final_norm.forward(&h)
    }

    /// Next-interaction logits per feature, `[(batch, seq, vocab_f)]`.
    pub fn head_logits(&self, h: &Tensor) -> Vec<Tensor> {
        self.heads.iter().map(|l| l.forward(h)).collect()
    }

    /// Self-supervised loss: for each position with a next interaction, the
    /// cross-entropy of every feature of that next interaction (targets are
    /// real ids, −100 where there is none), summed over features and over
    /// positions. Returns (sum, number of positions); the trainer divides by
    /// the number of positions across all ranks.
    pub fn pretrain_loss_sum(&self, inputs: &[Tensor], targets: &[Tensor], train: bool) -> (Tensor, i64) {
        let h = self.forward(inputs, train);
        let logits = self.head_logits(&h);
        let count = targets[0].ne(-100).sum(Kind::Int64).int64_value(&[]);
        let mut total: Option<Tensor> = None;
        for (l, t) in logits.iter().zip(targets) {
            let v = l.size()[2];
            let ce = l.view([-1, v]).to_kind(Kind::Float).cross_entropy_loss::<Tensor>(
                &t.reshape([-1]),
                None,
                tch::Reduction::Sum,
                -100,
                0.0,
            );
            total = Some(match total {
                None => ce,
                Some(acc) => acc + ce,
            });
        }
        (total.expect("at least one feature"), count)
    }
}
