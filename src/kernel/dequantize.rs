//! Dequantizes a packed Q6_K weight to a dense `[out_features, in_features]` float tensor on the
//! device (the large-batch path and the transposed product use it before Burn's matmul).

use burn::tensor::{DType, Shape};
use burn_cubecl::{
    CubeRuntime, kernel::into_contiguous, ops::numeric::empty_device_contiguous_dtype,
    tensor::CubeTensor,
};
use cubecl::{calculate_cube_count_elemwise, prelude::*};

use super::decode::{decode_item, load_byte, load_f16, sign_extend};
use crate::ops::Q6kShape;
use crate::quant::{Q6kLayout, planes::PlaneOffsets};

#[cube(launch)]
fn q6k_dequantize_kernel<F: Float>(
    w: &Array<u32>,
    out: &mut Array<F>,
    k: usize,
    n_items: usize,
    #[define(F)] _dtype: StorageType,
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
    out[o] = F::cast_from(wv[0]);
    out[o + 32] = F::cast_from(wv[1]);
    out[o + 64] = F::cast_from(wv[2]);
    out[o + 96] = F::cast_from(wv[3]);
}

/// The planes layout, one work item per thread as in the GGUF-layout kernel above (four weights
/// 32 apart, consecutive items writing consecutive outputs, so the stores coalesce): the bytes
/// come from the four planes instead of one 210-byte block.
#[cube(launch_unchecked)]
fn q6k_dequantize_planes_kernel<F: Float>(
    w: &Array<u32>,
    out: &mut Array<F>,
    n_items: usize,
    qh_base: usize,
    sc_base: usize,
    d_base: usize,
    #[define(F)] _dtype: StorageType,
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

/// The packed weight as a dense `[out_features, in_features]` tensor of `dtype`.
pub fn q6k_dequantize<R: CubeRuntime>(
    packed: CubeTensor<R>,
    shape: Q6kShape,
    dtype: DType,
) -> Result<CubeTensor<R>, String> {
    let layout = super::check_packed(&packed, shape)?;
    let packed = into_contiguous(packed);
    let client = packed.client.clone();
    let out = empty_device_contiguous_dtype(
        client.clone(),
        packed.device.clone(),
        Shape::from(vec![shape.out_features, shape.in_features]),
        dtype,
    );
    let n_items = shape.out_features * shape.blocks_per_row() * 64;
    if n_items == 0 {
        return Ok(out);
    }
    if layout == Q6kLayout::Planes {
        let o = PlaneOffsets::new(shape.blocks());
        let cube_dim = CubeDim::new(&client, n_items);
        let cube_count = calculate_cube_count_elemwise(&client, n_items, cube_dim);
        // SAFETY: the caller's length check makes `packed` exactly the planes of `shape`; item
        // i < n_items reads bytes of block i / 64 in each plane and writes four of its outputs.
        unsafe {
            q6k_dequantize_planes_kernel::launch_unchecked::<R>(
                &client,
                cube_count,
                cube_dim,
                packed.into_array_arg(),
                out.clone().into_array_arg(),
                n_items,
                o.qh,
                o.scales,
                o.d,
                dtype.into(),
            );
        }
        return Ok(out);
    }
    let cube_dim = CubeDim::new(&client, n_items);
    let cube_count = calculate_cube_count_elemwise(&client, n_items, cube_dim);
    q6k_dequantize_kernel::launch::<R>(
        &client,
        cube_count,
        cube_dim,
        packed.into_array_arg(),
        out.clone().into_array_arg(),
        shape.in_features,
        n_items,
        dtype.into(),
    );
    Ok(out)
}
