//! The key/value cache of a generation.

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use super::Gemma3Config;

/// Keys (after RoPE) and values of every position run so far, per layer, shaped
/// `[batch, kv_heads, positions, head_dim]`. Sliding-window layers keep every position too and
/// mask the old ones, so one position counter serves all layers.
#[derive(Clone, Debug)]
pub struct KvCache<B: Backend> {
    layers: Vec<Option<(Tensor<B, 4>, Tensor<B, 4>)>>,
    len: usize,
}

impl<B: Backend> KvCache<B> {
    /// An empty cache for a model.
    pub fn new(config: &Gemma3Config) -> Self {
        KvCache {
            layers: vec![None; config.n_layers],
            len: 0,
        }
    }

    /// Positions held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no position has run yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Forgets every position (to start a new sequence).
    pub fn clear(&mut self) {
        self.layers.iter_mut().for_each(|l| *l = None);
        self.len = 0;
    }

    /// Appends a layer's new keys and values; returns all of that layer's keys and values.
    pub(super) fn append(
        &mut self,
        layer: usize,
        k: Tensor<B, 4>,
        v: Tensor<B, 4>,
    ) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let (k, v) = match self.layers[layer].take() {
            Some((pk, pv)) => (Tensor::cat(vec![pk, k], 2), Tensor::cat(vec![pv, v], 2)),
            None => (k, v),
        };
        self.layers[layer] = Some((k.clone(), v.clone()));
        (k, v)
    }

    /// Records that `n` positions were added to every layer.
    pub(super) fn advance(&mut self, n: usize) {
        self.len += n;
    }
}
