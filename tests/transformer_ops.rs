//! The transformer layer's fused ops (`burn_gguf::ops::TransformerBackend`) on every device of
//! this build against f64 math: fresh random inputs each run (the seed is printed), row widths
//! that are not multiples of a cube's units, many rows and one, inputs small enough that ε
//! matters, poisoned outputs, f16 inputs, ranks 1 to 4 and a transposed view, and under autodiff the gradient against
//! its f64 derivative. Where the backend has a kernel, the kernel's typed errors too.
//!
//! Devices: Flex and Flex with autodiff; wgpu (lavapipe in CI) and its autodiff; CUDA with
//! `BURN_GGUF_CUDA=1` on the GPU machine.
#![cfg(any(feature = "flex", feature = "wgpu", feature = "cuda"))]

mod common;

use burn::tensor::{DType, Device, FloatDType, Tensor, TensorData};
use burn_gguf::ops::rms_norm;
use common::Rng;

fn floats<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .try_into_vec_as::<f32>()
        .expect("float values")
}

/// Fills the device's memory pool with NaN buffers of `len` floats.
fn poison(len: usize, device: &Device) {
    for _ in 0..2 {
        let _ = floats(Tensor::<1>::full([len], f32::NAN, device));
    }
}

/// f64 RMS norm of rows of `d` values: `(y, s)` with `s` each row's `1 / √(mean(x²) + ε)`.
fn rms_norm_f64(x: &[f32], w: &[f32], eps: f64) -> (Vec<f64>, Vec<f64>) {
    let d = w.len();
    let mut y = Vec::with_capacity(x.len());
    let mut scales = Vec::new();
    for row in x.chunks_exact(d) {
        let ms = row.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / d as f64;
        let s = 1.0 / (ms + eps).sqrt();
        y.extend(row.iter().zip(w).map(|(&v, &w)| v as f64 * s * w as f64));
        scales.push(s);
    }
    (y, scales)
}

/// Rows `[rows, d]` of one scale (10⁻³ … 10³, so that ε matters in some) and a weight.
fn inputs(rng: &mut Rng, rows: usize, d: usize) -> (Vec<f32>, Vec<f32>, f64) {
    let scale = 10f64.powf(rng.unit() * 6.0 - 3.0);
    let x = (0..rows * d)
        .map(|_| (rng.normal() * scale) as f32)
        .collect();
    let w = (0..d).map(|_| (1.0 + rng.normal()) as f32).collect();
    let eps = [1e-6, 1e-5, 1e-3][rng.below(3) as usize];
    (x, w, eps)
}

/// `got` against f64 `want` within `(d / 128 + 16)` roundings of each value (the sum of squares
/// accumulated in f32, a few units per term then a tree) plus, for an f16 output, its rounding
/// (half a unit of the last place, 2⁻²⁵ at least: the subnormals').
fn check_close(what: &str, got: &[f32], want: &[f64], d: usize, f16: bool) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let u = 2f64.powi(-24) * (d as f64 / 128.0 + 16.0) + if f16 { 2f64.powi(-11) } else { 0.0 };
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let tol = u * w.abs() + if f16 { 2f64.powi(-25) } else { 1e-30 };
        assert!(
            (g as f64 - w).abs() <= tol,
            "{what}: value {i} is {g}, f64 {w} (tol {tol:e})"
        );
    }
}

/// (rows, d): one row and many, widths below, at and past a cube's 128 units and not multiples
/// of it; Gemma-3 270M's head (256) and model (640) widths.
const SHAPES: &[(usize, usize)] = &[
    (1, 1),
    (1, 640),
    (3, 37),
    (4, 256),
    (7, 2049),
    (300, 64),
    (2, 129),
];

