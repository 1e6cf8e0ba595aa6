//! Dequantizes a packed weight on the device: the whole weight as a dense `[out_features,
//! in_features]` float tensor (the large-batch path and the transposed product use it before
//! Burn's matmul), or some of its rows (an embedding lookup). One kernel per task, generic over
//! the block format; Q6_K's aligned planes have their own.

use burn::backend::cubecl::dtype_to_storage_type;
use burn::tensor::{DType, Shape};
use burn_cubecl::{ops::numeric::empty_device_contiguous_dtype, tensor::CubeTensor};
use cubecl::{calculate_cube_count_elemwise, prelude::*};

use super::KernelError;
use super::decode::sign_extend;
use super::formats::{
    BlockFormat, GgufWords, WordLayout, codes, load_byte, load_f16, unpack, with_format, with_words,
};
use crate::quant::q6k::planes::PlaneOffsets;
use crate::quant::{PackedLayout, QuantWeightDesc};

/// The 32 weights of run `r` of the block `bb`, written to `out[o .. o + 32]`: ggml's
/// values bit for bit (`scale · code` is exact, so `scale · code − min` rounds once).
#[cube]
fn write_run<F: Float, Q: BlockFormat, L: WordLayout>(
    w: &[u32],
    bb: usize,
    r: usize,
    out: &mut [F],
    o: usize,
) {
    let s = Q::scales::<L>(w, bb, r);
    let mut q = Array::<u32>::new(8usize);
    codes::<Q, L>(w, bb, r, &mut q);
    #[unroll]
    for i in 0..32usize {
        let mut d = s.d1;
        let mut mn = s.m1;
        if i < 16 {
            d = s.d0;
            mn = s.m0;
        }
        let mut v = d * unpack(&q, i);
        if comptime!(Q::MIN) {
            v -= mn;
        }
        out[o + i] = F::cast_from(v);
    }
}

/// One run (32 weights) per unit: run `item % RUNS` of block `item / RUNS`, the blocks row-major
/// over the whole weight.
#[cube(launch)]
fn quant_dequantize_kernel<F: Float, Q: BlockFormat, L: WordLayout>(
    w: &[u32],
    out: &mut [F],
    n_items: usize,
    #[define(F)] _dtype: ElemType,
) {
    let item = ABSOLUTE_POS;
    if item >= n_items {
        terminate!();
    }
    let runs = comptime!(Q::RUNS);
    let t = item / runs;
    let r = item % runs;
    write_run::<F, Q, L>(
        w,
        L::block::<Q>(t),
        r,
        out,
        t * comptime!(Q::BLOCK) + 32 * r,
    );
}

/// Rows `ids` of the weight (an embedding lookup), one run per unit: `out[p, ..]` is row
/// `ids[p]` dequantized; an id past the weight's `n` rows gives a row of NaN (never a read out of
/// bounds).
#[cube(launch)]
fn quant_rows_kernel<F: Float, Q: BlockFormat, L: WordLayout>(
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
    let per_row = k / 32;
    let p = item / per_row;
    let e = item % per_row; // the run within the row
    let id = ids[p] as usize;
    let o = p * k + 32 * e;
    if id < n {
        let runs = comptime!(Q::RUNS);
        let t = id * (k / comptime!(Q::BLOCK)) + e / runs;
        write_run::<F, Q, L>(w, L::block::<Q>(t), e % runs, out, o);
    } else {
        #[unroll]
        for i in 0..32usize {
            // a quiet NaN from its bits (WGSL has no NaN literal)
            out[o + i] = F::cast_from(f32::reinterpret(0x7FC0_0000u32));
        }
    }
}

/// The planes layout, one work item per thread as in the generic kernel above (four weights
/// 32 apart, consecutive items writing consecutive outputs, so the stores coalesce): the bytes
/// come from the four planes instead of one 210-byte block, each read at its byte address (as
/// byte `c` of a GGUF-layout block at byte 0).
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
    let qa = load_byte::<GgufWords>(w, 0, ql);
    let qb = load_byte::<GgufWords>(w, 0, ql + 32);
    let qh = load_byte::<GgufWords>(w, 0, 4 * qh_base + 64 * t + 32 * h + l);
    let sc = 4 * sc_base + 16 * t + 8 * h + l / 16;
    let d = load_f16::<GgufWords>(w, 0, 4 * d_base + 2 * t);
    let q1 = i32::cast_from((qa & 15u32) | ((qh & 3u32) << 4u32)) - 32i32;
    let q2 = i32::cast_from((qb & 15u32) | (((qh >> 2u32) & 3u32) << 4u32)) - 32i32;
    let q3 = i32::cast_from((qa >> 4u32) | (((qh >> 4u32) & 3u32) << 4u32)) - 32i32;
    let q4 = i32::cast_from((qb >> 4u32) | (((qh >> 6u32) & 3u32) << 4u32)) - 32i32;
    let o = 256 * t + 128 * h + l;
    out[o] = F::cast_from(
        (d * f32::cast_from(sign_extend(load_byte::<GgufWords>(w, 0, sc)))) * f32::cast_from(q1),
    );
    out[o + 32] = F::cast_from(
        (d * f32::cast_from(sign_extend(load_byte::<GgufWords>(w, 0, sc + 2))))
            * f32::cast_from(q2),
    );
    out[o + 64] = F::cast_from(
        (d * f32::cast_from(sign_extend(load_byte::<GgufWords>(w, 0, sc + 4))))
            * f32::cast_from(q3),
    );
    out[o + 96] = F::cast_from(
        (d * f32::cast_from(sign_extend(load_byte::<GgufWords>(w, 0, sc + 6))))
            * f32::cast_from(q4),
    );
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
    let n_items = desc.blocks() * desc.block_size() / 32;
    if n_items == 0 {
        return Ok(out);
    }
    let cube_dim = CubeDim::new(&client, n_items);
    let cube_count = calculate_cube_count_elemwise(&client, n_items, cube_dim);
    with_format!(desc.ggml_type, Q => with_words!(desc, Q, false, L => quant_dequantize_kernel::launch::<Q, L>(
        &client,
        cube_count,
        cube_dim,
        packed.into_buffer_arg(),
        out.clone().into_buffer_arg(),
        n_items,
        elem,
    )))??;
    Ok(out)
}

/// Launches the row-lookup kernel: rows `ids` (a contiguous U32 tensor of any shape) of the
/// weight `desc` (either layout of the generic kernels), as `ids.shape + [in_features]` of `dtype`.
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
    let n_items = n_ids * desc.in_features / 32;
    if n_items == 0 {
        return Ok(out);
    }
    let cube_dim = CubeDim::new(&client, n_items);
    let cube_count = calculate_cube_count_elemwise(&client, n_items, cube_dim);
    let elem = dtype_to_storage_type(dtype);
    with_format!(desc.ggml_type, Q => with_words!(desc, Q, false, L => quant_rows_kernel::launch::<Q, L>(
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
    )))??;
    Ok(out)
}

/// An empty contiguous tensor of `like`'s dtype and device.
pub(super) fn empty_like(like: &CubeTensor, shape: Shape) -> CubeTensor {
    empty_device_contiguous_dtype(like.client.clone(), like.device.clone(), shape, like.dtype)
}
