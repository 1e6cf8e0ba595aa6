//! Every fused ggml type (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K) through the
//! quantized op on every device of this build, against f64 math on the weights gguf-py
//! dequantizes (the crate's own dequantizer, itself checked bit-exact against gguf-py in
//! `tests/quant.rs`, where the Python oracles are not installed). Fresh random blocks each run
//! (the seed is printed), odd shapes (N not a multiple of the kernel's rows per cube, K one block),
//! poisoned outputs, f16 activations, rank-3 inputs, the row lookup (embedding), the gradient to
//! the input, GGUF bytes → device → GGUF bytes and records, exact; and the real Gemma-3 file's
//! tensors of each type it holds.
//!
//! Devices: Flex and Flex with autodiff; wgpu (lavapipe in CI) and its autodiff; CUDA with
//! `BURN_GGUF_CUDA=1` on the GPU machine.
#![cfg(any(feature = "flex", feature = "wgpu", feature = "cuda"))]

mod common;

use burn::module::Module;
use burn::tensor::{DType, Device, FloatDType, Int, Tensor, TensorData};
use burn_gguf::nn::{GgufEmbedding, QuantEmbedding, QuantLinear};
use burn_gguf::ops::{QuantWeight, quant_matmul, read_words};
use burn_gguf::quant::Activations::{Float, Int8};
use burn_gguf::quant::{self, FUSED_TYPES, GgmlType, PackedLayout, QuantWeightDesc, pack};
use common::{Rng, bytes_to_f32, floats, oracle, oracles_available, poison, scratch};

/// A pool of random blocks of one type and their dequantized values: a weight of `b` blocks is
/// the first `b` blocks (dequantization is per block).
struct Pool {
    t: GgmlType,
    bytes: Vec<u8>,
    deq: Vec<f32>,
}

/// A weight `[n, k]` cut from a pool.
struct Weight<'a> {
    n: usize,
    k: usize,
    bytes: &'a [u8],
    deq: &'a [f32],
    desc: QuantWeightDesc,
}

impl Pool {
    fn new(rng: &mut Rng, t: GgmlType, blocks: usize, test: &str) -> Pool {
        let size = t.type_size().unwrap() as usize;
        let mut bytes = rng.bytes(blocks * size);
        // Random bytes are valid codes and scales; the f16 scale fields are set to moderate
        // finite values so that the products stay in range.
        let fields: &[usize] = match t {
            GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 => &[0],
            GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q4_K | GgmlType::Q5_K => &[0, 2],
            GgmlType::Q2_K => &[80, 82],
            GgmlType::Q3_K => &[108],
            GgmlType::Q6_K => &[208],
            _ => unreachable!("{t}"),
        };
        for b in bytes.chunks_exact_mut(size) {
            for &at in fields {
                let h = half::f16::from_f32((rng.normal() * 0.02) as f32);
                b[at..at + 2].copy_from_slice(&h.to_le_bytes());
            }
        }
        let n = blocks * t.block_size().unwrap() as usize;
        let deq = reference(t, &bytes, n, test);
        Pool { t, bytes, deq }
    }

    fn weight(&self, n: usize, k: usize) -> Weight<'_> {
        let desc = QuantWeightDesc::of(self.t, n, k).unwrap();
        Weight {
            n,
            k,
            bytes: &self.bytes[..desc.n_bytes()],
            deq: &self.deq[..n * k],
            desc,
        }
    }
}

/// The `n` values of `bytes` (type `t`) as gguf-py dequantizes them (the oracle), or, where the
/// Python oracles are not installed, as this crate does (checked bit-exact against gguf-py in
/// `tests/quant.rs`).
fn reference(t: GgmlType, bytes: &[u8], n: usize, test: &str) -> Vec<f32> {
    if !oracles_available(test) {
        return quant::dequantize(t, bytes, n).unwrap();
    }
    let dir = scratch(&format!("{test}-{t}"));
    let (src, dst) = (dir.join("q.bin"), dir.join("w.f32"));
    std::fs::write(&src, bytes).unwrap();
    oracle(&[
        "dequantize",
        &t.name(),
        src.to_str().unwrap(),
        &n.to_string(),
        dst.to_str().unwrap(),
    ]);
    let deq = bytes_to_f32(&std::fs::read(&dst).unwrap());
    std::fs::remove_dir_all(dir).ok();
    deq
}

fn random_x(rng: &mut Rng, len: usize) -> Vec<f32> {
    (0..len).map(|_| (rng.normal() + 0.1) as f32).collect()
}

fn check(what: &str, got: &[f32], x: &[f32], w: &Weight, m: usize, f16_out: bool, u_in: f64) {
    common::check_product(what, got, x, w.deq, (w.n, w.k), m, f16_out, u_in);
}

