//! RMS norm of each row, scaled by a weight: one cube per row, the sum of squares reduced in
//! shared memory (every runtime has it; the reduction is a small share of a row's work).

use burn::backend::cubecl::dtype_to_storage_type;
use burn_cubecl::{kernel::into_contiguous, tensor::CubeTensor};
use cubecl::{prelude::*, server::CubeCountSelection};

use super::KernelError;
use super::dequantize::empty_like;

/// Units per cube: enough to stream a row of a few thousand values, few enough that the
/// one-row-per-cube grid of a decoding step (a handful of rows) costs nothing to reduce.
const THREADS: usize = 128;

/// `y[r, i] = (x[r, i] · s_r) · w[i]` with `s_r = 1 / √(Σ_i x[r, i]² / d + eps)`, rows
/// `r < rows` of `d` values, one cube each (cubes past the last row do nothing).
#[cube(launch_unchecked)]
fn rms_norm_kernel<F: Float>(
    x: &[F],
    w: &[F],
    y: &mut [F],
    d: usize,
    rows: usize,
    eps: f32,
    #[comptime] threads: usize,
    #[define(F)] _dtype: ElemType,
) {
    let row = CUBE_POS;
    if row >= rows {
        terminate!();
    }
    let t = UNIT_POS as usize;
    let base = row * d;
    let mut sum = 0.0f32;
    let mut i = t;
    while i < d {
        let v = f32::cast_from(x[base + i]);
        sum += v * v;
        i += threads;
    }
    let mut partial = Shared::<[f32]>::new_slice(threads);
    partial[t] = sum;
    sync_cube();
    #[unroll]
    for b in 0..comptime![threads.trailing_zeros() as usize] {
        let half = comptime![threads >> (b + 1)];
        if t < half {
            partial[t] += partial[t + half];
        }
        sync_cube();
    }
    let scale = 1.0f32 / f32::sqrt(partial[0] / f32::cast_from(d) + eps);
    let mut i = t;
    while i < d {
        y[base + i] = F::cast_from((f32::cast_from(x[base + i]) * scale) * f32::cast_from(w[i]));
        i += threads;
    }
}

/// RMS norm of `x` (`[.., d]`, any float dtype) over its last dim, scaled by `weight` (`[d]`).
pub fn rms_norm(x: CubeTensor, weight: CubeTensor, eps: f64) -> Result<CubeTensor, KernelError> {
    let shape = x.meta.shape().clone();
    let d = shape[shape.num_dims() - 1];
    if weight.meta.num_elements() != d {
        return Err(KernelError::NormWeight {
            shape: shape.to_vec(),
            weight: weight.meta.shape().to_vec(),
        });
    }
    if x.device != weight.device {
        return Err(KernelError::Device);
    }
    if x.dtype != weight.dtype {
        return Err(KernelError::Dtypes(x.dtype, weight.dtype));
    }
    let (x, weight) = (into_contiguous(x), into_contiguous(weight));
    let y = empty_like(&x, shape);
    let rows = y.meta.num_elements().checked_div(d).unwrap_or(0);
    if rows == 0 {
        return Ok(y);
    }
    let client = x.client.clone();
    let cube_count = CubeCountSelection::new(&client, rows as u32).cube_count();
    let dtype = dtype_to_storage_type(x.dtype);
    // SAFETY: x and y are contiguous `rows × d`, the weight `d` long (checked above); a cube
    // reads and writes its own row only, and cubes past `rows` return at once.
    unsafe {
        rms_norm_kernel::launch_unchecked(
            &client,
            cube_count,
            CubeDim::new_1d(THREADS as u32),
            x.into_buffer_arg(),
            weight.into_buffer_arg(),
            y.clone().into_buffer_arg(),
            d,
            rows,
            eps as f32,
            THREADS,
            dtype,
        )
    };
    Ok(y)
}
