//! A whole decoder layer as one op ([`TransformerBackend::decoder_layer`]): what it takes (the
//! layer's weights, its key/value buffers, the RoPE tables), its one body of Burn ops, and the
//! `Tensor`-level [`decoder_layer`].
//!
//! Under Burn's fusion (the GPU backends) a layer is then one registered op instead of ~25: its
//! body runs on the inner CubeCL backend, each step a kernel launched directly, which costs a
//! fraction of a fused op's host time (PERF.md). The key/value buffers are taken by value and
//! written in place where nothing else holds them.

use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{Backend, Dispatch, ExtensionType, TensorMetadata};
use burn::tensor::{Shape, Tensor};

use super::{Positions, QuantBackend, TransformerBackend};
use crate::dims::with_last_dim;
use crate::quant::{Activations, QuantWeightDesc};

/// One linear projection of a layer, `[.., d_in] → [.., d_out]`, as the layer holds it: a
/// quantized weight (the words of [`QuantWeight`](super::QuantWeight), multiplied by
/// [`QuantBackend::quant_matmul`]) or a dense one (`[d_in, d_out]`, `burn::nn::Linear`'s
/// layout), each with or without a bias `[d_out]`.
#[derive(ExtensionType, Clone, Debug)]
#[extension_type(fusion: cfg(feature = "cube"))]
pub enum LayerLinear<B: Backend> {
    /// A quantized weight.
    Quant {
        /// The packed words.
        words: IntTensor<B>,
        /// What they hold.
        desc: QuantWeightDesc,
        /// How the product reads its activations.
        activations: Activations,
    },
    /// A quantized weight and a bias.
    QuantBiased {
        /// The packed words.
        words: IntTensor<B>,
        /// What they hold.
        desc: QuantWeightDesc,
        /// How the product reads its activations.
        activations: Activations,
        /// The bias, `[d_out]`.
        bias: FloatTensor<B>,
    },
    /// A dense weight, `[d_in, d_out]`.
    Dense {
        /// The weight.
        weight: FloatTensor<B>,
    },
    /// A dense weight, `[d_in, d_out]`, and a bias.
    DenseBiased {
        /// The weight.
        weight: FloatTensor<B>,
        /// The bias, `[d_out]`.
        bias: FloatTensor<B>,
    },
}

/// The weights of one Gemma-3-style decoder layer (norms before and after both attention and the
/// MLP, RMS norms of each query and key head, a GELU-gated MLP). Norm weights are `[d_model]`
/// (the q/k norms `[head_dim]`), the form [`TransformerBackend::rms_norm`] takes.
#[derive(ExtensionType, Clone, Debug)]
#[extension_type(fusion: cfg(feature = "cube"))]
pub struct DecoderLayerWeights<B: Backend> {
    /// The norm before attention.
    pub attn_norm: FloatTensor<B>,
    /// The query projection, `d_model → heads · head_dim`.
    #[extension_type]
    pub q: LayerLinear<B>,
    /// The key projection, `d_model → kv_heads · head_dim`.
    #[extension_type]
    pub k: LayerLinear<B>,
    /// The value projection, `d_model → kv_heads · head_dim`.
    #[extension_type]
    pub v: LayerLinear<B>,
    /// The output projection, `heads · head_dim → d_model`.
    #[extension_type]
    pub o: LayerLinear<B>,
    /// The norm of each query head.
    pub q_norm: FloatTensor<B>,
    /// The norm of each key head.
    pub k_norm: FloatTensor<B>,
    /// The norm of attention's output, before the residual add.
    pub post_attn_norm: FloatTensor<B>,
    /// The norm before the MLP.
    pub ffn_norm: FloatTensor<B>,
    /// The MLP's gate projection, `d_model → d_ff`.
    #[extension_type]
    pub gate: LayerLinear<B>,
    /// The MLP's up projection, `d_model → d_ff`.
    #[extension_type]
    pub up: LayerLinear<B>,
    /// The MLP's down projection, `d_ff → d_model`.
    #[extension_type]
    pub down: LayerLinear<B>,
    /// The norm of the MLP's output, before the residual add.
    pub post_ffn_norm: FloatTensor<B>,
}

