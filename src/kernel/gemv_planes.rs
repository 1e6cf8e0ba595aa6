//! The fused Q6_K matrix-vector kernel over the aligned planes layout
//! ([`crate::quant::q6k::planes`]): `y[m, n] = Σ_k x[m, k] · W[n, k]` for up to
//! [`super::MAX_ROWS`] activation rows, every weight byte read once for all of them.
//!
//! Mapping: a cube owns `rows` output rows and `warps × lanes` units. A block's 256 weights are
//! four *units* (half `h` of the block × 16-position run `s`): each unit is 64 weights, read as
//! three 16-byte loads (two of `ql`, one of `qh`) plus its block's scales and `d`, and its
//! weights form four whole 16-weight sub-blocks (one scale each). The cube's units stride over
//! the row's blocks; each unit decodes its weights once for every row the cube owns and every
//! activation row, so an activation vector is read once per `rows` weight rows. A sub-block's
//! dot product `Σ x·(q − 32)` is taken in f32 and scaled by `d · sc` once (exact: `d` has 11
//! significant bits, `sc` 8). `q − 32` comes out of the bytes without an int→float conversion or
//! a shift: the float whose bits are `0x4B00_0000 | (q << 8i)` is `2²³ + 2⁸ⁱ·q`, so one mask and
//! one subtraction give `2⁸ⁱ·(q − 32)` exactly (i = 0, 1, 2; the top byte is shifted down to
//! i = 2). With one activation row each scale has its own partial sum, brought back by an exact
//! power of two, and `d · sc` is applied once per sub-block; with several, each weight is first
//! made ggml's dequantized value `(d · sc) · (q − 32)` (the powers of two folded into the
//! scale), then multiplied into every row.
//!
//! Each unit's partial sums meet through `plane_sum` and, across warps, shared memory; where the
//! device has no plane operations, through shared memory alone.
//!
//! `load_units` issues a thread's loads and `compute_units` decodes and multiplies them. A
//! comptime variant, `pipeline`, keeps two register slots and issues the next units' loads before
//! decoding the current ones; it measured slower on an H100 (more registers, fewer warps: PERF.md,
//! v5-p) and is reachable through an explicit [`PlanesTuning`] only.

use burn::backend::cubecl::dtype_to_storage_type;
use burn_cubecl::{ops::numeric::empty_device_contiguous_dtype, tensor::CubeTensor};
use cubecl::client::Client;
use cubecl::device::RuntimeId;
use cubecl::{prelude::*, server::CubeCountSelection};

use super::decode::{f16_bits_to_f32, sign_extend};
use super::reduce::{CubeShape, store_sums};
use crate::dims::with_last_dim;
use crate::quant::QuantWeightDesc;
use crate::quant::q6k::planes::PlaneOffsets;

/// Launch geometry of the planes kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlanesGeometry {
    /// Output rows per cube.
    pub rows: usize,
    /// Warps (planes) per cube.
    pub warps: usize,
    /// Units per warp: the plane size, or 32 without plane operations.
    pub lanes: usize,
    /// Units each thread loads before computing (1 or 2): more bytes in flight per thread.
    pub per_iter: usize,
    /// Whether partial sums meet through plane operations.
    pub use_plane: bool,
    /// One activation row only: a partial sum per scale byte, `d · sc` applied once per
    /// sub-block (fewest instructions per weight). Otherwise each weight is first made ggml's
    /// dequantized value, then multiplied into every activation row.
    pub scale_sums: bool,
    /// Software pipelining: the loads of a thread's next units are issued before its current
    /// ones are decoded (two register slots).
    pub pipeline: bool,
}

