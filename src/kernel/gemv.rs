//! The fused matrix-vector kernel for every block format in the GGUF and interleaved layouts
//! ([`crate::quant::PackedLayout::Gguf`], [`crate::quant::PackedLayout::Interleaved`]), written
//! once and instantiated per format and layout (the kernel's type parameters, [`BlockFormat`] and
//! [`WordLayout`]): `y[m, n] = Σ_k x[m, k] · W[n, k]` for up to [`super::MAX_ROWS`] activation
//! rows, reading every weight byte once for all rows.
//!
//! Mapping: a cube owns `groups × rows` output rows and `warps × lanes` units; lane `l` works on
//! row group `l % groups` (rows `row0 + r · groups + l % groups`, r < rows), so the lanes of a
//! warp that read the same activations serve `groups` weight rows at once. A row's work items
//! are its blocks' runs (32 weights each, [`BlockFormat`]), in the layout's order (run by run
//! within a block, or block by block within a run when the blocks are interleaved, so that
//! adjacent units read adjacent words); a group's units stride over them together, and at each item a unit decodes that run of each of its `rows` rows into codes and
//! scales, then reads each activation row's 32 matching values once (eight four-wide loads) for
//! all of those rows. A format without mins multiplies the codes into the
//! activations and scales the sums once per 16 or 32 weights; a format with mins forms each
//! weight `scale · code − min` first (ggml's value, rounded once). Partial sums stay in f32
//! registers, one per (weight row, activation row), and meet in [`store_sums`].

use burn::backend::cubecl::dtype_to_storage_type;
use burn_cubecl::{ops::numeric::empty_device_contiguous_dtype, tensor::CubeTensor};
use cubecl::{prelude::*, server::CubeCountSelection};

use cubecl::client::Client;
use cubecl::device::RuntimeId;

use super::formats::{
    BlockFormat, WordLayout, codes, unpack, use_vectors, with_format, with_words,
};
use super::reduce::{CubeShape, store_sums};
use super::{KernelError, PlanesTuning};
use crate::dims::with_last_dim;
use crate::quant::QuantWeightDesc;

#[cube(launch_unchecked)]
pub(crate) fn quant_gemv_kernel<F: Float, V: Size, Q: BlockFormat, L: WordLayout>(
    x: &[Vector<F, V>],
    w: &[u32],
    y: &mut [F],
    k: usize,
    n: usize,
    #[comptime] g: CubeShape,
    #[comptime] m: usize,
    #[define(F)] _dtype: ElemType,
) {
    gemv_body::<F, V, Q, L>(x, w, w, y, k, n, 0.0f32, 0.0f32, g, m, false);
}

/// Gemma's gated MLP input in one launch: `y[m, n] = gelu_tanh(x · Gᵀ) · (x · Uᵀ)` for two weights
/// of one format and shape (the gate `G` and up `U` projections). Each cube reads `rows` rows of
/// both weights, so the two sums of an output meet in the cube, which applies the activation
/// (as [`super::gelu`]'s kernel does, to the sums rounded to `F` as the two products would store
/// them) before the one store: one launch instead of three, and neither product written out.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn quant_gemv_gated_kernel<F: Float, V: Size, Q: BlockFormat, L: WordLayout>(
    x: &[Vector<F, V>],
    gate: &[u32],
    up: &[u32],
    y: &mut [F],
    k: usize,
    n: usize,
    sqrt_2_over_pi: f32,
    cubic: f32,
    #[comptime] g: CubeShape,
    #[comptime] m: usize,
    #[define(F)] _dtype: ElemType,
) {
    gemv_body::<F, V, Q, L>(x, gate, up, y, k, n, sqrt_2_over_pi, cubic, g, m, true);
}

/// Decodes run `r` of the block `bb` of `w` into slot `slot` of `wq` (32 codes, or
/// weights with mins) and `ws` (its two scales).
#[cube]
fn decode_run<Q: BlockFormat, L: WordLayout>(
    w: &[u32],
    bb: usize,
    r: usize,
    wq: &mut Array<f32>,
    ws: &mut Array<f32>,
    t: &mut Array<u32>,
    slot: usize,
) {
    let s = Q::scales::<L>(w, bb, r);
    codes::<Q, L>(w, bb, r, t);
    #[unroll]
    for i in 0..32usize {
        let c = unpack(&*t, i);
        if comptime!(Q::MIN) {
            if i < 16 {
                wq[slot * 32 + i] = s.d0 * c - s.m0;
            } else {
                wq[slot * 32 + i] = s.d1 * c - s.m1;
            }
        } else {
            wq[slot * 32 + i] = c;
        }
    }
    ws[slot * 2] = s.d0;
    ws[slot * 2 + 1] = s.d1;
}