/// The op on `device` against f64, in ranks 2, 3 (and 1 and 4 for one shape each), f32 and f16.
fn check_rms_norm(name: &str, device: &Device) {
    let mut rng = Rng::fresh(name);
    for &(rows, d) in SHAPES {
        let (x, w, eps) = inputs(&mut rng, rows, d);
        let (want, _) = rms_norm_f64(&x, &w, eps);
        let what = format!("{name} rows {rows} d {d} eps {eps:e}");
        poison(rows * d, device);
        let xt = Tensor::<2>::from_data(TensorData::new(x.clone(), [rows, d]), device);
        let wt = Tensor::<1>::from_data(TensorData::new(w.clone(), [d]), device);
        let y = rms_norm(xt.clone(), wt.clone(), eps);
        assert_eq!((y.dims(), y.dtype()), ([rows, d], DType::F32), "{what}");
        check_close(&what, &floats(y), &want, d, false);

        // rank 3, rank 4, and a transposed view (rows not contiguous in memory)
        let y3 = rms_norm(xt.clone().reshape([1, rows, d]), wt.clone(), eps);
        check_close(&format!("{what} rank 3"), &floats(y3), &want, d, false);
        let y4 = rms_norm(xt.clone().reshape([rows, 1, 1, d]), wt.clone(), eps);
        assert_eq!(y4.dims(), [rows, 1, 1, d], "{what} rank 4");
        check_close(&format!("{what} rank 4"), &floats(y4), &want, d, false);
        let xt_t: Vec<f32> = (0..d * rows)
            .map(|i| x[(i % rows) * d + i / rows])
            .collect();
        let view = Tensor::<2>::from_data(TensorData::new(xt_t, [d, rows]), device).transpose();
        let yv = rms_norm(view, wt.clone(), eps);
        check_close(
            &format!("{what} transposed view"),
            &floats(yv),
            &want,
            d,
            false,
        );
        if rows == 1 {
            let y1 = rms_norm(xt.clone().reshape([d]), wt.clone(), eps);
            check_close(&format!("{what} rank 1"), &floats(y1), &want, d, false);
        }

        // f16 in and out: the f64 reference of the f16-rounded inputs, one f16 rounding out
        let round = |v: &[f32]| -> Vec<f32> {
            v.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect()
        };
        let (xh, wh) = (round(&x), round(&w));
        if xh.iter().all(|v| v.is_finite() && *v != 0.0) {
            let (want, _) = rms_norm_f64(&xh, &wh, eps);
            let y = rms_norm(xt.cast(FloatDType::F16), wt.cast(FloatDType::F16), eps);
            assert_eq!(y.dtype(), DType::F16, "{what} f16");
            check_close(&format!("{what} f16"), &floats(y), &want, d, true);
        }
    }
}

/// The gradient of `Σ r · rms_norm(x)` to `x` under autodiff, against its f64 derivative:
/// `g_j = r_j w_j s − s³ x_j / d · Σ_i r_i w_i x_i`.
#[cfg(feature = "autodiff")]
fn check_rms_norm_grad(name: &str, device: &Device) {
    let mut rng = Rng::fresh(name);
    for &(rows, d) in &[(1, 640), (3, 37), (2, 256)] {
        let (x, w, eps) = inputs(&mut rng, rows, d);
        let r: Vec<f32> = (0..rows * d).map(|_| rng.normal() as f32).collect();
        let (_, scales) = rms_norm_f64(&x, &w, eps);
        let xt =
            Tensor::<2>::from_data(TensorData::new(x.clone(), [rows, d]), device).require_grad();
        let wt = Tensor::<1>::from_data(TensorData::new(w.clone(), [d]), device);
        let rt = Tensor::<2>::from_data(TensorData::new(r.clone(), [rows, d]), device);
        let grads = (rms_norm(xt.clone(), wt, eps) * rt).sum().backward();
        let gx = floats(xt.grad(&grads).expect("x has a gradient"));
        for row in 0..rows {
            let s = scales[row];
            let (xs, rs) = (&x[row * d..][..d], &r[row * d..][..d]);
            let dot: f64 = (0..d)
                .map(|i| rs[i] as f64 * w[i] as f64 * xs[i] as f64)
                .sum();
            let abs: f64 = (0..d)
                .map(|i| (rs[i] as f64 * w[i] as f64 * xs[i] as f64).abs())
                .sum();
            for j in 0..d {
                let first = rs[j] as f64 * w[j] as f64 * s;
                let second = s * s * s * xs[j] as f64 / d as f64;
                let want = first - second * dot;
                let tol = 2f64.powi(-24) * (d as f64 + 32.0) * (first.abs() + second.abs() * abs);
                let got = gx[row * d + j] as f64;
                assert!(
                    (got - want).abs() <= tol + 1e-30,
                    "{name} rows {rows} d {d}: dx[{row}, {j}] = {got}, f64 {want} (tol {tol:e})"
                );
            }
        }
    }
}

