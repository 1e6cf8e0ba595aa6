//! The transformer layer's fused ops (`burn_gguf::ops::TransformerBackend`: RMS norm, RoPE,
//! the GELU gate, attention over a KV cache) on every device of this build against f64 math: fresh random inputs each run
//! (the seed is printed), row widths that are not multiples of a cube's units, many rows and
//! one, inputs small enough that ε matters, poisoned outputs, f16 inputs, ranks 1 to 4 and
//! transposed views, and under autodiff the gradients against their f64 derivatives. Where the
//! backend has a kernel, the kernel's typed errors too.
//!
//! The token's choice from logits (`sample_token`) against the host's `pick` in f64, the draw
//! given or read from a device table: exactly, but for draws within rounding of a boundary.
//!
//! Devices: Flex and Flex with autodiff; wgpu (lavapipe in CI) and its autodiff; CUDA with
//! `BURN_GGUF_CUDA=1` on the GPU machine.
#![cfg(any(feature = "flex", feature = "wgpu", feature = "cuda"))]

mod common;

use burn::backend::Dispatch;
use burn::tensor::{DType, Device, FloatDType, Int, Tensor, TensorData};
use burn_gguf::cpu::sampling::{MAX_DEVICE_TOP_K, TokenSampling, pick};
use burn_gguf::ops::{
    DecoderLayerConfig, DecoderLayerWeights, Draw, LayerLinear, Positions, QuantWeight, attention,
    decoder_layer, gelu_mul, rms_norm, rope, rope_tables, sample_token,
};
use burn_gguf::quant::{GgmlType, PackedLayout, QuantWeightDesc};
use common::{Rng, floats, poison};

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

/// RoPE tables against f64 angles `scale · p · base^(−2i/d)`: the f32 angle of pair `i` is the
/// product of `i + 1` roundings (ggml's recurrence), so within `(i + 4)` units of the angle.
fn check_rope_tables(name: &str) {
    for (base, scale, hd) in [
        (10_000f32, 1.0f32, 256),
        (1_000_000.0, 0.125, 64),
        (500.0, 1.0, 2),
    ] {
        let positions = 3000;
        let (cos, sin) = rope_tables(positions, hd, base, scale);
        let half = hd / 2;
        assert_eq!(
            (cos.len(), sin.len()),
            (positions * half, positions * half),
            "{name}"
        );
        for p in [0, 1, 2, 17, 1000, 2999] {
            for i in 0..half {
                let angle =
                    scale as f64 * p as f64 * (base as f64).powf(-2.0 * i as f64 / hd as f64);
                let tol = 2f64.powi(-24) * (i as f64 + 4.0) * angle.abs() + 2f64.powi(-23);
                let (c, s) = (cos[p * half + i] as f64, sin[p * half + i] as f64);
                assert!(
                    (c - angle.cos()).abs() <= tol && (s - angle.sin()).abs() <= tol,
                    "{name} base {base} scale {scale} d {hd}: pair {i} at {p}: ({c}, {s}), \
                     f64 angle {angle} (tol {tol:e})"
                );
            }
        }
    }
}

/// f64 RoPE of `x` `[b, t, h, d]` at `start..` with the f32 tables (values as given).
fn rope_f64(
    x: &[f32],
    [_, t, h, d]: [usize; 4],
    cos: &[f32],
    sin: &[f32],
    start: usize,
) -> Vec<f64> {
    let half = d / 2;
    let mut y = vec![0f64; x.len()];
    for (row, (xs, ys)) in x.chunks_exact(d).zip(y.chunks_exact_mut(d)).enumerate() {
        let at = (start + (row / h) % t) * half;
        for i in 0..half {
            let (c, s) = (cos[at + i] as f64, sin[at + i] as f64);
            let (x1, x2) = (xs[i] as f64, xs[i + half] as f64);
            ys[i] = x1 * c - x2 * s;
            ys[i + half] = x1 * s + x2 * c;
        }
    }
    y
}

/// `got` against f64 `want` within `units` roundings of `scale[i]` (each value's largest term).
fn check_within(what: &str, got: &[f32], want: &[f64], scale: &[f64], units: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, ((&g, &w), &m)) in got.iter().zip(want).zip(scale).enumerate() {
        let tol = units * 2f64.powi(-24) * m + 1e-30;
        assert!(
            (g as f64 - w).abs() <= tol,
            "{what}: value {i} is {g}, f64 {w} (tol {tol:e})"
        );
    }
}

/// RoPE on `device` against f64 over the f32 tables, in the `[b, t, heads, d]` layout and a
/// transposed view of it, f16 in and out; panics where the tables are too short.
fn check_rope(name: &str, device: &Device) {
    check_rope_tables(name);
    let mut rng = Rng::fresh(name);
    for shape in [
        [1, 1, 4, 256],
        [2, 3, 1, 8],
        [1, 5, 3, 2],
        [1, 37, 2, 64],
        [3, 2, 5, 6],
    ] {
        let [b, t, h, d] = shape;
        let start = rng.below(1000) as usize;
        let positions = start + t + rng.below(3) as usize;
        let (base, scale) = [(10_000.0, 1.0), (1_000_000.0, 0.125)][rng.below(2) as usize];
        let (cos, sin) = rope_tables(positions, d, base, scale);
        let x: Vec<f32> = (0..b * t * h * d).map(|_| rng.normal() as f32).collect();
        let want = rope_f64(&x, shape, &cos, &sin, start);
        let half = d / 2;
        let mags: Vec<f64> = (0..x.len())
            .map(|j| {
                let (row, i) = (j / d, j % half);
                let at = (start + (row / h) % t) * half + i;
                let (x1, x2) = (x[row * d + i] as f64, x[row * d + i + half] as f64);
                (x1 * cos[at] as f64).abs()
                    + (x2 * sin[at] as f64).abs()
                    + (x1 * sin[at] as f64).abs()
                    + (x2 * cos[at] as f64).abs()
            })
            .collect();
        let what = format!("{name} {shape:?} start {start}");
        let table =
            |v: Vec<f32>| Tensor::<2>::from_data(TensorData::new(v, [positions, half]), device);
        let (ct, st) = (table(cos.clone()), table(sin.clone()));
        poison(x.len(), device);
        let xt = Tensor::<4>::from_data(TensorData::new(x.clone(), shape), device);
        let y = rope(xt.clone(), ct.clone(), st.clone(), start);
        assert_eq!((y.dims(), y.dtype()), (shape, DType::F32), "{what}");
        check_within(&what, &floats(y), &want, &mags, 3.0);

        // the same values as a transposed view ([b, h, t, d] in memory)
        let xv: Vec<f32> = (0..x.len())
            .map(|j| {
                let (bi, hi, ti, di) = (j / (h * t * d), j / (t * d) % h, j / d % t, j % d);
                x[((bi * t + ti) * h + hi) * d + di]
            })
            .collect();
        let view =
            Tensor::<4>::from_data(TensorData::new(xv, [b, h, t, d]), device).swap_dims(1, 2);
        let yv = rope(view, ct.clone(), st.clone(), start);
        check_within(&format!("{what} view"), &floats(yv), &want, &mags, 3.0);

        // f16 in and out (f32 tables): one rounding of x in, one of y out
        let xh: Vec<f32> = x.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect();
        let want = rope_f64(&xh, shape, &cos, &sin, start);
        let yh = rope(xt.cast(FloatDType::F16), ct, st, start);
        assert_eq!(yh.dtype(), DType::F16, "{what} f16");
        let mags: Vec<f64> = mags.iter().map(|m| m + 1e-3).collect();
        check_within(
            &format!("{what} f16"),
            &floats(yh),
            &want,
            &mags,
            2f64.powi(13) * 1.1,
        );
    }
    let short = |positions| {
        let (c, s) = rope_tables(positions, 8, 10_000.0, 1.0);
        let t = |v| Tensor::<2>::from_data(TensorData::new(v, [positions, 4]), device);
        let x = Tensor::<4>::zeros([1, 3, 1, 8], device);
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = rope(x, t(c), t(s), 5);
        }))
    };
    assert!(short(8).is_ok(), "{name}: positions 5..8 of 8");
    assert!(short(7).is_err(), "{name}: positions 5..8 of 7 must panic");
}

