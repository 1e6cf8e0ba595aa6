//! The transformer layer's fused ops: [`TransformerBackend`], a Burn backend extension whose
//! methods each replace a chain of Burn ops in a decoding step with one kernel (on the GPU, one
//! launch instead of several, each of which costs host time: PERF.md), and the `Tensor`-level
//! functions over it ([`rms_norm`], [`rope`], [`gelu_mul`], [`attention`]); also the choice of
//! the next token ([`sample_token`](super::sample_token)), which a recorded decoding step must
//! make on the device.
//!
//! Every method has a default body composed of Burn's own ops, which Autodiff uses (so the
//! gradients are Burn's); the CubeCL backend (CUDA, wgpu, Metal) and Flex override it with one
//! kernel or one pass over the data.

use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{
    Dispatch, Scalar, Slice, TensorMetadata, backend_extension, get_device_settings,
};
use burn::tensor::{DType, Shape, Tensor, TensorData};

use super::QuantBackend;
use super::layer::{DecoderLayerConfig, DecoderLayerWeights, KvBuffers};
use super::positions::Positions;
use super::sampling::{Draw, pick_on_host};
use crate::cpu::sampling::TokenSampling;
use crate::cpu::{GELU_CUBIC, SQRT_2_OVER_PI};

/// A Burn backend with the transformer layer's fused ops.
#[backend_extension(
    Cube: cfg(feature = "cube"),
    Fusion: cfg(feature = "cube"),
    Flex: cfg(feature = "flex"),
    Autodiff: cfg(feature = "autodiff"),
)]
pub trait TransformerBackend: QuantBackend {
    /// RMS norm over the last dim, scaled: `y = x / √(mean(x²) + eps) · weight`, `x`
    /// `[.., d]`, `weight` `[d]`, computed in f32 (the sum of squares at least in f32), in the
    /// order ggml's `rms_norm` then `mul` round: `(x · scale) · weight`.
    #[fusion(id = "burn_gguf::rms_norm", dtype = x, shape = x)]
    fn rms_norm(x: FloatTensor<Self>, weight: FloatTensor<Self>, eps: f64) -> FloatTensor<Self> {
        let shape = x.shape();
        let last = shape.num_dims() - 1;
        let mut w_shape = vec![1; shape.num_dims()];
        w_shape[last] = shape[last];
        let mean_sq = Self::float_mean_dim(Self::float_mul(x.clone(), x.clone()), last);
        let inv = Self::float_recip(Self::float_sqrt(Self::float_add_scalar(
            mean_sq,
            Scalar::Float(eps),
        )));
        let weight = Self::float_reshape(weight, Shape::from(w_shape));
        Self::float_mul(Self::float_mul(x, inv), weight)
    }

    /// NEOX ("rotate half") rotary position embedding of `x` `[.., t, heads, head_dim]` at the
    /// `t` positions from `positions`' first: pair `i` of a head (elements `i` and `i +
    /// head_dim / 2`) at position `p` turns by the angle whose cosine and sine are `cos[p, i]`
    /// and `sin[p, i]` (`[positions, head_dim / 2]` tables, [`rope_tables`], kept on the device:
    /// nothing is uploaded per call). The last position must be within the tables.
    #[fusion(id = "burn_gguf::rope", dtype = x, shape = x)]
    fn rope(
        x: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
        #[extension_type] positions: Positions<Self>,
    ) -> FloatTensor<Self> {
        let start = positions.first();
        let shape = x.shape();
        let dims = shape.num_dims();
        let (t, half) = (shape[dims - 3], shape[dims - 1] / 2);
        let mut table_shape = vec![1; dims];
        (table_shape[dims - 3], table_shape[dims - 1]) = (t, half);
        let table = |v: FloatTensor<Self>| {
            let rows = Self::float_slice(v, &[Slice::from(start..start + t), Slice::from(0..half)]);
            let rows = Self::float_reshape(rows, Shape::from(table_shape.clone()));
            Self::float_cast(rows, x.dtype().into())
        };
        let (cos, sin) = (table(cos), table(sin));
        let part = |from: usize| {
            let mut slices: Vec<Slice> = (0..dims).map(|d| Slice::from(0..shape[d])).collect();
            slices[dims - 1] = Slice::from(from..from + half);
            Self::float_slice(x.clone(), &slices)
        };
        let (x1, x2) = (part(0), part(half));
        let lo = Self::float_sub(
            Self::float_mul(x1.clone(), cos.clone()),
            Self::float_mul(x2.clone(), sin.clone()),
        );
        let hi = Self::float_add(Self::float_mul(x1, sin), Self::float_mul(x2, cos));
        Self::float_cat(vec![lo, hi], dims - 1)
    }

