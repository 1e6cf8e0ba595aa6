//! [`QuantLinear`] (and its name for Q6_K weights, [`Q6kLinear`]): a drop-in for
//! `burn::nn::Linear` whose weight stays quantized GGUF bytes on the device.

use burn::backend::Dispatch;
use burn::config::Config;
use burn::module::{Module, Param, ParamId};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, FloatDType, Int, Tensor};
use thiserror::Error;

use super::load::load_float_tensor;
use crate::gguf::{GgufError, GgufFile, TensorInfo};
use crate::ops::{LayerLinear, QuantWeight, quant_dequantize, quant_matmul};
use crate::quant::{Activations, BlockQ6K, PackError, QuantWeightDesc, q6k};

/// Why a [`QuantLinear`] could not be built.
#[derive(Debug, Error)]
pub enum QuantLinearError {
    /// The weight cannot be packed: a type without a fused product, rows that are not whole
    /// blocks, bytes of the wrong length.
    #[error(transparent)]
    Pack(#[from] PackError),
    /// The GGUF tensor is not a matrix.
    #[error("tensor {name:?} has dims {dims:?}; a linear layer needs a 2-D weight")]
    NotMatrix {
        /// The tensor.
        name: String,
        /// Its dims (ne order).
        dims: Vec<u64>,
    },
    /// The bias does not have `d_output` elements.
    #[error("bias {name:?} has dims {dims:?}, expected [{d_output}]")]
    BiasShape {
        /// The bias tensor.
        name: String,
        /// Its dims.
        dims: Vec<u64>,
        /// The layer's output size.
        d_output: usize,
    },
    /// A bias given with the weight does not have `d_output` values.
    #[error("the bias has {found} values, the layer {d_output} outputs")]
    BiasLength {
        /// Values given.
        found: usize,
        /// The layer's output size.
        d_output: usize,
    },
    /// Reading the file failed.
    #[error(transparent)]
    Gguf(#[from] GgufError),
}

/// Configuration of a [`Q6kLinear`], as `burn::nn::LinearConfig`: Burn's default `Linear`
/// initialization, quantized to Q6_K.
#[derive(Config, Debug)]
pub struct Q6kLinearConfig {
    /// Input features (a multiple of 256).
    pub d_input: usize,
    /// Output features.
    pub d_output: usize,
    /// Whether the layer has a bias.
    #[config(default = true)]
    pub bias: bool,
}

impl Q6kLinearConfig {
    /// A layer with Burn's default `Linear` initialization, quantized to Q6_K.
    pub fn init(&self, device: &Device) -> Result<Q6kLinear, QuantLinearError> {
        QuantWeightDesc::q6k(self.d_output, self.d_input)?;
        let linear = LinearConfig::new(self.d_input, self.d_output)
            .with_bias(self.bias)
            .init(device);
        Q6kLinear::from_linear(&linear)
    }
}

/// A linear layer `y = x · Wᵀ + b` whose weight W (`[d_output, d_input]`, GGUF layout) is held
/// on the device as its GGUF blocks — any type of [`crate::quant::FUSED_TYPES`]: Q4_0 … Q8_0,
/// Q2_K … Q6_K, e.g. 6.5625 bits per weight for Q6_K — and multiplied without ever being
/// dequantized (the fused product for up to 8 activation rows; see
/// [`crate::ops::QuantBackend`]).
///
/// The packed weight is an `Int` parameter of `U32` words: moved with the module, saved and
/// loaded bit-exactly by Burn's records, never trained. Under autodiff, gradients flow to the
/// input only. What the words hold ([`QuantWeightDesc`]) is a constant of the module, not
/// persisted: a record loads into a layer built with the same type, layout and shape (Burn
/// checks the words' length).
#[derive(Module, Debug)]
pub struct QuantLinear {
    /// The packed weight (see [`crate::quant::pack`]).
    pub weight: Param<Tensor<1, Int>>,
    /// The bias, `[d_output]`.
    pub bias: Option<Param<Tensor<1>>>,
    #[module(skip)]
    desc: QuantWeightDesc,
    #[module(skip)]
    activations: Activations,
}

/// A [`QuantLinear`] over a Q6_K weight: the name users of the Q6_K layer know.
pub type Q6kLinear = QuantLinear;

/// The bias of weight `name` (`name` with `.weight` replaced by `.bias`) if the file has one,
/// checked to hold `d_output` values.
pub(crate) fn load_bias(
    file: &GgufFile,
    name: &str,
    d_output: usize,
    device: &Device,
) -> Result<Option<Tensor<1>>, QuantLinearError> {
    let bias_name = name.strip_suffix(".weight").map(|s| format!("{s}.bias"));
    let Some(b) = bias_name.as_deref().and_then(|b| file.tensor_info(b)) else {
        return Ok(None);
    };
    if b.n_elements() != d_output as u64 {
        return Err(QuantLinearError::BiasShape {
            name: b.name.clone(),
            dims: b.dims.clone(),
            d_output,
        });
    }
    Ok(Some(load_float_tensor::<1>(file, &b.name, device)?))
}

/// Checks that tensor `name` may load without dequantization: a type with a fused product, or a
/// float type; any other quantized type is [`PackError::Unsupported`].
pub(crate) fn require_fused_or_float(file: &GgufFile, name: &str) -> Result<(), QuantLinearError> {
    let t = file.require_tensor(name)?.ggml_type;
    if crate::quant::FUSED_TYPES.contains(&t) || !t.is_quantized() {
        Ok(())
    } else {
        Err(PackError::Unsupported { ggml_type: t }.into())
    }
}

/// `(d_input, d_output)` of a 2-D GGUF weight (`ne = [d_input, d_output]`, trailing 1s allowed).
pub(crate) fn matrix_dims(info: &TensorInfo) -> Result<(usize, usize), QuantLinearError> {
    let mut dims = info.dims.clone();
    while dims.len() > 2 && dims.last() == Some(&1) {
        dims.pop();
    }
    match dims[..] {
        [i, o] if usize::try_from(i).is_ok() && usize::try_from(o).is_ok() => {
            Ok((i as usize, o as usize))
        }
        _ => Err(QuantLinearError::NotMatrix {
            name: info.name.clone(),
            dims: info.dims.clone(),
        }),
    }
}

impl QuantLinear {
    /// Builds the layer from a weight's GGUF bytes (`desc` says which type, layout and shape) and
    /// an optional bias; nothing is dequantized.
    pub fn from_gguf_bytes(
        bytes: &[u8],
        desc: QuantWeightDesc,
        bias: Option<Tensor<1>>,
        device: &Device,
    ) -> Result<Self, QuantLinearError> {
        if let Some(b) = &bias
            && b.dims()[0] != desc.out_features
        {
            return Err(QuantLinearError::BiasLength {
                found: b.dims()[0],
                d_output: desc.out_features,
            });
        }
        let weight = QuantWeight::from_gguf_bytes(bytes, desc, device)?;
        Ok(QuantLinear {
            weight: Param::initialized(ParamId::new(), weight.words),
            bias: bias.map(|b| Param::initialized(ParamId::new(), b)),
            desc,
            activations: Activations::Float,
        })
    }

    /// The layer reading its activations as `activations` says ([`Activations::Float`] when
    /// built): [`Activations::Int8`] rounds each run of 32 to int8 before the fused product, as
    /// llama.cpp does, and multiplies them as integers on CubeCL devices (faster there: PERF.md).
    /// Int8 needs a layout the int8 kernel reads (GGUF or interleaved): Q6_K's planes are
    /// [`PackError::Int8Layout`].
    ///
    /// ```
    /// # #[cfg(feature = "flex")] {
    /// use burn::tensor::{Device, Tensor, TensorData};
    /// use burn_gguf::nn::QuantLinear;
    /// use burn_gguf::quant::{Activations, GgmlType, PackedLayout, QuantWeightDesc};
    /// let device = Device::flex();
    /// // one Q8_0 block a row: an f16 scale of 1.0 (0x3C00), then 32 codes of 1
    /// let block: Vec<u8> = [0x00, 0x3C].into_iter().chain([1u8; 32]).collect();
    /// let desc = QuantWeightDesc::of(GgmlType::Q8_0, 2, 32)?;
    /// let layer = QuantLinear::from_gguf_bytes(&block.repeat(2), desc, None, &device)?
    ///     .with_activations(Activations::Int8)?;
    /// // max |x| = 127/256: a step of 1/256, so 0.1 reads as 26/256
    /// let x: Vec<f32> = [127.0 / 256.0].into_iter().chain([0.1; 31]).collect();
    /// let y = layer.forward(Tensor::<2>::from_data(TensorData::new(x, [1, 32]), &device));
    /// assert_eq!(y.into_data().to_vec::<f32>().unwrap(), vec![933.0 / 256.0; 2]);
    /// let planes = QuantWeightDesc::new(GgmlType::Q6_K, PackedLayout::Q6kPlanes, 1, 256)?;
    /// let q6k = QuantLinear::from_gguf_bytes(&[0u8; 210], planes, None, &device)?;
    /// assert!(q6k.with_activations(Activations::Int8).is_err());
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_activations(mut self, activations: Activations) -> Result<Self, PackError> {
        if activations == Activations::Int8 && !self.desc.layout.reads_int8() {
            return Err(PackError::Int8Layout {
                ggml_type: self.desc.ggml_type,
                layout: self.desc.layout,
            });
        }
        self.activations = activations;
        Ok(self)
    }

    /// How the layer reads its activations (see [`QuantLinear::with_activations`]).
    pub fn activations(&self) -> Activations {
        self.activations
    }

    /// Quantizes a `burn::nn::Linear` (weight `[d_input, d_output]`) to Q6_K with ggml's
    /// bit-exact reference quantizer (`quantize_row_q6_K_ref`); the bias is kept as is.
    pub fn from_linear(linear: &Linear) -> Result<Self, QuantLinearError> {
        let w = linear.weight.val();
        let [d_input, d_output] = w.dims();
        let desc = QuantWeightDesc::q6k(d_output, d_input)?;
        let device = w.device();
        // Linear holds [in, out]; GGUF rows are output features.
        let rows = w
            .transpose()
            .into_data()
            .try_into_vec_as::<f32>()
            .expect("a float weight");
        let blocks = q6k::quantize(&rows, 0).expect("d_input is a multiple of 256");
        let bias = linear.bias.as_ref().map(|b| b.val());
        Self::from_gguf_bytes(BlockQ6K::slice_as_bytes(&blocks), desc, bias, &device)
    }

    /// Loads tensor `name` (a 2-D weight, GGUF `ne = [d_input, d_output]`, of a type with a fused
    /// product) as its raw bytes in that type's default layout, and its bias (`name` with
    /// `.weight` replaced by `.bias`) when the file has one. A type without a fused product is
    /// [`PackError::Unsupported`]; [`crate::nn::GgufLinear`] dequantizes those instead.
    pub fn from_gguf(
        file: &GgufFile,
        name: &str,
        device: &Device,
    ) -> Result<Self, QuantLinearError> {
        let info = file.require_tensor(name)?;
        let (d_input, d_output) = matrix_dims(info)?;
        let desc = QuantWeightDesc::of(info.ggml_type, d_output, d_input)?;
        let bias = load_bias(file, name, d_output, device)?;
        Self::from_gguf_bytes(file.tensor_data(name)?, desc, bias, device)
    }

    /// What the packed weight holds.
    pub fn desc(&self) -> QuantWeightDesc {
        self.desc
    }

    /// Input features.
    pub fn d_input(&self) -> usize {
        self.desc.in_features
    }

    /// Output features.
    pub fn d_output(&self) -> usize {
        self.desc.out_features
    }

    /// The weight as a [`QuantWeight`] handle (words and description).
    pub fn quant_weight(&self) -> QuantWeight {
        QuantWeight {
            words: self.weight.val(),
            desc: self.desc,
        }
    }

    /// The exact GGUF bytes of the weight, read back from the device (and regrouped from the
    /// on-device layout). Errors if the weight was replaced (e.g. by a record) with words that
    /// do not hold this layer's weight.
    pub fn gguf_bytes(&self) -> Result<Vec<u8>, PackError> {
        self.quant_weight().to_gguf_bytes()
    }

    /// Bytes the layer holds on its device: the packed weight (its GGUF bytes, plus for Q6_K's
    /// planes at most 28 bytes of header and padding) and the bias.
    pub fn memory_bytes(&self) -> usize {
        self.weight.val().dims()[0] * 4
            + self.bias.as_ref().map_or(0, |b| {
                let b = b.val();
                b.dims()[0] * b.dtype().size()
            })
    }

    /// Applies the layer to `[..., d_input]`, giving `[..., d_output]`, like `Linear::forward`.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let y = quant_matmul(x, self.weight.val(), self.desc, self.activations);
        match &self.bias {
            Some(b) => y + b.val().unsqueeze(),
            None => y,
        }
    }

    /// The layer as [`ops::decoder_layer`](crate::ops::decoder_layer) takes a projection.
    pub fn layer_linear(&self) -> LayerLinear<Dispatch> {
        let (words, desc, activations) = (
            self.weight.val().into_dispatch(),
            self.desc,
            self.activations,
        );
        match &self.bias {
            Some(b) => LayerLinear::QuantBiased {
                words,
                desc,
                activations,
                bias: b.val().into_dispatch(),
            },
            None => LayerLinear::Quant {
                words,
                desc,
                activations,
            },
        }
    }

    /// The weight dequantized to `[d_input, d_output]` f32, the layout `burn::nn::Linear` holds.
    pub fn dequantize_weight(&self) -> Tensor<2> {
        quant_dequantize(self.weight.val(), self.desc, FloatDType::F32).transpose()
    }
}
