//! Dequantizes a packed Q6_K weight to a dense `[out_features, in_features]` float tensor on the
//! device (the large-batch path and the transposed product use it before Burn's matmul).

use burn::backend::cubecl::dtype_to_storage_type;
use burn::tensor::{DType, Shape};
use burn_cubecl::{ops::numeric::empty_device_contiguous_dtype, tensor::CubeTensor};
use cubecl::{calculate_cube_count_elemwise, prelude::*};

use super::decode::{decode_item, load_byte, load_f16, sign_extend};
use crate::quant::q6k::planes::PlaneOffsets;
use crate::quant::{PackedLayout, QuantWeightDesc};

#[cube(launch)]
fn q6k_dequantize_kernel<F: Float>(
    w: &[u32],
    out: &mut [F],
    k: usize,
    n_items: usize,
    #[define(F)] _dtype: ElemType,
) {
    let item = ABSOLUTE_POS;
    if item >= n_items {
        terminate!();
    }
    let nb = k / 256;
    let row = item / (nb * 64);
    let rem = item % (nb * 64);
    let b = rem / 64;
    let h = (rem / 32) % 2;
    let l = rem % 32;
    let wv = decode_item(w, (row * nb + b) * 210, h, l);
    let o = row * k + b * 256 + 128 * h + l;
    out[o] = F::cast_from(wv.extract(0usize));
    out[o + 32] = F::cast_from(wv.extract(1usize));
    out[o + 64] = F::cast_from(wv.extract(2usize));
    out[o + 96] = F::cast_from(wv.extract(3usize));
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

/// Launches the dequantize kernel of `desc`'s layout into a fresh `[out_features,
/// in_features]` tensor of `dtype`; `packed` holds `desc`'s words (checked by the caller).
pub(super) fn launch(packed: CubeTensor, desc: QuantWeightDesc, dtype: DType) -> CubeTensor {
    let client = packed.client.clone();
    let out = empty_device_contiguous_dtype(
        client.clone(),
        packed.device.clone(),
        Shape::from(vec![desc.out_features, desc.in_features]),
        dtype,
    );
    let n_items = desc.out_features * desc.blocks_per_row() * 64;
    if n_items == 0 {
        return out;
    }
    let cube_dim = CubeDim::new(&client, n_items);
    let cube_count = calculate_cube_count_elemwise(&client, n_items, cube_dim);
    let elem = dtype_to_storage_type(dtype);
    match desc.layout {
        PackedLayout::Q6kPlanes => {
            let o = PlaneOffsets::new(desc.blocks());
            // SAFETY: the caller's length check makes `packed` exactly the planes of `desc`;
            // item i < n_items reads bytes of block i / 64 in each plane and writes four of its
            // outputs.
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
        }
        PackedLayout::Gguf => q6k_dequantize_kernel::launch(
            &client,
            cube_count,
            cube_dim,
            packed.into_buffer_arg(),
            out.clone().into_buffer_arg(),
            desc.in_features,
            n_items,
            elem,
        ),
    }
    out
}

/// An empty contiguous tensor of `like`'s dtype and device.
pub(super) fn empty_like(like: &CubeTensor, shape: Shape) -> CubeTensor {
    empty_device_contiguous_dtype(like.client.clone(), like.device.clone(), shape, like.dtype)
}