/// Dequantized values against the reference: bit-exact, or within one rounding of the largest
/// term where the device may contract `d·q − m` into a fused multiply-add (`exact = false`).
fn check_values(what: &str, got: &[f32], want: &[f32], exact: bool) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let ok = if exact {
            g.to_bits() == w.to_bits()
        } else {
            (g - w).abs() <= 2f32.powi(-22) * (w.abs() + 1.0) * 4.0
        };
        assert!(ok, "{what}: value {i} is {g}, the reference {w}");
    }
}

/// (K in blocks, N, M): one block per row, N not a multiple of the kernel's 4 rows per cube,
/// 1..=8 rows on the fused kernel and more on the dequantize + matmul path.
const CASES: &[(usize, usize, usize)] = &[
    (1, 13, 1),
    (1, 5, 8),
    (3, 37, 3),
    (8, 9, 2),
    (2, 21, 11),
    (16, 6, 1),
];
const POOL_BLOCKS: usize = 16 * 40;

/// The op, the handle, the row lookup, the byte round trip and int8 activations through the layer
/// for every type on `device`.
/// `u_dense`: the device matmul's input rounding; `exact_deq`: whether dequantized values are
/// ggml's bit for bit on this device.
fn check_types(name: &str, device: &Device, u_dense: f64, exact_deq: bool) {
    let mut rng = Rng::fresh(name);
    for &t in FUSED_TYPES {
        let pool = Pool::new(&mut rng, t, POOL_BLOCKS, name);
        let bs = t.block_size().unwrap() as usize;
        for &(kb, n, m) in CASES {
            let w = pool.weight(n, kb * bs);
            let k = w.k;
            let what = format!("{name} {t} K={k} N={n} M={m}");
            let qw = QuantWeight::from_gguf_bytes(w.bytes, w.desc, device).unwrap();
            assert_eq!(
                qw.to_gguf_bytes().unwrap(),
                w.bytes,
                "{what}: GGUF bytes back"
            );
            let x = random_x(&mut rng, m * k);
            poison(m * n, device);
            let xt = Tensor::<2>::from_data(TensorData::new(x.clone(), [m, k]), device);
            let u_in = if m <= burn_gguf::ops::FUSED_MAX_ROWS {
                0.0
            } else {
                u_dense
            };
            check(&what, &floats(qw.matmul(xt, Float)), &x, &w, m, false, u_in);
        }
        // f16 activations, rank 3
        let w = pool.weight(7, 2 * bs);
        let x = random_x(&mut rng, 2 * 3 * w.k);
        let xh: Vec<f32> = x.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect();
        let xt =
            Tensor::<3>::from_data(TensorData::new(x, [2, 3, w.k]), device).cast(FloatDType::F16);
        let words = QuantWeight::from_gguf_bytes(w.bytes, w.desc, device).unwrap();
        let y = quant_matmul(xt, words.words.clone(), w.desc, Float);
        assert_eq!((y.dims(), y.dtype()), ([2, 3, 7], DType::F16), "{name} {t}");
        check(
            &format!("{name} {t} f16"),
            &floats(y),
            &xh,
            &w,
            6,
            true,
            0.0,
        );
        // the whole weight, and some rows of it (an embedding lookup)
        check_values(
            &format!("{name} {t} dequantize"),
            &floats(words.dequantize()),
            w.deq,
            exact_deq,
        );
        // rows of the GGUF layout (the one the lookup reads; Q6_K's planes are for products)
        let gguf = w.desc.with_layout(PackedLayout::Gguf).unwrap();
        let table = QuantWeight::from_gguf_bytes(w.bytes, gguf, device).unwrap();
        let ids = [6usize, 0, 3, 3, 5, 1];
        let it = Tensor::<2, Int>::from_data(
            TensorData::new(ids.iter().map(|&i| i as i32).collect::<Vec<_>>(), [2, 3]),
            device,
        );
        poison(ids.len() * w.k, device);
        let rows: Tensor<3> = table.rows(it);
        assert_eq!(rows.dims(), [2, 3, w.k]);
        let want: Vec<f32> = ids
            .iter()
            .flat_map(|&i| w.deq[i * w.k..][..w.k].to_vec())
            .collect();
        check_values(&format!("{name} {t} rows"), &floats(rows), &want, exact_deq);
        // int8 activations through the layer (the GGUF layout: Q6_K's planes read float ones
        // only): up to the fused product's rows the product with the rounded activations, above
        // them with the activations as given
        for (kb, n, m) in [(2, 9, 1), (1, 5, 11)] {
            let w = pool.weight(n, kb * bs);
            let desc = w.desc.with_layout(PackedLayout::Gguf).unwrap();
            let layer = QuantLinear::from_gguf_bytes(w.bytes, desc, None, device)
                .unwrap()
                .with_activations(Int8)
                .unwrap();
            let (x, xq) = int8_x(&mut rng, m * w.k);
            poison(m * n, device);
            let xt = Tensor::<2>::from_data(TensorData::new(x.clone(), [m, w.k]), device);
            let y = floats(layer.forward(xt));
            let (want, u_in) = if m <= burn_gguf::ops::FUSED_MAX_ROWS {
                (&xq, 2f64.powi(-22))
            } else {
                (&x, u_dense)
            };
            let what = format!("{name} {t} int8 K={} N={n} M={m}", w.k);
            check(&what, &y, want, &w, m, false, u_in);
        }
    }
}

