//! The transformer layer's fused ops: [`TransformerBackend`], a Burn backend extension whose
//! methods each replace a chain of Burn ops in a decoding step with one kernel (on the GPU, one
//! launch instead of several, each of which costs host time: PERF.md), and the `Tensor`-level
//! functions over it ([`rms_norm`]).
//!
//! Every method has a default body composed of Burn's own ops, which Autodiff uses (so the
//! gradients are Burn's); the CubeCL backend (CUDA, wgpu, Metal) and Flex override it with one
//! kernel or one pass over the data.

use burn::backend::Scalar;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, TensorMetadata, backend_extension};
use burn::tensor::{Shape, Tensor};

/// A Burn backend with the transformer layer's fused ops.
#[backend_extension(
    Cube: cfg(feature = "cube"),
    Fusion: cfg(feature = "cube"),
    Flex: cfg(feature = "flex"),
    Autodiff: cfg(feature = "autodiff"),
)]
pub trait TransformerBackend: Backend {
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