/// `gelu_tanh(g) · u` and GELU's derivative in f64.
fn gelu_f64(g: f64) -> (f64, f64) {
    let k = (2.0 / std::f64::consts::PI).sqrt();
    let inner = k * (g + 0.044715 * g * g * g);
    let th = inner.tanh();
    let value = 0.5 * g * (1.0 + th);
    let slope = 0.5 * (1.0 + th) + 0.5 * g * (1.0 - th * th) * k * (1.0 + 3.0 * 0.044715 * g * g);
    (value, slope)
}

/// The gate on `device` against f64: wide inputs (|g| up to ~30, where tanh saturates),
/// rank 3 and a transposed view, f16.
fn check_gelu_mul(name: &str, device: &Device) {
    let mut rng = Rng::fresh(name);
    for (rows, width) in [(1, 1), (1, 2048), (7, 129), (64, 33)] {
        let gate: Vec<f32> = (0..rows * width)
            .map(|i| (rng.normal() * if i % 7 == 0 { 10.0 } else { 2.0 }) as f32)
            .collect();
        let up: Vec<f32> = (0..rows * width).map(|_| rng.normal() as f32).collect();
        let want: Vec<f64> = gate
            .iter()
            .zip(&up)
            .map(|(&g, &u)| gelu_f64(g as f64).0 * u as f64)
            .collect();
        // the f32 formula's error: a few roundings of g/2 · up times (1 + tanh), and of tanh's
        // argument (up to ~30 units of it for the cube) times its slope
        let mags: Vec<f64> = gate
            .iter()
            .zip(&up)
            .map(|(&g, &u)| {
                let (g, u) = (g as f64, u as f64);
                let inner = (2.0 / std::f64::consts::PI).sqrt() * (g + 0.044715 * g * g * g);
                (0.5 * g * u).abs() * (2.0 + 16.0 * inner.abs() * (1.0 - inner.tanh().powi(2)))
            })
            .collect();
        let what = format!("{name} {rows}x{width}");
        poison(rows * width, device);
        let gt = Tensor::<2>::from_data(TensorData::new(gate.clone(), [rows, width]), device);
        let ut = Tensor::<2>::from_data(TensorData::new(up.clone(), [rows, width]), device);
        let y = gelu_mul(gt.clone(), ut.clone());
        assert_eq!((y.dims(), y.dtype()), ([rows, width], DType::F32), "{what}");
        check_within(&what, &floats(y), &want, &mags, 16.0);
        let y3 = gelu_mul(
            gt.clone().reshape([rows, 1, width]),
            ut.clone().reshape([rows, 1, width]),
        );
        check_within(&format!("{what} rank 3"), &floats(y3), &want, &mags, 16.0);
        let gv: Vec<f32> = (0..rows * width)
            .map(|i| gate[(i % rows) * width + i / rows])
            .collect();
        let view = Tensor::<2>::from_data(TensorData::new(gv, [width, rows]), device).transpose();
        let yv = gelu_mul(view, ut.clone());
        check_within(&format!("{what} view"), &floats(yv), &want, &mags, 16.0);
        // f16: the f64 value of the f16-rounded inputs, one f16 rounding out
        let r = |v: &[f32]| -> Vec<f32> {
            v.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect()
        };
        let (gh, uh) = (r(&gate), r(&up));
        let want: Vec<f64> = gh
            .iter()
            .zip(&uh)
            .map(|(&g, &u)| gelu_f64(g as f64).0 * u as f64)
            .collect();
        let yh = gelu_mul(gt.cast(FloatDType::F16), ut.cast(FloatDType::F16));
        assert_eq!(yh.dtype(), DType::F16, "{what} f16");
        let mags: Vec<f64> = mags
            .iter()
            .zip(&want)
            .map(|(m, w)| m + w.abs() * 2f64.powi(13) + 2f64.powi(-1))
            .collect();
        check_within(&format!("{what} f16"), &floats(yh), &want, &mags, 16.0);
    }
}

/// Under autodiff, the gradients of `Σ r · rope(x)` to `x` (the inverse rotation of `r`) and of
/// `Σ r · gelu_mul(g, u)` to both inputs, against f64.
#[cfg(feature = "autodiff")]
fn check_rope_gelu_grads(name: &str, device: &Device) {
    let mut rng = Rng::fresh(name);
    let shape = [1, 3, 2, 8];
    let (start, positions) = (5, 9);
    let (cos, sin) = rope_tables(positions, 8, 10_000.0, 1.0);
    let x: Vec<f32> = (0..48).map(|_| rng.normal() as f32).collect();
    let r: Vec<f32> = (0..48).map(|_| rng.normal() as f32).collect();
    let table = |v: Vec<f32>| Tensor::<2>::from_data(TensorData::new(v, [positions, 4]), device);
    let xt = Tensor::<4>::from_data(TensorData::new(x.clone(), shape), device).require_grad();
    let rt = Tensor::<4>::from_data(TensorData::new(r.clone(), shape), device);
    let grads = (rope(xt.clone(), table(cos.clone()), table(sin.clone()), start) * rt)
        .sum()
        .backward();
    let gx = floats(xt.grad(&grads).expect("x has a gradient"));
    // the adjoint of a rotation by θ is the rotation by −θ
    let neg: Vec<f32> = sin.iter().map(|s| -s).collect();
    let want = rope_f64(&r, shape, &cos, &neg, start);
    let mags: Vec<f64> = r.iter().map(|_| 4.0 * 4.0).collect();
    check_within(&format!("{name} rope"), &gx, &want, &mags, 4.0);

    let n = 37;
    let g: Vec<f32> = (0..n).map(|_| (rng.normal() * 2.0) as f32).collect();
    let u: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
    let r: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
    let t1 = |v: Vec<f32>| Tensor::<1>::from_data(TensorData::new(v, [n]), device);
    let (gt, ut) = (t1(g.clone()).require_grad(), t1(u.clone()).require_grad());
    let grads = (gelu_mul(gt.clone(), ut.clone()) * t1(r.clone()))
        .sum()
        .backward();
    let (gg, gu) = (
        floats(gt.grad(&grads).expect("gate has a gradient")),
        floats(ut.grad(&grads).expect("up has a gradient")),
    );
    for i in 0..n {
        let (value, slope) = gelu_f64(g[i] as f64);
        let (want_g, want_u) = (r[i] as f64 * u[i] as f64 * slope, r[i] as f64 * value);
        let tol = 2f64.powi(-16)
            * (1.0 + (r[i] as f64 * u[i] as f64).abs() * (1.0 + (g[i] as f64).powi(2)));
        assert!(
            (gg[i] as f64 - want_g).abs() <= tol && (gu[i] as f64 - want_u).abs() <= tol,
            "{name} gelu_mul {i}: g {}: d/dgate {} (f64 {want_g}), d/dup {} (f64 {want_u})",
            g[i],
            gg[i],
            gu[i]
        );
    }
}

