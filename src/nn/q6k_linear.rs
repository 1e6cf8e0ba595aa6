//! [`Q6kLinear`]: a drop-in for `burn::nn::Linear` whose weight stays Q6_K bytes on the device.

use burn::config::Config;
use burn::module::{Module, Param, ParamId};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Int, Tensor, TensorData, read_sync};
use thiserror::Error;

use crate::gguf::{GgufError, GgufFile};
use crate::ops::{
    Q6kBackend, Q6kLayout, Q6kShape, load_float_tensor, pack, q6k_dequantize, q6k_matmul, unpack,
    words_from_data,
};
use crate::quant::{BlockQ6K, GgmlType, QK_K, q6k};

/// Why a [`Q6kLinear`] could not be built.
#[derive(Debug, Error)]
pub enum Q6kLinearError {
    /// Q6_K blocks are 256 weights along the input dimension.
    #[error("d_input = {d_input} is not a multiple of 256, which Q6_K needs")]
    InputNotMultipleOf256 {
        /// The input size asked for.
        d_input: usize,
    },
    /// The GGUF tensor is not a Q6_K matrix.
    #[error(
        "tensor {name:?} is {ggml_type} with dims {dims:?}; a Q6kLinear needs a 2-D q6_K tensor"
    )]
    NotQ6kMatrix {
        /// The tensor.
        name: String,
        /// Its type.
        ggml_type: GgmlType,
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
    /// The byte buffer does not hold a `d_output × d_input` Q6_K weight.
    #[error("a {d_output}x{d_input} Q6_K weight is {expected} bytes, got {found}")]
    ByteLength {
        /// Input features.
        d_input: usize,
        /// Output features.
        d_output: usize,
        /// Bytes needed.
        expected: usize,
        /// Bytes given.
        found: usize,
    },
    /// Reading the file failed.
    #[error(transparent)]
    Gguf(#[from] GgufError),
}

/// Configuration of a [`Q6kLinear`], as `burn::nn::LinearConfig`.
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
    pub fn init<B: Q6kBackend>(&self, device: &B::Device) -> Result<Q6kLinear<B>, Q6kLinearError> {
        check_input(self.d_input)?;
        let linear = LinearConfig::new(self.d_input, self.d_output)
            .with_bias(self.bias)
            .init(device);
        Q6kLinear::from_linear(&linear)
    }
}

/// A linear layer `y = x · Wᵀ + b` whose weight W (`[d_output, d_input]`, GGUF layout) is held
/// as Q6_K bytes on the device — 6.5625 bits per weight — and multiplied without ever being
/// dequantized (the fused kernel for up to 8 activation rows; see [`crate::ops::Q6kBackend`]).
///
/// The packed weight is an `Int` parameter: moved with the module, saved by Burn's recorders (as
/// i32 bit patterns, exact under `DefaultRecorder`/full precision), never trained. Under
/// `Autodiff`, gradients flow to the input only.
#[derive(Module, Debug)]
pub struct Q6kLinear<B: Backend> {
    /// The GGUF Q6_K bytes of W as little-endian 32-bit words (i32 bit patterns).
    pub weight: Param<Tensor<B, 1, Int>>,
    /// The bias, `[d_output]`.
    pub bias: Option<Param<Tensor<B, 1>>>,
    /// Input features.
    pub d_input: usize,
    /// Output features.
    pub d_output: usize,
}

/// The bias of weight `name` (`name` with `.weight` replaced by `.bias`) if the file has one,
/// checked to hold `d_output` values.
pub(crate) fn load_bias<B: Backend>(
    file: &GgufFile,
    name: &str,
    d_output: usize,
    device: &B::Device,
) -> Result<Option<Tensor<B, 1>>, Q6kLinearError> {
    let bias_name = name.strip_suffix(".weight").map(|s| format!("{s}.bias"));
    let Some(b) = bias_name.as_deref().and_then(|b| file.tensor_info(b)) else {
        return Ok(None);
    };
    if b.n_elements() != d_output as u64 {
        return Err(Q6kLinearError::BiasShape {
            name: b.name.clone(),
            dims: b.dims.clone(),
            d_output,
        });
    }
    Ok(Some(load_float_tensor::<B, 1>(file, &b.name, device)?))
}

fn check_input(d_input: usize) -> Result<(), Q6kLinearError> {
    if d_input == 0 || !d_input.is_multiple_of(QK_K) {
        return Err(Q6kLinearError::InputNotMultipleOf256 { d_input });
    }
    Ok(())
}

impl<B: Backend> Q6kLinear<B> {
    /// The shape the ops take.
    pub fn shape(&self) -> Q6kShape {
        Q6kShape {
            out_features: self.d_output,
            in_features: self.d_input,
        }
    }

