//! Flex, Burn's CPU backend: the threaded products of [`crate::cpu`] on the tensors' storage,
//! read in place (Flex tensors are reference-counted bytes; no copy of the weight per call).

use burn::backend::flex::{Flex, FlexTensor, Layout};
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::tensor::{Bytes, DType, FloatDType};

use crate::dims::with_last_dim;
use crate::ops::layer::{DecoderLayerConfig, DecoderLayerWeights, KvBuffers};
use crate::ops::{FUSED_MAX_ROWS, Positions, QuantBackend, TransformerBackend};
use crate::quant::{Activations, PackError, QuantWeightDesc};

type Product = fn(&[f32], &[u32], usize, QuantWeightDesc) -> Result<Vec<f32>, PackError>;

/// The packed words of `weight`, in place.
pub(super) fn words(weight: &FlexTensor) -> &[u32] {
    let words = match weight.dtype() {
        DType::U32 => weight.as_slice::<u32>(),
        DType::I32 => weight.as_slice::<i32>().map(bytemuck::cast_slice),
        _ => None,
    };
    words.unwrap_or_else(|| {
        panic!(
            "a packed weight must be a contiguous 1-D U32 tensor, found {:?} {:?}",
            weight.dtype(),
            weight.layout().shape()
        )
    })
}

/// `f` over `input` (`[.., inner]`, any float dtype, computed in f32) giving `[.., out_last]` in
/// the input's dtype.
fn product(
    input: FlexTensor,
    weight: &FlexTensor,
    desc: QuantWeightDesc,
    (inner, out_last): (usize, usize),
    f: Product,
) -> FlexTensor {
    let dtype = input.dtype();
    let input = contiguous_f32(input);
    let values = f32s(&input);
    let rows = values.len() / inner;
    let y = f(values, words(weight), rows, desc).unwrap_or_else(|e| panic!("{e}"));
    let shape = with_last_dim(input.layout().shape(), out_last);
    f32_tensor(y, shape.to_vec(), dtype.into())
}

/// The values of a contiguous f32 tensor ([`contiguous_f32`]'s).
fn f32s(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>().expect("contiguous f32")
}

/// `t` as a contiguous f32 tensor (itself when it is one).
fn contiguous_f32(t: FlexTensor) -> FlexTensor {
    let t = if t.dtype() == DType::F32 {
        t
    } else {
        Flex::float_cast(t, FloatDType::F32)
    };
    if t.as_slice::<f32>().is_some() {
        t
    } else {
        t.to_contiguous()
    }
}

/// [`crate::cpu::matmul_int8`] up to [`FUSED_MAX_ROWS`] rows (the Cube backend's fused kernel's
/// rows), [`crate::cpu::matmul`] of `x` as given above.
fn matmul_int8(
    x: &[f32],
    words: &[u32],
    m: usize,
    desc: QuantWeightDesc,
) -> Result<Vec<f32>, PackError> {
    if m > FUSED_MAX_ROWS {
        return crate::cpu::matmul(x, words, m, desc);
    }
    crate::cpu::matmul_int8(x, words, m, desc)
}

impl QuantBackend for Flex {
    fn quant_matmul(
        x: FloatTensor<Self>,
        weight: IntTensor<Self>,
        desc: QuantWeightDesc,
        activations: Activations,
    ) -> FloatTensor<Self> {
        let dims = (desc.in_features, desc.out_features);
        let f: Product = match activations {
            Activations::Float => crate::cpu::matmul,
            Activations::Int8 => matmul_int8,
        };
        product(x, &weight, desc, dims, f)
    }

    fn quant_matmul_t(
        grad_y: FloatTensor<Self>,
        weight: IntTensor<Self>,
        desc: QuantWeightDesc,
    ) -> FloatTensor<Self> {
        let dims = (desc.out_features, desc.in_features);
        product(grad_y, &weight, desc, dims, crate::cpu::matmul_t)
    }

