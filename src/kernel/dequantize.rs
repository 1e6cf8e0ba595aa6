//! Dequantizes a packed weight on the device: the whole weight as a dense `[out_features,
//! in_features]` float tensor (the large-batch path and the transposed product use it before
//! Burn's matmul), or some of its rows (an embedding lookup). One kernel per task, generic over
//! the block format; Q6_K's aligned planes have their own.

use burn::backend::cubecl::dtype_to_storage_type;
use burn::tensor::{DType, Shape};
use burn_cubecl::{ops::numeric::empty_device_contiguous_dtype, tensor::CubeTensor};
use cubecl::{calculate_cube_count_elemwise, prelude::*};

use super::KernelError;
use super::decode::{load_byte, load_f16, sign_extend};
use super::formats::{BlockFormat, with_format};
use crate::quant::q6k::planes::PlaneOffsets;
use crate::quant::{PackedLayout, QuantWeightDesc};

/// One chunk (eight weights) per unit: chunk `item % CHUNKS` of block `item / CHUNKS`, the
/// blocks row-major over the whole weight, so consecutive units write neighbouring outputs.
#[cube(launch)]
fn quant_dequantize_kernel<F: Float, Q: BlockFormat>(
    w: &[u32],
    out: &mut [F],
    n_items: usize,
    #[define(F)] _dtype: ElemType,
) {
    let item = ABSOLUTE_POS;
    if item >= n_items {
        terminate!();
    }
    let chunks = comptime!(Q::CHUNKS);
    let t = item / chunks;
    let ch = Q::decode(w, t * comptime!(Q::BYTES), item % chunks);
    let o = t * comptime!(Q::BLOCK) + ch.offset;
    let o2 = o + comptime!(Q::GAP);
    #[unroll]
    for i in 0..4usize {
        out[o + i] = F::cast_from(ch.lo.extract(i));
        out[o2 + i] = F::cast_from(ch.hi.extract(i));
    }
}

/// Rows `ids` of the weight (an embedding lookup), one chunk per unit: `out[p, ..]` is row
/// `ids[p]` dequantized; an id past the weight's `n` rows gives a row of NaN (never a read out of
/// bounds).
#[cube(launch)]
fn quant_rows_kernel<F: Float, Q: BlockFormat>(
    w: &[u32],
    ids: &[u32],
    out: &mut [F],
    k: usize,
    n: usize,
    n_items: usize,
    #[define(F)] _dtype: ElemType,
) {
    let item = ABSOLUTE_POS;
    if item >= n_items {
        terminate!();
    }
    let chunks = comptime!(Q::CHUNKS);
    let per_row = (k / comptime!(Q::BLOCK)) * chunks;
    let p = item / per_row;
    let r = item % per_row;
    let id = ids[p] as usize;
    let b = r / chunks;
    let o = p * k + b * comptime!(Q::BLOCK);
    if id < n {
        let t = id * (k / comptime!(Q::BLOCK)) + b;
        let ch = Q::decode(w, t * comptime!(Q::BYTES), r % chunks);
        let o1 = o + ch.offset;
        let o2 = o1 + comptime!(Q::GAP);
        #[unroll]
        for i in 0..4usize {
            out[o1 + i] = F::cast_from(ch.lo.extract(i));
            out[o2 + i] = F::cast_from(ch.hi.extract(i));
        }
    } else {
        // The chunk's eight outputs, wherever they sit in the block: fill the whole block once.
        let c = r % chunks;
        if c == 0 {
            for i in 0..comptime!(Q::BLOCK) {
                // a quiet NaN from its bits (WGSL has no NaN literal)
                out[o + i] = F::cast_from(f32::reinterpret(0x7FC0_0000u32));
            }
        }
    }
}

/// The planes layout, one work item per thread as in the GGUF-layout kernel above (four weights
/// 32 apart, consecutive items writing consecutive outputs, so the stores coalesce): the bytes
/// come from the four planes instead of one 210-byte block.
#[cube(launch_unchecked)]
fn q6k_dequantize_planes_kernel<F: Float>(
    w: &[u32],
    out: &mut [F],
    n_items: usize,
    qh_base: usize,
    sc_base: usize,
    d_base: usize,
    #[define(F)] _dtype: ElemType,
) {
    let item = ABSOLUTE_POS;
    if item >= n_items {
        terminate!();
    }
    let t = item / 64; // block, row-major over the whole weight
    let h = (item / 32) % 2;
    let l = item % 32;
    let ql = 16 + 128 * t + 64 * h + l; // byte offsets (the header is 16 bytes)
    let qa = load_byte(w, ql);
    let qb = load_byte(w, ql + 32);
    let qh = load_byte(w, 4 * qh_base + 64 * t + 32 * h + l);
    let sc = 4 * sc_base + 16 * t + 8 * h + l / 16;
    let d = load_f16(w, 4 * d_base + 2 * t);
    let q1 = i32::cast_from((qa & 15u32) | ((qh & 3u32) << 4u32)) - 32i32;
    let q2 = i32::cast_from((qb & 15u32) | (((qh >> 2u32) & 3u32) << 4u32)) - 32i32;
    let q3 = i32::cast_from((qa >> 4u32) | (((qh >> 4u32) & 3u32) << 4u32)) - 32i32;
    let q4 = i32::cast_from((qb >> 4u32) | (((qh >> 6u32) & 3u32) << 4u32)) - 32i32;
    let o = 256 * t + 128 * h + l;
    out[o] = F::cast_from((d * f32::cast_from(sign_extend(load_byte(w, sc)))) * f32::cast_from(q1));
    out[o + 32] =
        F::cast_from((d * f32::cast_from(sign_extend(load_byte(w, sc + 2)))) * f32::cast_from(q2));
    out[o + 64] =
        F::cast_from((d * f32::cast_from(sign_extend(load_byte(w, sc + 4)))) * f32::cast_from(q3));
    out[o + 96] =
        F::cast_from((d * f32::cast_from(sign_extend(load_byte(w, sc + 6)))) * f32::cast_from(q4));
}