/// (batch, queries, heads, kv heads, key slots, head width, first position, window): one query
/// and a prompt; Gemma's decoding shapes with and without a window; more keys than the kernel's
/// chunk of 256 (the online softmax's rescaling); head widths that are not multiples of a cube's
/// units; groups of 1, 2 and 4 query heads per kv head.
type AttentionCase = (
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    Option<usize>,
);
const ATTENTION: &[AttentionCase] = &[
    (1, 1, 4, 1, 256, 256, 100, None),
    (1, 1, 4, 1, 1024, 256, 700, Some(512)),
    (2, 3, 6, 3, 40, 8, 10, Some(5)),
    (1, 17, 2, 2, 17, 64, 0, None),
    (1, 1, 1, 1, 600, 32, 599, None),
    (1, 2, 3, 1, 300, 200, 280, Some(290)),
];

/// Attention on `device` against f64, the key slots no query may see filled with ±6·10⁴ (a read
/// of one would swamp the result; finite in f16); `u`: the device matmul's input rounding where
/// the op runs Burn's ops (`composed`: the autodiff default body, whose f16 ops also round every
/// intermediate to f16), else f32's.
fn check_attention(name: &str, device: &Device, u: f64, composed: bool) {
    let mut rng = Rng::fresh(name);
    for (case, &(b, t, nh, nkv, keys, hd, start, window)) in ATTENTION.iter().enumerate() {
        let scale = 1.0 / (hd as f64).sqrt();
        let q: Vec<f32> = (0..b * t * nh * hd)
            .map(|_| (rng.normal() * 0.7) as f32)
            .collect();
        let (mut k, mut v) = (
            vec![0f32; b * nkv * keys * hd],
            vec![0f32; b * nkv * keys * hd],
        );
        let seen = |i: usize, j: usize| {
            let p = start + i;
            j <= p && window.is_none_or(|w| p - j < w)
        };
        let any_seen = |j: usize| (0..t).any(|i| seen(i, j));
        for (at, (kx, vx)) in k.iter_mut().zip(v.iter_mut()).enumerate() {
            let j = at / hd % keys;
            if any_seen(j) {
                (*kx, *vx) = ((rng.normal() * 0.7) as f32, rng.normal() as f32);
            } else {
                let sign = if rng.below(2) == 0 { 1.0 } else { -1.0 };
                (*kx, *vx) = (sign * 6e4, -sign * 6e4);
            }
        }
        let (want, tol) = attention_f64(&q, &k, &v, (b, t, nh, nkv, keys, hd), &seen, scale, u);
        let what = format!(
            "{name} case {case} (b {b} t {t} heads {nh}/{nkv} keys {keys} d {hd} at {start} window {window:?})"
        );
        poison(q.len(), device);
        let tq = Tensor::<4>::from_data(TensorData::new(q.clone(), [b, t, nh, hd]), device);
        let tk = Tensor::<4>::from_data(TensorData::new(k.clone(), [b, nkv, keys, hd]), device);
        let tv = Tensor::<4>::from_data(TensorData::new(v.clone(), [b, nkv, keys, hd]), device);
        let y = attention(tq.clone(), tk.clone(), tv.clone(), start, window, scale);
        assert_eq!(
            (y.dims(), y.dtype()),
            ([b, t, nh, hd], DType::F32),
            "{what}"
        );
        check_within(&what, &floats(y), &want, &tol, 2f64.powi(24));
        if case == 2 || case == 5 {
            // f16 throughout (case 5: a launch of few rows, keys split over cubes): the f64 result of the f16-rounded inputs, one f16 rounding out
            let r = |v: &[f32]| -> Vec<f32> {
                v.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect()
            };
            let (qh, kh, vh) = (r(&q), r(&k), r(&v));
            let u16 = if composed { 2f64.powi(-11) } else { u };
            let (want, tol) =
                attention_f64(&qh, &kh, &vh, (b, t, nh, nkv, keys, hd), &seen, scale, u16);
            let tol: Vec<f64> = tol
                .iter()
                .zip(&want)
                .map(|(t, w)| t + w.abs() * 2f64.powi(-11) + 2f64.powi(-25))
                .collect();
            let h = |x: Tensor<4>| x.cast(FloatDType::F16);
            let y = attention(h(tq), h(tk), h(tv), start, window, scale);
            assert_eq!(y.dtype(), DType::F16, "{what} f16");
            check_within(
                &format!("{what} f16"),
                &floats(y),
                &want,
                &tol,
                2f64.powi(24),
            );
        }
    }
    let run = |keys: usize, window: Option<usize>| {
        let (q, kv) = (
            Tensor::<4>::zeros([1, 2, 2, 4], device),
            Tensor::<4>::zeros([1, 1, keys, 4], device),
        );
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = attention(q, kv.clone(), kv, 3, window, 1.0);
        }))
    };
    assert!(run(5, Some(1)).is_ok(), "{name}: positions 3..5 of 5");
    assert!(
        run(4, None).is_err(),
        "{name}: positions 3..5 of 4 must panic"
    );
    assert!(run(5, Some(0)).is_err(), "{name}: a window of 0 must panic");
}