/// A layer's key and value buffers, each `[batch, kv_heads, capacity, head_dim]` (keys after
/// RoPE), as [`TransformerBackend::attention`] reads them.
#[derive(ExtensionType, Clone, Debug)]
#[extension_type(fusion: cfg(feature = "cube"))]
pub struct KvBuffers<B: Backend> {
    /// The keys.
    pub k: FloatTensor<B>,
    /// The values.
    pub v: FloatTensor<B>,
}

/// What shapes a decoder layer's heads and which positions its attention sees.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DecoderLayerConfig {
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads (dividing `n_heads`).
    pub n_kv_heads: usize,
    /// Width of a head.
    pub head_dim: usize,
    /// The RMS norms' epsilon.
    pub eps: f64,
    /// The sliding window (keys a query sees, itself included), or `None` for global attention.
    pub window: Option<usize>,
    /// The factor the query is multiplied by (Gemma's `query_pre_attn_scalar^-½`).
    pub scale: f64,
}

/// The layer's body ([`TransformerBackend::decoder_layer`]'s default), op by op what
/// `models::gemma3` ran before the layer was one op.
pub(crate) fn forward<B: TransformerBackend>(
    x: FloatTensor<B>,
    w: DecoderLayerWeights<B>,
    cache: KvBuffers<B>,
    cos: FloatTensor<B>,
    sin: FloatTensor<B>,
    positions: Positions<B>,
    c: DecoderLayerConfig,
) -> (FloatTensor<B>, KvBuffers<B>) {
    let [b, t, _] = x.shape().dims();
    let (nh, nkv, hd, eps) = (c.n_heads, c.n_kv_heads, c.head_dim, c.eps);
    // [b, t, heads, hd]: the norms and RoPE work per head, positions in dim 1
    let heads = |y: FloatTensor<B>, n: usize| B::float_reshape(y, Shape::from([b, t, n, hd]));
    let h = B::rms_norm(x.clone(), w.attn_norm, eps);
    let q = B::rms_norm(heads(linear::<B>(h.clone(), w.q), nh), w.q_norm, eps);
    let k = B::rms_norm(heads(linear::<B>(h.clone(), w.k), nkv), w.k_norm, eps);
    let v = B::float_swap_dims(heads(linear::<B>(h, w.v), nkv), 1, 2);
    let q = B::rope(q, cos.clone(), sin.clone(), positions.clone());
    let k = B::float_swap_dims(B::rope(k, cos, sin, positions.clone()), 1, 2);
    let cache = KvBuffers::<B> {
        k: B::write_positions(cache.k, k, positions.clone()),
        v: B::write_positions(cache.v, v, positions.clone()),
    };
    let (k, v) = (cache.k.clone(), cache.v.clone());
    let a = <B as TransformerBackend>::attention(q, k, v, positions, c.window, c.scale);
    let a = linear::<B>(B::float_reshape(a, Shape::from([b, t, nh * hd])), w.o);
    let x = B::float_add(x, B::rms_norm(a, w.post_attn_norm, eps));
    let h = B::rms_norm(x.clone(), w.ffn_norm, eps);
    let gated = B::gelu_mul(linear::<B>(h.clone(), w.gate), linear::<B>(h, w.up));
    let y = B::rms_norm(linear::<B>(gated, w.down), w.post_ffn_norm, eps);
    (B::float_add(x, y), cache)
}