/// A forced launch geometry of the GGUF-layout kernels: rows and warps per cube, row groups per
/// warp, items per iteration.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
fn tuning(
    rows: usize,
    warps: usize,
    groups: usize,
    per_iter: usize,
) -> Option<burn_gguf::kernel::PlanesTuning> {
    Some(burn_gguf::kernel::PlanesTuning {
        rows,
        warps,
        per_iter,
        weights_path: false,
        pipeline: false,
        groups,
    })
}

/// The generic kernel itself, called directly for every type in both of its layouts (GGUF and
/// interleaved, alternately) with forced launch geometries (rows, warps, row groups and items per
/// iteration; the tuning runs may pick any of them): rows past the last one, cubes whose units
/// outnumber a row's runs, a last group of 32 blocks cut short, and 1..=8 activation rows; and
/// the interleaved words dequantized, whole and by rows.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
fn check_kernel_geometries(name: &str, cube: &common::cube::Cube) {
    use burn_gguf::kernel::{gemv_shape, quant_dequantize, quant_gemv, quant_rows};
    let mut rng = Rng::fresh(name);
    let geometries = [
        tuning(1, 1, 1, 1),
        tuning(3, 2, 2, 2),
        tuning(2, 8, 8, 3),
        tuning(1, 2, 32, 1),
        tuning(8, 1, 4, 4),
        None,
    ];
    let cases = [(1, 11, 1), (3, 5, 8), (9, 7, 2), (2, 13, 5)];
    for &t in FUSED_TYPES {
        let pool = Pool::new(&mut rng, t, 9 * 16, name);
        let bs = t.block_size().unwrap() as usize;
        for (ci, &(kb, n, m)) in cases.iter().enumerate() {
            let w = pool.weight(n, kb * bs);
            let k = w.k;
            let x = random_x(&mut rng, m * k);
            for (gi, &tuning) in geometries.iter().enumerate() {
                if (ci + gi) % 2 == 1 {
                    continue;
                }
                let layout = [PackedLayout::Gguf, PackedLayout::Interleaved][(ci + gi / 2) % 2];
                let desc = w.desc.with_layout(layout).unwrap();
                let shape = gemv_shape(&cube.client, cube.device.runtime(), desc, m, tuning);
                let what =
                    format!("{name} {t} {layout:?} K={k} N={n} M={m} {tuning:?} ({shape:?})");
                let xt = cube.floats(&x, [m, k]);
                let p = cube.words(&pack(w.bytes, desc).unwrap());
                cube.poison(m * n);
                let y = quant_gemv(xt, p, desc, quant::Activations::Float, tuning)
                    .unwrap_or_else(|e| panic!("{what}: the kernel did not run: {e}"));
                check(&what, &common::cube::cube_floats(y), &x, &w, m, false, 0.0);
            }
        }
        // the interleaved words dequantized, whole and some rows of them (an embedding lookup)
        let w = pool.weight(13, 5 * bs);
        let desc = w.desc.with_layout(PackedLayout::Interleaved).unwrap();
        let p = cube.words(&pack(w.bytes, desc).unwrap());
        cube.poison(13 * w.k);
        let deq = quant_dequantize(p.clone(), desc, DType::F32).unwrap();
        let what = format!("{name} {t} interleaved");
        check_values(
            &format!("{what} dequantize"),
            &common::cube::cube_floats(deq),
            w.deq,
            false,
        );
        let ids = [12u32, 0, 5, 5, 7];
        cube.poison(ids.len() * w.k);
        let rows = quant_rows(p, desc, cube.words(&ids), DType::F32).unwrap();
        let want: Vec<f32> = ids
            .iter()
            .flat_map(|&i| w.deq[i as usize * w.k..][..w.k].to_vec())
            .collect();
        check_values(
            &format!("{what} rows"),
            &common::cube::cube_floats(rows),
            &want,
            false,
        );
    }
}

