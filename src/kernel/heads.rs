//! What attention reads, made ready in one launch ([`attention_inputs`]): each query head
//! RMS-normed and turned by NEOX RoPE at its position; each key head the same, written straight
//! into the key cache at its slot; each value head copied into the value cache — what
//! [`rms_norm`](super::rms_norm), [`rope`](super::rope) and
//! [`write_positions`](super::write_positions) compute apart (five launches, and a copy), with
//! the same roundings.

use burn::backend::cubecl::dtype_to_storage_type;
use burn_cubecl::{kernel::into_contiguous, tensor::CubeTensor};
use cubecl::{prelude::*, server::CubeCountSelection};

use super::KernelError;
use super::cache::writable;
use super::dequantize::empty_like;
use super::norm::{check_weight, inv_rms};
use super::positions::{Start, first_position};
use super::reduce::CubeSum;

/// Units per cube (a head of up to 256 values is one pair per unit).
const THREADS: usize = 128;

/// Head `x[src..src + 2 · half]` normed with `w` (each unit takes part: it synchronizes the
/// cube), then, where `write`, turned by the tables' row at `angle` (`angle = row · half`) into
/// `out[dst..]`.
#[cube]
#[allow(clippy::too_many_arguments)]
fn norm_rope_head<F: Float>(
    x: &[F],
    w: &[F],
    cos: &[F],
    sin: &[F],
    out: &mut [F],
    src: usize,
    dst: usize,
    angle: usize,
    half: usize,
    eps: f32,
    write: bool,
    #[comptime] how: CubeSum,
) {
    let scale = inv_rms(x, src, 2 * half, eps, how);
    if write {
        let mut j = UNIT_POS as usize;
        while j < half {
            // the normed value rounded to F, as the norm's output the RoPE op would read
            let n1 = F::cast_from((f32::cast_from(x[src + j]) * scale) * f32::cast_from(w[j]));
            let n2 = F::cast_from(
                (f32::cast_from(x[src + j + half]) * scale) * f32::cast_from(w[j + half]),
            );
            let (x1, x2) = (f32::cast_from(n1), f32::cast_from(n2));
            let c = f32::cast_from(cos[angle + j]);
            let s = f32::cast_from(sin[angle + j]);
            out[dst + j] = F::cast_from(x1 * c - x2 * s);
            out[dst + j + half] = F::cast_from(x1 * s + x2 * c);
            j += comptime![how.threads];
        }
    }
}

/// One cube per head: cubes `< q_rows` take query head `(b · t + i) · heads + h` (normed, turned
/// at position `p = start (+ offset[0]) + i`, written in place of `q_out`), the next `kv_rows`
/// key head `(b · t + i) · kv_heads + h` (normed, turned, written at slot `p` of head `h` of
/// sequence `b` in `k_cache`), the next `kv_rows` the value head of the same index (copied to
/// that slot of `v_cache`). A slot past `slots` is not written; a position past the tables takes
/// their last row.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
fn attention_inputs_kernel<F: Float>(
    q: &[F],
    k: &[F],
    v: &[F],
    q_w: &[F],
    k_w: &[F],
    cos: &[F],
    sin: &[F],
    q_out: &mut [F],
    k_cache: &mut [F],
    v_cache: &mut [F],
    q_rows: usize,
    kv_rows: usize,
    t: usize,
    heads: usize,
    kv_heads: usize,
    half: usize,
    slots: usize,
    start: usize,
    offset: ComptimeOption<&[u32]>,
    positions: usize,
    eps: f32,
    #[comptime] how: CubeSum,
    #[define(F)] _dtype: ElemType,
) {
    let cube = CUBE_POS;
    if cube >= q_rows + 2 * kv_rows {
        terminate!();
    }
    let d = 2 * half;
    let first = first_position(start, offset);
    if cube < q_rows {
        let p = first + (cube / heads) % t;
        let angle = p.min(positions - 1) * half;
        norm_rope_head(
            q,
            q_w,
            cos,
            sin,
            q_out,
            cube * d,
            cube * d,
            angle,
            half,
            eps,
            true,
            how,
        );
    } else {
        let row = (cube - q_rows) % kv_rows;
        let (h, i, b) = (row % kv_heads, (row / kv_heads) % t, row / (kv_heads * t));
        let p = first + i;
        let at = ((b * kv_heads + h) * slots + p) * d;
        if cube < q_rows + kv_rows {
            let angle = p.min(positions - 1) * half;
            norm_rope_head(
                k,
                k_w,
                cos,
                sin,
                k_cache,
                row * d,
                at,
                angle,
                half,
                eps,
                p < slots,
                how,
            );
        } else if p < slots {
            let mut j = UNIT_POS as usize;
            while j < d {
                v_cache[at + j] = v[row * d + j];
                j += comptime![how.threads];
            }
        }
    }
}

