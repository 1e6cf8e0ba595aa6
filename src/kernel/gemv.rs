//! The fused matrix-vector kernel for every block format in the GGUF layout
//! ([`crate::quant::PackedLayout::Gguf`]), written once and instantiated per format (the block
//! format is the kernel's type parameter, [`BlockFormat`]): `y[m, n] = Σ_k x[m, k] · W[n, k]` for
//! up to [`super::MAX_ROWS`] activation rows, reading every weight byte once for all rows.
//!
//! Mapping (the planes kernel's): a cube owns `rows` output rows and `warps × lanes` units. A
//! row's work items are its blocks' chunks (eight weights each, [`super::formats::Chunk`]); the
//! cube's units stride over them together, and at each item a unit decodes that chunk of every
//! row the cube owns, then reads each activation row's eight matching values once (two
//! four-wide loads) for all of those rows. Partial sums stay in f32 registers, one per (weight
//! row, activation row), and meet in [`store_sums`].

use burn::backend::cubecl::dtype_to_storage_type;
use burn_cubecl::{ops::numeric::empty_device_contiguous_dtype, tensor::CubeTensor};
use cubecl::{prelude::*, server::CubeCountSelection};

use cubecl::client::Client;
use cubecl::device::RuntimeId;

use super::formats::{BlockFormat, with_format};
use super::reduce::{CubeShape, store_sums};
use super::{KernelError, PlanesTuning};
use crate::dims::with_last_dim;
use crate::quant::QuantWeightDesc;

#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn quant_gemv_kernel<F: Float, V: Size, Q: BlockFormat>(
    x: &[Vector<F, V>],
    w: &[u32],
    y: &mut [F],
    k: usize,
    n: usize,
    #[comptime] m: usize,
    #[comptime] rows: usize,
    #[comptime] lanes: usize,
    #[comptime] warps: usize,
    #[comptime] use_plane: bool,
    #[define(F)] _dtype: ElemType,
) {
    let block = comptime!(Q::BLOCK);
    let bytes = comptime!(Q::BYTES);
    let chunks = comptime!(Q::CHUNKS);
    let gap = comptime!(Q::GAP / 4);
    let threads = comptime![lanes * warps];
    let tid = UNIT_POS_Y as usize * lanes + UNIT_POS_X as usize;
    let row0 = CUBE_POS * rows;
    let nb = k / block;
    let kv = k / 4;
    let row_bytes = nb * bytes;
    // Cubes past the last row (a cube count rounded up by the runtime) do no work but still take
    // part in the reduction, so every barrier stays uniform.
    let mut items = 0usize;
    if row0 < n {
        items = nb * chunks;
    }
    let mut acc = Array::<f32>::new(rows * m);
    #[unroll]
    for i in 0..rows * m {
        acc[i] = 0.0f32;
    }
    let mut wv = Array::<f32>::new(rows * 8);
    let mut item = tid;
    while item < items {
        let b = item / chunks;
        let c = item % chunks;
        let mut offset = 0usize;
        #[unroll]
        for r in 0..rows {
            // A row past the end decodes the last row again (in bounds, never written).
            let row = (row0 + r).min(n - 1);
            let ch = Q::decode(w, row * row_bytes + b * bytes, c);
            offset = ch.offset;
            #[unroll]
            for j in 0..4usize {
                wv[r * 8 + j] = ch.lo.extract(j);
                wv[r * 8 + 4 + j] = ch.hi.extract(j);
            }
        }
        let xo = (b * block + offset) / 4;
        #[unroll]
        for mi in 0..m {
            let lo = x[mi * kv + xo];
            let hi = x[mi * kv + xo + gap];
            #[unroll]
            for r in 0..rows {
                let mut sum = 0.0f32;
                #[unroll]
                for j in 0..4usize {
                    sum += wv[r * 8 + j] * f32::cast_from(lo.extract(j))
                        + wv[r * 8 + 4 + j] * f32::cast_from(hi.extract(j));
                }
                acc[r * m + mi] += sum;
            }
        }
        item += threads;
    }
    store_sums::<F>(&acc, y, row0, n, rows, m, lanes, warps, use_plane);
}

/// The launch shape for `desc` and `m` activation rows on `client`'s device: `tuning`'s rows
/// and warps when given and in range (1..=8), else the measured default.
pub fn gemv_shape(
    client: &Client,
    runtime: RuntimeId,
    desc: QuantWeightDesc,
    m: usize,
    tuning: Option<PlanesTuning>,
) -> CubeShape {
    let items = desc.in_features / 8;
    let mut shape = CubeShape::default_for(client, runtime, items, m);
    // Measured on an H200 (PERF.md, session 8; 4096 × 14336, every format): this kernel runs
    // fastest with 4 warps at every M (the planes kernel's single warp above 2 activation rows
    // is up to 2.6× slower here at M = 8) and, on CUDA, 2 rows per cube (M = 1 and 8; wgpu keeps
    // the 4 rows measured there).
    shape.warps = items.div_ceil(shape.lanes).clamp(1, 4);
    if runtime == RuntimeId::Cuda {
        shape.rows = 2;
    }
    if let Some(t) = tuning.filter(|t| (1..=8).contains(&t.rows) && (1..=8).contains(&t.warps)) {
        (shape.rows, shape.warps) = (t.rows, t.warps);
    }
    shape.fit_shared_memory(m)
}

/// Launches the kernel of `desc`'s type: `x` contiguous `[.., in_features]` with `rows` rows
/// (1..=MAX_ROWS), `packed` the GGUF-layout words of `desc` (both checked by the caller).
pub(super) fn launch(
    x: CubeTensor,
    packed: CubeTensor,
    desc: QuantWeightDesc,
    rows: usize,
    tuning: Option<PlanesTuning>,
) -> Result<CubeTensor, KernelError> {
    let client = x.client.clone();
    let out_shape = with_last_dim(x.meta.shape(), desc.out_features);
    let y = empty_device_contiguous_dtype(client.clone(), x.device.clone(), out_shape, x.dtype);
    let g = gemv_shape(&client, x.device.runtime(), desc, rows, tuning);
    let cubes = desc.out_features.div_ceil(g.rows) as u32;
    let cube_count = CubeCountSelection::new(&client, cubes).cube_count();
    let cube_dim = CubeDim::new_2d(g.lanes as u32, g.warps as u32);
    let dtype = dtype_to_storage_type(x.dtype);
    // SAFETY: every index stays in bounds: the caller checked that `packed` holds exactly the
    // GGUF bytes of `desc` (whole blocks; a four-byte read straddling a word reads the next word
    // only when the bytes reach into it) and `x` has `rows · in_features` elements (a multiple of
    // 32, read four at a time); the kernel decodes rows < out_features only and writes
    // y[mi · n + row] for row < out_features, mi < rows.
    with_format!(desc.ggml_type, Q => unsafe {
        quant_gemv_kernel::launch_unchecked::<Q>(
            &client,
            cube_count,
            cube_dim,
            4,
            x.into_buffer_arg(),
            packed.into_buffer_arg(),
            y.clone().into_buffer_arg(),
            desc.in_features,
            desc.out_features,
            rows,
            g.rows,
            g.lanes,
            g.warps,
            g.use_plane,
            dtype,
        )
    })?;
    Ok(y)
}