    /// Causal grouped-query attention of queries `q` `[batch, t, heads, head_dim]` at the `t`
    /// positions from `positions`' first (`start`) over a key/value cache `k`, `v` `[batch,
    /// kv_heads, keys, head_dim]` read in place (`keys ≥ start + t`; slots past the last
    /// position are never read): query head `h` reads kv head `h / (heads / kv_heads)`, query
    /// `i` sees the keys at positions up to `start + i`, and with `window` only the last
    /// `window` of those (llama.cpp's standard sliding window). `q` is multiplied by `scale`
    /// first (ggml's Gemma graph scales the query, not the scores). Gives `[batch, t, heads,
    /// head_dim]`.
    #[fusion(id = "burn_gguf::attention", dtype = q, shape = q)]
    fn attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        #[extension_type] positions: Positions<Self>,
        window: Option<usize>,
        scale: f64,
    ) -> FloatTensor<Self> {
        let start = positions.first();
        let [b, t, nh, hd] = q.shape().dims();
        let [_, nkv, keys, _] = k.shape().dims();
        let g = nh / nkv;
        let q = Self::float_mul_scalar(q, Scalar::Float(scale));
        // the query heads of one kv head as one matrix of g · t rows
        let q = Self::float_reshape(
            Self::float_swap_dims(q, 1, 2),
            Shape::from([b, nkv, g * t, hd]),
        );
        let scores = Self::float_matmul(q, Self::float_swap_dims(k, 2, 3));
        let mut mask = Vec::with_capacity(g * t * keys);
        for _ in 0..g {
            for i in 0..t {
                let seen = crate::cpu::AttentionShape::visible(start, i, window);
                mask.extend((0..keys).map(|j| !seen.contains(&j)));
            }
        }
        let device = scores.device();
        let bool_dtype = get_device_settings::<Self>(&device).bool_dtype;
        let mask = TensorData::new(mask, [1, 1, g * t, keys]).convert_dtype(bool_dtype.into());
        let mask = Self::bool_from_data(mask, &device);
        let mask = Self::bool_expand(mask, Shape::from([b, nkv, g * t, keys]));
        let scores = Self::float_mask_fill(scores, mask, Scalar::Float(f64::NEG_INFINITY));
        let max = Self::float_max_dim(scores.clone(), 3);
        let e = Self::float_exp(Self::float_sub(scores, max));
        let sum = Self::float_sum_dim(e.clone(), 3);
        let out = Self::float_matmul(Self::float_div(e, sum), v);
        Self::float_swap_dims(Self::float_reshape(out, Shape::from([b, nh, t, hd])), 1, 2)
    }

    /// `buffer` `[.., slots, d]` with `value` `[.., t, d]` (the same leading dims) written at
    /// the `t` slots from `positions`' first (which must fit): a key/value cache's new
    /// positions. In place where nothing else holds the buffer, else into a copy (Burn's
    /// `slice_assign` semantics).
    #[fusion(id = "burn_gguf::write_positions", dtype = buffer, shape = buffer)]
    fn write_positions(
        buffer: FloatTensor<Self>,
        value: FloatTensor<Self>,
        #[extension_type] positions: Positions<Self>,
    ) -> FloatTensor<Self> {
        let (start, vs) = (positions.first(), value.shape());
        let mut slices: Vec<Slice> = (0..vs.num_dims()).map(|d| Slice::from(0..vs[d])).collect();
        let t = vs.num_dims() - 2;
        slices[t] = Slice::from(start..start + vs[t]);
        Self::float_slice_assign(buffer, &slices, value)
    }

    /// One Gemma-3-style decoder layer over `x` `[batch, t, d_model]` at the `t` positions from
    /// `positions`' first (see [`decoder_layer`](super::decoder_layer)): the pre-norm, the q/k/v projections,
    /// the q/k head norms, RoPE from the `cos`/`sin` tables, this call's keys and values written
    /// into `cache` (in place where nothing else holds the buffers), [`attention`](Self::attention)
    /// over it, the output projection, post-norm and residual add, then the MLP between its own
    /// norms and residual add. Gives the layer's output and the buffers.
    ///
    /// The default body is those ops one by one, on `Self` (what Autodiff and Flex run). Under
    /// Burn's fusion the whole layer is one registered op whose body runs on the CubeCL backend,
    /// each of its kernels launched directly.
    #[fusion(
        id = "burn_gguf::decoder_layer",
        meta = |x, _weights, cache, _cos, _sin, _positions, _config| (x.clone(), cache.clone())
    )]
    fn decoder_layer(
        x: FloatTensor<Self>,
        #[extension_type] weights: DecoderLayerWeights<Self>,
        #[extension_type] cache: KvBuffers<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
        #[extension_type] positions: Positions<Self>,
        config: DecoderLayerConfig,
    ) -> (FloatTensor<Self>, KvBuffers<Self>) {
        super::layer::forward::<Self>(x, weights, cache, cos, sin, positions, config)
    }

    /// `gelu_tanh(gate) · up` (Gemma's gated MLP): `g/2 · (1 + tanh(√(2/π) · (g + 0.044715 g³)))
    /// · up`, element-wise over two tensors of one shape.
    #[fusion(id = "burn_gguf::gelu_mul", dtype = gate, shape = gate)]
    fn gelu_mul(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self> {
        let cube = Self::float_mul(Self::float_mul(gate.clone(), gate.clone()), gate.clone());
        let inner = Self::float_mul_scalar(
            Self::float_add(
                gate.clone(),
                Self::float_mul_scalar(cube, Scalar::Float(GELU_CUBIC)),
            ),
            Scalar::Float(SQRT_2_OVER_PI),
        );
        let tanh1 = Self::float_add_scalar(Self::float_tanh(inner), Scalar::Float(1.0));
        let gelu = Self::float_mul(Self::float_mul_scalar(gate, Scalar::Float(0.5)), tanh1);
        Self::float_mul(gelu, up)
    }

    /// The next token from `logits` (any shape, read flat: `n` values) with `sampling` and the
    /// uniform draw `draw`, as a `[1]` `U32` tensor on their device: the choice of
    /// [`pick`](crate::cpu::sampling::pick) (top-k, softmax at the temperature, top-p, the
    /// draw). The default body reads the logits back and picks on the host (Flex, Autodiff).
    /// The CubeCL backend picks on the device in f32 (a draw within rounding of a boundary
    /// between two candidates may take the other; see [`crate::kernel::sample_token`]) and
    /// reads nothing back, so a recorded step replays it; it takes greedy settings or a top-k
    /// of 1..=[`MAX_DEVICE_TOP_K`](crate::cpu::sampling::MAX_DEVICE_TOP_K) and panics on others.
    #[fusion(id = "burn_gguf::sample_token", dtype = DType::U32, shape = Shape::new([1]))]
    fn sample_token(
        logits: FloatTensor<Self>,
        #[extension_type] draw: Draw<Self>,
        sampling: TokenSampling,
    ) -> IntTensor<Self> {
        pick_on_host::<Self>(logits, draw, sampling)
    }
}