    /// Builds the layer from raw GGUF Q6_K bytes of a `[d_output, d_input]` weight (no copy of
    /// the weight is dequantized).
    pub fn from_q6k_bytes(
        bytes: &[u8],
        d_input: usize,
        d_output: usize,
        bias: Option<Tensor<B, 1>>,
        device: &B::Device,
    ) -> Result<Self, Q6kLinearError> {
        check_input(d_input)?;
        let shape = Q6kShape {
            out_features: d_output,
            in_features: d_input,
        };
        if bytes.len() != shape.n_bytes() {
            return Err(Q6kLinearError::ByteLength {
                d_input,
                d_output,
                expected: shape.n_bytes(),
                found: bytes.len(),
            });
        }
        let words = pack(bytes, shape, Q6kLayout::preferred());
        let n = words.len();
        let packed =
            Tensor::<B, 1, Int>::from_data(TensorData::new(words, [n]), (device, DType::I32));
        Ok(Q6kLinear {
            weight: Param::initialized(ParamId::new(), packed),
            bias: bias.map(|b| Param::initialized(ParamId::new(), b)),
            d_input,
            d_output,
        })
    }

    /// Quantizes a `burn::nn::Linear` (weight `[d_input, d_output]`) with ggml's bit-exact Q6_K
    /// quantizer; the bias is kept as is.
    pub fn from_linear(linear: &Linear<B>) -> Result<Self, Q6kLinearError> {
        let w = linear.weight.val();
        let [d_input, d_output] = w.dims();
        check_input(d_input)?;
        let device = w.device();
        // Linear holds [in, out]; GGUF rows are output features: transpose on the host.
        let data = w.into_data().convert::<f32>();
        let wt = data.as_slice::<f32>().expect("f32 weight");
        let mut rows = vec![0f32; d_input * d_output];
        for i in 0..d_input {
            for o in 0..d_output {
                rows[o * d_input + i] = wt[i * d_output + o];
            }
        }
        let blocks = q6k::quantize(&rows, 0).expect("d_input is a multiple of 256");
        let bias = linear.bias.as_ref().map(|b| b.val());
        Self::from_q6k_bytes(
            BlockQ6K::slice_as_bytes(&blocks),
            d_input,
            d_output,
            bias,
            &device,
        )
    }

    /// Loads tensor `name` (a 2-D Q6_K tensor, GGUF `ne = [d_input, d_output]`) as raw bytes, and
    /// its bias (`name` with `.weight` replaced by `.bias`) when the file has one.
    pub fn from_gguf(
        file: &GgufFile,
        name: &str,
        device: &B::Device,
    ) -> Result<Self, Q6kLinearError> {
        let info = file.require_tensor(name)?;
        let dims: Vec<u64> = info
            .dims
            .iter()
            .copied()
            .rev()
            .skip_while(|&d| d == 1)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        if info.ggml_type != GgmlType::Q6_K || dims.len() != 2 {
            return Err(Q6kLinearError::NotQ6kMatrix {
                name: name.into(),
                ggml_type: info.ggml_type,
                dims: info.dims.clone(),
            });
        }
        let (d_input, d_output) = (dims[0] as usize, dims[1] as usize);
        let bias = load_bias(file, name, d_output, device)?;
        Self::from_q6k_bytes(file.tensor_data(name)?, d_input, d_output, bias, device)
    }

    /// The exact GGUF Q6_K bytes of the weight, read back from the device (and regrouped from
    /// the aligned planes the device holds, see [`crate::quant::planes`]). Panics if the weight
    /// was replaced (e.g. by a record) with words that fit neither layout.
    pub fn q6k_bytes(&self) -> Vec<u8> {
        let data = read_sync(self.weight.val().into_data_async()).expect("read the packed weight");
        unpack(&words_from_data(&data), self.shape()).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Bytes the layer holds on its device: the Q6_K weight (6.5625 bits per weight, plus at
    /// most 28 bytes of header and padding) and the bias.
    pub fn memory_bytes(&self) -> usize {
        self.weight.val().dims()[0] * 4 + self.bias.as_ref().map_or(0, |_| self.d_output * 4)
    }
}

impl<B: Q6kBackend> Q6kLinear<B> {
    /// Applies the layer to `[..., d_input]`, giving `[..., d_output]`, like `Linear::forward`.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let y = q6k_matmul(x, self.weight.val(), self.shape());
        match &self.bias {
            Some(b) => y + b.val().unsqueeze(),
            None => y,
        }
    }

    /// The weight dequantized to `[d_input, d_output]`, the layout `burn::nn::Linear` holds.
    pub fn dequantize_weight(&self) -> Tensor<B, 2> {
        q6k_dequantize(self.weight.val(), self.shape()).transpose()
    }
}