    fn quant_dequantize(
        weight: IntTensor<Self>,
        desc: QuantWeightDesc,
        dtype: FloatDType,
    ) -> FloatTensor<Self> {
        let w = crate::cpu::dequantize(words(&weight), desc).unwrap_or_else(|e| panic!("{e}"));
        f32_tensor(w, vec![desc.out_features, desc.in_features], dtype)
    }

    fn quant_rows(
        weight: IntTensor<Self>,
        desc: QuantWeightDesc,
        ids: IntTensor<Self>,
        dtype: FloatDType,
    ) -> FloatTensor<Self> {
        let mut shape = ids.layout().shape().to_vec();
        let ids: Vec<usize> = ids
            .into_data()
            .convert::<i64>()
            .try_into_vec::<i64>()
            .expect("int ids")
            .into_iter()
            // A negative id becomes usize::MAX: out of range, like any id past the last row.
            .map(|i| usize::try_from(i).unwrap_or(usize::MAX))
            .collect();
        let rows = crate::cpu::rows(words(&weight), desc, &ids).unwrap_or_else(|e| panic!("{e}"));
        shape.push(desc.in_features);
        f32_tensor(rows, shape, dtype)
    }
}

impl TransformerBackend for Flex {
    fn rms_norm(x: FloatTensor<Self>, weight: FloatTensor<Self>, eps: f64) -> FloatTensor<Self> {
        let dtype = x.dtype();
        let (x, weight) = (contiguous_f32(x), contiguous_f32(weight));
        let y =
            crate::cpu::rms_norm(f32s(&x), f32s(&weight), eps).unwrap_or_else(|e| panic!("{e}"));
        f32_tensor(y, x.layout().shape().to_vec(), dtype.into())
    }

    fn rope(
        x: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
        positions: Positions<Self>,
    ) -> FloatTensor<Self> {
        let start = positions.first();
        let dtype = x.dtype();
        let (x, cos, sin) = (contiguous_f32(x), contiguous_f32(cos), contiguous_f32(sin));
        let shape = x.layout().shape().to_vec();
        let dims = shape.len();
        let geometry = (shape[dims - 3], shape[dims - 2], shape[dims - 1] / 2);
        let y = crate::cpu::rope(f32s(&x), f32s(&cos), f32s(&sin), geometry, start)
            .unwrap_or_else(|e| panic!("{e}"));
        f32_tensor(y, shape, dtype.into())
    }

    fn gelu_mul(gate: FloatTensor<Self>, up: FloatTensor<Self>) -> FloatTensor<Self> {
        let dtype = gate.dtype();
        let (gate, up) = (contiguous_f32(gate), contiguous_f32(up));
        let y = crate::cpu::gelu_mul(f32s(&gate), f32s(&up)).unwrap_or_else(|e| panic!("{e}"));
        f32_tensor(y, gate.layout().shape().to_vec(), dtype.into())
    }

    fn attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        positions: Positions<Self>,
        window: Option<usize>,
        scale: f64,
    ) -> FloatTensor<Self> {
        let start = positions.first();
        let dtype = q.dtype();
        let (q, k, v) = (contiguous_f32(q), contiguous_f32(k), contiguous_f32(v));
        let (qs, ks) = (q.layout().shape().to_vec(), k.layout().shape().to_vec());
        let shape = crate::cpu::AttentionShape {
            batch: qs[0],
            queries: qs[1],
            heads: qs[2],
            kv_heads: ks[1],
            keys: ks[2],
            head_dim: qs[3],
        };
        let y = crate::cpu::attention(
            f32s(&q),
            f32s(&k),
            f32s(&v),
            shape,
            start,
            window,
            scale as f32,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        f32_tensor(y, qs, dtype.into())
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
        super::flex_layer::decoder_layer(x, weights, cache, cos, sin, positions, config)
    }
}

/// `values` as a contiguous tensor of `shape`, cast to `dtype`.
fn f32_tensor(values: Vec<f32>, shape: Vec<usize>, dtype: FloatDType) -> FlexTensor {
    let t = FlexTensor::new(
        Bytes::from_elems(values),
        Layout::contiguous(shape.into()),
        DType::F32,
    );
    if dtype == FloatDType::F32 {
        t
    } else {
        Flex::float_cast(t, dtype)
    }
}
