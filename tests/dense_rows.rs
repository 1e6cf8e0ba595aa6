//! `ops::dense_matmul`: the backend's own few-row product (NdArray reads its tensors in place)
//! against f64, both weight layouts, odd shapes, fresh random data.

#![cfg(feature = "ndarray")]

mod common;

use burn::backend::NdArray;
use burn::tensor::{Tensor, TensorData};
use burn_gguf::ops::dense_matmul;
use common::Rng;

#[test]
fn dense_rows_match_f64() {
    let mut rng = Rng::fresh("dense_rows_match_f64");
    let device = Default::default();
    for (rows, k, n) in [
        (1, 640, 2048),
        (3, 37, 5),
        (8, 256, 1000),
        (2, 1, 9),
        (12, 64, 33),
    ] {
        let x: Vec<f32> = (0..rows * k).map(|_| rng.normal() as f32).collect();
        let w: Vec<f32> = (0..k * n).map(|_| rng.normal() as f32).collect(); // [k, n]
        let wt: Vec<f32> = (0..n * k).map(|i| w[(i % k) * n + i / k]).collect(); // [n, k]
        let xt = Tensor::<NdArray, 2>::from_data(TensorData::new(x.clone(), [rows, k]), &device);
        let plain = Tensor::<NdArray, 2>::from_data(TensorData::new(w.clone(), [k, n]), &device);
        let trans = Tensor::<NdArray, 2>::from_data(TensorData::new(wt, [n, k]), &device);
        for (what, y) in [
            ("x·w", dense_matmul(xt.clone(), &plain, false)),
            ("x·wᵀ", dense_matmul(xt.clone(), &trans, true)),
        ] {
            assert_eq!(y.dims(), [rows, n], "{what}");
            let y = y.into_data().to_vec::<f32>().unwrap();
            for r in 0..rows {
                for o in 0..n {
                    let (mut exact, mut abs) = (0f64, 0f64);
                    for i in 0..k {
                        let p = f64::from(x[r * k + i]) * f64::from(w[i * n + o]);
                        exact += p;
                        abs += p.abs();
                    }
                    // Higham: |error| ≤ γ_k Σ|x·w|, γ_k ≈ k·u (u = 2⁻²⁴), plus the final rounding.
                    let bound = (k as f64 + 1.0) * f64::from(f32::EPSILON / 2.0) * abs + 1e-30;
                    let err = (f64::from(y[r * n + o]) - exact).abs();
                    assert!(
                        err <= bound,
                        "{what} {rows}x{k}x{n} [{r},{o}]: {err} > {bound}"
                    );
                }
            }
        }
    }
}