/// Activations whose int8 rounding is known exactly (`Activations::Int8`), in runs of 32 (the
/// GPU's) and of 256 (the CPU's for the K formats) alike: each run of 32 is `dx · (q + u)` with
/// `dx` a random power of two shared by the eight runs of each 256, one element ±127 (`u` = 0,
/// so `max |x| = 127 · dx`), the others `q` random in −126..=126 and `u` within ±0.4 (far from a
/// rounding tie whatever the device's division rounds). Returns `x` and its rounded values
/// `dx · q`; some runs of 32 are all zeros.
fn int8_x(rng: &mut Rng, len: usize) -> (Vec<f32>, Vec<f32>) {
    let (mut x, mut xq) = (Vec::with_capacity(len), Vec::with_capacity(len));
    let mut dx = 1.0;
    for run in 0..len / 32 {
        if run % 8 == 0 {
            dx = 2f32.powi(rng.below(12) as i32 - 9);
        }
        if rng.below(9) == 0 {
            x.extend([0f32; 32]);
            xq.extend([0f32; 32]);
            continue;
        }
        let peak = rng.below(32);
        for i in 0..32 {
            let (q, u) = if i == peak {
                (if rng.below(2) == 0 { 127 } else { -127 }, 0.0)
            } else {
                (rng.below(253) as i32 - 126, (rng.unit() * 0.8 - 0.4) as f32)
            };
            x.push((q as f32 + u) * dx);
            xq.push(q as f32 * dx);
        }
    }
    (x, xq)
}

/// The int8-activation kernel (`Activations::Int8`) for every type, with forced launch geometries
/// and the default, in the GGUF and interleaved layouts alternately: the product of the weights
/// with the rounded activations, against f64; the planes layout refused.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
fn check_int8_kernel(name: &str, cube: &common::cube::Cube) {
    use burn_gguf::kernel::{KernelError, quant_gemv};
    let mut rng = Rng::fresh(name);
    // (K in blocks, N, M, geometry): rows × activation rows × items per iteration stays small,
    // as every product is unrolled and shader compilers' time grows faster than its size
    let cases = [
        (1, 11, 1, tuning(3, 2, 2, 2)),
        (3, 5, 8, None),
        (2, 9, 1, None),
        (9, 7, 2, tuning(2, 1, 4, 3)),
        (2, 13, 5, tuning(1, 1, 1, 1)),
    ];
    let run = |rng: &mut Rng,
               w: &Weight,
               layout: PackedLayout,
               m: usize,
               tuning: Option<burn_gguf::kernel::PlanesTuning>| {
        let desc = w.desc.with_layout(layout).unwrap();
        let what = format!(
            "{name} {} {layout:?} K={} N={} M={m} {tuning:?}",
            w.desc.ggml_type, w.k, w.n
        );
        let (x, xq) = int8_x(rng, m * w.k);
        let p = cube.words(&pack(w.bytes, desc).unwrap());
        cube.poison(m * w.n);
        let y = quant_gemv(cube.floats(&x, [m, w.k]), p, desc, Int8, tuning)
            .unwrap_or_else(|e| panic!("{what}: the kernel did not run: {e}"));
        check(
            &what,
            &common::cube::cube_floats(y),
            &xq,
            w,
            m,
            false,
            2f64.powi(-22),
        );
    };
    for (ti, &t) in FUSED_TYPES.iter().enumerate() {
        let pool = Pool::new(&mut rng, t, 9 * 16, name);
        let bs = t.block_size().unwrap() as usize;
        for (ci, &(kb, n, m, tuning)) in cases.iter().enumerate() {
            // each case in both layouts, over the types
            let layout = [PackedLayout::Gguf, PackedLayout::Interleaved][(ci + ti) % 2];
            run(&mut rng, &pool.weight(n, kb * bs), layout, m, tuning);
        }
        // Rows of 14336 (448 runs), both layouts, the default geometry: 7 warps of the GGUF
        // layout's 8 (`CubeShape::balanced`), 8 of the interleaved layout's.
        let long = Pool::new(&mut rng, t, 3 * 14336 / bs, name);
        let w = long.weight(3, 14336);
        for layout in [PackedLayout::Gguf, PackedLayout::Interleaved] {
            run(&mut rng, &w, layout, 1, None);
        }
    }
    // A NaN or an infinity among the activations gives NaN in every output of its row (the
    // float kernel's NaN, not a value rounded from the rest of the run).
    let pool = Pool::new(&mut rng, GgmlType::Q4_0, 64, name);
    let w = pool.weight(4, 512);
    let p = cube.words(&pack(w.bytes, w.desc).unwrap());
    let (mut x, _) = int8_x(&mut rng, 2 * 512);
    x[rng.below(512) as usize] = f32::NAN;
    x[512 + rng.below(512) as usize] = f32::INFINITY;
    let y = quant_gemv(cube.floats(&x, [2, 512]), p, w.desc, Int8, None).unwrap();
    let y = common::cube::cube_floats(y);
    assert!(
        y.iter().all(|v| v.is_nan()),
        "{name}: non-finite activations: {y:?}"
    );
    let w = Pool::new(&mut rng, GgmlType::Q6_K, 2, name);
    let w = w.weight(2, 256);
    let planes = w.desc.with_layout(PackedLayout::Q6kPlanes).unwrap();
    let p = cube.words(&pack(w.bytes, planes).unwrap());
    let err = quant_gemv(cube.floats(&[0.5; 256], [1, 256]), p, planes, Int8, None).err();
    assert_eq!(
        err,
        Some(KernelError::Layout { desc: planes }),
        "{name}: planes"
    );
}

