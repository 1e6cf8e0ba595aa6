//! RMS norm of each row, scaled by a weight: one cube per row, the sum of squares reduced in
//! shared memory (every runtime has it; the reduction is a small share of a row's work). Also
//! the norm fused with the residual add that follows it in a decoder layer, and with the next
//! norm of that sum ([`add_rms_norm`], [`add_rms_norm_next`]): one launch instead of three.

use burn::backend::cubecl::dtype_to_storage_type;
use burn_cubecl::{kernel::into_contiguous, tensor::CubeTensor};
use cubecl::{prelude::*, server::CubeCountSelection};

use super::KernelError;
use super::dequantize::empty_like;
use super::reduce::{CubeSum, cube_sum};

/// Units per cube: enough to stream a row of a few thousand values, few enough that the
/// one-row-per-cube grid of a decoding step (a handful of rows) costs nothing to reduce.
const THREADS: usize = 128;

/// `1 / √(Σ_i x[base + i]² / d + eps)`, the same in every unit of the cube (each must call it).
#[cube]
pub(super) fn inv_rms<F: Float>(
    x: &[F],
    base: usize,
    d: usize,
    eps: f32,
    #[comptime] how: CubeSum,
) -> f32 {
    let mut sum = 0.0f32;
    let mut i = UNIT_POS as usize;
    while i < d {
        let v = f32::cast_from(x[base + i]);
        sum += v * v;
        i += comptime![how.threads];
    }
    rms_scale(sum, d, eps, how)
}

/// `1 / √(Σ squares / d + eps)` of each unit's share `squares` of a row's sum of squares, the
/// same in every unit of the cube (each must call it).
#[cube]
fn rms_scale(squares: f32, d: usize, eps: f32, #[comptime] how: CubeSum) -> f32 {
    1.0f32 / f32::sqrt(cube_sum(squares, how) / f32::cast_from(d) + eps)
}

/// `y[base + i] = (x[base + i] · scale) · w[i]` for this unit's `i < d`.
#[cube]
fn write_scaled<F: Float>(
    x: &[F],
    w: &[F],
    y: &mut [F],
    base: usize,
    d: usize,
    scale: f32,
    #[comptime] how: CubeSum,
) {
    let mut i = UNIT_POS as usize;
    while i < d {
        y[base + i] = F::cast_from((f32::cast_from(x[base + i]) * scale) * f32::cast_from(w[i]));
        i += comptime![how.threads];
    }
}

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
    #[comptime] how: CubeSum,
    #[define(F)] _dtype: ElemType,
) {
    let row = CUBE_POS;
    if row >= rows {
        terminate!();
    }
    let base = row * d;
    let scale = inv_rms(x, base, d, eps, how);
    write_scaled(x, w, y, base, d, scale, how);
}

/// Row `r` of `s = x + norm_w(a)` (the norm rounded to `F` before the add, as the two ops
/// apart): writes it and returns this unit's share of its sum of squares.
#[cube]
#[allow(clippy::too_many_arguments)]
fn write_sum<F: Float>(
    x: &[F],
    a: &[F],
    w: &[F],
    s: &mut [F],
    base: usize,
    d: usize,
    eps: f32,
    #[comptime] how: CubeSum,
) -> f32 {
    let scale = inv_rms(a, base, d, eps, how);
    let mut squares = 0.0f32;
    let mut i = UNIT_POS as usize;
    while i < d {
        let y = F::cast_from((f32::cast_from(a[base + i]) * scale) * f32::cast_from(w[i]));
        let v = x[base + i] + y;
        s[base + i] = v;
        let vf = f32::cast_from(v);
        squares += vf * vf;
        i += comptime![how.threads];
    }
    squares
}

/// `s = x + norm_w(a)` row by row, one cube each.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
fn add_rms_norm_kernel<F: Float>(
    x: &[F],
    a: &[F],
    w: &[F],
    s: &mut [F],
    d: usize,
    rows: usize,
    eps: f32,
    #[comptime] how: CubeSum,
    #[define(F)] _dtype: ElemType,
) {
    let row = CUBE_POS;
    if row >= rows {
        terminate!();
    }
    write_sum(x, a, w, s, row * d, d, eps, how);
}

/// `s = x + norm_w(a)` and `n = norm_next(s)` row by row, one cube each.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
fn add_rms_norm_next_kernel<F: Float>(
    x: &[F],
    a: &[F],
    w: &[F],
    next: &[F],
    s: &mut [F],
    n: &mut [F],
    d: usize,
    rows: usize,
    eps: f32,
    #[comptime] how: CubeSum,
    #[define(F)] _dtype: ElemType,
) {
    let row = CUBE_POS;
    if row >= rows {
        terminate!();
    }
    let base = row * d;
    let squares = write_sum(x, a, w, s, base, d, eps, how);
    // a unit reads back only the values it wrote itself
    let scale = rms_scale(squares, d, eps, how);
    let mut i = UNIT_POS as usize;
    while i < d {
        n[base + i] = F::cast_from((f32::cast_from(s[base + i]) * scale) * f32::cast_from(next[i]));
        i += comptime![how.threads];
    }
}

