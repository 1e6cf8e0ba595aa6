//! [`GgufLinear`]: a linear layer loaded from a GGUF weight — kept quantized where the type has a
//! fused product, a dense `burn::nn::Linear` for float types, and for other quantized types a
//! clear error unless the caller asks for dequantization at load.

use burn::backend::Dispatch;
use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::{Device, Tensor, TensorData};

use super::quant_linear::{load_bias, matrix_dims, require_fused_or_float};
use super::{QuantLinear, QuantLinearError};
use crate::gguf::GgufFile;
use crate::ops::LayerLinear;
use crate::quant::{Activations, FUSED_TYPES};

/// A linear layer from a GGUF weight (`ne = [d_input, d_output]`, the layout llama.cpp uses for
/// every projection): a weight whose type has a fused product stays its GGUF bytes on the device;
/// a float weight (F32, F16, BF16), or with [`GgufLinear::from_gguf_dequantized`] a quantized
/// type without a fused product, becomes a dense f32 [`Linear`].
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum GgufLinear {
    /// A quantized weight on the fused path.
    Quant(QuantLinear),
    /// A weight of another type, dequantized to f32.
    Dense(Linear),
}

impl GgufLinear {
    /// Loads tensor `name` and its bias (`.weight` → `.bias`) if the file has one. A quantized
    /// type without a fused product is [`crate::quant::PackError::Unsupported`] (see
    /// [`GgufLinear::from_gguf_dequantized`]).
    pub fn from_gguf(
        file: &GgufFile,
        name: &str,
        device: &Device,
    ) -> Result<Self, QuantLinearError> {
        require_fused_or_float(file, name)?;
        Self::from_gguf_dequantized(file, name, device)
    }

    /// As [`GgufLinear::from_gguf`], but a quantized type without a fused product is dequantized
    /// to a dense f32 [`Linear`] at load instead of refused.
    pub fn from_gguf_dequantized(
        file: &GgufFile,
        name: &str,
        device: &Device,
    ) -> Result<Self, QuantLinearError> {
        let info = file.require_tensor(name)?;
        if FUSED_TYPES.contains(&info.ggml_type) {
            return Ok(GgufLinear::Quant(QuantLinear::from_gguf(
                file, name, device,
            )?));
        }
        let (d_input, d_output) = matrix_dims(info)?;
        // The file holds [d_output, d_input] row-major; Linear holds [d_input, d_output]. The
        // transpose is made here, on the host, so that the device holds a contiguous weight (a
        // transposed view would be copied by every reshape `Linear::forward` makes).
        let values = file.dequantize(name)?;
        let mut transposed = vec![0.0f32; values.len()];
        for (o, row) in values.chunks_exact(d_input).enumerate() {
            for (i, &v) in row.iter().enumerate() {
                transposed[i * d_output + o] = v;
            }
        }
        let weight =
            Tensor::<2>::from_data(TensorData::new(transposed, [d_input, d_output]), device);
        let bias = load_bias(file, name, d_output, device)?.map(Param::from_tensor);
        Ok(GgufLinear::Dense(Linear {
            weight: Param::from_tensor(weight),
            bias,
        }))
    }

    /// The layer as [`ops::decoder_layer`](crate::ops::decoder_layer) takes a projection.
    pub fn layer_linear(&self) -> LayerLinear<Dispatch> {
        match self {
            GgufLinear::Quant(q) => q.layer_linear(),
            GgufLinear::Dense(l) => {
                let weight = l.weight.val().into_dispatch();
                match &l.bias {
                    Some(b) => LayerLinear::DenseBiased {
                        weight,
                        bias: b.val().into_dispatch(),
                    },
                    None => LayerLinear::Dense { weight },
                }
            }
        }
    }

    /// The layer reading its activations as `activations` says where its weight can
    /// ([`QuantLinear::with_activations`]); a dense layer, and a Q6_K weight in its planes asked
    /// for int8, stay as they are ([`GgufLinear::activations`] tells which).
    ///
    /// ```
    /// # #[cfg(feature = "flex")] {
    /// use burn::tensor::Device;
    /// use burn_gguf::nn::{GgufLinear, QuantLinear};
    /// use burn_gguf::quant::{Activations, GgmlType, PackedLayout, QuantWeightDesc};
    /// let device = Device::flex();
    /// let q8 = QuantWeightDesc::of(GgmlType::Q8_0, 1, 32)?;
    /// let layer = GgufLinear::Quant(QuantLinear::from_gguf_bytes(&[0; 34], q8, None, &device)?);
    /// let layer = layer.with_activations(Activations::Int8);
    /// assert_eq!(layer.activations(), Activations::Int8);
    /// let planes = QuantWeightDesc::new(GgmlType::Q6_K, PackedLayout::Q6kPlanes, 1, 256)?;
    /// let q6k = QuantLinear::from_gguf_bytes(&[0; 210], planes, None, &device)?;
    /// let q6k = GgufLinear::Quant(q6k).with_activations(Activations::Int8);
    /// assert_eq!(q6k.activations(), Activations::Float);
    /// # }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_activations(self, activations: Activations) -> Self {
        match self {
            GgufLinear::Quant(q) if q.desc().layout.reads_int8() => GgufLinear::Quant(
                q.with_activations(activations)
                    .expect("the layout reads both"),
            ),
            other => other,
        }
    }

    /// How the layer reads its activations ([`Activations::Float`] for a dense one).
    pub fn activations(&self) -> Activations {
        match self {
            GgufLinear::Quant(q) => q.activations(),
            GgufLinear::Dense(_) => Activations::Float,
        }
    }

    /// Whether the weight runs on the fused quantized path.
    pub fn is_fused(&self) -> bool {
        matches!(self, GgufLinear::Quant(_))
    }

    /// Bytes the layer holds on its device.
    pub fn memory_bytes(&self) -> usize {
        match self {
            GgufLinear::Quant(q) => q.memory_bytes(),
            GgufLinear::Dense(l) => {
                let w = l.weight.val();
                let elem = w.dtype().size();
                (w.shape().num_elements() + l.bias.as_ref().map_or(0, |b| b.val().dims()[0])) * elem
            }
        }
    }

    /// `(d_input, d_output)`.
    pub fn dims(&self) -> (usize, usize) {
        match self {
            GgufLinear::Quant(q) => (q.d_input(), q.d_output()),
            GgufLinear::Dense(l) => {
                let [i, o] = l.weight.val().dims();
                (i, o)
            }
        }
    }

    /// Applies the layer to `[..., d_input]`, giving `[..., d_output]`.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        match self {
            GgufLinear::Quant(q) => q.forward(x),
            GgufLinear::Dense(l) => l.forward(x),
        }
    }
}
