//! NdArray: the CPU path of the trait's default methods (threaded, block by block), and a dense
//! product for a few rows that reads the tensors in place.

use burn::backend::NdArray;
use burn::backend::ndarray::{
    FloatNdArrayElement, IntNdArrayElement, NdArrayTensor, QuantElement, SharedArray,
};
use burn::tensor::TensorData;
use burn::tensor::ops::{FloatTensor, FloatTensorOps};

use super::cpu::{SendPtr, dot_slices, for_each_range};
use crate::ops::Q6kBackend;

impl<E, I, Q> Q6kBackend for NdArray<E, I, Q>
where
    E: FloatNdArrayElement,
    I: IntNdArrayElement,
    Q: QuantElement,
    NdArrayTensor: From<SharedArray<E>> + From<SharedArray<I>>,
{
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
