//! NEOX rotary position embedding, one pair of a head per unit, the angles' cosines and sines
//! read from device tables (no upload per call).

use burn::backend::cubecl::dtype_to_storage_type;
use burn_cubecl::{kernel::cast, kernel::into_contiguous, tensor::CubeTensor};
use cubecl::{calculate_cube_count_elemwise, prelude::*};

use super::KernelError;
use super::dequantize::empty_like;
use super::positions::{Start, first_position};

/// Unit `item` turns pair `item % half` of row `item / half` (rows are `[.., t, heads]`
/// flattened, `2 · half` values each) at position `start (+ offset[0]) + (row / heads) % t`,
/// at most the tables' last (`positions − 1`: a device offset is not checked on the host).
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
fn rope_kernel<F: Float>(
    x: &[F],
    cos: &[F],
    sin: &[F],
    y: &mut [F],
    n_items: usize,
    heads: usize,
    t: usize,
    half: usize,
    start: usize,
    positions: usize,
    offset: ComptimeOption<&[u32]>,
    #[define(F)] _dtype: ElemType,
) {
    let item = ABSOLUTE_POS;
    if item >= n_items {
        terminate!();
    }
    let row = item / half;
    let i = item % half;
    let p = first_position(start, offset) + (row / heads) % t;
    let angle = p.min(positions - 1) * half + i;
    let c = f32::cast_from(cos[angle]);
    let s = f32::cast_from(sin[angle]);
    let at = row * 2 * half + i;
    let x1 = f32::cast_from(x[at]);
    let x2 = f32::cast_from(x[at + half]);
    y[at] = F::cast_from(x1 * c - x2 * s);
    y[at + half] = F::cast_from(x1 * s + x2 * c);
}

/// RoPE of `x` (`[.., t, heads, head_dim]`) at the `t` positions from `start`, the tables `cos`
/// and `sin` `[positions, head_dim / 2]` (x is computed in the tables' dtype, its result cast
/// back, if the two differ). Positions read on the device past the tables take their last row.
pub fn rope(
    x: CubeTensor,
    cos: CubeTensor,
    sin: CubeTensor,
    start: Start,
) -> Result<CubeTensor, KernelError> {
    let shape = x.meta.shape().clone();
    let dims = shape.num_dims();
    let bad = || KernelError::Rope {
        shape: shape.to_vec(),
        table: cos.meta.shape().to_vec(),
        start: start.start,
    };
    start.check(&x)?;
    if dims < 3 || !shape[dims - 1].is_multiple_of(2) {
        return Err(bad());
    }
    let (t, heads, half) = (shape[dims - 3], shape[dims - 2], shape[dims - 1] / 2);
    for table in [&cos, &sin] {
        let ts = table.meta.shape();
        let fits = |rows: usize| rows > 0 && (start.is_on_device() || start.start + t <= rows);
        if ts.num_dims() != 2 || ts[1] != half || !fits(ts[0]) {
            return Err(bad());
        }
        if table.device != x.device {
            return Err(KernelError::Device);
        }
    }
    if cos.dtype != sin.dtype {
        return Err(KernelError::Dtypes(cos.dtype, sin.dtype));
    }
    if x.dtype != cos.dtype {
        // x in the tables' dtype (f32 tables keep their precision for an f16 x), back after
        let dtype = x.dtype;
        return Ok(cast(rope(cast(x, cos.dtype), cos, sin, start)?, dtype));
    }
    let positions = cos.meta.shape()[0];
    let (cos, sin) = (into_contiguous(cos), into_contiguous(sin));
    let x = into_contiguous(x);
    let y = empty_like(&x, shape);
    let n_items = y.meta.num_elements() / 2;
    if n_items == 0 {
        return Ok(y);
    }
    let client = x.client.clone();
    let cube_dim = CubeDim::new(&client, n_items);
    let cube_count = calculate_cube_count_elemwise(&client, n_items, cube_dim);
    let dtype = dtype_to_storage_type(x.dtype);
    // SAFETY: x and y are contiguous with `n_items · 2` values (pairs of rows of 2 · half); a
    // unit past n_items returns; the table row is clamped below `positions` (≥ 1, checked
    // above), the offset is one value (checked).
    unsafe {
        rope_kernel::launch_unchecked(
            &client,
            cube_count,
            cube_dim,
            x.into_buffer_arg(),
            cos.into_buffer_arg(),
            sin.into_buffer_arg(),
            y.clone().into_buffer_arg(),
            n_items,
            heads,
            t,
            half,
            start.start,
            positions,
            start.offset_arg().into(),
            dtype,
        )
    };
    Ok(y)
}