/// The kernel's typed errors: a weight of the wrong length, mismatched dtypes.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
fn check_kernel_errors(name: &str, cube: &common::cube::Cube) {
    use burn_gguf::kernel::{KernelError, rms_norm as kernel_rms_norm};
    let x = cube.floats(&[1.0; 12], [3, 4]);
    let err = kernel_rms_norm(x.clone(), cube.floats(&[1.0; 5], [5]), 1e-6).unwrap_err();
    assert!(
        matches!(err, KernelError::NormWeight { .. }),
        "{name}: {err}"
    );
    assert!(err.to_string().contains("[3, 4]"), "{name}: {err}");
    let w16 = cube.tensor(&[0u8; 8], burn::tensor::Shape::new([4]), DType::F16);
    let err = kernel_rms_norm(x, w16, 1e-6).unwrap_err();
    assert_eq!(err, KernelError::Dtypes(DType::F32, DType::F16), "{name}");
}

#[cfg(feature = "flex")]
mod flex {
    use super::*;

    #[test]
    fn rms_norm_flex() {
        check_rms_norm("rms_norm_flex", &Device::flex());
    }
    #[cfg(feature = "autodiff")]
    #[test]
    fn rms_norm_grad_flex() {
        check_rms_norm_grad("rms_norm_grad_flex", &Device::flex().autodiff());
    }
    #[test]
    #[should_panic(expected = "the weight's length must be x's last dim")]
    fn rms_norm_weight_length_flex() {
        let device = Device::flex();
        let x = Tensor::<2>::zeros([2, 3], &device);
        let _ = rms_norm(x, Tensor::<1>::zeros([4], &device), 1e-6);
    }
}

#[cfg(feature = "wgpu")]
mod wgpu {
    use super::*;

    #[test]
    fn rms_norm_wgpu() {
        if let Some(d) = common::wgpu_device("rms_norm_wgpu") {
            check_rms_norm("rms_norm_wgpu", &d);
            check_kernel_errors("rms_norm_errors_wgpu", &common::cube::Cube::wgpu());
        }
    }
    #[cfg(feature = "autodiff")]
    #[test]
    fn rms_norm_grad_wgpu() {
        if let Some(d) = common::wgpu_device("rms_norm_grad_wgpu") {
            check_rms_norm_grad("rms_norm_grad_wgpu", &d.autodiff());
        }
    }
}

#[cfg(feature = "cuda")]
mod cuda {
    use super::*;

    fn device() -> Option<Device> {
        if std::env::var("BURN_GGUF_CUDA").as_deref() == Ok("1") {
            return Some(Device::cuda(0usize));
        }
        eprintln!("SKIP cuda tests: set BURN_GGUF_CUDA=1 on a machine with an NVIDIA GPU");
        None
    }

    #[test]
    fn rms_norm_cuda() {
        if let Some(d) = device() {
            check_rms_norm("rms_norm_cuda", &d);
            check_kernel_errors("rms_norm_errors_cuda", &common::cube::Cube::cuda());
            #[cfg(feature = "autodiff")]
            check_rms_norm_grad("rms_norm_grad_cuda", &d.autodiff());
        }
    }
}
