//! A decoder layer on the CubeCL backend ([`TransformerBackend::decoder_layer`]): the layer's
//! ops, with the ones that only prepare or join another fused into it (PERF.md): the query and
//! key heads' norms and RoPE and the cache writes in one kernel ([`kernel::attention_inputs`]),
//! and each post-norm with its residual add (after attention, also with the MLP's pre-norm:
//! [`kernel::add_rms_norm_next`]), and, in a decoding step, the MLP's gate and up projections
//! with its activation ([`kernel::quant_gemv_gated`]). A decoding step launches 10 kernels fewer
//! a layer; the values are the ops' apart.

use burn::backend::TensorMetadata;
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::tensor::Shape;
use burn_cubecl::CubeBackend;

use super::cube::{ok, start};
use crate::kernel;
use crate::ops::layer::{
    self, DecoderLayerConfig, DecoderLayerWeights, KvBuffers, LayerLinear, linear,
};
use crate::ops::{Positions, TransformerBackend};
use crate::quant::{Activations, PackedLayout};

type B = CubeBackend;

/// The layer over `x` `[batch, t, d_model]` (see [`TransformerBackend::decoder_layer`]). With
/// activations of another dtype than the RoPE tables (f16 activations, f32 tables) the fused
/// kernels do not apply and the layer runs op by op, as the other backends do.
pub(super) fn decoder_layer(
    x: FloatTensor<B>,
    w: DecoderLayerWeights<B>,
    cache: KvBuffers<B>,
    cos: FloatTensor<B>,
    sin: FloatTensor<B>,
    positions: Positions<B>,
    c: DecoderLayerConfig,
) -> (FloatTensor<B>, KvBuffers<B>) {
    if x.dtype() != cos.dtype() {
        return layer::forward::<B>(x, w, cache, cos, sin, positions, c);
    }
    let [b, t, _] = x.shape().dims();
    let (nh, nkv, hd, eps) = (c.n_heads, c.n_kv_heads, c.head_dim, c.eps);
    let at = start(positions);
    let heads = |y: FloatTensor<B>, n: usize| B::float_reshape(y, Shape::from([b, t, n, hd]));

    let h = B::rms_norm(x.clone(), w.attn_norm, eps);
    let q = heads(linear::<B>(h.clone(), w.q), nh);
    let k = heads(linear::<B>(h.clone(), w.k), nkv);
    let v = heads(linear::<B>(h, w.v), nkv);
    let (q, k, v) = ok(kernel::attention_inputs(
        [q, k, v],
        [w.q_norm, w.k_norm],
        (cos, sin),
        (cache.k, cache.v),
        at.clone(),
        eps,
    ));
    let a = ok(kernel::attention(
        q,
        k.clone(),
        v.clone(),
        at,
        c.window,
        c.scale,
    ));
    let a = linear::<B>(B::float_reshape(a, Shape::from([b, t, nh * hd])), w.o);
    let (x, h) = ok(kernel::add_rms_norm_next(
        x,
        a,
        w.post_attn_norm,
        w.ffn_norm,
        eps,
    ));
    let gated = gated_mlp(h, w.gate, w.up);
    let y = linear::<B>(gated, w.down);
    let x = ok(kernel::add_rms_norm(x, y, w.post_ffn_norm, eps));
    (x, KvBuffers { k, v })
}

/// `gelu_tanh(h · gate) · (h · up)`: one launch ([`kernel::quant_gemv_gated`]) where both
/// weights are quantized alike in the GGUF layout, read float activations and `h` has at most
/// [`kernel::MAX_ROWS`] rows (a decoding step), else the two products and
/// [`TransformerBackend::gelu_mul`].
fn gated_mlp(h: FloatTensor<B>, gate: LayerLinear<B>, up: LayerLinear<B>) -> FloatTensor<B> {
    match (gate, up) {
        (
            LayerLinear::Quant {
                words: g,
                desc,
                activations: Activations::Float,
            },
            LayerLinear::Quant {
                words: u,
                desc: up_desc,
                activations: Activations::Float,
            },
        ) if desc == up_desc
            && desc.layout == PackedLayout::Gguf
            && h.shape().num_elements() / desc.in_features <= kernel::MAX_ROWS =>
        {
            ok(kernel::quant_gemv_gated(h, g, u, desc))
        }
        (gate, up) => B::gelu_mul(linear::<B>(h.clone(), gate), linear::<B>(h, up)),
    }
}
