//! Causal grouped-query attention over a key/value cache read in place: one cube per query row
//! (sequence, position, head), keys taken in chunks with an online softmax (flash-decoding's
//! recurrence: a running maximum and sum, the accumulated values rescaled when the maximum
//! grows), so any number of keys fits a fixed amount of shared memory. A key's score is the work
//! of a few lanes where the device has plane operations and the launch many rows (over the
//! head's dims, their loads coalesced, met by plane shuffles), else of one unit; the chunk's
//! maximum and sum go through shared memory (every runtime has it).

use burn::backend::cubecl::dtype_to_storage_type;
use burn_cubecl::{kernel::into_contiguous, tensor::CubeTensor};
use cubecl::{prelude::*, server::CubeCountSelection};

use super::KernelError;
use super::dequantize::empty_like;
use super::positions::{Start, first_position};
use super::reduce::reduce_shared;

/// Units per cube.
const THREADS: usize = 128;
/// Keys per chunk: their scores live in shared memory.
const CHUNK: usize = 256;
/// Lanes that compute one key's score together where the device has plane operations and the
/// launch has at least [`GROUPED_MIN_ROWS`] query rows.
const KEY_LANES: usize = 8;
/// Query rows from which a key's score is computed by [`KEY_LANES`] lanes rather than one unit.
/// Measured on the H200 (PERF.md): a 512-token prompt's 2048 rows read 1.6× more tokens/s
/// grouped (their loads coalesced); a decoding step's 4 rows keep a key per unit (every key's
/// loads in flight at once across the cube).
const GROUPED_MIN_ROWS: usize = 64;

/// Row `CUBE_POS` = `(b · t + i) · heads + h` of the output: query `i` (position `start (+
/// offset[0]) + i`) of head `h` over the keys it sees in kv head `h / (heads / kv_heads)`, at
/// most the `keys` slots there are (a device offset is not checked on the host).
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
fn attention_kernel<F: Float>(
    q: &[F],
    k: &[F],
    v: &[F],
    out: &mut [F],
    n_rows: usize,
    t: usize,
    heads: usize,
    kv_heads: usize,
    keys: usize,
    start: usize,
    offset: ComptimeOption<&[u32]>,
    window: usize,
    scale: f32,
    #[comptime] hd: usize,
    #[comptime] threads: usize,
    #[comptime] chunk: usize,
    #[comptime] key_lanes: usize,
    #[define(F)] _dtype: ElemType,
) {
    let row = CUBE_POS;
    if row >= n_rows {
        terminate!();
    }
    let tid = UNIT_POS as usize;
    let h = row % heads;
    let i = (row / heads) % t;
    let b = row / (heads * t);
    let kv = (b * kv_heads + h / (heads / kv_heads)) * keys * hd;
    let p = first_position(start, offset) + i;
    let mut lo = 0usize;
    if window > 0 && p + 1 > window {
        lo = p + 1 - window;
    }
    let hi = (p + 1).min(keys);

    let mut qs = Shared::<[f32]>::new_slice(hd);
    let mut sc = Shared::<[f32]>::new_slice(chunk);
    let mut red = Shared::<[f32]>::new_slice(threads);
    let mut d = tid;
    while d < hd {
        qs[d] = f32::cast_from(q[row * hd + d]) * scale;
        d += threads;
    }
    sync_cube();

    let per = comptime![hd.div_ceil(threads)];
    let mut acc = Array::<f32>::new(per);
    #[unroll]
    for e in 0..per {
        acc[e] = 0.0;
    }
    // the running maximum before the first key: a huge negative finite value (WGSL has no
    // infinity literal; exp of it minus any score is 0)
    let mut m = 0.0f32;
    m -= 3.0e38f32;
    let mut l = 0.0f32;
    let mut c0 = lo;
    while c0 < hi {
        let n = (hi - c0).min(chunk);
        // scores of this chunk
        if comptime![key_lanes > 1] {
            // a key per `KEY_LANES` lanes of a plane, over the head's dims (their loads in flight
            // together, a plane's keys side by side in memory), the partial products met by
            // plane shuffles
            let group = comptime![key_lanes];
            let lane = tid % group;
            // every unit takes the same passes (the shuffles need a plane's lanes together)
            let mut pass = 0usize;
            while pass < n {
                let j = pass + tid / group;
                let mut s = 0.0f32;
                if j < n {
                    let at = kv + (c0 + j) * hd;
                    #[unroll]
                    for e in 0..comptime![hd.div_ceil(group)] {
                        let dd = lane + e * group;
                        if dd < hd {
                            s += qs[dd] * f32::cast_from(k[at + dd]);
                        }
                    }
                }
                #[unroll]
                for b in 0..comptime![group.trailing_zeros() as usize] {
                    s += plane_shuffle_xor(s, comptime![1u32 << b as u32]);
                }
                if lane == 0 && j < n {
                    sc[j] = s;
                }
                pass += comptime![threads / group];
            }
        } else {
            // a key per unit
            let mut j = tid;
            while j < n {
                let at = kv + (c0 + j) * hd;
                let mut s = 0.0f32;
                // unrolled (hd is a kernel constant): the key's loads are independent of the
                // sum, so they are all in flight at once instead of one latency per element
                #[unroll]
                for dd in 0..hd {
                    s += qs[dd] * f32::cast_from(k[at + dd]);
                }
                sc[j] = s;
                j += threads;
            }
        }
        sync_cube();
        // the chunk's maximum
        let mut cm = 0.0f32;
        cm -= 3.0e38f32;
        let mut j = tid;
        while j < n {
            cm = f32::max(cm, sc[j]);
            j += threads;
        }
        red[tid] = cm;
        sync_cube();
        reduce_shared(&mut red, tid, threads, true);
        let m_new = f32::max(m, red[0]);
        sync_cube();
        // weights exp(s − m_new), their sum
        let mut ps = 0.0f32;
        let mut j = tid;
        while j < n {
            let e = f32::exp(sc[j] - m_new);
            sc[j] = e;
            ps += e;
            j += threads;
        }
        red[tid] = ps;
        sync_cube();
        reduce_shared(&mut red, tid, threads, false);
        let alpha = f32::exp(m - m_new);
        l = l * alpha + red[0];
        m = m_new;
        // values: a unit owns output dims tid, tid + threads, …
        #[unroll]
        for e in 0..per {
            let dd = tid + e * threads;
            if dd < hd {
                let mut a = acc[e] * alpha;
                for jj in 0..n {
                    a += sc[jj] * f32::cast_from(v[kv + (c0 + jj) * hd + dd]);
                }
                acc[e] = a;
            }
        }
        sync_cube();
        c0 += chunk;
    }
    #[unroll]
    for e in 0..per {
        let dd = tid + e * threads;
        if dd < hd {
            out[row * hd + dd] = F::cast_from(acc[e] / l);
        }
    }
}

