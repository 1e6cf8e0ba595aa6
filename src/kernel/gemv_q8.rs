//! The fused matrix-vector product with int8 activations ([`crate::quant::Activations::Int8`]),
//! as ggml's `mul_mat_vec_q` computes it: the activations are first rounded to int8 per run of 32
//! ([`quantize_runs_kernel`]), then each run of a weight row multiplies its packed codes
//! ([`BlockFormat::word`]) into the packed activations with four-way integer dot products
//! (`dp4a`: CUDA's `__dp4a`, SPIR-V's `OpSDot`, a portable polyfill elsewhere): per weight 1/4
//! of an instruction per activation row, where the float kernel ([`super::gemv`]) spends a
//! multiply-add and a decode. The result is the product of the weights with the rounded
//! activations `x̂ = dx · q`: a run adds `dx · (d0 · s0 + d1 · s1) − m0 · X0 − m1 · X1` (the
//! integer sums `s` of its two halves' code products, the scales `d` and mins `m` of
//! [`super::formats::RunScales`], the activations' scale `dx` and the halves' sums
//! `X = dx · Σ q`). The cube's mapping, the reduction and the launch shape are the float
//! kernel's.

use burn::tensor::{DType, Shape};
use burn_cubecl::{ops::numeric::empty_device_contiguous_dtype, tensor::CubeTensor};
use cubecl::{calculate_cube_count_elemwise, prelude::*};

use super::KernelError;
use super::PlanesTuning;
use super::formats::{BlockFormat, Geometry, WordLayout, use_vectors, with_format, with_words};
use super::gemv::{Launch, block_at, gemv_shape, item_at, units, zero};
use super::reduce::{CubeShape, store_sums};
use crate::quant::{PackedLayout, QuantWeightDesc};

/// Rounds each run of 32 activations to int8: unit `i` reads run `i` (eight four-wide loads of
/// `x`), writes its 32 codes `q = round(x / dx)` (`dx = max |x| / 127`, 0 for a run of zeros)
/// as signed bytes to `xq[2i]`, `xq[2i + 1]` and `(dx, dx · Σ q[0..16], dx · Σ q[16..32], 0)`
/// to `xs[i]`: the rounded activations `dx · q` and their half sums. A run with an infinity or
/// a NaN gets `dx` NaN.
#[cube(launch_unchecked)]
pub(crate) fn quantize_runs_kernel<F: Float, V: Size>(
    x: &[Vector<F, V>],
    xq: &mut [Vector<u32, V>],
    xs: &mut [Vector<f32, V>],
    runs: usize,
    #[define(F)] _dtype: ElemType,
) {
    let i = ABSOLUTE_POS;
    if i >= runs {
        terminate!();
    }
    let mut v = Array::<f32>::new(32usize);
    let mut amax = 0.0f32;
    let mut finite = true;
    #[unroll]
    for j in 0..8usize {
        let xv = x[8 * i + j];
        #[unroll]
        for e in 0..4usize {
            let f = f32::cast_from(xv.extract(e));
            v[4 * j + e] = f;
            amax = f32::max(amax, f32::abs(f));
            // an all-ones exponent: an infinity or a NaN (a bit test, which no float
            // optimization may assume away)
            finite = finite && (u32::reinterpret(f) & 0x7F80_0000u32) != 0x7F80_0000u32;
        }
    }
    // A run holding an infinity or a NaN gets a NaN scale, so that every product it enters is
    // NaN, as the float kernel's would be (a maximum skips NaN, and codes cannot hold one).
    let dx = select(finite, amax / 127.0f32, f32::reinterpret(0x7FC0_0000u32));
    let inv = select(amax > 0.0f32, 127.0f32 / amax, 0.0f32);
    let mut s0 = 0i32;
    let mut s1 = 0i32;
    let mut words = Array::<u32>::new(8usize);
    #[unroll]
    for j in 0..8usize {
        let mut word = 0u32;
        #[unroll]
        for e in 0..4usize {
            let c = i32::cast_from(f32::round(v[4 * j + e] * inv)).clamp(-127i32, 127i32);
            if comptime!(j < 4) {
                s0 += c;
            } else {
                s1 += c;
            }
            // the code plus 128 (1..=255: no negative value cast), its top bit flipped: the
            // signed byte
            word |= (u32::cast_from(c + 128i32) ^ 0x80u32) << comptime!(8 * e as u32);
        }
        words[j] = word;
    }
    #[unroll]
    for h in 0..2usize {
        let mut q = Vector::<u32, V>::empty();
        #[unroll]
        for e in 0..4usize {
            q.insert(e, words[4 * h + e]);
        }
        xq[2 * i + h] = q;
    }
    let mut s = Vector::<f32, V>::empty();
    s.insert(0usize, dx);
    s.insert(1usize, dx * f32::cast_from(s0));
    s.insert(2usize, dx * f32::cast_from(s1));
    s.insert(3usize, 0.0f32);
    xs[i] = s;
}

