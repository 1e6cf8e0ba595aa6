//! NdArray: the fused Q6_K product and a dense product for a few rows, both reading the tensors
//! in place (burn-ndarray's own matmul and `into_data` copy them on every call); the trait's
//! default host path for the rest.

use burn::backend::NdArray;
use burn::backend::ndarray::{
    FloatNdArrayElement, IntNdArrayElement, NdArrayTensor, QuantElement, SharedArray,
};
use burn::tensor::TensorData;
use burn::tensor::ops::{FloatTensor, FloatTensorOps, IntTensor};

use super::cpu::{SendPtr, dot_slices, for_each_range};
use super::cpu_fused::{self, BlockSource};
use crate::ops::{Q6kBackend, Q6kShape};

/// The packed words of an int tensor held as 32-bit ints in standard layout, in place.
fn words_in_place(
    packed: &NdArrayTensor,
    f: impl FnOnce(&[u32]) -> Option<Vec<f32>>,
) -> Option<Vec<f32>> {
    match packed {
        NdArrayTensor::I32(p) => {
            let v = p.view();
            f(bytemuck::cast_slice(v.as_slice()?))
        }
        NdArrayTensor::U32(p) => {
            let v = p.view();
            f(v.as_slice()?)
        }
        _ => None,
    }
}

/// The fused product on tensors read in place; `None` when they are not f32 activations and
/// 32-bit packed words in standard layout (the default host path then copies them out).
fn matmul_in_place(
    x: &NdArrayTensor,
    packed: &NdArrayTensor,
    shape: Q6kShape,
) -> Option<(Vec<f32>, Vec<usize>)> {
    let NdArrayTensor::F32(x) = x else {
        return None;
    };
    let xv = x.view();
    let xs = xv.as_slice()?;
    let mut out_shape = xv.shape().to_vec();
    let last = out_shape.last_mut()?;
    if *last != shape.in_features {
        return None;
    }
    *last = shape.out_features;
    let rows = xs.len() / shape.in_features;
    let y = words_in_place(packed, |words| {
        let w = BlockSource::new(words, shape).ok()?;
        Some(cpu_fused::matmul(xs, w, rows, shape))
    })?;
    Some((y, out_shape))
}

impl<E, I, Q> Q6kBackend for NdArray<E, I, Q>
where
    E: FloatNdArrayElement,
    I: IntNdArrayElement,
    Q: QuantElement,
    NdArrayTensor: From<SharedArray<E>> + From<SharedArray<I>>,
{
    fn q6k_matmul(
        x: FloatTensor<Self>,
        packed: IntTensor<Self>,
        shape: Q6kShape,
    ) -> FloatTensor<Self> {
        match matmul_in_place(&x, &packed, shape) {
            Some((y, out_shape)) => {
                Self::float_from_data(TensorData::new(y, out_shape), &Default::default())
            }
            None => super::cpu::matmul::<Self>(x, packed, shape),
        }
    }

    fn dense_rows(
        x: &FloatTensor<Self>,
        weight: &FloatTensor<Self>,
        transposed: bool,
    ) -> Option<FloatTensor<Self>> {
        let (NdArrayTensor::F32(x), NdArrayTensor::F32(w)) = (x, weight) else {
            return None;
        };
        let (xv, wv) = (x.view(), w.view());
        let (xs, ws) = (xv.as_slice()?, wv.as_slice()?);
        let (&[rows, k], &[a, b]) = (xv.shape(), wv.shape()) else {
            return None;
        };
        let (n, wk) = if transposed { (a, b) } else { (b, a) };
        if wk != k {
            return None;
        }
        let y = dense_rows_f32(xs, ws, rows, k, n, transposed);
        let device = Default::default();
        Some(Self::float_from_data(
            TensorData::new(y, [rows, n]),
            &device,
        ))
    }
}

/// `y[r, o] = Σ_i x[r, i] · w[i, o]` (`w` `[k, n]`), or `Σ_i x[r, i] · w[o, i]` when
/// `transposed` (`w` `[n, k]`), threads splitting the outputs.
fn dense_rows_f32(
    x: &[f32],
    w: &[f32],
    rows: usize,
    k: usize,
    n: usize,
    transposed: bool,
) -> Vec<f32> {
    let mut yt = vec![0f32; n * rows]; // [n, rows]: a thread's outputs are contiguous
    let out = SendPtr(yt.as_mut_ptr());
    for_each_range(n, |o0, o1| {
        // SAFETY: threads write disjoint ranges [o0, o1) of yt, which outlives the scope.
        let out =
            unsafe { std::slice::from_raw_parts_mut(out.get().add(o0 * rows), (o1 - o0) * rows) };
        if transposed {
            for o in o0..o1 {
                let wr = &w[o * k..(o + 1) * k];
                for r in 0..rows {
                    out[(o - o0) * rows + r] = dot_slices(wr, &x[r * k..(r + 1) * k]);
                }
            }
        } else {
            let width = o1 - o0;
            let mut acc = vec![0f32; rows * width];
            for i in 0..k {
                let wr = &w[i * n + o0..i * n + o1];
                for r in 0..rows {
                    let xi = x[r * k + i];
                    for (a, &wv) in acc[r * width..(r + 1) * width].iter_mut().zip(wr) {
                        *a += xi * wv;
                    }
                }
            }
            for o in 0..width {
                for r in 0..rows {
                    out[o * rows + r] = acc[r * width + o];
                }
            }
        }
    });
    let mut y = vec![0f32; rows * n];
    for o in 0..n {
        for r in 0..rows {
            y[r * n + o] = yt[o * rows + r];
        }
    }
    y
}