/// The kernels' body: the products of `w`'s rows (and, `gated`, the same rows of `w2`, then the
/// activation) for this cube's rows.
#[cube]
#[allow(clippy::too_many_arguments)]
fn gemv_body<F: Float, V: Size, Q: BlockFormat, L: WordLayout>(
    x: &[Vector<F, V>],
    w: &[u32],
    w2: &[u32],
    y: &mut [F],
    k: usize,
    n: usize,
    sqrt_2_over_pi: f32,
    cubic: f32,
    #[comptime] g: CubeShape,
    #[comptime] m: usize,
    #[comptime] gated: bool,
) {
    // a unit's sums: its rows of each weight
    let sums = comptime![CubeShape {
        rows: if gated { 2 * g.rows } else { g.rows },
        ..g
    }];
    let row0 = CUBE_POS * comptime![g.rows * g.groups];
    let mut acc = Array::<f32>::new(comptime![sums.rows * m]);
    accumulate::<F, V, Q, L>(x, w, w2, &mut acc, k, n, row0, g, m, gated);
    store_sums::<F>(&acc, y, row0, n, sqrt_2_over_pi, cubic, sums, m, gated);
}

/// A unit's partial sums `acc[r · m + mi]` for its rows `row0 + r · groups + g` of `w` (and,
/// `gated`, the same rows of `w2`, at `r ≥ rows`).
#[cube]
#[allow(clippy::too_many_arguments)]
fn accumulate<F: Float, V: Size, Q: BlockFormat, L: WordLayout>(
    x: &[Vector<F, V>],
    w: &[u32],
    w2: &[u32],
    acc: &mut Array<f32>,
    k: usize,
    n: usize,
    row0: usize,
    #[comptime] shape: CubeShape,
    #[comptime] m: usize,
    #[comptime] gated: bool,
) {
    let rows = comptime![shape.rows];
    let groups = comptime![shape.groups];
    // Weight rows a unit decodes: its rows of `w`, then (gated) the same rows of `w2`.
    let wrows = comptime![if gated { 2 * rows } else { rows }];
    let block = comptime!(Q::BLOCK);
    let kv = k / 4;
    let u = units::<Q>(k, n, row0, shape);
    zero(acc, comptime![wrows * m]);
    // Per weight row: its run's 32 codes (or weights, with mins) and its two scales.
    let mut wq = Array::<f32>::new(wrows * 32);
    let mut ws = Array::<f32>::new(wrows * 2);
    let mut t = Array::<u32>::new(8usize);
    let mut item = u.first;
    while item < u.items {
        // `per_iter` items per iteration, in straight-line code, so that their loads are in
        // flight together; one past the end repeats the row's last item and adds nothing.
        #[unroll]
        for i in 0..comptime![shape.per_iter] {
            let at = item_at::<Q, L>(&u, item, i);
            let valid = at.valid;
            let b = at.b;
            let r = at.r;
            #[unroll]
            for ri in 0..rows {
                let bb = block_at::<Q, L>(&u, row0 + ri * groups, n, b);
                decode_run::<Q, L>(w, bb, r, &mut wq, &mut ws, &mut t, ri);
                if comptime![gated] {
                    decode_run::<Q, L>(w2, bb, r, &mut wq, &mut ws, &mut t, rows + ri);
                }
            }
            let xo = (b * block + 32 * r) / 4;
            #[unroll]
            for mi in 0..m {
                let mut p = Array::<f32>::new(wrows * 2);
                #[unroll]
                for i in 0..wrows * 2 {
                    p[i] = 0.0f32;
                }
                #[unroll]
                for j in 0..8usize {
                    let xv = x[mi * kv + xo + j];
                    #[unroll]
                    for ri in 0..wrows {
                        let mut sum = p[ri * 2 + j / 4];
                        #[unroll]
                        for e in 0..4usize {
                            sum += wq[ri * 32 + 4 * j + e] * f32::cast_from(xv.extract(e));
                        }
                        p[ri * 2 + j / 4] = sum;
                    }
                }
                #[unroll]
                for ri in 0..wrows {
                    let mut add = ws[ri * 2] * (p[ri * 2] + p[ri * 2 + 1]);
                    if comptime!(Q::MIN) {
                        add = p[ri * 2] + p[ri * 2 + 1];
                    } else if comptime!(Q::SUB == 16) {
                        add = ws[ri * 2] * p[ri * 2] + ws[ri * 2 + 1] * p[ri * 2 + 1];
                    }
                    acc[ri * m + mi] += select(valid, add, 0.0f32);
                }
            }
        }
        item += u.stride * comptime![shape.per_iter];
    }
}