/// `gelu_tanh(g) · u` in f64 and a bound on `|d gelu / d g|` (≤ 1.13 everywhere).
fn gated_f64(g: f64, u: f64) -> f64 {
    let c = (2.0 / std::f64::consts::PI).sqrt();
    0.5 * g * (1.0 + (c * (g + 0.044715 * g * g * g)).tanh()) * u
}

/// The gated product (Gemma's `gelu_tanh(x · Gᵀ) · (x · Uᵀ)` in one launch) for every type,
/// against f64 on the two weights' dequantized values, in the GGUF and interleaved layouts
/// alternately: rows past the last one, 1..=8 activation rows, poisoned outputs; and its typed
/// errors (another layout, weights of another length).
#[cfg(any(feature = "wgpu", feature = "cuda"))]
fn check_gated_kernel(name: &str, cube: &common::cube::Cube) {
    use burn_gguf::kernel::{KernelError, quant_gemv_gated};
    let mut rng = Rng::fresh(name);
    let cases = [(1, 11, 1), (3, 5, 8), (9, 7, 2), (2, 13, 5), (4, 64, 1)];
    for &t in FUSED_TYPES {
        let (gate_pool, up_pool) = (
            Pool::new(&mut rng, t, 4 * 64, name),
            Pool::new(&mut rng, t, 4 * 64, name),
        );
        let bs = t.block_size().unwrap() as usize;
        for (ci, &(kb, n, m)) in cases.iter().enumerate() {
            let (gw, uw) = (gate_pool.weight(n, kb * bs), up_pool.weight(n, kb * bs));
            let layout = [PackedLayout::Gguf, PackedLayout::Interleaved][ci % 2];
            let desc = gw.desc.with_layout(layout).unwrap();
            let k = gw.k;
            let x = random_x(&mut rng, m * k);
            let what = format!("{name} {t} {layout:?} K={k} N={n} M={m}");
            let words = |w: &Weight| cube.words(&pack(w.bytes, desc).unwrap());
            cube.poison(m * n);
            let y = quant_gemv_gated(cube.floats(&x, [m, k]), words(&gw), words(&uw), desc)
                .unwrap_or_else(|e| panic!("{what}: the kernel did not run: {e}"));
            let got = common::cube::cube_floats(y);
            assert_eq!(got.len(), m * n, "{what}: output length");
            for mi in 0..m {
                for ni in 0..n {
                    let dot = |w: &Weight| {
                        let terms =
                            (0..k).map(|ki| x[mi * k + ki] as f64 * w.deq[ni * k + ki] as f64);
                        let (sum, abs) = terms.fold((0.0, 0.0), |(s, a), p| (s + p, a + p.abs()));
                        (sum, common::bound(k, abs, sum, false, 0.0))
                    };
                    let ((g, tg), (u, tu)) = (dot(&gw), dot(&uw));
                    let want = gated_f64(g, u);
                    // each product's error through the activation (slope ≤ 1.13), the
                    // activation's own rounding (tanh to 1e-5 of its terms)
                    let tol = 1.13 * tg * (u.abs() + tu)
                        + (gated_f64(g, 1.0).abs() + 1.13 * tg) * tu
                        + 1e-5 * (want.abs() + 0.5 * g.abs() * u.abs())
                        + 1e-30;
                    let gv = got[mi * n + ni] as f64;
                    assert!(
                        (gv - want).abs() <= tol,
                        "{what}: y[{mi}, {ni}] = {gv}, f64 says {want} (tolerance {tol:e})"
                    );
                }
            }
        }
        // a weight of another length; a layout the kernel does not read
        let (gw, uw) = (gate_pool.weight(5, bs), up_pool.weight(6, bs));
        let desc = gw.desc.with_layout(PackedLayout::Gguf).unwrap();
        let short = cube.words(&pack(gw.bytes, desc).unwrap());
        let long =
            cube.words(&pack(uw.bytes, uw.desc.with_layout(PackedLayout::Gguf).unwrap()).unwrap());
        let err = quant_gemv_gated(
            cube.floats(&vec![0.5; bs], [1, bs]),
            short.clone(),
            long,
            desc,
        );
        assert!(
            matches!(err, Err(KernelError::WordsLength { .. })),
            "{name} {t}: weights of two lengths gave {err:?}"
        );
        if let Ok(planes) = desc.with_layout(PackedLayout::Q6kPlanes) {
            let err = quant_gemv_gated(
                cube.floats(&vec![0.5; bs], [1, bs]),
                short.clone(),
                short,
                planes,
            );
            assert!(
                matches!(err, Err(KernelError::Layout { .. })),
                "{name} {t}: the planes layout gave {err:?}"
            );
        }
    }
}

