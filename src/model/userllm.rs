//! USER-LLM assembled: user encoder → optional Perceiver → projection to the
//! LLM width → integration into the decoder, by gated cross-attention in
//! chosen layers or as a soft prompt prepended to the token embeddings
//! (TextPrompt, the baseline, needs no encoder: the history is in the text).
//! The finetuning strategies decide which parts train.

use crate::model::encoder::{EncoderShape, UserEncoder};
use crate::model::llama::{KvCache, Llama};
use crate::model::lora::{LoraConfig, ADAPTABLE};
use crate::model::perceiver::Perceiver;
use crate::model::recompute::Segments;
use crate::model::xattn::{GatedCrossAttention, Placement};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::cell::Cell;
use std::collections::BTreeMap;
use tch::{nn, nn::Module, Kind, Tensor};

use crate::config::finetune::FinetuneConfig;
pub use crate::config::finetune::{Integration, PerceiverConfig, ProjectionKind, Strategy};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserLlmConfig {
    pub integration: Integration,
    pub cross_attention_layers: Placement,
    pub perceiver: Option<PerceiverConfig>,
    pub projection: ProjectionKind,
    pub strategy: Strategy,
    pub lora: LoraConfig,
}

impl UserLlmConfig {
    /// The model half of a `finetune:` section.
    pub fn from_finetune(f: &FinetuneConfig) -> Self {
        Self {
            integration: f.integration,
            cross_attention_layers: f.cross_attention_layers.clone(),
            perceiver: f.perceiver.clone(),
            projection: f.projection,
            strategy: f.strategy,
            lora: f.lora.clone(),
        }
    }
}

/// The parts of the model, for freezing and parameter counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Part {
    Llm,
    Lora,
    Encoder,
    /// The encoder's next-item pretraining heads: finetuning does not use them.
    PretrainHeads,
    Perceiver,
    Projection,
    CrossAttention,
}

impl Part {
    pub fn of(name: &str) -> Part {
        if name.starts_with("encoder.head.") {
            return Part::PretrainHeads;
        }
        match name.split('.').next().unwrap_or("") {
            "lora" => Part::Lora,
            "encoder" => Part::Encoder,
            "perceiver" => Part::Perceiver,
            "projection" => Part::Projection,
            "xattn" => Part::CrossAttention,
            _ => Part::Llm,
        }
    }

    pub fn trains(self, s: Strategy) -> bool {
        match self {
            Part::Llm => s == Strategy::Full,
            Part::Lora => s == Strategy::Lora,
            Part::Encoder => s != Strategy::Proj,
            Part::PretrainHeads => false,
            Part::Perceiver | Part::Projection | Part::CrossAttention => true,
        }
    }
}

enum Projection {
    Linear(nn::Linear),
    Mlp(nn::Linear, nn::Linear),
}

pub struct UserLlm {
    pub llm: Llama,
    /// Encoder, Perceiver, projection, cross-attention and LoRA variables.
    pub vs: nn::VarStore,
    pub encoder: UserEncoder,
    pub perceiver: Option<Perceiver>,
    projection: Projection,
    pub integration: Integration,
    pub xattn: BTreeMap<usize, GatedCrossAttention>,
    pub strategy: Strategy,
    /// Recompute each decoder layer in backward instead of keeping its
    /// activations (training forwards only).
    pub activation_checkpointing: Cell<bool>,
    training: Cell<bool>,
    segments: Segments,
}