/// cos and sin of the RoPE angles of positions `0..positions`, each `[positions, head_dim / 2]`
/// row-major, as [`TransformerBackend::rope`] takes them: pair `i` at position `p` turns by
/// `scale · p · base^(−2i / head_dim)`, the angle computed as ggml's `rope_cache_init` does (f32,
/// each pair's frequency the previous one's times `base^(−2 / head_dim)`), so the rounding is
/// llama.cpp's.
pub fn rope_tables(
    positions: usize,
    head_dim: usize,
    base: f32,
    scale: f32,
) -> (Vec<f32>, Vec<f32>) {
    let half = head_dim / 2;
    let theta_scale = base.powf(-2.0 / head_dim as f32);
    let (mut cos, mut sin) = (
        Vec::with_capacity(positions * half),
        Vec::with_capacity(positions * half),
    );
    for pos in 0..positions {
        let mut theta = pos as f32;
        for _ in 0..half {
            let angle = scale * theta;
            cos.push(angle.cos());
            sin.push(angle.sin());
            theta *= theta_scale;
        }
    }
    (cos, sin)
}

/// RMS norm of `x` over its last dim, scaled by `weight` (`[d]` for `x` `[.., d]`):
/// `y = x / √(mean(x²) + eps) · weight`, one kernel on the GPU (see
/// [`TransformerBackend::rms_norm`]).
///
/// ```
/// # #[cfg(feature = "flex")] {
/// use burn::tensor::{Device, Tensor};
/// let device = Device::flex();
/// let x = Tensor::<2>::from_floats([[3.0, 4.0], [1.0, -1.0]], &device);
/// let w = Tensor::<1>::from_floats([1.0, 2.0], &device);
/// let y = burn_gguf::ops::rms_norm(x, w, 0.0).into_data().to_vec::<f32>().unwrap();
/// let s = 1.0 / 12.5f32.sqrt(); // mean of 9 and 16
/// assert_eq!(y[..2], [3.0 * s, 4.0 * s * 2.0]);
/// assert_eq!(y[2..], [1.0, -2.0]);
/// # }
/// ```
///
/// # Panics
/// If `weight`'s length is not `x`'s last dim.
pub fn rms_norm<const D: usize>(x: Tensor<D>, weight: Tensor<1>, eps: f64) -> Tensor<D> {
    assert_eq!(
        weight.dims()[0],
        x.dims()[D - 1],
        "rms_norm: the weight's length must be x's last dim"
    );
    let y =
        <Dispatch as TransformerBackend>::rms_norm(x.into_dispatch(), weight.into_dispatch(), eps);
    Tensor::from_dispatch(y)
}

