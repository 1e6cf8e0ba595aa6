//! The CubeCL backend (CUDA, wgpu, Metal: one type, the device picks the runtime): the fused
//! kernel for up to [`FUSED_MAX_ROWS`] rows, above that the weight dequantized on the device and
//! Burn's matmul. A weight or input the kernels cannot take panics with the kernel's reason; no
//! path reads the weight back to the host.

use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::tensor::{DType, FloatDType, Shape};
use burn_cubecl::CubeBackend;
use burn_cubecl::tensor::CubeTensor;

use crate::cpu::sampling::TokenSampling;
use crate::dims::with_last_dim;
use crate::kernel::{self, KernelError};
use crate::ops::layer::{DecoderLayerConfig, DecoderLayerWeights, KvBuffers};
use crate::ops::{Draw, FUSED_MAX_ROWS, Positions, QuantBackend, TransformerBackend};
use crate::quant::{Activations, QuantWeightDesc};

pub(super) fn ok<T>(r: Result<T, KernelError>) -> T {
    r.unwrap_or_else(|e| panic!("burn-gguf quantized op: {e}"))
}

/// The kernels' form of [`Positions`]: a device offset stays on the device.
pub(super) fn start(positions: Positions<CubeBackend>) -> kernel::Start {
    match positions {
        Positions::Host { start } => kernel::Start::at(start),
        Positions::Device { offset } => kernel::Start::on_device(offset),
    }
}

/// `a · b` with `a` `[.., inner]` (viewed as `rows × inner`) and `b` a dense f32 matrix, computed
/// in f32 whatever a's dtype (the dequantized weight is exact in f32, not in f16), then cast back.
fn product_f32(a: CubeTensor, inner: usize, b: CubeTensor, out_last: usize) -> CubeTensor {
    type B = CubeBackend;
    let (a_shape, dtype) = (a.meta.shape().clone(), a.dtype);
    let rows = a.meta.num_elements() / inner;
    let mut a2 = B::float_reshape(a, Shape::from(vec![rows, inner]));
    let wide = matches!(dtype, DType::F32 | DType::Flex32 | DType::F64);
    if !wide {
        a2 = B::float_cast(a2, FloatDType::F32);
    }
    let mut y = B::float_matmul(a2, b);
    if !wide {
        y = B::float_cast(y, FloatDType::from(dtype));
    }
    B::float_reshape(y, with_last_dim(&a_shape, out_last))
}

impl QuantBackend for CubeBackend {
    fn quant_matmul(
        x: FloatTensor<Self>,
        weight: IntTensor<Self>,
        desc: QuantWeightDesc,
        activations: Activations,
    ) -> FloatTensor<Self> {
        let rows = x.meta.num_elements() / desc.in_features;
        if rows <= FUSED_MAX_ROWS {
            return ok(kernel::quant_gemv(x, weight, desc, activations, None));
        }
        let w = ok(kernel::quant_dequantize(weight, desc, DType::F32));
        let wt = Self::float_transpose(w);
        product_f32(x, desc.in_features, wt, desc.out_features)
    }

    fn quant_matmul_t(
        grad_y: FloatTensor<Self>,
        weight: IntTensor<Self>,
        desc: QuantWeightDesc,
    ) -> FloatTensor<Self> {
        let w = ok(kernel::quant_dequantize(weight, desc, DType::F32));
        product_f32(grad_y, desc.out_features, w, desc.in_features)
    }

    fn quant_dequantize(
        weight: IntTensor<Self>,
        desc: QuantWeightDesc,
        dtype: FloatDType,
    ) -> FloatTensor<Self> {
        ok(kernel::quant_dequantize(weight, desc, dtype.into()))
    }

    fn quant_rows(
        weight: IntTensor<Self>,
        desc: QuantWeightDesc,
        ids: IntTensor<Self>,
        dtype: FloatDType,
    ) -> FloatTensor<Self> {
        ok(kernel::quant_rows(weight, desc, ids, dtype.into()))
    }
}

impl TransformerBackend for CubeBackend {
    fn rms_norm(x: FloatTensor<Self>, weight: FloatTensor<Self>, eps: f64) -> FloatTensor<Self> {
        ok(kernel::rms_norm(x, weight, eps))
    }

    fn rope(
        x: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
        positions: Positions<Self>,
    ) -> FloatTensor<Self> {
        ok(kernel::rope(x, cos, sin, start(positions)))
    }

    fn gelu_mul(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self> {
        ok(kernel::gelu_mul(gate, up))
    }

    fn attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        positions: Positions<Self>,
        window: Option<usize>,
        scale: f64,
    ) -> FloatTensor<Self> {
        ok(kernel::attention(q, k, v, start(positions), window, scale))
    }

    fn write_positions(
        buffer: FloatTensor<Self>,
        value: FloatTensor<Self>,
        positions: Positions<Self>,
    ) -> FloatTensor<Self> {
        ok(kernel::write_positions(buffer, value, start(positions)))
    }

    fn sample_token(
        logits: FloatTensor<Self>,
        draw: Draw<Self>,
        sampling: TokenSampling,
    ) -> IntTensor<Self> {
        let draw = match draw {
            Draw::Host { value } => kernel::Draw { value, table: None },
            Draw::Device { uniforms, index } => kernel::Draw {
                value: 0.0,
                table: Some((uniforms, index)),
            },
        };
        ok(kernel::sample_token(logits, sampling, draw))
    }

    fn decoder_layer(
        x: FloatTensor<Self>,
        weights: DecoderLayerWeights<Self>,
        cache: KvBuffers<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
        positions: Positions<Self>,
        config: DecoderLayerConfig,
    ) -> (FloatTensor<Self>, KvBuffers<Self>) {
        super::cube_layer::decoder_layer(x, weights, cache, cos, sin, positions, config)
    }
}
