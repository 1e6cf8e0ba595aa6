//! [`GgufLinear`]: a linear layer loaded from any GGUF weight — fused Q6_K where the weight is
//! Q6_K, a dense `burn::nn::Linear` (dequantized at load) otherwise.

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use super::q6k_linear::load_bias;
use super::{Q6kLinear, Q6kLinearError};
use crate::gguf::GgufFile;
use crate::ops::{Q6kBackend, dense_matmul, to_burn_shape};
use crate::quant::GgmlType;

/// A linear layer from a GGUF weight (`ne = [d_input, d_output]`, the layout llama.cpp uses for
/// every projection): Q6_K weights stay Q6_K bytes on the device and run the fused kernel, any
/// other type is dequantized once at load into a dense [`Linear`].
#[derive(Module, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum GgufLinear<B: Backend> {
    /// A Q6_K weight on the fused path.
    Q6k(Q6kLinear<B>),
    /// A weight of another type, dequantized to the backend's float type.
    Dense(Linear<B>),
}

impl<B: Backend> GgufLinear<B> {
    /// Loads tensor `name` and its bias (`.weight` → `.bias`) if the file has one.
    pub fn from_gguf(
        file: &GgufFile,
        name: &str,
        device: &B::Device,
    ) -> Result<Self, Q6kLinearError> {
        let info = file.require_tensor(name)?;
        if info.ggml_type == GgmlType::Q6_K {
            return Ok(GgufLinear::Q6k(Q6kLinear::from_gguf(file, name, device)?));
        }
        let [d_output, d_input] = to_burn_shape::<2>(info)?;
        // The file holds [d_output, d_input] row-major; Linear holds [d_input, d_output].
        let values = file.dequantize(name)?;
        let mut transposed = vec![0.0f32; values.len()];
        for (o, row) in values.chunks_exact(d_input).enumerate() {
            for (i, &v) in row.iter().enumerate() {
                transposed[i * d_output + o] = v;
            }
        }
        let weight = Tensor::from_data(TensorData::new(transposed, [d_input, d_output]), device);
        let bias = load_bias(file, name, d_output, device)?.map(Param::from_tensor);
        Ok(GgufLinear::Dense(Linear {
            weight: Param::from_tensor(weight),
            bias,
        }))
    }

    /// Whether the weight runs on the fused Q6_K path.
    pub fn is_fused(&self) -> bool {
        matches!(self, GgufLinear::Q6k(_))
    }

    /// Bytes the layer holds on its device.
    pub fn memory_bytes(&self) -> usize {
        match self {
            GgufLinear::Q6k(q) => q.memory_bytes(),
            GgufLinear::Dense(l) => {
                let elem = l.weight.val().dtype().size();
                (l.weight.val().shape().num_elements()
                    + l.bias.as_ref().map_or(0, |b| b.val().dims()[0]))
                    * elem
            }
        }
    }

    /// `(d_input, d_output)`.
    pub fn dims(&self) -> (usize, usize) {
        match self {
            GgufLinear::Q6k(q) => (q.d_input, q.d_output),
            GgufLinear::Dense(l) => {
                let [i, o] = l.weight.val().dims();
                (i, o)
            }
        }
    }
}

impl<B: Q6kBackend> GgufLinear<B> {
    /// Applies the layer to `[..., d_input]`, giving `[..., d_output]`.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        match self {
            GgufLinear::Q6k(q) => q.forward(x),
            GgufLinear::Dense(l) => {
                let y = dense_matmul(x, &l.weight.val(), false);
                match &l.bias {
                    Some(b) => y + b.val().unsqueeze(),
                    None => y,
                }
            }
        }
    }
}