/// Attention of queries `q` `[batch, t, heads, head_dim]` at the `t` positions from `start`
/// over `k`, `v` `[batch, kv_heads, keys, head_dim]` (`keys ≥ start + t` where the start is
/// known on the host), each query seeing the keys at positions up to its own and, with `window`,
/// only the last `window` of those; `q` is scaled by `scale` first. The result is `[batch, t,
/// heads, head_dim]` in q's dtype.
pub fn attention(
    q: CubeTensor,
    k: CubeTensor,
    v: CubeTensor,
    start: Start,
    window: Option<usize>,
    scale: f64,
) -> Result<CubeTensor, KernelError> {
    let (qs, ks) = (q.meta.shape().clone(), k.meta.shape().clone());
    let bad = || KernelError::Attention {
        q: qs.to_vec(),
        kv: ks.to_vec(),
        start: start.start,
    };
    start.check(&q)?;
    if qs.num_dims() != 4 || ks.num_dims() != 4 || v.meta.shape() != &ks {
        return Err(bad());
    }
    let ([b, t, heads, hd], [kb, kv_heads, keys, khd]) =
        ([qs[0], qs[1], qs[2], qs[3]], [ks[0], ks[1], ks[2], ks[3]]);
    if kb != b
        || khd != hd
        || kv_heads == 0
        || !heads.is_multiple_of(kv_heads)
        || (!start.is_on_device() && start.start + t > keys)
        || keys == 0
        || hd == 0
        || window == Some(0)
    {
        return Err(bad());
    }
    for other in [&k, &v] {
        if other.dtype != q.dtype {
            return Err(KernelError::Dtypes(q.dtype, other.dtype));
        }
        if other.device != q.device {
            return Err(KernelError::Device);
        }
    }
    let (q, k, v) = (into_contiguous(q), into_contiguous(k), into_contiguous(v));
    let out = empty_like(&q, qs);
    let n_rows = b * t * heads;
    if n_rows == 0 {
        return Ok(out);
    }
    let client = q.client.clone();
    let cube_count = CubeCountSelection::new(&client, n_rows as u32).cube_count();
    let (lanes, use_plane) = super::lanes_for(&client);
    let key_lanes = if use_plane && n_rows >= GROUPED_MIN_ROWS {
        KEY_LANES.min(lanes)
    } else {
        1
    };
    let dtype = dtype_to_storage_type(q.dtype);
    // SAFETY: q and out are contiguous `n_rows × hd`, k and v `b × kv_heads × keys × hd` (shapes
    // checked above); a cube reads keys below min(its position + 1, keys) of its own sequence
    // and kv head and writes its own row; cubes past n_rows return at once; the offset is one
    // value (checked).
    unsafe {
        attention_kernel::launch_unchecked(
            &client,
            cube_count,
            CubeDim::new_1d(THREADS as u32),
            q.into_buffer_arg(),
            k.into_buffer_arg(),
            v.into_buffer_arg(),
            out.clone().into_buffer_arg(),
            n_rows,
            t,
            heads,
            kv_heads,
            keys,
            start.start,
            start.offset_arg().into(),
            window.unwrap_or(0),
            scale as f32,
            hd,
            THREADS,
            CHUNK,
            key_lanes,
            dtype,
        )
    };
    Ok(out)
}
