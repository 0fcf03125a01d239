//! Tensors for the encoder from a timeline store: training windows (inputs
//! and next-interaction targets) and evaluation histories. Inputs are feature
//! ids + 1 (0 pads); targets are raw ids (−100 where there is none). Short
//! windows are padded on the right.

use crate::data::catalog::{Catalog, Interaction};
use crate::data::split::{EvalCase, Window};
use crate::data::store::Store;
use crate::model::encoder::Feature;
use tch::{Device, Tensor};

/// The id of feature `f` of interaction `k`.
pub fn feature_id(store: &Store, f: Feature, k: usize) -> i64 {
    (match f {
        Feature::Item => store.arrays.item[k],
        Feature::Category => store.arrays.category[k],
        Feature::Rating => store.arrays.rating[k],
    }) as i64
}

/// Vocabulary size of each feature.
pub fn vocab_sizes(store: &Store, features: &[Feature]) -> Vec<(Feature, i64)> {
    features
        .iter()
        .map(|&f| {
            let n = match f {
                Feature::Item => store.manifest.counts.items,
                Feature::Category => store.vocab.category.len(),
                Feature::Rating => store.vocab.rating.len(),
            };
            (f, n as i64)
        })
        .collect()
}

/// The encoder shape a config describes, with vocabulary sizes from `store`
/// and room for `window` positions.
pub fn encoder_shape(
    store: &Store,
    enc: &crate::config::run::EncoderConfig,
    window: usize,
) -> crate::model::encoder::EncoderShape {
    crate::model::encoder::EncoderShape {
        features: vocab_sizes(store, &enc.features),
        dim: enc.dim as i64,
        layers: enc.layers as i64,
        heads: enc.heads as i64,
        ffn_mult: enc.ffn_mult as i64,
        max_len: window as i64,
        dropout: enc.dropout,
    }
}

pub struct TrainBatch {
    pub inputs: Vec<Tensor>,
    pub targets: Vec<Tensor>,
    /// Positions with a target.
    pub count: i64,
}

/// Windows → `[(batch, length)]` inputs and targets per feature.
pub fn train_batch(
    store: &Store,
    windows: &[&Window],
    features: &[Feature],
    length: usize,
    device: Device,
) -> TrainBatch {
    let b = windows.len();
    let mut inputs = vec![vec![0i64; b * length]; features.len()];
    let mut targets = vec![vec![-100i64; b * length]; features.len()];
    let mut count = 0;
    for (row, w) in windows.iter().enumerate() {
        let n = (w.end - w.start - 1).min(length);
        count += n as i64;
        for j in 0..n {
            for (fi, &f) in features.iter().enumerate() {
                inputs[fi][row * length + j] = feature_id(store, f, w.start + j) + 1;
                targets[fi][row * length + j] = feature_id(store, f, w.start + j + 1);
            }
        }
    }
    let t = |v: Vec<i64>| Tensor::from_slice(&v).view([b as i64, length as i64]).to_device(device);
    TrainBatch { inputs: inputs.into_iter().map(t).collect(), targets: targets.into_iter().map(t).collect(), count }
}

/// Positions with a target in a window (known without building tensors).
pub fn window_targets(w: &Window, length: usize) -> i64 {
    (w.end - w.start - 1).min(length) as i64
}

pub struct EvalBatch {
    pub inputs: Vec<Tensor>,
    /// Index of each row's last history position, `(batch)`.
    pub last: Tensor,
    /// The held-out item of each row, `(batch)`.
    pub target_items: Tensor,
}

pub fn eval_batch(
    store: &Store,
    cases: &[&EvalCase],
    features: &[Feature],
    length: usize,
    device: Device,
) -> EvalBatch {
    let histories: Vec<Vec<[i64; 3]>> = cases
        .iter()
        .map(|c| {
            (c.history.end - c.history.len().min(length)..c.history.end)
                .map(|k| [Feature::Item, Feature::Category, Feature::Rating].map(|f| feature_id(store, f, k)))
                .collect()
        })
        .collect();
    let last: Vec<i64> = histories.iter().map(|h| h.len() as i64 - 1).collect();
    let targets: Vec<i64> = cases.iter().map(|c| store.arrays.item[c.target] as i64).collect();
    EvalBatch {
        inputs: history_inputs(&histories, features, length, device),
        last: Tensor::from_slice(&last).to_device(device),
        target_items: Tensor::from_slice(&targets).to_device(device),
    }
}

/// Encoder inputs `[(batch, length)]` from histories of (item, category,
/// rating) ids, the last `length` interactions of each, left-aligned.
pub fn history_inputs(histories: &[Vec<[i64; 3]>], features: &[Feature], length: usize, device: Device) -> Vec<Tensor> {
    let b = histories.len();
    let mut inputs = vec![vec![0i64; b * length]; features.len()];
    for (row, h) in histories.iter().enumerate() {
        let h = &h[h.len().saturating_sub(length)..];
        for (j, x) in h.iter().enumerate() {
            for (fi, &f) in features.iter().enumerate() {
                let slot = match f {
                    Feature::Item => 0,
                    Feature::Category => 1,
                    Feature::Rating => 2,
                };
                inputs[fi][row * length + j] = x[slot] + 1;
            }
        }
    }
    inputs.into_iter().map(|v| Tensor::from_slice(&v).view([b as i64, length as i64]).to_device(device)).collect()
}

/// A catalog history as (item, category, rating) ids.
pub fn catalog_history(cat: &Catalog, history: &[Interaction]) -> Vec<[i64; 3]> {
    history.iter().map(|x| [x.item as i64, cat.primary_category(x.item) as i64, x.rating as i64]).collect()
}