/// A forced launch configuration of the planes kernel, for tuning: passed to
/// [`super::quant_gemv`] (the benchmark's `--sweep`, the tests); results stay exact whatever the
/// configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlanesTuning {
    /// Output rows per cube, 1..=8.
    pub rows: usize,
    /// Warps per cube, 1..=8.
    pub warps: usize,
    /// Units each thread loads before computing, 1 or 2.
    pub per_iter: usize,
    /// Take the several-rows path (dequantized weights) even for one activation row.
    pub weights_path: bool,
    /// Software pipelining (see [`PlanesGeometry::pipeline`]).
    pub pipeline: bool,
    /// Row groups per warp of the generic kernel (a power of two up to the plane size; 0:
    /// its default): lane `l` works on rows `l % groups`, so a warp's activation loads serve
    /// `groups` weight rows at once. The planes kernel takes 1 only.
    pub groups: usize,
}

/// The four 6-bit codes of sub-block quarter `g` from a `ql` word (low nibbles for g < 2, high
/// for g ≥ 2) and the `qh` word (bits 2g, 2g + 1), one code per byte.
#[cube]
#[allow(unused_assignments)]
fn codes(ql: u32, qh: u32, #[comptime] g: u32) -> u32 {
    let lo = (ql >> (4 * (g / 2))) & 0x0F0F_0F0Fu32;
    // bits 2g..2g+2 of each byte, moved to bits 4..6
    let mut hi = qh;
    if comptime![g < 2] {
        hi = (qh << (4 - 2 * g)) & 0x3030_3030u32;
    } else {
        hi = (qh >> (2 * g - 4)) & 0x3030_3030u32;
    }
    lo | hi
}

/// Issues the loads of the `per_iter` units starting at unit `u` (stride `threads`) into slot
/// `slot` of `words` / `d`: per (unit, row) `ql` A (4 words), `ql` B (4), `qh` (4), the two scale
/// words of the unit's half, and the block's `d`. A unit past the end loads the last unit again
/// (in bounds; it is skipped when computed), a row past the end the last row (never written).
#[cube]
#[allow(clippy::too_many_arguments)]
fn load_units<V: Size>(
    w: &[Vector<u32, V>],
    words: &mut Array<u32>,
    d: &mut Array<f32>,
    u: usize,
    units: usize,
    row0: usize,
    n: usize,
    nb: usize,
    qh_base: usize,
    sc_base: usize,
    d_base: usize,
    #[comptime] slot: usize,
    #[comptime] per_iter: usize,
    #[comptime] rows: usize,
    #[comptime] threads: usize,
) {
    #[unroll]
    for p in 0..per_iter {
        let up = (u + p * threads).min(units - 1);
        let b = up / 4;
        let h = (up / 2) % 2;
        let s = up % 2;
        #[unroll]
        for r in 0..rows {
            let row = (row0 + r).min(n - 1);
            let t = row * nb + b;
            let qa = w[1 + 8 * t + 4 * h + s];
            let qb = w[1 + 8 * t + 4 * h + 2 + s];
            let qh = w[qh_base + 4 * t + 2 * h + s];
            let sc = w[sc_base + t];
            let dv = w[d_base + t / 8];
            let o = ((slot * per_iter + p) * rows + r) * 14;
            #[unroll]
            for j in 0..4usize {
                words[o + j] = qa.extract(j);
                words[o + 4 + j] = qb.extract(j);
                words[o + 8 + j] = qh.extract(j);
            }
            let mut s_lo = sc.extract(0usize);
            let mut s_hi = sc.extract(1usize);
            if h == 1 {
                s_lo = sc.extract(2usize);
                s_hi = sc.extract(3usize);
            }
            words[o + 12] = s_lo;
            words[o + 13] = s_hi;
            let dj = (t / 2) % 4;
            let mut dw = dv.extract(0usize);
            if dj == 1 {
                dw = dv.extract(1usize);
            }
            if dj == 2 {
                dw = dv.extract(2usize);
            }
            if dj == 3 {
                dw = dv.extract(3usize);
            }
            d[(slot * per_iter + p) * rows + r] =
                f16_bits_to_f32((dw >> (16 * (t % 2)) as u32) & 0xFFFFu32);
        }
    }
}