/// f64 attention and each output's tolerance: every score off by up to `(d + 4)` roundings of
/// its largest term (`u` of the device's product), the softmax's weights by twice that, the
/// weighted sum by `n + 8` roundings of the largest value.
#[allow(clippy::too_many_arguments)]
fn attention_f64(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    (b, t, nh, nkv, keys, hd): (usize, usize, usize, usize, usize, usize),
    seen: &dyn Fn(usize, usize) -> bool,
    scale: f64,
    u: f64,
) -> (Vec<f64>, Vec<f64>) {
    let (mut out, mut tol) = (Vec::new(), Vec::new());
    let u = u.max(2f64.powi(-24));
    for bi in 0..b {
        for i in 0..t {
            for h in 0..nh {
                let qr = &q[((bi * t + i) * nh + h) * hd..][..hd];
                let kv = (bi * nkv + h / (nh / nkv)) * keys * hd;
                let js: Vec<usize> = (0..keys).filter(|&j| seen(i, j)).collect();
                let (mut scores, mut mags) = (Vec::new(), Vec::new());
                for &j in &js {
                    let kr = &k[kv + j * hd..][..hd];
                    scores.push(
                        qr.iter()
                            .zip(kr)
                            .map(|(&a, &c)| a as f64 * scale * c as f64)
                            .sum::<f64>(),
                    );
                    mags.push(
                        qr.iter()
                            .zip(kr)
                            .map(|(&a, &c)| (a as f64 * scale * c as f64).abs())
                            .sum::<f64>(),
                    );
                }
                let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let sum: f64 = e.iter().sum();
                let score_err = mags.iter().cloned().fold(0.0, f64::max) * (hd as f64 + 4.0) * u;
                for d in 0..hd {
                    let vals: Vec<f64> = js.iter().map(|&j| v[kv + j * hd + d] as f64).collect();
                    let o: f64 = e.iter().zip(&vals).map(|(w, x)| w / sum * x).sum();
                    let vmax = vals.iter().map(|x| x.abs()).fold(0.0, f64::max);
                    out.push(o);
                    tol.push(vmax * (4.0 * score_err + (js.len() as f64 + 8.0) * u) + 1e-30);
                }
            }
        }
    }
    (out, tol)
}

/// One random Q8_0 weight `[out, inp]` on `device` (f16 scales near 0.004: weights up to ±0.5)
/// and its values, dequantized by this crate's ggml-exact decoder.
fn q8_0_weight(
    rng: &mut Rng,
    out: usize,
    inp: usize,
    device: &Device,
) -> (LayerLinear<Dispatch>, Vec<f64>) {
    let mut bytes = Vec::with_capacity(out * inp / 32 * 34);
    for _ in 0..out * inp / 32 {
        let scale = half::f16::from_f32((0.002 + 0.004 * rng.unit()) as f32);
        bytes.extend_from_slice(&scale.to_le_bytes());
        bytes.extend((0..32).map(|_| rng.below(256) as u8));
    }
    let desc = QuantWeightDesc::new(GgmlType::Q8_0, PackedLayout::Gguf, out, inp).unwrap();
    let w = QuantWeight::from_gguf_bytes(&bytes, desc, device).unwrap();
    let values = burn_gguf::quant::dequantize(GgmlType::Q8_0, &bytes, out * inp).unwrap();
    let linear = LayerLinear::Quant {
        words: w.words.into_dispatch(),
        desc,
        activations: burn_gguf::quant::Activations::Float,
    };
    (linear, values.into_iter().map(f64::from).collect())
}

/// f64 `W x` for `W` `[out, inp]` row-major.
fn matvec_f64(w: &[f64], x: &[f64]) -> Vec<f64> {
    w.chunks_exact(x.len())
        .map(|row| row.iter().zip(x).map(|(a, b)| a * b).sum())
        .collect()
}

/// f64 RMS norm of one row, scaled.
fn norm_f64(x: &[f64], w: &[f64], eps: f64) -> Vec<f64> {
    let s = 1.0 / (x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64 + eps).sqrt();
    x.iter().zip(w).map(|(v, w)| v * s * w).collect()
}

/// (batch, t, start, window, capacity): a prompt chunk, single tokens, a window shorter than
/// what is held, a batch of two.
const LAYER_CASES: &[(usize, usize, usize, Option<usize>, usize)] = &[
    (1, 3, 13, None, 40),
    (1, 1, 16, Some(8), 40),
    (2, 2, 5, Some(3), 9),
    (1, 1, 0, None, 1),
];

