//! Dequantizes a packed Q6_K weight to a dense `[out_features, in_features]` float tensor on the
//! device (the large-batch path and the transposed product use it before Burn's matmul).

use burn::tensor::{DType, Shape};
use burn_cubecl::{
    CubeRuntime, kernel::into_contiguous, ops::numeric::empty_device_contiguous_dtype,
    tensor::CubeTensor,
};
use cubecl::{calculate_cube_count_elemwise, prelude::*};

use super::decode::decode_item;
use crate::ops::Q6kShape;

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

/// The packed weight as a dense `[out_features, in_features]` tensor of `dtype`.
pub fn q6k_dequantize<R: CubeRuntime>(
    packed: CubeTensor<R>,
    shape: Q6kShape,
    dtype: DType,
) -> Result<CubeTensor<R>, String> {
    super::check_packed(&packed, shape)?;
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