/// Multiplies the units loaded in slot `slot` (see [`load_units`]), those starting at unit `u`,
/// into `acc[r · m + mi]` for every row `r` of the cube and activation row `mi`.
#[cube]
#[allow(clippy::too_many_arguments)]
fn compute_units<F: Float, V: Size>(
    x: &[Vector<F, V>],
    words: &Array<u32>,
    d: &Array<f32>,
    acc: &mut Array<f32>,
    u: usize,
    units: usize,
    kv: usize,
    #[comptime] slot: usize,
    #[comptime] per_iter: usize,
    #[comptime] rows: usize,
    #[comptime] threads: usize,
    #[comptime] m: usize,
    #[comptime] scale_sums: bool,
) {
    let mut ds = Array::<f32>::new(rows);
    let mut qf = Array::<f32>::new(rows * 4);
    let mut sums = Array::<f32>::new(rows * 4);
    let mut ds3 = Array::<f32>::new(rows * 3);
    #[unroll]
    for p in 0..per_iter {
        let up = u + p * threads;
        let base = (slot * per_iter + p) * rows;
        if up < units {
            let b = up / 4;
            let h = (up / 2) % 2;
            let s = up % 2;
            let xv = b * 64 + 32 * h + 4 * s;
            #[unroll]
            for g in 0..4u32 {
                #[unroll]
                for r in 0..rows {
                    // Sub-block 8h + 2g + s: byte s + 2(g % 2) of this half's scale word g / 2.
                    let sw = words[(base + r) * 14 + 12 + (g / 2) as usize];
                    let byte = (sw >> (8 * s as u32 + 16 * (g % 2))) & 0xFFu32;
                    ds[r] = d[base + r] * f32::cast_from(sign_extend(byte));
                }
                if scale_sums {
                    // One activation row: a partial sum per byte scale, ds applied once
                    // per sub-block (fewest instructions per weight).
                    #[unroll]
                    for i in 0..rows * 4 {
                        sums[i] = 0.0f32;
                    }
                } else {
                    // Several rows: the weights themselves, (d · sc) · (q − 32), exactly
                    // ggml's dequantized values, are multiplied into each row.
                    #[unroll]
                    for r in 0..rows {
                        ds3[r * 3] = ds[r];
                        ds3[r * 3 + 1] = ds[r] * 0.003_906_25f32;
                        ds3[r * 3 + 2] = ds[r] * 0.000_015_258_789f32;
                    }
                }
                #[unroll]
                for j in 0..4usize {
                    #[unroll]
                    for r in 0..rows {
                        let o = (base + r) * 14;
                        let q4 = codes(words[o + 4 * (g % 2) as usize + j], words[o + 8 + j], g);
                        // Byte i of q4 as 2^(8i) · (q − 32) (2^16 for the top byte), exactly.
                        qf[r * 4] =
                            f32::reinterpret((q4 & 0xFFu32) | 0x4B00_0000u32) - 8_388_640.0f32;
                        qf[r * 4 + 1] =
                            f32::reinterpret((q4 & 0xFF00u32) | 0x4B00_0000u32) - 8_396_800.0f32;
                        qf[r * 4 + 2] = f32::reinterpret((q4 & 0xFF_0000u32) | 0x4B00_0000u32)
                            - 10_485_760.0f32;
                        qf[r * 4 + 3] =
                            f32::reinterpret(((q4 >> 8u32) & 0xFF_0000u32) | 0x4B00_0000u32)
                                - 10_485_760.0f32;
                        if !scale_sums {
                            qf[r * 4] *= ds3[r * 3];
                            qf[r * 4 + 1] *= ds3[r * 3 + 1];
                            qf[r * 4 + 2] *= ds3[r * 3 + 2];
                            qf[r * 4 + 3] *= ds3[r * 3 + 2];
                        }
                    }
                    #[unroll]
                    for mi in 0..m {
                        let xj = x[mi * kv + xv + 8 * g as usize + j];
                        #[unroll]
                        for r in 0..rows {
                            if scale_sums {
                                #[unroll]
                                for i in 0..4usize {
                                    sums[r * 4 + i] +=
                                        qf[r * 4 + i] * f32::cast_from(xj.extract(i));
                                }
                            } else {
                                #[unroll]
                                for i in 0..4usize {
                                    acc[r * m + mi] +=
                                        qf[r * 4 + i] * f32::cast_from(xj.extract(i));
                                }
                            }
                        }
                    }
                }
                if scale_sums {
                    #[unroll]
                    for r in 0..rows {
                        let o = r * 4;
                        let sum = sums[o]
                            + sums[o + 1] * 0.003_906_25f32
                            + (sums[o + 2] + sums[o + 3]) * 0.000_015_258_789f32;
                        acc[r] += ds[r] * sum;
                    }
                }
            }
        }
    }
}

