//! The quantized-weight op: [`QuantBackend`], one Burn backend extension for every GGUF block
//! format, and the `Tensor`-level functions over it ([`quant_matmul`], [`quant_dequantize`]).
//!
//! A quantized weight is a 1-D `Int` tensor of `U32` words plus the [`QuantWeightDesc`] that says
//! what they hold (ggml type, on-device layout, shape): a [`QuantWeight`]. Every method takes that
//! pair; each backend dispatches on the type inside. The trait is implemented for the CubeCL
//! backend (CUDA, wgpu, Metal: one kernel source), for Burn's Fusion wrapper around it (generated;
//! the op is registered lazily and runs on the inner backend), for Flex (threaded Rust reading the
//! blocks in place) and for Autodiff (gradient to the input, the weight frozen). A device of any
//! other backend panics with Burn's "Backend not supported for custom op" message; there is no
//! silent host fallback.

mod backends;
mod layer;
mod positions;
mod sampling;
mod transformer;

pub use layer::{DecoderLayerConfig, DecoderLayerWeights, KvBuffers, LayerLinear, decoder_layer};
pub use positions::Positions;
pub use sampling::{Draw, sample_token};
pub use transformer::{TransformerBackend, attention, gelu_mul, rms_norm, rope, rope_tables};

use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{Backend, Dispatch, backend_extension};
use burn::tensor::{DType, Device, FloatDType, Int, Shape, Tensor, TensorData};

use crate::quant::{Activations, PackError, QuantWeightDesc, pack, unpack};

/// Largest number of activation rows the fused matrix-vector products take; above it the Cube
/// backend dequantizes the weight on the device and calls Burn's matmul.
pub const FUSED_MAX_ROWS: usize = 8;

/// A Burn backend with the quantized-weight products. `weight` holds a packed weight's words as
/// `U32` (see [`QuantWeight`]); `desc` says what they hold. Activations may be any float dtype;
/// results have the activations' dtype, accumulated in f32.
#[backend_extension(
    Cube: cfg(feature = "cube"),
    Fusion: cfg(feature = "cube"),
    Flex: cfg(feature = "flex"),
    Autodiff: cfg(feature = "autodiff"),
)]
pub trait QuantBackend: Backend {
    /// `y[.., n] = Σ_k x[.., k] · W[n, k]`: `x` of any rank with last dim `in_features`, read as
    /// `activations` says on the fused product (up to [`FUSED_MAX_ROWS`] rows; larger batches
    /// multiply `x` as given).
    #[fusion(id = "burn_gguf::quant_matmul", dtype = x, shape = {
        let mut s = x.clone();
        let last = s.num_dims() - 1;
        s[last] = desc.out_features;
        s
    })]
    fn quant_matmul(
        x: FloatTensor<Self>,
        weight: IntTensor<Self>,
        desc: QuantWeightDesc,
        activations: Activations,
    ) -> FloatTensor<Self>;

    /// `g_x[.., k] = Σ_n g_y[.., n] · W[n, k]`: the gradient of [`QuantBackend::quant_matmul`]
    /// with respect to `x`, computed from the quantized weight.
    #[fusion(id = "burn_gguf::quant_matmul_t", dtype = grad_y, shape = {
        let mut s = grad_y.clone();
        let last = s.num_dims() - 1;
        s[last] = desc.in_features;
        s
    })]
    fn quant_matmul_t(
        grad_y: FloatTensor<Self>,
        weight: IntTensor<Self>,
        desc: QuantWeightDesc,
    ) -> FloatTensor<Self>;

    /// The weight dequantized to a `[out_features, in_features]` tensor of `dtype`, bit-exact with
    /// ggml's dequantizer (up to `dtype`'s rounding).
    #[fusion(id = "burn_gguf::quant_dequantize", dtype = (*dtype).into(),
             shape = Shape::from([desc.out_features, desc.in_features]))]
    fn quant_dequantize(
        weight: IntTensor<Self>,
        desc: QuantWeightDesc,
        dtype: FloatDType,
    ) -> FloatTensor<Self>;

    /// Rows `ids` of the weight dequantized to `dtype`, `ids.shape + [in_features]`: an
    /// embedding lookup that decodes only those rows (bit-exact with ggml up to `dtype`). The
    /// weight must be in the GGUF layout. An id past the last row gives a row of NaN on the Cube
    /// backend and panics on Flex.
    #[fusion(id = "burn_gguf::quant_rows", dtype = (*dtype).into(), shape = {
        let mut s = ids.clone();
        s.push(desc.in_features);
        s
    })]
    fn quant_rows(
        weight: IntTensor<Self>,
        desc: QuantWeightDesc,
        ids: IntTensor<Self>,
        dtype: FloatDType,
    ) -> FloatTensor<Self>;
}

/// A quantized weight on a device: its packed words (a 1-D `U32` tensor) and what they hold.
#[derive(Clone, Debug)]
pub struct QuantWeight {
    /// The packed words, `desc.n_words()` of them.
    pub words: Tensor<1, Int>,
    /// Type, layout and shape.
    pub desc: QuantWeightDesc,
}

impl QuantWeight {
    /// Packs a weight's GGUF `bytes` in `desc`'s layout and uploads the words.
    pub fn from_gguf_bytes(
        bytes: &[u8],
        desc: QuantWeightDesc,
        device: &Device,
    ) -> Result<Self, PackError> {
        Ok(QuantWeight {
            words: upload_words(pack(bytes, desc)?, device),
            desc,
        })
    }

