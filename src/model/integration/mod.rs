//! Integration modes: how a user's embeddings reach the LLM. Each mode is one
//! file implementing [`Mode`]; model assembly, the forward passes, the cost
//! model, asking, export, sweep planning and the benchmarks all go through it.
//!
//! To add a mode: a file here with a type implementing [`Mode`], a variant of
//! [`Integration`] (`config/finetune.rs`, its YAML name), and one line in
//! the `modes!` list below.

pub use crate::config::finetune::Integration;
use crate::config::finetune::Placement;
use tch::Tensor;

/// Declares each mode's file and maps its `Integration` variant to it.
macro_rules! modes {
    ($($variant:ident => $file:ident::$mode:ident),* $(,)?) => {
        $(mod $file;)*

        impl Integration {
            /// The implementation of this mode (the enum is the config's, in
            /// the config layer; its behaviour is the model's, here).
            pub fn mode(self) -> &'static dyn Mode {
                match self {
                    $(Integration::$variant => &$file::$mode,)*
                }
            }
        }
    };
}

// The registry: `Integration` variant => file::type. A new mode is one line here.
modes! {
    CrossAttention => cross_attention::CrossAttention,
    SoftPrompt => soft_prompt::SoftPrompt,
    TextPrompt => text_prompt::TextPrompt,
}

/// What the decoder reads for one forward pass.
pub struct DecoderInput {
    /// Input hidden states `(batch, positions, hidden)`.
    pub hidden: Tensor,
    /// The user embeddings the cross-attention blocks read (empty without blocks).
    pub user: Tensor,
    /// Leading positions that are not text; their outputs are dropped.
    pub skip: i64,
    /// Which positions of `hidden` later positions may attend to
    /// `(batch, positions)`, when some may not (padded user slots).
    pub valid: Option<Tensor>,
}

pub trait Mode: Sync {
    /// Whether the LLM reads user embeddings (encoder → Perceiver →
    /// projection). Without them there is no encoder to pretrain or train.
    fn reads_user(&self) -> bool {
        true
    }

    /// Whether the prompt carries the history as text.
    fn history_in_prompt(&self) -> bool {
        false
    }

    /// Decoder layers that get a gated cross-attention block, of `layers`.
    fn cross_attention_layers(&self, _placement: &Placement, _layers: usize) -> Result<Vec<usize>, String> {
        Ok(Vec::new())
    }

    /// The decoder's input for token embeddings `(batch, t, hidden)` and user
    /// embeddings `(batch, k, hidden)` with their mask `(batch, k)`;
    /// `continuing` when a KV cache already holds earlier positions.
    fn decoder_input(&self, embeds: &Tensor, user: &Tensor, mask: &Tensor, continuing: bool) -> DecoderInput;

    /// Positions the decoder reads besides the text, for `user` user tokens.
    fn extra_positions(&self, _user: f64) -> f64 {
        0.0
    }

    /// Forward FLOPs of the mode's own blocks for `text` positions reading
    /// `user` user tokens, with `blocks` blocks of width `hidden`.
    fn block_flops(&self, _blocks: usize, _hidden: f64, _text: f64, _user: f64) -> f64 {
        0.0
    }
}

/// No user tensor (for modes without cross-attention blocks).
fn none(like: &Tensor) -> Tensor {
    Tensor::zeros([0], (tch::Kind::Float, like.device()))
}