/// [`decoder_layer`] on `device` against the layer in f64 over the same dequantized weights:
/// a first call at `start`, a second one token later over the buffers it gave back (written in
/// place where nothing else holds them). The key/value slots the layer must not read are ±6·10⁴;
/// the buffers come back with this call's roped keys and values at its positions and every other
/// slot as it was; a buffer also held by the caller is left unchanged.
fn check_decoder_layer(name: &str, device: &Device) {
    let mut rng = Rng::fresh(name);
    let (d, nh, nkv, hd, d_ff) = (96, 4, 2, 32, 160);
    for (case, &(b, t, start, window, cap)) in LAYER_CASES.iter().enumerate() {
        let what = format!("{name} (b {b} t {t} at {start} window {window:?} capacity {cap})");
        let eps = 1e-6;
        let config = DecoderLayerConfig {
            n_heads: nh,
            n_kv_heads: nkv,
            head_dim: hd,
            eps,
            window,
            scale: 1.0 / (hd as f64).sqrt(),
        };
        let mut lin = |o, i| q8_0_weight(&mut rng, o, i, device);
        let (q, wq) = lin(nh * hd, d);
        let (k, wk) = lin(nkv * hd, d);
        let (v, wv) = lin(nkv * hd, d);
        let (o, wo) = lin(d, nh * hd);
        let (gate, wg) = lin(d_ff, d);
        let (up, wu) = lin(d_ff, d);
        let (down, wd) = lin(d, d_ff);
        let mut norm = |n: usize| -> (Vec<f32>, Vec<f64>) {
            let w: Vec<f32> = (0..n).map(|_| (1.0 + 0.2 * rng.normal()) as f32).collect();
            let w64 = w.iter().map(|&x| x as f64).collect();
            (w, w64)
        };
        let norms: Vec<(Vec<f32>, Vec<f64>)> = [d, hd, hd, d, d, d].map(&mut norm).into();
        let tensor = |w: &Vec<f32>| Tensor::<1>::from_floats(w.as_slice(), device).into_dispatch();
        let weights = || DecoderLayerWeights {
            attn_norm: tensor(&norms[0].0),
            q: q.clone(),
            k: k.clone(),
            v: v.clone(),
            o: o.clone(),
            q_norm: tensor(&norms[1].0),
            k_norm: tensor(&norms[2].0),
            post_attn_norm: tensor(&norms[3].0),
            ffn_norm: tensor(&norms[4].0),
            gate: gate.clone(),
            up: up.clone(),
            down: down.clone(),
            post_ffn_norm: tensor(&norms[5].0),
        };
        let (cos, sin) = rope_tables(cap, hd, 10_000.0, 1.0);
        let table = |v: &Vec<f32>| {
            Tensor::<2>::from_data(TensorData::new(v.clone(), [cap, hd / 2]), device)
        };
        let (tcos, tsin) = (table(&cos), table(&sin));
        // the buffers: held positions random, every other slot ±6·10⁴
        let slot = |j: usize, rng: &mut Rng, scale: f64| {
            if j < start {
                (rng.normal() * scale) as f32
            } else if rng.below(2) == 0 {
                6e4
            } else {
                -6e4
            }
        };
        let n_buf = b * nkv * cap * hd;
        let kbuf: Vec<f32> = (0..n_buf)
            .map(|at| slot(at / hd % cap, &mut rng, 1.0))
            .collect();
        let vbuf: Vec<f32> = (0..n_buf)
            .map(|at| slot(at / hd % cap, &mut rng, 1.0))
            .collect();
        let (mut k64, mut v64): (Vec<f64>, Vec<f64>) = (
            kbuf.iter().map(|&x| x as f64).collect(),
            vbuf.iter().map(|&x| x as f64).collect(),
        );
        let buf = |v: &Vec<f32>| {
            Tensor::<4>::from_data(TensorData::new(v.clone(), [b, nkv, cap, hd]), device)
        };
        let mut cache = (buf(&kbuf), buf(&vbuf));
        let mut pos = start;
        for (call, steps) in [t, 1].into_iter().enumerate() {
            if pos + steps > cap {
                break;
            }
            let x: Vec<f32> = (0..b * steps * d).map(|_| rng.normal() as f32).collect();
            // f64: each token's projections, its keys and values into the f64 buffers, then
            // attention and the MLP
            let mut want = Vec::with_capacity(x.len());
            let mut qs = Vec::new();
            for bi in 0..b {
                for i in 0..steps {
                    let p = pos + i;
                    let xr: Vec<f64> = x[(bi * steps + i) * d..][..d]
                        .iter()
                        .map(|&v| v as f64)
                        .collect();
                    let h = norm_f64(&xr, &norms[0].1, eps);
                    let (qv, kv, vv) = (
                        matvec_f64(&wq, &h),
                        matvec_f64(&wk, &h),
                        matvec_f64(&wv, &h),
                    );
                    let rope = |y: &[f64], w: &[f64]| -> Vec<f64> {
                        let y = norm_f64(y, w, eps);
                        let half = hd / 2;
                        let mut r = y.clone();
                        for j in 0..half {
                            let (c, s) = (cos[p * half + j] as f64, sin[p * half + j] as f64);
                            r[j] = y[j] * c - y[j + half] * s;
                            r[j + half] = y[j] * s + y[j + half] * c;
                        }
                        r
                    };
                    let qh: Vec<f64> = qv
                        .chunks_exact(hd)
                        .flat_map(|y| rope(y, &norms[1].1))
                        .collect();
                    for g in 0..nkv {
                        let at = ((bi * nkv + g) * cap + p) * hd;
                        k64[at..at + hd].copy_from_slice(&rope(&kv[g * hd..][..hd], &norms[2].1));
                        v64[at..at + hd].copy_from_slice(&vv[g * hd..][..hd]);
                    }
                    qs.push((bi, p, xr, qh));
                }
            }
            for (bi, p, xr, qh) in qs {
                let mut heads = Vec::with_capacity(nh * hd);
                for hq in 0..nh {
                    let base = (bi * nkv + hq / (nh / nkv)) * cap * hd;
                    let seen: Vec<usize> = (0..=p)
                        .filter(|&j| window.is_none_or(|w| p - j < w))
                        .collect();
                    let scores: Vec<f64> = seen
                        .iter()
                        .map(|&j| {
                            (0..hd)
                                .map(|e| qh[hq * hd + e] * config.scale * k64[base + j * hd + e])
                                .sum()
                        })
                        .collect();
                    let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                    let sum: f64 = e.iter().sum();
                    for c in 0..hd {
                        heads.push(
                            seen.iter()
                                .zip(&e)
                                .map(|(&j, w)| w / sum * v64[base + j * hd + c])
                                .sum::<f64>(),
                        );
                    }
                }
                let a = norm_f64(&matvec_f64(&wo, &heads), &norms[3].1, eps);
                let x1: Vec<f64> = xr.iter().zip(&a).map(|(x, a)| x + a).collect();
                let h2 = norm_f64(&x1, &norms[4].1, eps);
                let m: Vec<f64> = matvec_f64(&wg, &h2)
                    .iter()
                    .zip(matvec_f64(&wu, &h2))
                    .map(|(&g, u)| gelu_f64(g).0 * u)
                    .collect();
                let y = norm_f64(&matvec_f64(&wd, &m), &norms[5].1, eps);
                want.extend(x1.iter().zip(&y).map(|(x, y)| x + y));
            }
            poison(want.len(), device);
            let held = cache.0.clone(); // a reference the caller keeps: must stay as it was
            let before = floats(held.clone());
            let tx = Tensor::<3>::from_data(TensorData::new(x, [b, steps, d]), device);
            // the two calls read their position on the host and on the device, in turn
            let on_device = (call + case) % 2 == 1;
            let at = if on_device {
                Positions::on_device(Tensor::<1, Int>::from_data(
                    TensorData::new(vec![pos as u32], [1]),
                    (device, DType::U32),
                ))
            } else {
                Positions::Host { start: pos }
            };
            let (y, out) = decoder_layer(tx, weights(), cache, (&tcos, &tsin), at, config);
            let what = format!("{what} call {call}, position on the device: {on_device}");
            assert_eq!(y.dims(), [b, steps, d], "{what}");
            let tol = |w: &f64| 5e-4 * (1.0 + w.abs());
            for (i, (g, w)) in floats(y).iter().zip(&want).enumerate() {
                assert!(
                    (*g as f64 - w).abs() <= tol(w),
                    "{what}: output {i} is {g}, f64 {w}"
                );
            }
            for (label, got, want) in [
                ("keys", floats(out.0.clone()), &mut k64),
                ("values", floats(out.1.clone()), &mut v64),
            ] {
                for (i, (g, w)) in got.iter().zip(want.iter_mut()).enumerate() {
                    let j = i / hd % cap;
                    let ok = if (pos..pos + steps).contains(&j) {
                        (*g as f64 - *w).abs() <= tol(w)
                    } else {
                        *g as f64 == *w
                    };
                    assert!(ok, "{what}: {label} slot {j} value {i} is {g}, want {w}");
                    // the next call reads the values the device holds
                    *w = *g as f64;
                }
            }
            assert_eq!(
                floats(held),
                before,
                "{what}: a buffer the caller still holds was written"
            );
            cache = out;
            pos += steps;
        }
    }
}

/// The kernel's typed errors: a weight of the wrong length, mismatched dtypes.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
/// How far a draw or a top-p cut may be from a boundary between two candidates for the device
/// to take either: f32 sums of up to 256 weights, with margin.
const EPS: f64 = 1e-4;

/// Where token `id` comes in `pick`'s order (larger logit first, the lower id first among
/// equals, NaN never).
fn rank(logits: &[f32], id: u32) -> usize {
    let (v, id) = (logits[id as usize], id as usize);
    logits
        .iter()
        .enumerate()
        .filter(|&(j, &w)| w > v || (w == v && j < id))
        .count()
}