#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn q6k_gemv_planes_kernel<F: Float, V: Size>(
    x: &[Vector<F, V>],
    w: &[Vector<u32, V>],
    y: &mut [F],
    k: usize,
    n: usize,
    qh_base: usize,
    sc_base: usize,
    d_base: usize,
    #[comptime] m: usize,
    #[comptime] rows: usize,
    #[comptime] lanes: usize,
    #[comptime] warps: usize,
    #[comptime] per_iter: usize,
    #[comptime] use_plane: bool,
    #[comptime] scale_sums: bool,
    #[comptime] pipeline: bool,
    #[define(F)] _dtype: ElemType,
) {
    let lane = UNIT_POS_X as usize;
    let warp = UNIT_POS_Y as usize;
    let threads = comptime![lanes * warps];
    let tid = warp * lanes + lane;
    let row0 = CUBE_POS * rows;
    let nb = k / 256;
    let kv = k / 4;
    // Cubes past the last row (a cube count rounded up by the runtime) do no work but still take
    // part in the reductions, so every barrier stays uniform.
    let mut units = 0usize;
    if row0 < n {
        units = nb * 4;
    }

    let mut acc = Array::<f32>::new(rows * m);
    #[unroll]
    for i in 0..rows * m {
        acc[i] = 0.0f32;
    }
    let step = comptime![threads * per_iter];
    if pipeline {
        // Software pipelining, two register slots: the next `per_iter` units' loads are issued
        // before the current ones are decoded, so every thread keeps bytes in flight while it
        // computes.
        let mut words = Array::<u32>::new(2 * per_iter * rows * 14);
        let mut d = Array::<f32>::new(2 * per_iter * rows);
        let mut u = tid;
        if u < units {
            load_units::<V>(
                w, &mut words, &mut d, u, units, row0, n, nb, qh_base, sc_base, d_base, 0usize,
                per_iter, rows, threads,
            );
        }
        while u < units {
            load_units::<V>(
                w,
                &mut words,
                &mut d,
                u + step,
                units,
                row0,
                n,
                nb,
                qh_base,
                sc_base,
                d_base,
                1usize,
                per_iter,
                rows,
                threads,
            );
            compute_units::<F, V>(
                x, &words, &d, &mut acc, u, units, kv, 0usize, per_iter, rows, threads, m,
                scale_sums,
            );
            load_units::<V>(
                w,
                &mut words,
                &mut d,
                u + 2 * step,
                units,
                row0,
                n,
                nb,
                qh_base,
                sc_base,
                d_base,
                0usize,
                per_iter,
                rows,
                threads,
            );
            compute_units::<F, V>(
                x,
                &words,
                &d,
                &mut acc,
                u + step,
                units,
                kv,
                1usize,
                per_iter,
                rows,
                threads,
                m,
                scale_sums,
            );
            u += 2 * step;
        }
    } else {
        // Every load of the iteration's `per_iter` units is issued before any use.
        let mut words = Array::<u32>::new(per_iter * rows * 14);
        let mut d = Array::<f32>::new(per_iter * rows);
        let mut u = tid;
        while u < units {
            load_units::<V>(
                w, &mut words, &mut d, u, units, row0, n, nb, qh_base, sc_base, d_base, 0usize,
                per_iter, rows, threads,
            );
            compute_units::<F, V>(
                x, &words, &d, &mut acc, u, units, kv, 0usize, per_iter, rows, threads, m,
                scale_sums,
            );
            u += step;
        }
    }

    let shape = comptime![CubeShape {
        rows,
        warps,
        lanes,
        groups: 1,
        per_iter,
        use_plane,
    }];
    store_sums::<F>(&acc, y, row0, n, 0.0f32, 0.0f32, shape, m, false);
}