/// `y[m, n] = Σ_k x[m, k] · W[n, k]` from the int8 runs of [`quantize_runs_kernel`] (`xq`, `xs`:
/// `m` rows of `k / 32` runs) and the weight `w` in the layout `L`, mapped as [`super::gemv`]'s
/// kernel.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn quant_gemv_q8_kernel<F: Float, V: Size, Q: BlockFormat, L: WordLayout>(
    xq: &[Vector<u32, V>],
    xs: &[Vector<f32, V>],
    w: &[u32],
    y: &mut [F],
    k: usize,
    n: usize,
    #[comptime] g: CubeShape,
    #[comptime] m: usize,
    #[define(F)] _dtype: ElemType,
) {
    let row0 = CUBE_POS * comptime![g.rows * g.groups];
    let mut acc = Array::<f32>::new(comptime![g.rows * m]);
    accumulate_q8::<V, Q, L>(xq, xs, w, &mut acc, k, n, row0, g, m);
    store_sums::<F>(&acc, y, row0, n, 0.0f32, 0.0f32, g, m, false);
}

/// A unit's partial sums `acc[r · m + mi]` for its rows `row0 + r · groups + g` (the float
/// kernel's `accumulate`, with integer products).
#[cube]
#[allow(clippy::too_many_arguments)]
fn accumulate_q8<V: Size, Q: BlockFormat, L: WordLayout>(
    xq: &[Vector<u32, V>],
    xs: &[Vector<f32, V>],
    w: &[u32],
    acc: &mut Array<f32>,
    k: usize,
    n: usize,
    row0: usize,
    #[comptime] shape: CubeShape,
    #[comptime] m: usize,
) {
    let rows = comptime![shape.rows];
    let kr = k / 32;
    let u = units::<Q>(k, n, row0, shape);
    zero(acc, comptime![rows * m]);
    // Per weight row: its run's packed codes and its scales and mins.
    let mut wc = Array::<u32>::new(rows * 8);
    let mut ws = Array::<f32>::new(rows * 4);
    let mut item = u.first;
    while item < u.items {
        #[unroll]
        for i in 0..comptime![shape.per_iter] {
            let at = item_at::<Q, L>(&u, item, i);
            let valid = at.valid;
            let b = at.b;
            let r = at.r;
            // the run's index among a row's k / 32 runs
            let it = b * comptime!(Q::RUNS) + r;
            #[unroll]
            for ri in 0..rows {
                let bb = block_at::<Q, L>(&u, row0 + ri * comptime![shape.groups], n, b);
                let s = Q::scales::<L>(w, bb, r);
                #[unroll]
                for j in 0..8usize {
                    wc[ri * 8 + j] = Q::word::<L>(w, bb, r, j);
                }
                ws[ri * 4] = s.d0;
                ws[ri * 4 + 1] = s.d1;
                ws[ri * 4 + 2] = s.m0;
                ws[ri * 4 + 3] = s.m1;
            }
            #[unroll]
            for mi in 0..m {
                let run = mi * kr + it;
                let q0 = xq[2 * run];
                let q1 = xq[2 * run + 1];
                let sx = xs[run];
                let dx = sx.extract(0usize);
                #[unroll]
                for ri in 0..rows {
                    let mut lo = 0i32;
                    let mut hi = 0i32;
                    #[unroll]
                    for e in 0..4usize {
                        lo = dp4a(
                            i32::reinterpret(wc[ri * 8 + e]),
                            i32::reinterpret(q0.extract(e)),
                            lo,
                        );
                        hi = dp4a(
                            i32::reinterpret(wc[ri * 8 + 4 + e]),
                            i32::reinterpret(q1.extract(e)),
                            hi,
                        );
                    }
                    let mut add = dx * (ws[ri * 4] * f32::cast_from(lo + hi));
                    if comptime!(Q::SUB == 16) {
                        add = dx
                            * (ws[ri * 4] * f32::cast_from(lo)
                                + ws[ri * 4 + 1] * f32::cast_from(hi));
                    }
                    if comptime!(Q::MIN) {
                        add -= ws[ri * 4 + 2] * sx.extract(1usize)
                            + ws[ri * 4 + 3] * sx.extract(2usize);
                    }
                    acc[ri * m + mi] += select(valid, add, 0.0f32);
                }
            }
        }
        item += u.stride * comptime![shape.per_iter];
    }
}