/// A quantized embedding with a tied head, and records: for each type, `GgufEmbedding` from a
/// GGUF file looks rows up and projects on the fused path from one copy of the table, and a
/// `QuantLinear` record saved and loaded gives back the exact words.
/// `cube`: whether the device is a CubeCL one (an out-of-range id gives a row of NaN there; Flex
/// panics with the error).
fn check_modules(name: &str, device: &Device, cube: bool) {
    use burn_gguf::gguf::{GgufFile, GgufWriter};
    let mut rng = Rng::fresh(name);
    let dir = scratch(name);
    for &t in FUSED_TYPES {
        let pool = Pool::new(&mut rng, t, 2 * 19 + 64, name);
        let bs = t.block_size().unwrap() as usize;
        // an embedding table of 19 tokens × 2 blocks
        let w = pool.weight(19, 2 * bs);
        let mut writer = GgufWriter::new();
        writer
            .add_tensor("token_embd.weight", &[w.k as u64, 19], t, w.bytes)
            .unwrap();
        let file = GgufFile::from_bytes(writer.to_bytes()).unwrap();
        let table = GgufEmbedding::from_gguf(&file, "token_embd.weight", device).unwrap();
        assert!(table.is_fused(), "{name} {t}: the table stays quantized");
        assert_eq!(table.memory_bytes(), w.bytes.len().div_ceil(4) * 4);
        let GgufEmbedding::Quant(q) = &table else {
            unreachable!()
        };
        assert_eq!(q.quant_weight().to_gguf_bytes().unwrap(), w.bytes);
        let ids = Tensor::<2, Int>::from_data(TensorData::new(vec![18i32, 2, 2], [1, 3]), device);
        let e: Tensor<3> = table.forward(ids);
        let want: Vec<f32> = [18usize, 2, 2]
            .iter()
            .flat_map(|&i| w.deq[i * w.k..][..w.k].to_vec())
            .collect();
        check_values(&format!("{name} {t} embedding"), &floats(e), &want, false);
        // an id past the table's rows never reads out of bounds
        let bad = || {
            let ids = Tensor::<1, Int>::from_data(TensorData::new(vec![1i32, 19], [2]), device);
            floats::<2>(table.forward(ids))
        };
        if cube {
            let rows = bad();
            assert!(rows[..w.k].iter().all(|v| !v.is_nan()), "{name} {t}: row 1");
            assert!(
                rows[w.k..].iter().all(|v| v.is_nan()),
                "{name} {t}: id 19 gives NaN"
            );
        } else {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(bad));
            assert!(r.is_err(), "{name} {t}: id 19 of 19 rows is refused");
        }
        let x = random_x(&mut rng, 2 * w.k);
        let xt = Tensor::<2>::from_data(TensorData::new(x.clone(), [2, w.k]), device);
        check(
            &format!("{name} {t} tied head"),
            &floats(table.project(xt)),
            &x,
            &w,
            2,
            false,
            0.0,
        );

        // a QuantLinear record round trip, exact
        let w = pool.weight(5, 3 * bs);
        let layer = QuantLinear::from_gguf_bytes(w.bytes, w.desc, None, device).unwrap();
        let words = read_words(layer.weight.val());
        assert_eq!(words, pack(w.bytes, w.desc).unwrap(), "{name} {t}: words");
        let path = dir.join(format!("layer-{t}"));
        layer.clone().save_file(&path).unwrap();
        let zeros = vec![0u8; w.bytes.len()];
        let loaded = QuantLinear::from_gguf_bytes(&zeros, w.desc, None, device)
            .unwrap()
            .try_load_file(&path)
            .unwrap_or_else(|e| panic!("{name} {t}: load: {e}"));
        assert_eq!(read_words(loaded.weight.val()), words, "{name} {t}: record");
        assert_eq!(
            loaded.gguf_bytes().unwrap(),
            w.bytes,
            "{name} {t}: record bytes"
        );
    }
    // A type without a fused product is refused, unless dequantization is asked for.
    let mut writer = GgufWriter::new();
    writer
        .add_tensor("w.weight", &[256, 2], GgmlType::Q8_K, vec![0u8; 2 * 292])
        .unwrap();
    let file = GgufFile::from_bytes(writer.to_bytes()).unwrap();
    assert!(GgufEmbedding::from_gguf(&file, "w.weight", device).is_err());
    assert!(burn_gguf::nn::GgufLinear::from_gguf(&file, "w.weight", device).is_err());
    let dense = burn_gguf::nn::GgufLinear::from_gguf_dequantized(&file, "w.weight", device);
    assert!(!dense.unwrap().is_fused());
    // a non-GGUF layout cannot back an embedding
    let d = QuantWeightDesc::q6k(1, 256).unwrap();
    assert!(d.layout != PackedLayout::Gguf);
    assert!(QuantEmbedding::from_gguf_bytes(&[0u8; 210], d, device).is_err());
    std::fs::remove_dir_all(dir).ok();
}