/// `x · W (+ bias)` for any [`LayerLinear`].
pub(super) fn linear<B: QuantBackend>(x: FloatTensor<B>, w: LayerLinear<B>) -> FloatTensor<B> {
    match w {
        LayerLinear::Quant {
            words,
            desc,
            activations,
        } => B::quant_matmul(x, words, desc, activations),
        LayerLinear::QuantBiased {
            words,
            desc,
            activations,
            bias,
        } => add_bias::<B>(B::quant_matmul(x, words, desc, activations), bias),
        LayerLinear::Dense { weight } => dense::<B>(x, weight),
        LayerLinear::DenseBiased { weight, bias } => add_bias::<B>(dense::<B>(x, weight), bias),
    }
}

/// `x [.., d_in] · weight [d_in, d_out]`.
fn dense<B: Backend>(x: FloatTensor<B>, weight: FloatTensor<B>) -> FloatTensor<B> {
    let (shape, [d_in, d_out]) = (x.shape(), weight.shape().dims());
    let rows = shape.num_elements() / d_in;
    let y = B::float_matmul(B::float_reshape(x, Shape::from([rows, d_in])), weight);
    B::float_reshape(y, with_last_dim(&shape, d_out))
}

/// `y [.., d] + bias [d]`.
fn add_bias<B: Backend>(y: FloatTensor<B>, bias: FloatTensor<B>) -> FloatTensor<B> {
    let n = y.shape().num_dims();
    let mut shape = vec![1; n];
    shape[n - 1] = bias.shape()[0];
    B::float_add(y, B::float_reshape(bias, Shape::from(shape)))
}

/// One Gemma-3-style decoder layer over `x` `[batch, t, d_model]` at the `t` positions from
/// `positions`' first: attention over the key/value buffers `cache` (this call's keys and values
/// written into them at those positions; returned with the layer's output), then the MLP, each
/// between its pre- and post-norm and added to the residual (see
/// [`TransformerBackend::decoder_layer`]). `rope` is the `(cos, sin)` tables of
/// [`rope_tables`](super::rope_tables), on the device. With [`Positions::Device`] the GPU
/// kernels read the position on the device (a recorded step replays with the buffer's next
/// value); the host checks only what it knows.
///
/// # Panics
/// If the shapes do not fit together: `x`'s batch and the buffers', positions past the
/// buffers' capacity or the tables' (where known on the host), buffers not `[batch, kv_heads,
/// capacity, head_dim]`, tables not `[positions, head_dim / 2]`, a device offset that is not one
/// value.
pub fn decoder_layer(
    x: Tensor<3>,
    weights: DecoderLayerWeights<Dispatch>,
    cache: (Tensor<4>, Tensor<4>),
    rope: (&Tensor<2>, &Tensor<2>),
    positions: Positions<Dispatch>,
    config: DecoderLayerConfig,
) -> (Tensor<3>, (Tensor<4>, Tensor<4>)) {
    let [b, t, _] = x.dims();
    let (k, v) = cache;
    let want = [b, config.n_kv_heads, k.dims()[2], config.head_dim];
    let [rows, half] = rope.0.dims();
    let fits = match &positions {
        Positions::Host { start } => start + t <= want[2] && start + t <= rows,
        Positions::Device { offset } => offset.shape().num_elements() == 1,
    };
    assert!(
        k.dims() == want
            && v.dims() == want
            && rope.1.dims() == [rows, half]
            && half * 2 == config.head_dim
            && fits,
        "decoder_layer: x {:?} at {positions:?}, buffers {:?} and {:?}, RoPE tables {:?}, \
         {config:?}",
        x.dims(),
        k.dims(),
        v.dims(),
        rope.0.dims()
    );
    let cache = KvBuffers {
        k: k.into_dispatch(),
        v: v.into_dispatch(),
    };
    let (y, cache) = <Dispatch as TransformerBackend>::decoder_layer(
        x.into_dispatch(),
        weights,
        cache,
        rope.0.clone().into_dispatch(),
        rope.1.clone().into_dispatch(),
        positions,
        config,
    );
    (
        Tensor::from_dispatch(y),
        (
            Tensor::from_dispatch(cache.k),
            Tensor::from_dispatch(cache.v),
        ),
    )
}