/// Checks a norm weight against rows of `shape` on `x`'s device and dtype.
pub(super) fn check_weight(x: &CubeTensor, weight: &CubeTensor) -> Result<(), KernelError> {
    let shape = x.meta.shape();
    if weight.meta.num_elements() != shape[shape.num_dims() - 1] {
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
    Ok(())
}

/// RMS norm of `x` (`[.., d]`, any float dtype) over its last dim, scaled by `weight` (`[d]`).
pub fn rms_norm(x: CubeTensor, weight: CubeTensor, eps: f64) -> Result<CubeTensor, KernelError> {
    check_weight(&x, &weight)?;
    let shape = x.meta.shape().clone();
    let d = shape[shape.num_dims() - 1];
    let (x, weight) = (into_contiguous(x), into_contiguous(weight));
    let y = empty_like(&x, shape);
    let rows = y.meta.num_elements().checked_div(d).unwrap_or(0);
    if rows == 0 {
        return Ok(y);
    }
    let client = x.client.clone();
    let cube_count = CubeCountSelection::new(&client, rows as u32).cube_count();
    let how = CubeSum::new(&client, THREADS);
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
            how,
            dtype,
        )
    };
    Ok(y)
}

/// `x + rms_norm(a, weight)` (`x` and `a` `[.., d]` of one shape and dtype, `weight` `[d]`): a
/// residual add after a post-norm in one launch, the values those of the two ops apart.
pub fn add_rms_norm(
    x: CubeTensor,
    a: CubeTensor,
    weight: CubeTensor,
    eps: f64,
) -> Result<CubeTensor, KernelError> {
    add_norm(x, a, weight, None, eps)
}

/// `s = x + rms_norm(a, weight)` and `rms_norm(s, next)` ([`add_rms_norm`] and the norm before
/// the next block) in one launch, the values those of the three ops apart.
pub fn add_rms_norm_next(
    x: CubeTensor,
    a: CubeTensor,
    weight: CubeTensor,
    next: CubeTensor,
    eps: f64,
) -> Result<(CubeTensor, CubeTensor), KernelError> {
    let n = empty_like(&x, x.meta.shape().clone());
    let s = add_norm(x, a, weight, Some((next, n.clone())), eps)?;
    Ok((s, n))
}

/// [`add_rms_norm`]; with `next` (a norm weight and the output for its norm) also
/// [`add_rms_norm_next`]'s second output.
fn add_norm(
    x: CubeTensor,
    a: CubeTensor,
    weight: CubeTensor,
    next: Option<(CubeTensor, CubeTensor)>,
    eps: f64,
) -> Result<CubeTensor, KernelError> {
    let shape = x.meta.shape().clone();
    if a.meta.shape() != &shape {
        return Err(KernelError::Shapes(shape.to_vec(), a.meta.shape().to_vec()));
    }
    if x.device != a.device {
        return Err(KernelError::Device);
    }
    if x.dtype != a.dtype {
        return Err(KernelError::Dtypes(x.dtype, a.dtype));
    }
    for w in [Some(&weight), next.as_ref().map(|(w, _)| w)]
        .into_iter()
        .flatten()
    {
        check_weight(&x, w)?;
    }
    let d = shape[shape.num_dims() - 1];
    let (x, a, weight) = (
        into_contiguous(x),
        into_contiguous(a),
        into_contiguous(weight),
    );
    let s = empty_like(&x, shape);
    let rows = s.meta.num_elements().checked_div(d).unwrap_or(0);
    if rows == 0 {
        return Ok(s);
    }
    let client = x.client.clone();
    let cube_count = CubeCountSelection::new(&client, rows as u32).cube_count();
    let cube_dim = CubeDim::new_1d(THREADS as u32);
    let how = CubeSum::new(&client, THREADS);
    let dtype = dtype_to_storage_type(x.dtype);
    // SAFETY: x, a, s (and n) are contiguous `rows × d`, the weights `d` long (checked above);
    // a cube reads and writes its own row only, and cubes past `rows` return at once.
    unsafe {
        match next {
            Some((next, n)) => add_rms_norm_next_kernel::launch_unchecked(
                &client,
                cube_count,
                cube_dim,
                x.into_buffer_arg(),
                a.into_buffer_arg(),
                weight.into_buffer_arg(),
                into_contiguous(next).into_buffer_arg(),
                s.clone().into_buffer_arg(),
                n.into_buffer_arg(),
                d,
                rows,
                eps as f32,
                how,
                dtype,
            ),
            None => add_rms_norm_kernel::launch_unchecked(
                &client,
                cube_count,
                cube_dim,
                x.into_buffer_arg(),
                a.into_buffer_arg(),
                weight.into_buffer_arg(),
                s.clone().into_buffer_arg(),
                d,
                rows,
                eps as f32,
                how,
                dtype,
            ),
        }
    };
    Ok(s)
}