/// The int8 product's launch geometry where the caller forces none, measured on an H200 (PERF.md,
/// session 24: 4096 × 14336, every type in both layouts, each kernel's duration under Nsight
/// Compute): up to two activation rows, 2 rows × 8 warps a cube with the format's
/// [`Geometry::INT8_GROUPS`] row groups per warp in the GGUF layout (4 in the interleaved one,
/// whose best geometries scatter); above, 8 rows × 4 warps with 2 groups, which measured 1.0–2.2×
/// faster at eight rows than the float kernel's 4 rows × 4 warps with 4 groups, for every type
/// and layout but Q3_K's GGUF layout (0.96×). The launch then takes as many of those warps as
/// keep a row's units busy to its last pass ([`CubeShape::balanced`]).
fn default_tuning(desc: QuantWeightDesc, rows: usize) -> Result<PlanesTuning, KernelError> {
    let (rows, warps, groups) = if rows > 2 {
        (8, 4, 2)
    } else if desc.layout == PackedLayout::Interleaved {
        (2, 8, 4)
    } else {
        (
            2,
            8,
            with_format!(desc.ggml_type, Q => <Q as Geometry>::INT8_GROUPS)?,
        )
    };
    Ok(PlanesTuning {
        rows,
        warps,
        // out of range: the launch shape's default
        per_iter: 0,
        weights_path: false,
        pipeline: false,
        groups,
    })
}

/// Launches the int8-activation product of `desc`'s type: `x` contiguous `[.., in_features]`
/// with `rows` rows (1..=MAX_ROWS), `packed` the words of `desc` (both checked by the
/// caller). Two launches: the activations' runs rounded to int8, then the product.
pub(super) fn launch(
    x: CubeTensor,
    packed: CubeTensor,
    desc: QuantWeightDesc,
    rows: usize,
    tuning: Option<super::PlanesTuning>,
) -> Result<CubeTensor, KernelError> {
    let runs = rows * desc.in_features / 32;
    let client = x.client.clone();
    let xq = empty_device_contiguous_dtype(
        client.clone(),
        x.device.clone(),
        Shape::new([runs * 8]),
        DType::U32,
    );
    let xs = empty_device_contiguous_dtype(
        client.clone(),
        x.device.clone(),
        Shape::new([runs * 4]),
        DType::F32,
    );
    let dim = CubeDim::new_1d(256);
    let runtime = x.device.runtime();
    let g = match tuning {
        Some(t) => gemv_shape(&client, runtime, desc, rows, Some(t)),
        None => gemv_shape(
            &client,
            runtime,
            desc,
            rows,
            Some(default_tuning(desc, rows)?),
        )
        .balanced(desc.in_features / 32),
    };
    let l = Launch::new(&x, desc, g);
    // SAFETY: `x` holds `runs · 32` elements (checked by the caller), read as `runs · 8` vectors
    // of 4; unit i < runs writes xq[2i], xq[2i + 1] (of runs · 2 vectors) and xs[i].
    unsafe {
        quantize_runs_kernel::launch_unchecked(
            &client,
            calculate_cube_count_elemwise(&client, runs, dim),
            dim,
            4,
            x.into_buffer_arg(),
            xq.clone().into_buffer_arg(),
            xs.clone().into_buffer_arg(),
            runs,
            l.dtype,
        )
    };
    // SAFETY: as the float kernel's launch: weight reads stay within `desc`'s words, and
    // a unit reads runs `mi · k / 32 + item` < runs of xq and xs, item < k / 32.
    with_format!(desc.ggml_type, Q => with_words!(desc, Q, use_vectors(runtime), L => unsafe {
        quant_gemv_q8_kernel::launch_unchecked::<Q, L>(
            &l.client,
            l.cube_count.clone(),
            l.cube_dim,
            4,
            xq.into_buffer_arg(),
            xs.into_buffer_arg(),
            packed.into_buffer_arg(),
            l.y.clone().into_buffer_arg(),
            desc.in_features,
            desc.out_features,
            g,
            rows,
            l.dtype,
        )
    }))??;
    Ok(l.y)
}
