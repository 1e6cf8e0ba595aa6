//! The CubeCL backend (wgpu, CUDA, Metal): the fused kernel for small batches, dequantize +
//! Burn's matmul above [`crate::ops::FUSED_MAX_ROWS`] rows; the CPU path if a kernel reports it
//! cannot run.

use burn::tensor::ops::{FloatTensor, FloatTensorOps, IntTensor};
use burn::tensor::{DType, FloatDType, Shape};
use burn_cubecl::{BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement};

use super::cpu;
use crate::kernel;
use crate::ops::{FUSED_MAX_ROWS, Q6kBackend, Q6kShape, with_last_dim};

type Cube<R, F, I, BT> = CubeBackend<R, F, I, BT>;

/// `a · b` with `a` `[.., inner]` (viewed as `rows × inner`) and `b` a dense f32 matrix, computed
/// in f32 whatever a's dtype (the dequantized weight is exact in f32, not in f16), then cast back.
fn product_f32<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement>(
    a: FloatTensor<Cube<R, F, I, BT>>,
    inner: usize,
    b: FloatTensor<Cube<R, F, I, BT>>,
    out_last: usize,
) -> FloatTensor<Cube<R, F, I, BT>> {
    type B<R, F, I, BT> = Cube<R, F, I, BT>;
    let (a_shape, dtype) = (a.meta.shape().clone(), a.dtype);
    let rows = a.meta.num_elements() / inner;
    let mut a2 = B::<R, F, I, BT>::float_reshape(a, Shape::from(vec![rows, inner]));
    let wide = matches!(dtype, DType::F32 | DType::Flex32 | DType::F64);
    if !wide {
        a2 = B::<R, F, I, BT>::float_cast(a2, FloatDType::F32);
    }
    let mut y = B::<R, F, I, BT>::float_matmul(a2, b);
    if !wide {
        y = B::<R, F, I, BT>::float_cast(y, FloatDType::from(dtype));
    }
    B::<R, F, I, BT>::float_reshape(y, with_last_dim(&a_shape, out_last))
}

/// `x · Wᵀ` through the fused kernel or, for large batches, the dequantized weight.
fn matmul<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement>(
    x: FloatTensor<Cube<R, F, I, BT>>,
    packed: IntTensor<Cube<R, F, I, BT>>,
    shape: Q6kShape,
) -> FloatTensor<Cube<R, F, I, BT>> {
    let rows = x.meta.num_elements() / shape.in_features;
    let attempt = if rows <= FUSED_MAX_ROWS {
        kernel::q6k_gemv(x.clone(), packed.clone(), shape)
    } else {
        kernel::q6k_dequantize(packed.clone(), shape, DType::F32).map(|w| {
            let wt = Cube::<R, F, I, BT>::float_transpose(w);
            product_f32::<R, F, I, BT>(x.clone(), shape.in_features, wt, shape.out_features)
        })
    };
    attempt.unwrap_or_else(|_| cpu::matmul::<Cube<R, F, I, BT>>(x, packed, shape))
}

/// `g_y · W` from the dequantized weight.
fn matmul_t<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement>(
    grad_y: FloatTensor<Cube<R, F, I, BT>>,
    packed: IntTensor<Cube<R, F, I, BT>>,
    shape: Q6kShape,
) -> FloatTensor<Cube<R, F, I, BT>> {
    match kernel::q6k_dequantize(packed.clone(), shape, DType::F32) {
        Ok(w) => product_f32::<R, F, I, BT>(grad_y, shape.out_features, w, shape.in_features),
        Err(_) => cpu::matmul_t::<Cube<R, F, I, BT>>(grad_y, packed, shape),
    }
}

impl<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement> Q6kBackend
    for CubeBackend<R, F, I, BT>
{
    fn q6k_matmul(
        x: FloatTensor<Self>,
        packed: IntTensor<Self>,
        shape: Q6kShape,
    ) -> FloatTensor<Self> {
        matmul::<R, F, I, BT>(x, packed, shape)
    }

    fn q6k_matmul_t(
        grad_y: FloatTensor<Self>,
        packed: IntTensor<Self>,
        shape: Q6kShape,
    ) -> FloatTensor<Self> {
        matmul_t::<R, F, I, BT>(grad_y, packed, shape)
    }

    fn q6k_dequantize(packed: IntTensor<Self>, shape: Q6kShape) -> FloatTensor<Self> {
        kernel::q6k_dequantize(packed.clone(), shape, F::dtype())
            .unwrap_or_else(|_| cpu::dequantize::<Self>(packed, shape))
    }
}