/// Where a unit of the cube works (the module doc's mapping): its row group `g`, its first work
/// item and the stride to its next, a row's items (0 in a cube past the last row: it does no work
/// but still takes part in the reduction, so every barrier stays uniform) and a row's blocks.
#[derive(CubeType)]
pub(super) struct Units {
    /// The unit's row group.
    pub g: usize,
    /// Its first item of each of its rows.
    pub first: usize,
    /// Units per row group: the stride between a unit's items.
    pub stride: usize,
    /// Items (runs of 32 weights) per row, or 0.
    pub items: usize,
    /// Blocks per weight row.
    pub nb: usize,
}

/// This unit's place in the cube of shape `shape` whose first row is `row0`, for rows of `k`
/// weights of format `Q` (`n` rows in all).
#[cube]
pub(super) fn units<Q: BlockFormat>(
    k: usize,
    n: usize,
    row0: usize,
    #[comptime] shape: CubeShape,
) -> Units {
    let per_group = comptime![shape.lanes / shape.groups];
    let lane = UNIT_POS_X as usize;
    let nb = k / comptime!(Q::BLOCK);
    let mut items = 0usize;
    if row0 < n {
        items = nb * comptime!(Q::RUNS);
    }
    Units {
        g: lane % comptime![shape.groups],
        first: UNIT_POS_Y as usize * per_group + lane / comptime![shape.groups],
        stride: comptime![per_group * shape.warps],
        items,
        nb,
    }
}

/// Item `item + i · stride` of a unit's rows (the `i`-th of an iteration that starts at `item`).
#[derive(CubeType)]
pub(super) struct Item {
    /// Whether it is one of a row's items (past the last, the row's last item is read again and
    /// must add nothing).
    pub valid: bool,
    /// Its block in the row.
    pub b: usize,
    /// Its run in the block.
    pub r: usize,
}

/// The unit `u`'s item `item + i · stride` ([`Item`]), in the order of `L`
/// ([`super::formats::Words::BLOCKS_INNER`]).
#[cube]
pub(super) fn item_at<Q: BlockFormat, L: WordLayout>(u: &Units, item: usize, i: usize) -> Item {
    let next = item + i * u.stride;
    let valid = next < u.items;
    let it = select(valid, next, u.items - 1);
    if comptime!(L::BLOCKS_INNER) {
        Item {
            valid,
            b: it % u.nb,
            r: it / u.nb,
        }
    } else {
        Item {
            valid,
            b: it / comptime!(Q::RUNS),
            r: it % comptime!(Q::RUNS),
        }
    }
}

/// The handle ([`WordLayout::block`]) of block `b` of the unit's row in the group of rows
/// starting at `first`; a row past the last (`n`) reads the last row again (in bounds, never
/// written).
#[cube]
pub(super) fn block_at<Q: BlockFormat, L: WordLayout>(
    u: &Units,
    first: usize,
    n: usize,
    b: usize,
) -> usize {
    L::block::<Q>((first + u.g).min(n - 1) * u.nb + b)
}

/// Sets `a[0..len]` to zero.
#[cube]
pub(super) fn zero(a: &mut Array<f32>, #[comptime] len: usize) {
    #[unroll]
    for i in 0..len {
        a[i] = 0.0f32;
    }
}

/// The launch shape for `desc` and `m` activation rows on `client`'s device: `tuning`'s rows,
/// warps, groups and items per iteration when given and in range (rows and warps 1..=8, groups a
/// power of two dividing the plane size, items 1..=4), else the measured default.
pub fn gemv_shape(
    client: &Client,
    runtime: RuntimeId,
    desc: QuantWeightDesc,
    m: usize,
    tuning: Option<PlanesTuning>,
) -> CubeShape {
    let items = desc.in_features / 32;
    let mut shape = CubeShape::default_for(client, runtime, items, m);
    // Measured on an H200 (PERF.md, session 10; 4096 × 14336, Q4_0 / Q4_K / Q8_0): four row
    // groups per warp (a warp's activation loads then touch 8 cache lines, not 32), with 2 rows ×
    // 8 warps per cube up to 2 activation rows and 4 rows × 4 warps above (each activation value
    // loaded into registers serves 4 weight rows).
    shape.groups = 4.min(shape.lanes);
    (shape.rows, shape.warps) = if m <= 2 { (2, 8) } else { (4, 4) };
    if let Some(t) = tuning.filter(|t| (1..=8).contains(&t.rows) && (1..=8).contains(&t.warps)) {
        (shape.rows, shape.warps) = (t.rows, t.warps);
        if t.groups.is_power_of_two() && shape.lanes.is_multiple_of(t.groups) {
            shape.groups = t.groups;
        }
        if (1..=4).contains(&t.per_iter) {
            shape.per_iter = t.per_iter;
        }
    }
    shape.warps = shape
        .warps
        .min(items.div_ceil(shape.lanes / shape.groups))
        .max(1);
    shape.fit_shared_memory(m)
}