/// The geometry for `desc` and `m` activation rows on `client`'s device: `tuning` when given
/// (out-of-range values fall back to the measured default), else the measured choice.
pub fn planes_geometry(
    client: &Client,
    runtime: RuntimeId,
    desc: QuantWeightDesc,
    m: usize,
    tuning: Option<PlanesTuning>,
) -> PlanesGeometry {
    let units = desc.blocks_per_row() * 4;
    let tuning = tuning.filter(|t| {
        (1..=8).contains(&t.rows) && (1..=8).contains(&t.warps) && (1..=2).contains(&t.per_iter)
    });
    let mut shape = CubeShape::default_for(client, runtime, units, m);
    let mut per_iter = 1;
    if let Some(t) = tuning {
        (shape.rows, shape.warps, per_iter) = (t.rows, t.warps, t.per_iter);
    }
    let shape = shape.fit_shared_memory(m);
    PlanesGeometry {
        rows: shape.rows,
        warps: shape.warps,
        lanes: shape.lanes,
        per_iter,
        use_plane: shape.use_plane,
        scale_sums: m == 1 && !tuning.is_some_and(|t| t.weights_path),
        pipeline: tuning.is_some_and(|t| t.pipeline),
    }
}

/// Launches the planes kernel; `packed` must be the planes words of `desc` and `x` contiguous
/// `[.., in_features]` with 1..=[`super::MAX_ROWS`] rows (both checked by the caller).
pub(super) fn launch(
    x: CubeTensor,
    packed: CubeTensor,
    desc: QuantWeightDesc,
    rows_m: usize,
    tuning: Option<PlanesTuning>,
) -> CubeTensor {
    let client = x.client.clone();
    let out_shape = with_last_dim(x.meta.shape(), desc.out_features);
    let y = empty_device_contiguous_dtype(client.clone(), x.device.clone(), out_shape, x.dtype);
    let g = planes_geometry(&client, x.device.runtime(), desc, rows_m, tuning);
    let o = PlaneOffsets::new(desc.blocks());
    let cubes = desc.out_features.div_ceil(g.rows) as u32;
    let cube_count = CubeCountSelection::new(&client, cubes).cube_count();
    let cube_dim = CubeDim::new_2d(g.lanes as u32, g.warps as u32);
    let dtype = dtype_to_storage_type(x.dtype);
    // SAFETY: every index stays in bounds: the caller checked that `packed` has exactly the
    // planes length of `desc` and `x` has `rows_m · in_features` elements (both multiples of 4
    // words / elements); the kernel reads blocks of rows < out_features only and writes
    // y[mi · n + row] for row < out_features, mi < rows_m.
    unsafe {
        q6k_gemv_planes_kernel::launch_unchecked(
            &client,
            cube_count,
            cube_dim,
            4,
            x.into_buffer_arg(),
            packed.into_buffer_arg(),
            y.clone().into_buffer_arg(),
            desc.in_features,
            desc.out_features,
            o.qh / 4,
            o.scales / 4,
            o.d / 4,
            rows_m,
            g.rows,
            g.lanes,
            g.warps,
            g.per_iter,
            g.use_plane,
            g.scale_sums,
            g.pipeline,
            dtype,
        );
    }
    y
}