/// The query, key and value heads of a layer's projections (`[batch, t, heads, head_dim]`,
/// `[batch, t, kv_heads, head_dim]` twice) made ready for attention at the `t` positions from
/// `start`, in one launch: the queries RMS-normed with `norms.0` and turned by RoPE (tables
/// `cos`, `sin` `[positions, head_dim / 2]`), the keys normed with `norms.1`, turned and written
/// into the key buffer `cache.0`, the values written into `cache.1` (buffers `[batch, kv_heads,
/// slots, head_dim]`, written in place where nothing else holds them, else into copies). Gives
/// the queries and the two buffers. Every input has the queries' dtype; positions read on the
/// device past the tables take their last row, past the buffers are not written.
pub fn attention_inputs(
    [q, k, v]: [CubeTensor; 3],
    [q_norm, k_norm]: [CubeTensor; 2],
    (cos, sin): (CubeTensor, CubeTensor),
    (k_cache, v_cache): (CubeTensor, CubeTensor),
    start: Start,
    eps: f64,
) -> Result<(CubeTensor, CubeTensor, CubeTensor), KernelError> {
    let (qs, ks, bs) = (
        q.meta.shape().clone(),
        k.meta.shape().clone(),
        k_cache.meta.shape().clone(),
    );
    start.check(&q)?;
    let heads_fit = qs.num_dims() == 4
        && ks.num_dims() == 4
        && v.meta.shape() == &ks
        && [ks[0], ks[1], ks[3]] == [qs[0], qs[1], qs[3]]
        && qs[3].is_multiple_of(2);
    if !heads_fit {
        return Err(KernelError::Attention {
            q: qs.to_vec(),
            kv: ks.to_vec(),
            start: start.start,
        });
    }
    let cache_fits = bs.num_dims() == 4
        && v_cache.meta.shape() == &bs
        && [bs[0], bs[1], bs[3]] == [ks[0], ks[2], ks[3]]
        && (start.is_on_device() || start.start + ks[1] <= bs[2]);
    if !cache_fits {
        return Err(KernelError::Positions {
            buffer: bs.to_vec(),
            value: ks.to_vec(),
            start: start.start,
        });
    }
    for w in [&q_norm, &k_norm] {
        check_weight(&q, w)?;
    }
    let (t, half) = (qs[1], qs[3] / 2);
    for table in [&cos, &sin] {
        let ts = table.meta.shape();
        let fits = |rows: usize| rows > 0 && (start.is_on_device() || start.start + t <= rows);
        if ts.num_dims() != 2 || ts[1] != half || !fits(ts[0]) {
            return Err(KernelError::Rope {
                shape: qs.to_vec(),
                table: ts.to_vec(),
                start: start.start,
            });
        }
    }
    for other in [&k, &v, &cos, &sin, &k_cache, &v_cache] {
        if other.dtype != q.dtype {
            return Err(KernelError::Dtypes(q.dtype, other.dtype));
        }
        if other.device != q.device {
            return Err(KernelError::Device);
        }
    }
    let q_out = empty_like(&q, qs.clone());
    let (k_cache, v_cache) = (writable(k_cache), writable(v_cache));
    let (q_rows, kv_rows) = (
        qs.num_elements() / qs[3].max(1),
        ks.num_elements() / ks[3].max(1),
    );
    if half == 0 || q_rows + kv_rows == 0 {
        return Ok((q_out, k_cache, v_cache));
    }
    let client = q.client.clone();
    let cube_count = CubeCountSelection::new(&client, (q_rows + 2 * kv_rows) as u32).cube_count();
    let dtype = dtype_to_storage_type(q.dtype);
    let how = CubeSum::new(&client, THREADS);
    let c = |x: CubeTensor| into_contiguous(x).into_buffer_arg();
    let positions = cos.meta.shape()[0];
    // SAFETY: q, q_out are contiguous `q_rows × 2 · half`, k and v `kv_rows × 2 · half`, the
    // norm weights `2 · half` long, the tables `positions × half` with the row clamped below
    // `positions` (≥ 1), the buffers contiguous `[b, kv_heads, slots, 2 · half]` with a slot
    // past `slots` not written (all checked above); each cube writes its own head only, cubes
    // past the last head return at once; the offset is one value (checked).
    unsafe {
        attention_inputs_kernel::launch_unchecked(
            &client,
            cube_count,
            CubeDim::new_1d(THREADS as u32),
            c(q),
            c(k),
            c(v),
            c(q_norm),
            c(k_norm),
            c(cos),
            c(sin),
            q_out.clone().into_buffer_arg(),
            k_cache.clone().into_buffer_arg(),
            v_cache.clone().into_buffer_arg(),
            q_rows,
            kv_rows,
            t,
            qs[2],
            ks[2],
            half,
            bs[2],
            start.start,
            start.offset_arg().into(),
            positions,
            eps as f32,
            how,
            dtype,
        )
    };
    Ok((q_out, k_cache, v_cache))
}
