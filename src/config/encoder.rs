//! The `encoder:` section: the user encoder's shape and the per-interaction
//! features it embeds.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncoderConfig {
    #[serde(default = "d_dim")]
    pub dim: usize,
    #[serde(default = "d_layers")]
    pub layers: usize,
    #[serde(default = "d_heads")]
    pub heads: usize,
    /// Feed-forward width as a multiple of `dim`.
    #[serde(default = "d_ffn")]
    pub ffn_mult: usize,
    #[serde(default = "d_dropout")]
    pub dropout: f64,
    /// Which per-interaction features to embed (and predict in pretraining).
    #[serde(default = "d_features")]
    pub features: Vec<Feature>,
}

impl Default for EncoderConfig {
    fn default() -> Self {
        serde_json::from_str("{}").expect("every encoder field has a default")
    }
}

/// The per-interaction features a timeline store provides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Feature {
    Item,
    Category,
    Rating,
}

impl Feature {
    pub fn name(self) -> &'static str {
        match self {
            Feature::Item => "item",
            Feature::Category => "category",
            Feature::Rating => "rating",
        }
    }
}

fn d_dim() -> usize {
    64
}
fn d_layers() -> usize {
    2
}
fn d_heads() -> usize {
    4
}
fn d_ffn() -> usize {
    4
}
fn d_dropout() -> f64 {
    0.1
}
fn d_features() -> Vec<Feature> {
    use Feature::*;
    vec![Item, Category, Rating]
}