impl UserLlm {
    pub fn new(mut llm: Llama, encoder: EncoderShape, cfg: &UserLlmConfig) -> Result<Self> {
        let vs = nn::VarStore::new(llm.device());
        let root = vs.root();
        let hidden = llm.config.hidden_size;
        let enc_dim = encoder.dim;
        let encoder = UserEncoder::new(&(&root / "encoder"), encoder);
        let perceiver = cfg.perceiver.as_ref().map(|p| {
            let with_latents = p.keys == crate::config::finetune::PerceiverKeys::InputsAndLatents;
            Perceiver::new(
                &(&root / "perceiver"),
                enc_dim,
                p.latents as i64,
                p.layers as i64,
                p.heads as i64,
                with_latents,
            )
        });
        let pp = &root / "projection";
        let projection = match cfg.projection {
            ProjectionKind::Linear => {
                Projection::Linear(nn::linear(&pp / "0", enc_dim, hidden as i64, Default::default()))
            }
            ProjectionKind::Mlp => Projection::Mlp(
                nn::linear(&pp / "0", enc_dim, hidden as i64, Default::default()),
                nn::linear(&pp / "2", hidden as i64, hidden as i64, Default::default()),
            ),
        };
        let mut xattn = BTreeMap::new();
        let layers = cfg
            .integration
            .mode()
            .cross_attention_layers(&cfg.cross_attention_layers, llm.layers.len())
            .map_err(|e| anyhow::anyhow!("cross_attention_layers: {e}"))?;
        for l in layers {
            xattn.insert(
                l,
                GatedCrossAttention::new(
                    &root / "xattn" / l,
                    hidden,
                    llm.config.num_attention_heads,
                    llm.config.rms_norm_eps,
                ),
            );
        }
        if cfg.strategy == Strategy::Lora {
            if let Some(bad) = cfg.lora.target_modules.iter().find(|m| !ADAPTABLE.contains(&m.as_str())) {
                bail!("lora.target_modules: {bad:?} is not one of {ADAPTABLE:?}");
            }
            let lp = &root / "lora" / "model" / "layers";
            for (i, layer) in llm.layers.iter_mut().enumerate() {
                let t = |m: &str| cfg.lora.target_modules.iter().any(|x| x == m);
                let a = &mut layer.self_attn;
                for (name, lin) in [
                    ("q_proj", &mut a.q_proj),
                    ("k_proj", &mut a.k_proj),
                    ("v_proj", &mut a.v_proj),
                    ("o_proj", &mut a.o_proj),
                ] {
                    if t(name) {
                        lin.add_lora(&lp / i / "self_attn" / name, &cfg.lora);
                    }
                }
                let m = &mut layer.mlp;
                for (name, lin) in
                    [("gate_proj", &mut m.gate_proj), ("up_proj", &mut m.up_proj), ("down_proj", &mut m.down_proj)]
                {
                    if t(name) {
                        lin.add_lora(&lp / i / "mlp" / name, &cfg.lora);
                    }
                }
            }
        }
        let model = Self {
            llm,
            vs,
            encoder,
            perceiver,
            projection,
            integration: cfg.integration,
            xattn,
            strategy: cfg.strategy,
            activation_checkpointing: Cell::new(false),
            training: Cell::new(false),
            segments: Segments::default(),
        };
        model.apply_strategy();
        Ok(model)
    }

    /// Every variable by name, the LLM's under their Hugging Face names (with
    /// TextPrompt, only the LLM's and its adapters').
    pub fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let text_only = !self.integration.mode().reads_user();
        let mut v: Vec<(String, Tensor)> = self
            .llm
            .vs
            .variables()
            .into_iter()
            .chain(self.vs.variables())
            .filter(|(n, _)| !text_only || matches!(Part::of(n), Part::Llm | Part::Lora))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Freeze what the strategy does not train.
    fn apply_strategy(&self) {
        for (name, t) in self.named_parameters() {
            let _ = t.shallow_clone().set_requires_grad(Part::of(&name).trains(self.strategy));
        }
    }

    /// What a finetuned model saves: every tensor but the frozen base LLM's
    /// (all of them with the Full strategy).
    pub fn trained_weights(&self) -> Vec<(String, Tensor)> {
        self.named_parameters()
            .into_iter()
            .filter(|(n, _)| Part::of(n) != Part::Llm || self.strategy == Strategy::Full)
            .collect()
    }

    /// Copy the tensors of a safetensors file (as [`trained_weights`](Self::trained_weights)
    /// wrote them) into this model; every tensor of `expected` must be in it
    /// (a file of another configuration would otherwise leave parts of the
    /// model as they were built). Returns how many there were.
    pub fn load_weights(&self, path: &std::path::Path, expected: &[(String, Tensor)]) -> Result<usize> {
        let saved = super::weights::read_tensors(path)?;
        if let Some((name, _)) = expected.iter().find(|(n, _)| !saved.contains_key(n)) {
            let missing = expected.iter().filter(|(n, _)| !saved.contains_key(n)).count();
            bail!(
                "{}: no tensor {name} ({missing} of the {} this model needs are missing; the file holds {}): was it written for another configuration?",
                path.display(),
                expected.len(),
                saved.len()
            );
        }
        let named: BTreeMap<String, Tensor> = self.named_parameters().into_iter().collect();
        tch::no_grad(|| -> Result<()> {
            for (name, src) in &saved {
                let p = named.get(name).with_context(|| {
                    format!("{}: tensor {name} is not part of this model (another configuration?)", path.display())
                })?;
                if p.size() != src.size() {
                    bail!("{}: tensor {name} has shape {:?}, the model {:?}", path.display(), src.size(), p.size());
                }
                p.shallow_clone().copy_(&src.to_device(p.device()).to_kind(p.kind()));
            }
            Ok(())
        })?;
        Ok(saved.len())
    }

    /// (trainable, total) parameter counts.
    pub fn parameter_counts(&self) -> (i64, i64) {
        self.named_parameters().iter().fold((0, 0), |(tr, all), (n, t)| {
            let k = t.numel() as i64;
            (tr + if Part::of(n).trains(self.strategy) { k } else { 0 }, all + k)
        })
    }

    /// Projected user embeddings `(batch, k, hidden)` and their mask `(batch, k)`
    /// from feature ids `[(batch, len)]` (0 = padding).
    pub fn user_embeddings(&self, feature_ids: &[Tensor], train: bool) -> (Tensor, Tensor) {
        let h = self.encoder.forward(feature_ids, train);
        let mask = feature_ids[0].ne(0);
        let (h, mask) = match &self.perceiver {
            Some(p) => {
                let lat = p.forward(&h, &mask);
                let k = lat.size()[1];
                let ones = Tensor::ones([lat.size()[0], k], (Kind::Bool, lat.device()));
                (lat, ones)
            }
            None => (h, mask),
        };
        let e = match &self.projection {
            Projection::Linear(l) => l.forward(&h),
            Projection::Mlp(a, b) => b.forward(&a.forward(&h).gelu("none")),
        };
        (e, mask)
    }

