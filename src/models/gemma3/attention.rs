//! Grouped-query self-attention's weights: q/k/v/o projections and the q/k head norms.

use burn::module::Module;

use super::norm::RmsNorm;
use crate::nn::GgufLinear;

/// One layer's attention: its weights and head shapes. [`Block`](super::Block)'s layer runs it
/// as part of one [`ops::decoder_layer`](crate::ops::decoder_layer): the q/k norms and RoPE per
/// head, the keys and values written into the cache, [`ops::attention`](crate::ops::attention)
/// over the cache read in place.
#[derive(Module, Debug)]
pub struct Attention {
    /// `attn_q`: d_model → n_heads · head_dim.
    pub q: GgufLinear,
    /// `attn_k`: d_model → n_kv_heads · head_dim.
    pub k: GgufLinear,
    /// `attn_v`: d_model → n_kv_heads · head_dim.
    pub v: GgufLinear,
    /// `attn_output`: n_heads · head_dim → d_model.
    pub o: GgufLinear,
    /// `attn_q_norm`, per head.
    pub q_norm: RmsNorm,
    /// `attn_k_norm`, per head.
    pub k_norm: RmsNorm,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads.
    pub n_kv_heads: usize,
    /// Head width.
    pub head_dim: usize,
    /// Query scale.
    pub scale: f64,
}
