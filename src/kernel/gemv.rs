//! The fused matrix-vector kernel for every block format in the GGUF layout
//! ([`crate::quant::PackedLayout::Gguf`]), written once and instantiated per format (the block
//! format is the kernel's type parameter, [`BlockFormat`]): `y[m, n] = Σ_k x[m, k] · W[n, k]` for
//! up to [`super::MAX_ROWS`] activation rows, reading every weight byte once for all rows.
//!
//! Mapping: a cube holds `ROWS_PER_CUBE` output rows (y dimension) of `lanes` units each (x
//! dimension). A row's work is its blocks' chunks (eight weights each); the row's units stride
//! over them, accumulate in f32 registers, one per activation row, and reduce with `plane_sum`
//! where the device has plane operations, else through shared memory.

use burn::backend::cubecl::dtype_to_storage_type;
use burn_cubecl::{ops::numeric::empty_device_contiguous_dtype, tensor::CubeTensor};
use cubecl::{prelude::*, server::CubeCountSelection};

use super::formats::{BlockFormat, with_format};
use super::{KernelError, lanes_for};
use crate::dims::with_last_dim;
use crate::quant::QuantWeightDesc;

/// Output rows per cube.
pub const ROWS_PER_CUBE: usize = 4;

#[cube(launch)]
pub(crate) fn quant_gemv_kernel<F: Float, Q: BlockFormat>(
    x: &[F],
    w: &[u32],
    y: &mut [F],
    k: usize,
    n: usize,
    #[comptime] m: usize,
    #[comptime] lanes: usize,
    #[comptime] use_plane: bool,
    #[define(F)] _dtype: ElemType,
) {
    let block = comptime!(Q::BLOCK);
    let bytes = comptime!(Q::BYTES);
    let chunks = comptime!(Q::CHUNKS);
    let gap = comptime!(Q::GAP);
    let lane = UNIT_POS_X as usize;
    let row = CUBE_POS * ROWS_PER_CUBE + UNIT_POS_Y as usize;
    let nb = k / block;
    // Rows past the end still take part in the reduction (uniform control flow), with no work.
    let valid = row < n;
    let mut items = 0usize;
    if valid {
        items = nb * chunks;
    }
    let mut acc = Array::<f32>::new(m);
    #[unroll]
    for mi in 0..m {
        acc[mi] = 0.0f32;
    }
    let row_byte = row * nb * bytes;
    let mut item = lane;
    while item < items {
        let b = item / chunks;
        let ch = Q::decode(w, row_byte + b * bytes, item % chunks);
        let e = b * block + ch.offset;
        #[unroll]
        for mi in 0..m {
            let xa = mi * k + e;
            let xb = xa + gap;
            acc[mi] += ch.lo.extract(0usize) * f32::cast_from(x[xa])
                + ch.lo.extract(1usize) * f32::cast_from(x[xa + 1])
                + ch.lo.extract(2usize) * f32::cast_from(x[xa + 2])
                + ch.lo.extract(3usize) * f32::cast_from(x[xa + 3])
                + ch.hi.extract(0usize) * f32::cast_from(x[xb])
                + ch.hi.extract(1usize) * f32::cast_from(x[xb + 1])
                + ch.hi.extract(2usize) * f32::cast_from(x[xb + 2])
                + ch.hi.extract(3usize) * f32::cast_from(x[xb + 3]);
        }
        item += lanes;
    }

    if use_plane {
        #[unroll]
        for mi in 0..m {
            let total = plane_sum(acc[mi]);
            if lane == 0 && valid {
                y[mi * n + row] = F::cast_from(total);
            }
        }
    } else {
        let mut partial = Shared::<[f32]>::new_slice(ROWS_PER_CUBE * lanes);
        let base = UNIT_POS_Y as usize * lanes;
        #[unroll]
        for mi in 0..m {
            partial[base + lane] = acc[mi];
            sync_cube();
            // A runtime value: the same for every unit, so the barriers stay uniform.
            let mut stride = (CUBE_DIM_X / 2) as usize;
            while stride > 0 {
                if lane < stride {
                    partial[base + lane] += partial[base + lane + stride];
                }
                sync_cube();
                stride /= 2;
            }
            if lane == 0 && valid {
                y[mi * n + row] = F::cast_from(partial[base]);
            }
            sync_cube();
        }
    }
}

/// Launches the kernel of `desc`'s type: `x` contiguous `[.., in_features]` with `rows` rows
/// (1..=MAX_ROWS), `packed` the GGUF-layout words of `desc` (both checked by the caller).
pub(super) fn launch(
    x: CubeTensor,
    packed: CubeTensor,
    desc: QuantWeightDesc,
    rows: usize,
) -> Result<CubeTensor, KernelError> {
    let client = x.client.clone();
    let out_shape = with_last_dim(x.meta.shape(), desc.out_features);
    let y = empty_device_contiguous_dtype(client.clone(), x.device.clone(), out_shape, x.dtype);
    let (lanes, use_plane) = lanes_for(&client);
    let cubes = desc.out_features.div_ceil(ROWS_PER_CUBE) as u32;
    let cube_count = CubeCountSelection::new(&client, cubes).cube_count();
    let cube_dim = CubeDim::new_2d(lanes as u32, ROWS_PER_CUBE as u32);
    let dtype = dtype_to_storage_type(x.dtype);
    with_format!(desc.ggml_type, Q => quant_gemv_kernel::launch::<Q>(
        &client,
        cube_count,
        cube_dim,
        x.into_buffer_arg(),
        packed.into_buffer_arg(),
        y.clone().into_buffer_arg(),
        desc.in_features,
        desc.out_features,
        rows,
        lanes,
        use_plane,
        dtype,
    ))?;
    Ok(y)
}