/// Logits of `n` values for a sampling check: normal values times `spread`, some repeated (ties
/// between ids), and, where `odd`, a few NaN and −inf ones.
fn sampling_logits(rng: &mut Rng, n: usize, spread: f64, odd: bool) -> Vec<f32> {
    let mut v: Vec<f32> = (0..n).map(|_| (rng.normal() * spread) as f32).collect();
    for _ in 0..n.div_ceil(100) {
        let (a, b) = (rng.below(n as u64) as usize, rng.below(n as u64) as usize);
        v[a] = v[b];
    }
    if odd && n > 4 {
        for bad in [f32::NAN, f32::NEG_INFINITY, f32::NAN] {
            v[rng.below(n as u64) as usize] = bad;
        }
    }
    v
}

/// `sample_token` on `device` against the host's [`pick`]: greedy over long rows (exactly the
/// first maximum, also when it repeats within a run and across runs), and top-k 2 to 256 at several temperatures and top-p cuts, the draw given or
/// read from a device table at a device index. A draw within [`EPS`] of a boundary between two
/// candidates (or a top-p cut within it of a candidate's running sum) may take any candidate
/// between the host's picks at the ends; every other choice must be the host's. Run lengths from one value to Gemma 3's 262,144, in
/// one pass and in several.
fn check_sample_token(name: &str, device: &Device) {
    let mut rng = Rng::fresh(name);
    let mut boundary = 0;
    let mut total = 0;
    for (n, spread) in [
        (262_144usize, 3.0),
        (1000, 1.0),
        (1025, 0.3),
        (4097, 8.0),
        (70_001, 2.0),
        (1, 1.0),
        (3, 1.0),
    ] {
        let odd = rng.below(2) == 0;
        let logits = sampling_logits(&mut rng, n, spread, odd);
        let t = Tensor::<1>::from_data(TensorData::new(logits.clone(), [n]), device);
        let token = |s: TokenSampling, draw: Draw<Dispatch>| {
            let got = sample_token(t.clone(), s, draw).into_data();
            assert_eq!(got.dtype(), DType::U32, "{name}: the token's dtype");
            got.iter::<i64>().next().expect("a token") as u32
        };
        // greedy, whatever the draw
        let want = pick(&logits, TokenSampling::GREEDY, 0.0);
        for (s, value) in [
            (TokenSampling::GREEDY, 0.5),
            (
                TokenSampling {
                    top_k: 1,
                    temperature: 0.7,
                    top_p: 0.9,
                },
                0.9,
            ),
            (
                TokenSampling {
                    top_k: 0,
                    temperature: 0.0,
                    top_p: 1.0,
                },
                0.1,
            ),
        ] {
            assert_eq!(token(s, Draw::Host { value }), want, "{name}: n {n}, {s:?}");
        }
        // the maximum repeated within a run of 1024 and across runs: the lowest id
        if n > 4 {
            let mut tied = logits.clone();
            let top = tied.iter().copied().fold(f32::MIN, f32::max) + 1.0;
            let at = [
                rng.below(n as u64 - 1) as usize,
                rng.below(n as u64) as usize,
                rng.below(n as u64) as usize,
            ];
            for i in [at[0], at[0] + 1, at[1], at[2]] {
                tied[i] = top;
            }
            let want = at[0].min(at[1]).min(at[2]) as u32;
            let t = Tensor::<1>::from_data(TensorData::new(tied, [n]), device);
            let got = sample_token(t, TokenSampling::GREEDY, Draw::Host { value: 0.0 });
            let got = got.into_data().iter::<i64>().next();
            assert_eq!(got, Some(i64::from(want)), "{name}: n {n}, ties at {at:?}");
        }
        for top_k in [2usize, 40, 64, 100, MAX_DEVICE_TOP_K] {
            let s = TokenSampling {
                top_k,
                temperature: [0.5f32, 1.0, 2.0][rng.below(3) as usize],
                top_p: [1.0f32, 0.9, 0.5][rng.below(3) as usize],
            };
            let draws: Vec<f32> = (0..6)
                .map(|_| rng.unit() as f32)
                .chain([0.0, 0.999_999])
                .collect();
            for (i, &r) in draws.iter().enumerate() {
                // the same draw given and read from a table at a device index
                let table_at = rng.below(5) as usize;
                let mut table: Vec<f32> = (0..5).map(|_| rng.unit() as f32).collect();
                table[table_at] = r;
                let at = Tensor::<1, Int>::from_data(
                    TensorData::new(vec![table_at as u32], [1]),
                    (device, DType::U32),
                );
                let table = Tensor::<1>::from_data(TensorData::new(table, [5]), device);
                let got = [
                    token(s, Draw::Host { value: r }),
                    token(s, Draw::on_device(table, at)),
                ];
                let r = f64::from(r);
                let want = pick(&logits, s, r);
                // the pick's rank is monotone in the draw and in top-p: the device's f32 sums
                // (up to 256 weights) may land anywhere between the picks at the corners
                let corner = |e: f64| {
                    let s = TokenSampling {
                        top_p: s.top_p + e as f32,
                        ..s
                    };
                    rank(&logits, pick(&logits, s, (r + e).clamp(0.0, 0.999_999_9)))
                };
                let (lo, hi) = (corner(-EPS), corner(EPS));
                total += 1;
                if lo != hi {
                    boundary += 1;
                    for g in got {
                        assert!(
                            (lo..=hi).contains(&rank(&logits, g)),
                            "{name}: n {n}, {s:?}, draw {r} (near a boundary): {g}, host {want} \
                             (candidates {lo}..={hi} in the host's order)"
                        );
                    }
                } else {
                    assert_eq!(got, [want, want], "{name}: n {n}, {s:?}, draw {i}: {r}");
                }
            }
        }
    }
    eprintln!("{name}: {total} draws, {boundary} near a boundary");
    assert!(
        boundary * 4 <= total,
        "{name}: {boundary} of {total} draws near a boundary: the check checks little"
    );
}