    /// Token ids `(batch, seq)` read with the user's history → logits `(batch, seq, vocab)`.
    pub fn forward(&self, token_ids: &Tensor, feature_ids: &[Tensor], train: bool) -> Tensor {
        let (user, mask) = self.user_embeddings(feature_ids, train);
        self.forward_with_user(token_ids, &user, &mask, None)
    }

    /// As [`forward`](Self::forward) with user embeddings already computed
    /// (`(batch, k, hidden)`, mask `(batch, k)`), optionally continuing a cache.
    /// With a soft prompt, the user tokens are prepended only when the cache is
    /// empty (they are the first positions).
    pub fn forward_with_user(
        &self,
        token_ids: &Tensor,
        user: &Tensor,
        mask: &Tensor,
        cache: Option<&mut KvCache>,
    ) -> Tensor {
        self.llm.logits(&self.hidden_with_user(token_ids, user, mask, cache))
    }

    /// As [`forward_with_user`](Self::forward_with_user), the final hidden
    /// states of the text positions `(batch, seq, hidden)` before the LM
    /// head, for a caller that needs the logits of a few positions only.
    pub fn hidden_with_user(
        &self,
        token_ids: &Tensor,
        user: &Tensor,
        mask: &Tensor,
        cache: Option<&mut KvCache>,
    ) -> Tensor {
        let embeds = self.llm.embed(token_ids);
        if cache.is_none() && self.training.get() && self.activation_checkpointing.get() {
            return self.checkpointed_hidden(&embeds, user, mask);
        }
        let continuing = cache.as_ref().is_some_and(|c| c.seen > 0);
        let input = self.integration.mode().decoder_input(&embeds, user, mask, continuing);
        let valid = input.valid.as_ref();
        let h =
            self.llm.hidden_states_with(&input.hidden, cache, valid, &mut |layer, h| match self.xattn.get(&layer) {
                Some(block) => block.forward(&h, &input.user, mask),
                None => h,
            });
        text_part(h, input.skip, embeds.size()[1])
    }

    /// Token ids read with the history as text (TextPrompt): the LLM alone.
    pub fn hidden_text(&self, token_ids: &Tensor) -> Tensor {
        let none = Tensor::zeros([0], (Kind::Float, self.llm.device()));
        self.hidden_with_user(token_ids, &none, &none, None)
    }

    /// The training forward with each decoder layer (and its cross-attention
    /// block) as a recomputed segment.
    fn checkpointed_hidden(&self, embeds: &Tensor, user: &Tensor, mask: &Tensor) -> Tensor {
        let input = self.integration.mode().decoder_input(embeds, user, mask, false);
        let (mut h, user) = (input.hidden, input.user);
        for (i, layer) in self.llm.layers.iter().enumerate() {
            let block = self.xattn.get(&i);
            let rope = &self.llm.rope;
            let mask = mask.shallow_clone();
            let valid = input.valid.as_ref().map(|v| v.shallow_clone());
            // SAFETY: the segment borrows this model's layer, rope and block;
            // `release_segments` runs after the backward pass, and the model outlives it.
            h = unsafe {
                self.segments.run(&h, &user, move |h, u| {
                    layer.forward_with(h, rope, 0, None, valid.as_ref(), |x| match block {
                        Some(b) => b.forward(&x, u, &mask),
                        None => x,
                    })
                })
            };
        }
        text_part(self.llm.norm.forward(&h), input.skip, embeds.size()[1])
    }

    /// Free the recomputation segments of earlier training forwards; call
    /// after their backward pass.
    pub fn release_segments(&self) {
        self.segments.release();
    }

    /// Per cross-attention layer, `tanh(alpha)`.
    pub fn gates(&self) -> Vec<(usize, f64)> {
        self.xattn.iter().map(|(l, b)| (*l, b.gate())).collect()
    }

    /// Switch dropout (encoder dropout is passed per call; LoRA's is a flag).
    pub fn set_training(&self, on: bool) {
        self.training.set(on);
        for lin in self.llm.layers.iter().flat_map(|l| l.linears()) {
            if let Some(l) = &lin.lora {
                l.training.set(on);
            }
        }
    }

    /// Fold the LoRA adapters into the LLM's weights (what evaluation after
    /// finetuning and the export use).
    pub fn merge_lora(&mut self) {
        for lin in self.llm.layers.iter_mut().flat_map(|l| l.linears_mut()) {
            lin.merge_lora();
        }
    }
}

/// The `t` text positions after the first `skip` of the decoder's output `h`.
fn text_part(h: Tensor, skip: i64, t: i64) -> Tensor {
    if skip > 0 {
        h.narrow(1, skip, t)
    } else {
        h
    }
}
