//! The decoder-only Llama family (Llama 2/3, SmolLM2, TinyLlama, Qwen2's QKV
//! biases): token embeddings → decoder layers → RMSNorm → LM head (tied to the
//! embeddings or its own). Variables are named as in Hugging Face checkpoints
//! (`model.layers.3.self_attn.q_proj.weight`), so checkpoints load by name.

pub mod attention;
pub mod config;
pub mod decoder_layer;
pub mod linear;
pub mod load;
pub mod mlp;
pub mod rms_norm;
pub mod rope;

use attention::LayerCache;
pub use config::LlamaConfig;
use decoder_layer::DecoderLayer;
use linear::Linear;
use rms_norm::RmsNorm;
use rope::Rope;
use tch::{nn, Device, Kind, Tensor};

/// Rotary tables are built for at most this many positions (or the model's
/// maximum, if smaller).
pub const MAX_ROPE_POSITIONS: usize = 16384;

pub struct Llama {
    pub config: LlamaConfig,
    pub vs: nn::VarStore,
    /// `(vocab, hidden)`.
    pub embed_tokens: Tensor,
    pub layers: Vec<DecoderLayer>,
    pub norm: RmsNorm,
    /// `None` when the head is tied to `embed_tokens`.
    pub lm_head: Option<Linear>,
    pub rope: Rope,
}

/// Per-layer keys and values for incremental decoding.
#[derive(Debug, Default)]
pub struct KvCache {
    pub layers: Vec<LayerCache>,
    /// Positions already processed.
    pub seen: i64,
    /// Which of them may be attended to `(batch, seen)`, once some may not.
    pub valid: Option<Tensor>,
}

impl KvCache {
    pub fn new(layers: usize) -> Self {
        Self { layers: (0..layers).map(|_| LayerCache::default()).collect(), seen: 0, valid: None }
    }

    /// A cache whose batch rows are this cache's `rows` (e.g. each prompt's
    /// cache once per continuation to score).
    pub fn select_rows(&self, rows: &Tensor) -> Self {
        let pick = |t: &Option<Tensor>| t.as_ref().map(|t| t.index_select(0, rows));
        Self {
            layers: self.layers.iter().map(|l| LayerCache { k: pick(&l.k), v: pick(&l.v) }).collect(),
            seen: self.seen,
            valid: pick(&self.valid),
        }
    }
}

impl Llama {
    /// A model with zero-initialised variables of `kind` on `device` (load
    /// weights with [`load::load_weights`]).
    pub fn new(config: LlamaConfig, device: Device, kind: Kind) -> Self {
        let mut vs = nn::VarStore::new(device);
        let root = vs.root();
        let m = &root / "model";
        let c = &config;
        let embed_tokens =
            (&m / "embed_tokens").var("weight", &[c.vocab_size as i64, c.hidden_size as i64], nn::Init::Const(0.0));
        let layers = (0..c.num_hidden_layers).map(|i| DecoderLayer::new(&m / "layers" / i, c)).collect();
        let norm = RmsNorm::new(&m / "norm", c.hidden_size, c.rms_norm_eps);
        let lm_head =
            (!c.tie_word_embeddings).then(|| Linear::new(&root / "lm_head", c.hidden_size, c.vocab_size, false));
        if kind != Kind::Float {
            // Converts in place: the tensors held above see the new dtype.
            vs.set_kind(kind);
        }
        let rope = Rope::new(c, c.max_position_embeddings.min(MAX_ROPE_POSITIONS), device);
        Self { embed_tokens, layers, norm, lm_head, rope, vs, config }
    }

    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// Token ids `(batch, seq)` → embeddings `(batch, seq, hidden)`.
    pub fn embed(&self, ids: &Tensor) -> Tensor {
        Tensor::embedding(&self.embed_tokens, ids, -1, false, false)
    }

    /// Embeddings through every layer and the final norm. With a cache, the
    /// positions continue from `cache.seen` and the cache grows.
    pub fn hidden_states(&self, embeds: &Tensor, cache: Option<&mut KvCache>) -> Tensor {
        self.hidden_states_with(embeds, cache, None, &mut |_, h| h)
    }

    /// As [`hidden_states`](Self::hidden_states), with `between(layer, h)` run
    /// in each layer between self-attention and the MLP.
    pub fn hidden_states_with(
        &self,
        embeds: &Tensor,
        mut cache: Option<&mut KvCache>,
        valid: Option<&Tensor>,
        between: &mut dyn FnMut(usize, Tensor) -> Tensor,
    ) -> Tensor {
        let start = cache.as_ref().map(|c| c.seen).unwrap_or(0);
        let t = embeds.size()[1];
        assert!(
            start + t <= self.rope.max_positions(),
            "sequence of {} positions exceeds the {} this model supports",
            start + t,
            self.rope.max_positions()
        );
        // Which keys may be attended to: the cache's, then these positions'.
        let earlier = cache.as_ref().and_then(|c| c.valid.as_ref());
        let keys = match (earlier, valid) {
            (None, None) => None,
            (e, v) => {
                let all = |n: i64| Tensor::ones([embeds.size()[0], n], (tch::Kind::Bool, embeds.device()));
                let e = e.map(|e| e.shallow_clone()).unwrap_or_else(|| all(start));
                let v = v.map(|v| v.shallow_clone()).unwrap_or_else(|| all(t));
                Some(Tensor::cat(&[e, v], 1))
            }
        };
        let mut h = embeds.shallow_clone();
        for (i, layer) in self.layers.iter().enumerate() {
            let lc = cache.as_mut().map(|c| &mut c.layers[i]);
            h = layer.forward_with(&h, &self.rope, start, lc, keys.as_ref(), |x| between(i, x));
        }
        if let Some(c) = cache {
            c.seen += t;
            c.valid = keys;
        }
        self.norm.forward(&h)
    }

    /// Final hidden states → logits `(..., vocab)`.
    pub fn logits(&self, hidden: &Tensor) -> Tensor {
        match &self.lm_head {
            Some(head) => head.forward(hidden),
            None => hidden.linear(&self.embed_tokens, None::<Tensor>),
        }
    }

    /// Final hidden states `(batch, seq, hidden)` → the last position's
    /// logits `(batch, 1, vocab)`: all that generation reads, without the
    /// LM head over the whole prompt (a fifth of a prefill's FLOPs with
    /// SmolLM2-135M's 49,152-token vocabulary).
    pub fn last_logits(&self, hidden: &Tensor) -> Tensor {
        self.logits(&hidden.narrow(1, hidden.size()[1] - 1, 1))
    }

    /// Token ids `(batch, seq)` → logits `(batch, seq, vocab)`.
    pub fn forward(&self, ids: &Tensor, cache: Option<&mut KvCache>) -> Tensor {
        self.logits(&self.hidden_states(&self.embed(ids), cache))
    }
}