fn check_kernel_errors(name: &str, cube: &common::cube::Cube) {
    use burn_gguf::kernel::{KernelError, Start, rms_norm as kernel_rms_norm};
    let x = cube.floats(&[1.0; 12], [3, 4]);
    let err = kernel_rms_norm(x.clone(), cube.floats(&[1.0; 5], [5]), 1e-6).unwrap_err();
    assert!(
        matches!(err, KernelError::NormWeight { .. }),
        "{name}: {err}"
    );
    assert!(err.to_string().contains("[3, 4]"), "{name}: {err}");
    let w16 = cube.tensor(&[0u8; 8], burn::tensor::Shape::new([4]), DType::F16);
    let err = kernel_rms_norm(x.clone(), w16, 1e-6).unwrap_err();
    assert_eq!(err, KernelError::Dtypes(DType::F32, DType::F16), "{name}");

    let x4 = cube.floats(&[1.0; 24], [1, 3, 2, 4]);
    let table = |p: usize, half: usize| cube.floats(&vec![1.0; p * half], [p, half]);
    let rope = |x, c, s, start| burn_gguf::kernel::rope(x, c, s, Start::at(start)).err();
    assert!(
        rope(x4.clone(), table(8, 2), table(8, 2), 5).is_none(),
        "{name}: 5..8 of 8"
    );
    for (x, c, start, why) in [
        (x4.clone(), table(7, 2), 5, "positions past the tables"),
        (x4.clone(), table(8, 3), 0, "tables of the wrong width"),
        (x.clone(), table(8, 2), 0, "x of rank 2"),
        (
            cube.floats(&[1.0; 9], [1, 3, 1, 3]),
            table(8, 1),
            0,
            "an odd head width",
        ),
    ] {
        let err = rope(x, c, table(8, 2), start);
        assert!(
            matches!(err, Some(KernelError::Rope { .. })),
            "{name}: {why}: {err:?}"
        );
    }
    let attend = |q: [usize; 4], kv: [usize; 4], start, window| {
        let n = |s: [usize; 4]| s.iter().product::<usize>();
        let (q, kv) = (
            cube.floats(&vec![0.0; n(q)], q),
            cube.floats(&vec![0.0; n(kv)], kv),
        );
        burn_gguf::kernel::attention(q, kv.clone(), kv, Start::at(start), window, 1.0).err()
    };
    assert!(
        attend([1, 2, 4, 8], [1, 2, 5, 8], 3, None).is_none(),
        "{name}: attention fits"
    );
    for (q, kv, start, window, why) in [
        (
            [1, 2, 4, 8],
            [1, 2, 4, 8],
            3,
            None,
            "positions past the keys",
        ),
        (
            [1, 2, 4, 8],
            [1, 3, 5, 8],
            3,
            None,
            "kv heads not dividing heads",
        ),
        ([1, 2, 4, 8], [1, 2, 5, 6], 3, None, "head widths differ"),
        ([2, 2, 4, 8], [1, 2, 5, 8], 3, None, "batches differ"),
        ([1, 2, 4, 8], [1, 2, 5, 8], 3, Some(0), "a window of 0"),
    ] {
        let err = attend(q, kv, start, window);
        assert!(
            matches!(err, Some(KernelError::Attention { .. })),
            "{name}: {why}: {err:?}"
        );
    }
    let err = burn_gguf::kernel::gelu_mul(x.clone(), cube.floats(&[1.0; 12], [4, 3])).unwrap_err();
    assert_eq!(err, KernelError::Shapes(vec![3, 4], vec![4, 3]), "{name}");

    // device offsets: one U32 value, else a typed error; the host checks what it knows
    let one = cube.tensor(
        &3u32.to_le_bytes(),
        burn::tensor::Shape::new([1]),
        DType::U32,
    );
    let two = cube.words(&[3, 4]);
    let signed = cube.tensor(
        &3i32.to_le_bytes(),
        burn::tensor::Shape::new([1]),
        DType::I32,
    );
    for (offset, why) in [(two, "two values"), (signed, "an I32 value")] {
        let err = burn_gguf::kernel::rope(
            x4.clone(),
            table(8, 2),
            table(8, 2),
            Start::on_device(offset),
        )
        .unwrap_err();
        assert!(
            matches!(err, KernelError::Offset { .. }),
            "{name}: {why}: {err}"
        );
    }
    assert!(
        rope_on_device(&x4, table(7, 2), one.clone()).is_none(),
        "{name}: a device offset is not bounded on the host (the kernel clamps)"
    );
    let buffer = cube.floats(&[0.0; 2 * 5 * 4], [2, 5, 4]);
    let write = |value: [usize; 3], start: Start| {
        let v = cube.floats(&vec![1.0; value.iter().product()], value);
        burn_gguf::kernel::write_positions(buffer.clone(), v, start).err()
    };
    assert!(
        write([2, 2, 4], Start::at(3)).is_none(),
        "{name}: 3..5 of 5"
    );
    for (value, start, why) in [
        ([2, 3, 4], 3, "positions past the slots"),
        ([1, 2, 4], 0, "leading dims differ"),
        ([2, 2, 3], 0, "widths differ"),
    ] {
        let err = write(value, Start::at(start));
        assert!(
            matches!(err, Some(KernelError::Positions { .. })),
            "{name}: {why}: {err:?}"
        );
    }
    assert!(
        write([2, 3, 4], Start::on_device(one)).is_none(),
        "{name}: device offset"
    );

    // the fused kernels of the CubeCL decoder layer
    use burn_gguf::kernel::{add_rms_norm, add_rms_norm_next, attention_inputs};
    let w4 = || cube.floats(&[1.0; 4], [4]);
    let err = add_rms_norm(x.clone(), cube.floats(&[1.0; 12], [4, 3]), w4(), 1e-6).unwrap_err();
    assert_eq!(err, KernelError::Shapes(vec![3, 4], vec![4, 3]), "{name}");
    let err = add_rms_norm(x.clone(), x.clone(), cube.floats(&[1.0; 3], [3]), 1e-6).unwrap_err();
    assert!(
        matches!(err, KernelError::NormWeight { .. }),
        "{name}: {err}"
    );
    let next = cube.floats(&[1.0; 5], [5]);
    let err = add_rms_norm_next(x.clone(), x.clone(), w4(), next, 1e-6).unwrap_err();
    assert!(
        matches!(err, KernelError::NormWeight { .. }),
        "{name}: {err}"
    );
    // queries [1, 3, 2, 4], keys and values [1, 3, 1, 4], buffers [b, kv_heads, slots, 4]
    let zeros = |s: [usize; 4]| cube.floats(&vec![0.0; s.iter().product()], s);
    let inputs = |kv: [usize; 4], buffer: [usize; 4], norm: usize, tables, start| {
        let norms = [w4(), cube.floats(&vec![1.0; norm], [norm])];
        let heads = [x4.clone(), zeros(kv), zeros(kv)];
        let cache = (zeros(buffer), zeros(buffer));
        attention_inputs(heads, norms, tables, cache, Start::at(start), 1e-6).err()
    };
    let tables = |p| (table(p, 2), table(p, 2));
    assert!(
        inputs([1, 3, 1, 4], [1, 1, 5, 4], 4, tables(8), 2).is_none(),
        "{name}: 2..5 of 5"
    );
    let err = inputs([1, 3, 1, 4], [1, 1, 5, 4], 4, tables(8), 3);
    assert!(
        matches!(err, Some(KernelError::Positions { .. })),
        "{name}: {err:?}"
    );
    let err = inputs([1, 3, 1, 4], [1, 2, 5, 4], 4, tables(8), 0);
    assert!(
        matches!(err, Some(KernelError::Positions { .. })),
        "{name}: {err:?}"
    );
    let err = inputs([1, 2, 1, 4], [1, 1, 5, 4], 4, tables(8), 0);
    assert!(
        matches!(err, Some(KernelError::Attention { .. })),
        "{name}: {err:?}"
    );
    let err = inputs([1, 3, 1, 4], [1, 1, 9, 4], 4, tables(4), 2);
    assert!(
        matches!(err, Some(KernelError::Rope { .. })),
        "{name}: {err:?}"
    );
    let err = inputs([1, 3, 1, 4], [1, 1, 5, 4], 2, tables(8), 0);
    assert!(
        matches!(err, Some(KernelError::NormWeight { .. })),
        "{name}: {err:?}"
    );
    let half16 = || cube.tensor(&[0u8; 32], burn::tensor::Shape::new([8, 2]), DType::F16);
    let err = inputs([1, 3, 1, 4], [1, 1, 5, 4], 4, (half16(), half16()), 0);
    assert_eq!(
        err,
        Some(KernelError::Dtypes(DType::F32, DType::F16)),
        "{name}"
    );

    // sampling: settings the device does not take, no logits, a bad table of draws
    let sample = |logits, top_k, table| {
        let s = TokenSampling {
            top_k,
            temperature: 1.0,
            top_p: 1.0,
        };
        let draw = burn_gguf::kernel::Draw { value: 0.5, table };
        burn_gguf::kernel::sample_token(logits, s, draw).err()
    };
    let logits = || cube.floats(&[1.0; 8], [8]);
    let table = |bytes: &[u8], len: usize, dtype| {
        cube.tensor(bytes, burn::tensor::Shape::new([len]), dtype)
    };
    let good = || Some((cube.floats(&[0.5; 3], [3]), cube.words(&[1])));
    assert_eq!(sample(logits(), 2, good()), None, "{name}: top-k 2");
    for top_k in [0, MAX_DEVICE_TOP_K + 1] {
        let err = sample(logits(), top_k, None);
        assert_eq!(err, Some(KernelError::Sampling { top_k }), "{name}");
        assert!(err.unwrap().to_string().contains("on the host"), "{name}");
    }
    let err = sample(cube.floats(&[], [0]), 2, None);
    assert_eq!(err, Some(KernelError::Logits { n: 0 }), "{name}");
    let err = sample(
        logits(),
        2,
        Some((table(&[0; 6], 3, DType::F16), cube.words(&[1]))),
    );
    assert!(
        matches!(err, Some(KernelError::Uniforms { .. })),
        "{name}: f16 draws: {err:?}"
    );
    let err = sample(
        logits(),
        2,
        Some((cube.floats(&[0.5; 3], [3]), cube.words(&[1, 2]))),
    );
    assert!(
        matches!(err, Some(KernelError::Offset { .. })),
        "{name}: two indices: {err:?}"
    );
    let index = table(&[0; 4], 1, DType::I32);
    let err = sample(logits(), 2, Some((cube.floats(&[0.5; 3], [3]), index)));
    assert!(
        matches!(err, Some(KernelError::Offset { .. })),
        "{name}: an i32 index: {err:?}"
    );

    fn rope_on_device(
        x: &burn_cubecl::tensor::CubeTensor,
        table: burn_cubecl::tensor::CubeTensor,
        offset: burn_cubecl::tensor::CubeTensor,
    ) -> Option<KernelError> {
        burn_gguf::kernel::rope(x.clone(), table.clone(), table, Start::on_device(offset)).err()
    }
}