    /// The exact GGUF bytes, read back from the device. Errors if the words do not hold `desc`'s
    /// weight (e.g. after loading a record of another shape or layout).
    pub fn to_gguf_bytes(&self) -> Result<Vec<u8>, PackError> {
        unpack(&read_words(self.words.clone()), self.desc)
    }

    /// `x · Wᵀ` for `x` `[.., in_features]`, the activations read as `activations` says: see
    /// [`quant_matmul`].
    pub fn matmul<const D: usize>(&self, x: Tensor<D>, activations: Activations) -> Tensor<D> {
        quant_matmul(x, self.words.clone(), self.desc, activations)
    }

    /// W as `[out_features, in_features]` f32: see [`quant_dequantize`].
    pub fn dequantize(&self) -> Tensor<2> {
        quant_dequantize(self.words.clone(), self.desc, FloatDType::F32)
    }

    /// Rows `ids` of W as f32, `ids.shape + [in_features]`: see [`quant_rows`].
    pub fn rows<const D: usize, const D2: usize>(&self, ids: Tensor<D, Int>) -> Tensor<D2> {
        quant_rows(self.words.clone(), self.desc, ids)
    }

    /// Bytes the words take on the device.
    pub fn memory_bytes(&self) -> usize {
        self.words.dims()[0] * 4
    }
}

/// Uploads packed words exactly, as a `U32` tensor (without an explicit dtype Burn would convert
/// the values to the device's default int type).
pub fn upload_words(words: Vec<u32>, device: &Device) -> Tensor<1, Int> {
    let n = words.len();
    Tensor::from_data(TensorData::new(words, [n]), (device, DType::U32))
}

/// The words of a packed weight, read back from its device.
pub fn read_words(words: Tensor<1, Int>) -> Vec<u32> {
    let data = words.into_data();
    match data.dtype() {
        DType::U32 => data.try_into_vec::<u32>().expect("u32 data"),
        // Another int dtype holding the same bit patterns (e.g. words uploaded as I32).
        _ => data
            .try_into_vec_as::<i64>()
            .expect("int data")
            .into_iter()
            .map(|w| w as u32)
            .collect(),
    }
}

/// `y = x · Wᵀ` for `x` of any rank with last dim `desc.in_features`, W the packed weight
/// `weight` (see [`QuantWeight`]); the result has x's dtype and last dim `desc.out_features`.
///
/// Up to [`FUSED_MAX_ROWS`] rows of `x` take the fused product, which reads every weight byte
/// once for all rows, with the activations as `activations` says ([`Activations::Int8`]: each
/// run of 32 rounded to int8 first, as llama.cpp does); larger batches dequantize on the device
/// and run Burn's matmul (Cube) or the threaded CPU product (Flex) on `x` as given. Under
/// autodiff the gradient flows to `x` only (straight through the int8 rounding).
///
/// # Panics
/// If `x`'s last dim is not `desc.in_features`, or `weight` does not hold `desc`'s words (both
/// are checked when a [`QuantWeight`] or a [`crate::nn::QuantLinear`] is built), or int8
/// activations meet Q6_K's planes layout on a CubeCL device (its kernel reads float activations
/// only; [`crate::nn::QuantLinear::with_activations`] refuses the pair up front).
pub fn quant_matmul<const D: usize>(
    x: Tensor<D>,
    weight: Tensor<1, Int>,
    desc: QuantWeightDesc,
    activations: Activations,
) -> Tensor<D> {
    assert_eq!(
        x.dims()[D - 1],
        desc.in_features,
        "quant_matmul: x's last dim must be in_features of {desc:?}"
    );
    let y = <Dispatch as QuantBackend>::quant_matmul(
        x.into_dispatch(),
        weight.into_dispatch(),
        desc,
        activations,
    );
    Tensor::from_dispatch(y)
}

/// Rows `ids` of the packed weight (GGUF layout) dequantized to f32: `[.., in_features]` with
/// `D2 = D + 1`, an embedding lookup that decodes only the rows asked for (a constant under
/// autodiff: the weight is frozen).
///
/// # Panics
/// If `D2 != D + 1`, or the weight is not in [`crate::quant::PackedLayout::Gguf`].
pub fn quant_rows<const D: usize, const D2: usize>(
    weight: Tensor<1, Int>,
    desc: QuantWeightDesc,
    ids: Tensor<D, Int>,
) -> Tensor<D2> {
    assert_eq!(
        D2,
        D + 1,
        "quant_rows: the output has one dim more than the ids"
    );
    let y = <Dispatch as QuantBackend>::quant_rows(
        weight.into_dispatch(),
        desc,
        ids.into_dispatch(),
        FloatDType::F32,
    );
    Tensor::from_dispatch(y)
}

/// The packed weight dequantized to `[out_features, in_features]` of `dtype` (a constant under
/// autodiff: the weight is frozen).
pub fn quant_dequantize(
    weight: Tensor<1, Int>,
    desc: QuantWeightDesc,
    dtype: FloatDType,
) -> Tensor<2> {
    let y = <Dispatch as QuantBackend>::quant_dequantize(weight.into_dispatch(), desc, dtype);
    Tensor::from_dispatch(y)
}