/// NEOX rotary position embedding of `x` `[.., t, heads, head_dim]` at positions
/// `start..start + t`, the angles' cosines and sines read from device tables `[positions,
/// head_dim / 2]` ([`rope_tables`]; see [`TransformerBackend::rope`]): one kernel on the GPU.
///
/// ```
/// # #[cfg(feature = "flex")] {
/// use burn::tensor::{Device, Tensor, TensorData};
/// use burn_gguf::ops::{rope, rope_tables};
/// let device = Device::flex();
/// let (cos, sin) = rope_tables(4, 2, 10_000.0, 1.0);
/// let table = |v| Tensor::<2>::from_data(TensorData::new(v, [4, 1]), &device);
/// // position 2, one head of width 2: its one pair turns by 2 radians
/// let x = Tensor::<3>::from_floats([[[1.0, 0.0]]], &device);
/// let y = rope(x, table(cos), table(sin), 2).into_data().to_vec::<f32>().unwrap();
/// assert_eq!(y, [2f32.cos(), 2f32.sin()]);
/// # }
/// ```
///
/// # Panics
/// If `D < 3`, the head width is odd, the tables are not `[positions, head_dim / 2]` or the
/// positions run past them.
pub fn rope<const D: usize>(
    x: Tensor<D>,
    cos: Tensor<2>,
    sin: Tensor<2>,
    start: usize,
) -> Tensor<D> {
    assert!(D >= 3, "rope: x is [.., positions, heads, head_dim]");
    let dims = x.dims();
    let (t, hd) = (dims[D - 3], dims[D - 1]);
    assert!(hd.is_multiple_of(2), "rope: the head width must be even");
    for table in [&cos, &sin] {
        let [positions, half] = table.dims();
        assert!(
            half == hd / 2 && start + t <= positions,
            "rope: tables of {positions} positions × {half} pairs for positions {start}..{} of heads of {hd}",
            start + t
        );
    }
    let y = <Dispatch as TransformerBackend>::rope(
        x.into_dispatch(),
        cos.into_dispatch(),
        sin.into_dispatch(),
        Positions::Host { start },
    );
    Tensor::from_dispatch(y)
}

/// `gelu_tanh(gate) · up`, element-wise (see [`TransformerBackend::gelu_mul`]): one kernel on
/// the GPU.
///
/// # Panics
/// If the shapes differ.
pub fn gelu_mul<const D: usize>(gate: Tensor<D>, up: Tensor<D>) -> Tensor<D> {
    assert_eq!(
        gate.dims(),
        up.dims(),
        "gelu_mul: gate and up differ in shape"
    );
    let y = <Dispatch as TransformerBackend>::gelu_mul(gate.into_dispatch(), up.into_dispatch());
    Tensor::from_dispatch(y)
}

/// Causal grouped-query attention over a key/value cache read in place (see
/// [`TransformerBackend::attention`]): one kernel on the GPU, one threaded pass on the CPU.
///
/// # Panics
/// If the shapes do not fit together (`q` `[batch, t, heads, head_dim]`, `k` and `v`
/// `[batch, kv_heads, keys ≥ start + t, head_dim]` with `kv_heads` dividing `heads`) or the
/// window is 0.
pub fn attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    start: usize,
    window: Option<usize>,
    scale: f64,
) -> Tensor<4> {
    let ([b, t, nh, hd], [kb, nkv, keys, khd]) = (q.dims(), k.dims());
    assert!(
        kb == b
            && khd == hd
            && v.dims() == k.dims()
            && nkv > 0
            && nh.is_multiple_of(nkv)
            && start + t <= keys
            && window != Some(0),
        "attention: queries {:?} at {start} over keys {:?} and values {:?} (window {window:?})",
        q.dims(),
        k.dims(),
        v.dims()
    );
    let y = <Dispatch as TransformerBackend>::attention(
        q.into_dispatch(),
        k.into_dispatch(),
        v.into_dispatch(),
        Positions::Host { start },
        window,
        scale,
    );
    Tensor::from_dispatch(y)
}