#[cfg(feature = "flex")]
mod flex {
    use super::*;

    #[test]
    fn rms_norm_flex() {
        check_rms_norm("rms_norm_flex", &Device::flex());
    }
    #[test]
    fn rope_gelu_flex() {
        check_rope("rope_flex", &Device::flex());
        check_gelu_mul("gelu_mul_flex", &Device::flex());
        check_attention("attention_flex", &Device::flex(), 0.0, false);
        check_decoder_layer("decoder_layer_flex", &Device::flex());
        check_sample_token("sample_token_flex", &Device::flex());
    }
    #[cfg(feature = "autodiff")]
    #[test]
    fn grads_flex() {
        check_rms_norm_grad("rms_norm_grad_flex", &Device::flex().autodiff());
        check_rope_gelu_grads("rope_gelu_grads_flex", &Device::flex().autodiff());
        check_attention(
            "attention_autodiff_flex",
            &Device::flex().autodiff(),
            0.0,
            true,
        );
        check_decoder_layer("decoder_layer_autodiff_flex", &Device::flex().autodiff());
        check_sample_token("sample_token_autodiff_flex", &Device::flex().autodiff());
    }
    #[test]
    #[should_panic(expected = "the weight's length must be x's last dim")]
    fn weight_length_flex() {
        let device = Device::flex();
        let x = Tensor::<2>::zeros([2, 3], &device);
        let _ = rms_norm(x, Tensor::<1>::zeros([4], &device), 1e-6);
    }
}

#[cfg(feature = "wgpu")]
mod wgpu {
    use super::*;

    #[test]
    fn ops_wgpu() {
        if let Some(d) = common::wgpu_device("ops_wgpu") {
            check_rms_norm("rms_norm_wgpu", &d);
            check_rope("rope_wgpu", &d);
            check_gelu_mul("gelu_mul_wgpu", &d);
            check_attention("attention_wgpu", &d, 0.0, false);
            check_decoder_layer("decoder_layer_wgpu", &d);
            check_sample_token("sample_token_wgpu", &d);
            check_kernel_errors("errors_wgpu", &common::cube::Cube::wgpu());
        }
    }
    #[cfg(feature = "autodiff")]
    #[test]
    fn grads_wgpu() {
        if let Some(d) = common::wgpu_device("grads_wgpu") {
            let d = d.autodiff();
            check_rms_norm_grad("rms_norm_grad_wgpu", &d);
            check_rope_gelu_grads("rope_gelu_grads_wgpu", &d);
            check_attention("attention_autodiff_wgpu", &d, 0.0, true);
        }
    }
}

#[cfg(feature = "cuda")]
mod cuda {
    use super::*;

    #[test]
    fn ops_cuda() {
        if let Some(d) = common::cuda_device() {
            check_rms_norm("rms_norm_cuda", &d);
            check_rope("rope_cuda", &d);
            check_gelu_mul("gelu_mul_cuda", &d);
            check_attention("attention_cuda", &d, 0.0, false);
            check_decoder_layer("decoder_layer_cuda", &d);
            check_sample_token("sample_token_cuda", &d);
            check_kernel_errors("errors_cuda", &common::cube::Cube::cuda());
        }
    }
    #[cfg(feature = "autodiff")]
    #[test]
    fn grads_cuda() {
        if let Some(d) = common::cuda_device() {
            let d = d.autodiff();
            check_rms_norm_grad("rms_norm_grad_cuda", &d);
            check_rope_gelu_grads("rope_gelu_grads_cuda", &d);
            // Burn's f32 matmul may take TF32 on CUDA (10 mantissa bits)
            check_attention("attention_autodiff_cuda", &d, 1.0 / 1024.0, true);
        }
    }
}
