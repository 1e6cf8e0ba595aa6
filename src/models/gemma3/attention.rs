//! Grouped-query self-attention with q/k norms, NEOX RoPE and an optional sliding window.

use burn::module::Module;
use burn::tensor::activation::softmax;
use burn::tensor::{Bool, Device, Tensor, TensorData};

use super::cache::KvCache;
use super::norm::RmsNorm;
use super::rope::RopeTables;
use crate::nn::GgufLinear;

/// One layer's attention.
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

impl Attention {
    /// Attends `x` (`[batch, positions, d_model]`, the positions following those in `cache`)
    /// over the cache and itself. `mask` is [`causal_mask`]'s for this layer's window.
    pub fn forward(
        &self,
        x: Tensor<3>,
        layer: usize,
        rope: &RopeTables,
        mask: &Tensor<4, Bool>,
        cache: &mut KvCache,
    ) -> Tensor<3> {
        let [b, t, _] = x.dims();
        let (nh, nkv, hd) = (self.n_heads, self.n_kv_heads, self.head_dim);
        let start = cache.len();
        // [b, t, heads, hd]: the norms and RoPE work per head, positions in dim 1
        let heads = |y: Tensor<3>, n: usize| y.reshape([b, t, n, hd]);
        let q = self.q_norm.forward(heads(self.q.forward(x.clone()), nh));
        let k = self.k_norm.forward(heads(self.k.forward(x.clone()), nkv));
        let v = heads(self.v.forward(x), nkv).swap_dims(1, 2);
        let q = rope.apply(q, start).mul_scalar(self.scale).swap_dims(1, 2);
        let k = rope.apply(k, start).swap_dims(1, 2);
        let (k, v) = cache.append(layer, k, v);
        let s = k.dims()[2];

        // Query head h reads key/value head h / (nh / nkv): group the query heads of one kv head
        // into one matrix of (nh / nkv) · t rows.
        let g = nh / nkv;
        let q = q.reshape([b, nkv, g * t, hd]);
        let scores = q.matmul(k.swap_dims(2, 3)); // [b, nkv, g·t, s]
        let scores = scores.mask_fill(mask.clone().expand([b, nkv, g * t, s]), f32::NEG_INFINITY);
        let out = softmax(scores, 3).matmul(v); // [b, nkv, g·t, hd]
        let out = out
            .reshape([b, nh, t, hd])
            .swap_dims(1, 2)
            .reshape([b, t, nh * hd]);
        self.o.forward(out)
    }
}

/// The attention mask for `t` new queries at positions `start..start + t` over `keys` key slots
/// (`keys ≥ start + t`: the cache's capacity), repeated for `groups` query heads per kv head:
/// `true` = masked. A query at p sees keys at q ≤ p, and with a window only those with
/// p − q < window (llama.cpp's `LLAMA_SWA_TYPE_STANDARD`); slots past p are masked, so unused
/// cache slots never count.
pub fn causal_mask(
    start: usize,
    t: usize,
    keys: usize,
    groups: usize,
    window: Option<usize>,
    device: &Device,
) -> Tensor<4, Bool> {
    let s = keys;
    let mut mask = Vec::with_capacity(groups * t * s);
    for _ in 0..groups {
        for i in 0..t {
            let p = start + i;
            mask.extend((0..s).map(|q| q > p || window.is_some_and(|w| p - q >= w)));
        }
    }
    Tensor::from_data(TensorData::new(mask, [1, 1, groups * t, s]), device)
}