/// Launches the kernel of `desc`'s type: `x` contiguous `[.., in_features]` with `rows` rows
/// (1..=MAX_ROWS), `packed` the words of `desc` (both checked by the caller).
pub(super) fn launch(
    x: CubeTensor,
    packed: CubeTensor,
    desc: QuantWeightDesc,
    rows: usize,
    tuning: Option<PlanesTuning>,
) -> Result<CubeTensor, KernelError> {
    let runtime = x.device.runtime();
    let g = gemv_shape(&x.client, runtime, desc, rows, tuning);
    let l = Launch::new(&x, desc, g);
    // SAFETY: every index stays in bounds: the caller checked that `packed` holds exactly the
    // words of `desc` in its layout (whole blocks, padded to whole groups of 32 when interleaved;
    // a four-byte read's second word is capped at the last one, `formats::load_u32`; a 16-byte
    // read of `formats::GgufVectors` holds words of one block, whose 16-byte multiple size puts
    // it on a 16-byte boundary of the buffer, which CUDA allocates 512-aligned) and `x` has
    // `rows · in_features` elements (a multiple of 32, read four at a time); the kernel decodes
    // rows < out_features only and writes y[mi · n + row] for row < out_features, mi < rows.
    with_format!(desc.ggml_type, Q => with_words!(desc, Q, use_vectors(runtime), L => unsafe {
        quant_gemv_kernel::launch_unchecked::<Q, L>(
            &l.client,
            l.cube_count.clone(),
            l.cube_dim,
            4,
            x.into_buffer_arg(),
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

/// What a launch of either kernel for `desc` with launch shape `g` takes besides its inputs: the
/// output (x's leading dims, `out_features` wide, x's dtype), the cube count and shape.
pub(super) struct Launch {
    pub(super) client: Client,
    pub(super) y: CubeTensor,
    pub(super) cube_count: CubeCount,
    pub(super) cube_dim: CubeDim,
    pub(super) dtype: ElemType,
}

impl Launch {
    pub(super) fn new(x: &CubeTensor, desc: QuantWeightDesc, g: CubeShape) -> Self {
        let client = x.client.clone();
        let out_shape = with_last_dim(x.meta.shape(), desc.out_features);
        let y = empty_device_contiguous_dtype(client.clone(), x.device.clone(), out_shape, x.dtype);
        let cubes = desc.out_features.div_ceil(g.rows * g.groups) as u32;
        Launch {
            cube_count: CubeCountSelection::new(&client, cubes).cube_count(),
            cube_dim: CubeDim::new_2d(g.lanes as u32, g.warps as u32),
            dtype: dtype_to_storage_type(x.dtype),
            client,
            y,
        }
    }
}

/// The launch shape of the gated product ([`quant_gemv_gated_kernel`]) for `desc` (each of the
/// two weights) and `m` activation rows: [`gemv_shape`]'s, with half its rows per cube (each
/// unit decodes a row of both weights, so as many weight rows as the plain product's).
pub(super) fn gated_shape(
    client: &Client,
    runtime: RuntimeId,
    desc: QuantWeightDesc,
    m: usize,
) -> CubeShape {
    let mut shape = gemv_shape(client, runtime, desc, m, None);
    shape.rows = shape.rows.div_ceil(2);
    shape.fit_shared_memory(2 * m)
}

/// Launches the gated product of `desc`'s type: `x` contiguous `[.., in_features]` with `rows`
/// rows (1..=MAX_ROWS), `gate` and `up` the words of `desc` (all checked by the
/// caller).
pub(super) fn launch_gated(
    x: CubeTensor,
    gate: CubeTensor,
    up: CubeTensor,
    desc: QuantWeightDesc,
    rows: usize,
) -> Result<CubeTensor, KernelError> {
    let runtime = x.device.runtime();
    let g = gated_shape(&x.client, runtime, desc, rows);
    let l = Launch::new(&x, desc, g);
    // SAFETY: as in `launch`, for each of the two weights (both exactly the words of
    // `desc`).
    with_format!(desc.ggml_type, Q => with_words!(desc, Q, use_vectors(runtime), L => unsafe {
        quant_gemv_gated_kernel::launch_unchecked::<Q, L>(
            &l.client,
            l.cube_count.clone(),
            l.cube_dim,
            4,
            x.into_buffer_arg(),
            gate.into_buffer_arg(),
            up.into_buffer_arg(),
            l.y.clone().into_buffer_arg(),
            desc.in_features,
            desc.out_features,
            crate::cpu::SQRT_2_OVER_PI as f32,
            crate::cpu::GELU_CUBIC as f32,
            g,
            rows,
            l.dtype,
        )
    }))??;
    Ok(l.y)
}
