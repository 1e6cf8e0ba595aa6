//! Grouped-query self-attention with q/k norms, NEOX RoPE and an optional sliding window.

use burn::module::Module;
use burn::tensor::Tensor;

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
    /// over the cache and itself; with `window`, each position sees only the last `window`
    /// positions up to its own (the sliding-window layers). The attention itself is one fused
    /// op ([`crate::ops::attention`]) reading the cache in place.
    pub fn forward(
        &self,
        x: Tensor<3>,
        layer: usize,
        rope: &RopeTables,
        window: Option<usize>,
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
        let q = rope.apply(q, start);
        let k = rope.apply(k, start).swap_dims(1, 2);
        let (k, v) = cache.append(layer, k, v);
        let out = crate::ops::attention(q, k, v, start, window, self.scale);
        self.o.forward(out.reshape([b, t, nh * hd]))
    }
}
