//! The Burn-facing layer: every line that touches Burn's API lives under this module and
//! [`crate::nn`], so a port to a newer Burn stays contained.
//!
//! [`Q6kBackend`] is the extension trait with the fused Q6_K matmul. Its default methods are the
//! CPU path (read the tensors to the host, compute with [`crate::quant`]'s block code, upload), so
//! any backend can join with an empty impl; the CubeCL backend (wgpu, CUDA, Metal) overrides them
//! with the kernel and falls back to the CPU path only when the kernel reports it cannot run.

mod backends;
mod load;
pub(crate) mod packed;

pub use crate::quant::Q6kLayout;
pub use backends::cpu;
pub use load::{load_float_tensor, to_burn_shape};
pub(crate) use packed::with_last_dim;
pub use packed::{Q6kShape, pack, packed_blocks, packed_words, unpack, words_from_data};

use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{Int, Tensor, TensorPrimitive};

/// Largest number of activation rows for which the fused matrix-vector kernel runs; above it the
/// op dequantizes the weight to the activations' float type and calls Burn's matmul.
pub const FUSED_MAX_ROWS: usize = 8;

/// A Burn backend with the Q6_K matmul. `packed` is a 1-D Int tensor of little-endian 32-bit
/// words holding the Q6_K bytes of a `[out_features, in_features]` weight in either layout (see
/// [`pack`]: GGUF order, or aligned planes, which the fast kernels read); any 32- or 64-bit int
/// dtype holding those bit patterns is accepted.
pub trait Q6kBackend: Backend {
    /// `y[.., n] = Σ_k x[.., k] · W[n, k]`: `x` of any rank with last dim `in_features`; the
    /// result has x's dtype, with f32 accumulation.
    fn q6k_matmul(
        x: FloatTensor<Self>,
        packed: IntTensor<Self>,
        shape: Q6kShape,
    ) -> FloatTensor<Self> {
        cpu::matmul::<Self>(x, packed, shape)
    }

    /// `g_x[.., k] = Σ_n g_y[.., n] · W[n, k]`: the gradient of [`Q6kBackend::q6k_matmul`] with
    /// respect to `x`, computed from the quantized weight.
    fn q6k_matmul_t(
        grad_y: FloatTensor<Self>,
        packed: IntTensor<Self>,
        shape: Q6kShape,
    ) -> FloatTensor<Self> {
        cpu::matmul_t::<Self>(grad_y, packed, shape)
    }

    /// The weight dequantized to a `[out_features, in_features]` f32 tensor (bit-exact with ggml).
    fn q6k_dequantize(packed: IntTensor<Self>, shape: Q6kShape) -> FloatTensor<Self> {
        cpu::dequantize::<Self>(packed, shape)
    }

    /// A backend's own dense product for a few activation rows, where it beats Burn's matmul:
    /// `x` `[rows, k]` times `weight` (`[k, n]`, or `[n, k]` when `transposed`: `x · weightᵀ`),
    /// giving `[rows, n]`. `None` (the default) means: use Burn's matmul. NdArray overrides it
    /// because burn-ndarray's matmul copies both operands on every call, the whole weight
    /// included.
    fn dense_rows(
        x: &FloatTensor<Self>,
        weight: &FloatTensor<Self>,
        transposed: bool,
    ) -> Option<FloatTensor<Self>> {
        let _ = (x, weight, transposed);
        None
    }
}

/// A training backend whose inner (non-autodiff) backend also has the op, so that
/// `model.valid()` keeps working.
pub trait Q6kAutodiffBackend: Q6kBackend + AutodiffBackend<InnerBackend: Q6kBackend> {}

impl<B> Q6kAutodiffBackend for B where B: Q6kBackend + AutodiffBackend<InnerBackend: Q6kBackend> {}

/// `y = x · Wᵀ` with W a packed Q6_K `[out_features, in_features]` weight.
pub fn q6k_matmul<B: Q6kBackend, const D: usize>(
    x: Tensor<B, D>,
    packed: Tensor<B, 1, Int>,
    shape: Q6kShape,
) -> Tensor<B, D> {
    let y = B::q6k_matmul(x.into_primitive().tensor(), packed.into_primitive(), shape);
    Tensor::from_primitive(TensorPrimitive::Float(y))
}

/// `x · weight` (`weight` `[k, n]`), or `x · weightᵀ` when `transposed` (`weight` `[n, k]`), for
/// `x` of any rank with last dim `k`: the backend's [`Q6kBackend::dense_rows`] for up to
/// [`FUSED_MAX_ROWS`] rows where it has one, else Burn's matmul.
pub fn dense_matmul<B: Q6kBackend, const D: usize>(
    x: Tensor<B, D>,
    weight: &Tensor<B, 2>,
    transposed: bool,
) -> Tensor<B, D> {
    let dims = x.dims();
    let k = dims[D - 1];
    let rows = dims[..D - 1].iter().product::<usize>();
    let [a, b] = weight.dims();
    let n = if transposed { a } else { b };
    if rows <= FUSED_MAX_ROWS {
        let x2 = x.clone().reshape([rows, k]);
        let (xp, wp) = (
            x2.into_primitive().tensor(),
            weight.clone().into_primitive().tensor(),
        );
        if let Some(y) = B::dense_rows(&xp, &wp, transposed) {
            let mut out = dims;
            out[D - 1] = n;
            return Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(y)).reshape(out);
        }
    }
    if transposed {
        // [n, k] · [k, rows]: the (large) weight stays the contiguous left operand.
        let mut out = dims;
        out[D - 1] = n;
        let y = weight.clone().matmul(x.reshape([rows, k]).transpose());
        y.transpose().reshape(out)
    } else {
        x.matmul(weight.clone().unsqueeze())
    }
}

/// The packed weight dequantized to `[out_features, in_features]`.
pub fn q6k_dequantize<B: Q6kBackend>(packed: Tensor<B, 1, Int>, shape: Q6kShape) -> Tensor<B, 2> {
    Tensor::from_primitive(TensorPrimitive::Float(B::q6k_dequantize(
        packed.into_primitive(),
        shape,
    )))
}