/// Launches the dequantize kernel of `desc`'s type and layout into a fresh `[out_features,
/// in_features]` tensor of `dtype`; `packed` holds `desc`'s words (checked by the caller).
pub(super) fn launch(
    packed: CubeTensor,
    desc: QuantWeightDesc,
    dtype: DType,
) -> Result<CubeTensor, KernelError> {
    let client = packed.client.clone();
    let out = empty_device_contiguous_dtype(
        client.clone(),
        packed.device.clone(),
        Shape::from(vec![desc.out_features, desc.in_features]),
        dtype,
    );
    let elem = dtype_to_storage_type(dtype);
    if desc.layout == PackedLayout::Q6kPlanes {
        let n_items = desc.blocks() * 64;
        if n_items == 0 {
            return Ok(out);
        }
        let cube_dim = CubeDim::new(&client, n_items);
        let cube_count = calculate_cube_count_elemwise(&client, n_items, cube_dim);
        let o = PlaneOffsets::new(desc.blocks());
        // SAFETY: the caller's length check makes `packed` exactly the planes of `desc`; item
        // i < n_items reads bytes of block i / 64 in each plane and writes four of its outputs.
        unsafe {
            q6k_dequantize_planes_kernel::launch_unchecked(
                &client,
                cube_count,
                cube_dim,
                packed.into_buffer_arg(),
                out.clone().into_buffer_arg(),
                n_items,
                o.qh,
                o.scales,
                o.d,
                elem,
            );
        }
        return Ok(out);
    }
    let n_items = desc.blocks() * desc.block_size() / 8;
    if n_items == 0 {
        return Ok(out);
    }
    let cube_dim = CubeDim::new(&client, n_items);
    let cube_count = calculate_cube_count_elemwise(&client, n_items, cube_dim);
    with_format!(desc.ggml_type, Q => quant_dequantize_kernel::launch::<Q>(
        &client,
        cube_count,
        cube_dim,
        packed.into_buffer_arg(),
        out.clone().into_buffer_arg(),
        n_items,
        elem,
    ))?;
    Ok(out)
}

/// Launches the row-lookup kernel: rows `ids` (a contiguous U32 tensor of any shape) of the
/// GGUF-layout weight `desc`, as `ids.shape + [in_features]` of `dtype`.
pub(super) fn launch_rows(
    packed: CubeTensor,
    desc: QuantWeightDesc,
    ids: CubeTensor,
    dtype: DType,
) -> Result<CubeTensor, KernelError> {
    let client = packed.client.clone();
    let n_ids = ids.meta.num_elements();
    let mut shape = ids.meta.shape().to_vec();
    shape.push(desc.in_features);
    let out = empty_device_contiguous_dtype(
        client.clone(),
        packed.device.clone(),
        Shape::from(shape),
        dtype,
    );
    let n_items = n_ids * desc.in_features / 8;
    if n_items == 0 {
        return Ok(out);
    }
    let cube_dim = CubeDim::new(&client, n_items);
    let cube_count = calculate_cube_count_elemwise(&client, n_items, cube_dim);
    let elem = dtype_to_storage_type(dtype);
    with_format!(desc.ggml_type, Q => quant_rows_kernel::launch::<Q>(
        &client,
        cube_count,
        cube_dim,
        packed.into_buffer_arg(),
        ids.into_buffer_arg(),
        out.clone().into_buffer_arg(),
        desc.in_features,
        desc.out_features,
        n_items,
        elem,
    ))?;
    Ok(out)
}

/// An empty contiguous tensor of `like`'s dtype and device.
pub(super) fn empty_like(like: &CubeTensor, shape: Shape) -> CubeTensor {
    empty_device_contiguous_dtype(like.client.clone(), like.device.clone(), shape, like.dtype)
}