/// The real Gemma-3 270M Q4_K_M file's tensors of every fused type it holds (Q8_0, Q5_0, Q4_K,
/// Q6_K; the first 256 rows of each, the 262144-row embedding among them): GGUF bytes → device →
/// GGUF bytes, and the product against f64 on gguf-py's dequantization of the same bytes.
fn check_gemma_tensors(name: &str, device: &Device, u_dense: f64) {
    use burn_gguf::gguf::GgufFile;
    let Some(path) = common::gemma_path(name) else {
        return;
    };
    let file = GgufFile::open(path).unwrap();
    let mut rng = Rng::fresh(name);
    let mut seen = Vec::new();
    for info in file.tensors() {
        let t = info.ggml_type;
        if !FUSED_TYPES.contains(&t) || seen.contains(&t) || info.dims.len() != 2 {
            continue;
        }
        seen.push(t);
        let (k, rows) = (info.dims[0] as usize, info.dims[1] as usize);
        let n = rows.min(256);
        let desc = QuantWeightDesc::of(t, n, k).unwrap();
        let bytes = &file.tensor_data(&info.name).unwrap()[..desc.n_bytes()];
        let deq = reference(t, bytes, n * k, name);
        let w = Weight {
            n,
            k,
            bytes,
            deq: &deq,
            desc,
        };
        let qw = QuantWeight::from_gguf_bytes(bytes, desc, device).unwrap();
        assert_eq!(qw.to_gguf_bytes().unwrap(), bytes, "{name} {}", info.name);
        for m in [1, 5, 9] {
            let x = random_x(&mut rng, m * k);
            poison(m * n, device);
            let xt = Tensor::<2>::from_data(TensorData::new(x.clone(), [m, k]), device);
            let u_in = if m <= burn_gguf::ops::FUSED_MAX_ROWS {
                0.0
            } else {
                u_dense
            };
            let what = format!("{name} {} ({t}, first {n} rows) M={m}", info.name);
            check(&what, &floats(qw.matmul(xt, Float)), &x, &w, m, false, u_in);
        }
    }
    let mut want = vec![
        GgmlType::Q5_0,
        GgmlType::Q8_0,
        GgmlType::Q4_K,
        GgmlType::Q6_K,
    ];
    want.sort_by_key(|t| t.id());
    seen.sort_by_key(|t| t.id());
    assert_eq!(
        seen, want,
        "{name}: the types of the Gemma-3 270M Q4_K_M file"
    );
}

/// The gradient to the input for every type (the weight frozen), against f64:
/// `g_x = g_y · W`, float and int8 activations alike.
#[cfg(feature = "autodiff")]
fn check_autodiff(name: &str, device: &Device, u_dense: f64) {
    let mut rng = Rng::fresh(name);
    for &t in FUSED_TYPES {
        let pool = Pool::new(&mut rng, t, 24, name);
        let bs = t.block_size().unwrap() as usize;
        let (n, k) = (6, 2 * bs);
        let w = pool.weight(n, k);
        let layer = QuantLinear::from_gguf_bytes(w.bytes, w.desc, None, device).unwrap();
        // int8 activations: the gradient passes their rounding straight through
        let int8 = w.desc.with_layout(PackedLayout::Gguf).unwrap();
        let int8 = QuantLinear::from_gguf_bytes(w.bytes, int8, None, device)
            .unwrap()
            .with_activations(Int8)
            .unwrap();
        for (m, layer) in [(1, &layer), (3, &layer), (2, &int8)] {
            let x = random_x(&mut rng, m * k);
            let r = random_x(&mut rng, m * n);
            let xt = Tensor::<2>::from_data(TensorData::new(x, [m, k]), device).require_grad();
            let rt = Tensor::<2>::from_data(TensorData::new(r.clone(), [m, n]), device);
            let grads = (layer.forward(xt.clone()) * rt).sum().backward();
            let gx = floats(xt.grad(&grads).expect("x has a gradient"));
            for mi in 0..m {
                for ki in 0..k {
                    let (mut exact, mut abs) = (0f64, 0f64);
                    for ni in 0..n {
                        let p = r[mi * n + ni] as f64 * w.deq[ni * k + ki] as f64;
                        exact += p;
                        abs += p.abs();
                    }
                    let g = gx[mi * k + ki] as f64;
                    let tol = common::bound(n, abs, exact, false, u_dense);
                    assert!(
                        (g - exact).abs() <= tol,
                        "{name} {t} m={m}: dx[{mi}, {ki}] = {g}, f64 {exact} (tol {tol:e})"
                    );
                }
            }
        }
    }
}

#[cfg(feature = "flex")]
mod flex {
    use super::*;

    #[test]
    fn types_flex() {
        check_types("types_flex", &Device::flex(), 0.0, true);
    }
    #[test]
    fn modules_flex() {
        check_modules("modules_flex", &Device::flex(), false);
        check_gemma_tensors("gemma_tensors_flex", &Device::flex(), 0.0);
    }
    #[cfg(feature = "autodiff")]
    #[test]
    fn autodiff_types_flex() {
        check_autodiff("autodiff_types_flex", &Device::flex().autodiff(), 0.0);
    }
}

#[cfg(feature = "wgpu")]
mod wgpu {
    use super::*;

    #[test]
    fn types_wgpu() {
        if let Some(d) = common::wgpu_device("types_wgpu") {
            check_types("types_wgpu", &d, 0.0, false);
        }
    }
    #[test]
    fn kernels_wgpu() {
        if common::wgpu_device("kernels_wgpu").is_some() {
            check_kernel_geometries("kernels_wgpu", &common::cube::Cube::wgpu());
        }
    }
    #[test]
    fn int8_wgpu() {
        if common::wgpu_device("int8_wgpu").is_some() {
            check_int8_kernel("int8_wgpu", &common::cube::Cube::wgpu());
        }
    }
    #[test]
    fn gated_wgpu() {
        if common::wgpu_device("gated_wgpu").is_some() {
            check_gated_kernel("gated_wgpu", &common::cube::Cube::wgpu());
        }
    }
    #[test]
    fn modules_wgpu() {
        if let Some(d) = common::wgpu_device("modules_wgpu") {
            check_modules("modules_wgpu", &d, true);
            check_gemma_tensors("gemma_tensors_wgpu", &d, 0.0);
        }
    }
    #[cfg(feature = "autodiff")]
    #[test]
    fn autodiff_types_wgpu() {
        if let Some(d) = common::wgpu_device("autodiff_types_wgpu") {
            check_autodiff("autodiff_types_wgpu", &d.autodiff(), 0.0);
        }
    }
}

#[cfg(feature = "cuda")]
mod cuda {
    use super::*;

    const TF32: f64 = 1.0 / 1024.0;

    // One test per check, as on wgpu: each compiles its kernels on its own test thread, and a
    // device run can pick what fits its time.
    #[test]
    fn types_cuda() {
        if let Some(d) = common::cuda_device() {
            check_types("types_cuda", &d, TF32, false);
        }
    }
    #[test]
    fn kernels_cuda() {
        if common::cuda_device().is_some() {
            check_kernel_geometries("kernels_cuda", &common::cube::Cube::cuda());
        }
    }
    #[test]
    fn gated_cuda() {
        if common::cuda_device().is_some() {
            check_gated_kernel("gated_cuda", &common::cube::Cube::cuda());
        }
    }
    #[test]
    fn modules_cuda() {
        if let Some(d) = common::cuda_device() {
            check_modules("modules_cuda", &d, true);
            check_gemma_tensors("gemma_tensors_cuda", &d, TF32);
        }
    }
    #[test]
    fn int8_cuda() {
        if common::cuda_device().is_some() {
            check_int8_kernel("int8_cuda", &common::cube::Cube::cuda());
        }
    }
    #[cfg(feature = "autodiff")]
    #[test]
    fn autodiff_types_cuda() {
        if let Some(d) = common::cuda_device() {
            check_autodiff("autodiff_types_cuda", &d.autodiff(), TF32);
        }
    }
}
