//! Causal grouped-query attention over a key/value cache read in place: one cube per query row
//! (sequence, position, head), keys taken in chunks with an online softmax (flash-decoding's
//! recurrence: a running maximum and sum, the accumulated values rescaled when the maximum
//! grows), so any number of keys fits a fixed amount of shared memory. A key's score is the work
//! of a few lanes where the device has plane operations and the launch many rows (over the
//! head's dims, their loads coalesced, met by plane shuffles), else of one unit; the chunk's
//! maximum and sum go through shared memory (every runtime has it). A launch of few query rows
//! (a decoding step) splits each row's keys over cubes instead, flash-decoding's way: a cube per
//! row and segment of [`SEGMENT`] key slots writes its partial softmax (maximum, sum, unnormalized
//! values), and a second kernel combines a row's segments. The segments are fixed slots of the
//! cache, so a recorded launch stays valid while the position moves on (segments past it return
//! at once).

use burn::backend::cubecl::dtype_to_storage_type;
use burn::tensor::{DType, Shape};
use burn_cubecl::{
    kernel::into_contiguous, ops::numeric::empty_device_contiguous_dtype, tensor::CubeTensor,
};
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
/// Launches with fewer query rows than this (a decoding step's 4, a short prompt's) split each
/// row's keys over cubes, flash-decoding's way: a segment of [`SEGMENT`] slots per cube, then a
/// cube per row combining the segments. With one cube per row, a decoding step kept 4 of the
/// H200's 132 multiprocessors busy, each reading its keys' values one after another.
const SPLIT_BELOW_ROWS: usize = 32;
/// Key slots per cube of a split launch: the cube's key loop unrolled, its loads in flight
/// together; with plane operations, one pass of [`KEY_LANES`]-lane groups over 128 units.
const SEGMENT: usize = 16;

/// The running maximum before the first score: a huge negative finite value (WGSL has no
/// infinity literal; exp of it minus any score is 0).
#[cube]
fn lowest() -> f32 {
    let mut m = 0.0f32;
    m -= 3.0e38f32;
    m
}

/// Keys of query row `row` (= `(b · t + i) · heads + h`): its kv head's first element `kv` in
/// the caches and the key slots `lo..hi` it sees (its position `start (+ offset[0]) + i`, the
/// window, at most `keys` slots).
#[derive(CubeType)]
struct KeyRange {
    kv: usize,
    lo: usize,
    hi: usize,
}

#[cube]
#[allow(clippy::too_many_arguments)]
fn key_range(
    row: usize,
    t: usize,
    heads: usize,
    kv_heads: usize,
    keys: usize,
    start: usize,
    offset: ComptimeOption<&[u32]>,
    window: usize,
    #[comptime] hd: usize,
) -> KeyRange {
    let h = row % heads;
    let i = (row / heads) % t;
    let b = row / (heads * t);
    let p = first_position(start, offset) + i;
    let mut lo = 0usize;
    if window > 0 && p + 1 > window {
        lo = p + 1 - window;
    }
    KeyRange {
        kv: (b * kv_heads + h / (heads / kv_heads)) * keys * hd,
        lo,
        hi: (p + 1).min(keys),
    }
}

/// Query row `row` times `scale` into `qs` (f32), then a barrier.
#[cube]
fn load_query<F: Float>(
    q: &[F],
    qs: &mut [f32],
    row: usize,
    scale: f32,
    tid: usize,
    #[comptime] hd: usize,
    #[comptime] threads: usize,
) {
    let mut d = tid;
    while d < hd {
        qs[d] = f32::cast_from(q[row * hd + d]) * scale;
        d += threads;
    }
    sync_cube();
}

/// The scores of keys `c0 .. c0 + n` (slots of the kv head at `kv`) into `sc[0..n]`, then a
/// barrier. With `key_lanes > 1`, a key per `key_lanes` lanes of a plane over the head's dims
/// (their loads in flight together, a plane's keys side by side in memory, the partial products
/// met by plane shuffles); else a key per unit.
#[cube]
#[allow(clippy::too_many_arguments)]
fn key_scores<F: Float>(
    qs: &[f32],
    k: &[F],
    sc: &mut [f32],
    kv: usize,
    c0: usize,
    n: usize,
    tid: usize,
    #[comptime] hd: usize,
    #[comptime] threads: usize,
    #[comptime] key_lanes: usize,
) {
    if comptime![key_lanes > 1] {
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
        let mut j = tid;
        while j < n {
            let at = kv + (c0 + j) * hd;
            let mut s = 0.0f32;
            // unrolled (hd is a kernel constant): the key's loads are independent of the sum,
            // so they are all in flight at once instead of one latency per element
            #[unroll]
            for dd in 0..hd {
                s += qs[dd] * f32::cast_from(k[at + dd]);
            }
            sc[j] = s;
            j += threads;
        }
    }
    sync_cube();
}

/// One step of the online softmax over the `n` scores in `sc`: the new running maximum (of `m`
/// and the scores), returned; each score replaced by its weight `exp(s − max)`; the weights' sum
/// left in `red[0]` (read it before the next barrier's writers).
#[cube]
fn softmax_weights(
    sc: &mut [f32],
    red: &mut [f32],
    n: usize,
    m: f32,
    tid: usize,
    #[comptime] threads: usize,
) -> f32 {
    let mut cm = lowest();
    let mut j = tid;
    while j < n {
        cm = f32::max(cm, sc[j]);
        j += threads;
    }
    red[tid] = cm;
    sync_cube();
    reduce_shared(red, tid, threads, true);
    let m_new = f32::max(m, red[0]);
    sync_cube();
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
    reduce_shared(red, tid, threads, false);
    m_new
}

/// `acc ← alpha · acc + Σ_j w_j · v_j` over the `n` weights in `sc` and the values of slots
/// `c0 ..` (kv head at `kv`); a unit owns output dims `tid, tid + threads, …`. With `unrolled >
/// 0` (`n ≤ unrolled`) the key loop is unrolled, its loads in flight together.
#[cube]
#[allow(clippy::too_many_arguments)]
fn add_values<F: Float>(
    v: &[F],
    sc: &[f32],
    acc: &mut Array<f32>,
    alpha: f32,
    kv: usize,
    c0: usize,
    n: usize,
    tid: usize,
    #[comptime] hd: usize,
    #[comptime] threads: usize,
    #[comptime] unrolled: usize,
) {
    #[unroll]
    for e in 0..comptime![hd.div_ceil(threads)] {
        let dd = tid + e * threads;
        if dd < hd {
            let mut a = acc[e] * alpha;
            if comptime![unrolled > 0] {
                #[unroll]
                for jj in 0..unrolled {
                    if jj < n {
                        a += sc[jj] * f32::cast_from(v[kv + (c0 + jj) * hd + dd]);
                    }
                }
            } else {
                for jj in 0..n {
                    a += sc[jj] * f32::cast_from(v[kv + (c0 + jj) * hd + dd]);
                }
            }
            acc[e] = a;
        }
    }
}

/// Row `CUBE_POS` of the output: query row `CUBE_POS` over every key it sees, in chunks.
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
    let r = key_range(row, t, heads, kv_heads, keys, start, offset, window, hd);
    let mut qs = Shared::<[f32]>::new_slice(hd);
    let mut sc = Shared::<[f32]>::new_slice(chunk);
    let mut red = Shared::<[f32]>::new_slice(threads);
    load_query(q, &mut qs, row, scale, tid, hd, threads);

    let per = comptime![hd.div_ceil(threads)];
    let mut acc = Array::<f32>::new(per);
    #[unroll]
    for e in 0..per {
        acc[e] = 0.0;
    }
    let mut m = lowest();
    let mut l = 0.0f32;
    let mut c0 = r.lo;
    while c0 < r.hi {
        let n = (r.hi - c0).min(chunk);
        key_scores(&qs, k, &mut sc, r.kv, c0, n, tid, hd, threads, key_lanes);
        let m_new = softmax_weights(&mut sc, &mut red, n, m, tid, threads);
        let alpha = f32::exp(m - m_new);
        l = l * alpha + red[0];
        m = m_new;
        add_values(
            v, &sc, &mut acc, alpha, r.kv, c0, n, tid, hd, threads, 0usize,
        );
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

/// Flash-decoding's first pass: cube `CUBE_POS = row · segments + s` takes the keys of slots
/// `s · seg .. (s + 1) · seg` that query row `row` sees and writes their softmax's unnormalized
/// values to `part[CUBE_POS · hd ..]` and its maximum and sum to `stats[2 · CUBE_POS ..]` (a
/// segment without such keys: sum 0, values unwritten).
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
fn attention_part_kernel<F: Float>(
    q: &[F],
    k: &[F],
    v: &[F],
    part: &mut [f32],
    stats: &mut [f32],
    n_rows: usize,
    t: usize,
    heads: usize,
    kv_heads: usize,
    keys: usize,
    start: usize,
    offset: ComptimeOption<&[u32]>,
    window: usize,
    scale: f32,
    segments: usize,
    #[comptime] hd: usize,
    #[comptime] threads: usize,
    #[comptime] seg: usize,
    #[comptime] key_lanes: usize,
    #[define(F)] _dtype: ElemType,
) {
    let cube = CUBE_POS;
    let row = cube / segments;
    if row >= n_rows {
        terminate!();
    }
    let tid = UNIT_POS as usize;
    let r = key_range(row, t, heads, kv_heads, keys, start, offset, window, hd);
    // this segment's slots, clipped to those the row sees
    let slot0 = (cube % segments) * seg;
    let c0 = r.lo.max(slot0);
    let c1 = r.hi.min(slot0 + seg);
    if c0 >= c1 {
        if tid == 0 {
            stats[2 * cube] = 0.0;
            stats[2 * cube + 1] = 0.0;
        }
        terminate!();
    }
    let n = c1 - c0;
    let mut qs = Shared::<[f32]>::new_slice(hd);
    let mut sc = Shared::<[f32]>::new_slice(seg);
    let mut red = Shared::<[f32]>::new_slice(threads);
    load_query(q, &mut qs, row, scale, tid, hd, threads);
    key_scores(&qs, k, &mut sc, r.kv, c0, n, tid, hd, threads, key_lanes);
    let m = softmax_weights(&mut sc, &mut red, n, lowest(), tid, threads);
    let l = red[0];
    let per = comptime![hd.div_ceil(threads)];
    let mut acc = Array::<f32>::new(per);
    #[unroll]
    for e in 0..per {
        acc[e] = 0.0;
    }
    add_values(v, &sc, &mut acc, 0.0, r.kv, c0, n, tid, hd, threads, seg);
    #[unroll]
    for e in 0..per {
        let dd = tid + e * threads;
        if dd < hd {
            part[cube * hd + dd] = acc[e];
        }
    }
    if tid == 0 {
        stats[2 * cube] = m;
        stats[2 * cube + 1] = l;
    }
}

/// Flash-decoding's second pass: output row `CUBE_POS` from its `segments` partial results,
/// each rescaled from its own maximum to the row's (segments with sum 0 skipped).
#[cube(launch_unchecked)]
fn attention_combine_kernel<F: Float>(
    part: &[f32],
    stats: &[f32],
    out: &mut [F],
    n_rows: usize,
    segments: usize,
    #[comptime] hd: usize,
    #[comptime] threads: usize,
    #[define(F)] _dtype: ElemType,
) {
    let row = CUBE_POS;
    if row >= n_rows {
        terminate!();
    }
    let tid = UNIT_POS as usize;
    let base = row * segments;
    let mut red = Shared::<[f32]>::new_slice(threads);
    let mut m = lowest();
    let mut s = tid;
    while s < segments {
        if stats[2 * (base + s) + 1] > 0.0 {
            m = f32::max(m, stats[2 * (base + s)]);
        }
        s += threads;
    }
    red[tid] = m;
    sync_cube();
    reduce_shared(&mut red, tid, threads, true);
    let m = red[0];
    sync_cube();
    let mut l = 0.0f32;
    let mut s = tid;
    while s < segments {
        let ls = stats[2 * (base + s) + 1];
        if ls > 0.0 {
            l += ls * f32::exp(stats[2 * (base + s)] - m);
        }
        s += threads;
    }
    red[tid] = l;
    sync_cube();
    reduce_shared(&mut red, tid, threads, false);
    let l = red[0];
    #[unroll]
    for e in 0..comptime![hd.div_ceil(threads)] {
        let dd = tid + e * threads;
        if dd < hd {
            let mut a = 0.0f32;
            for s in 0..segments {
                if stats[2 * (base + s) + 1] > 0.0 {
                    a += part[(base + s) * hd + dd] * f32::exp(stats[2 * (base + s)] - m);
                }
            }
            out[row * hd + dd] = F::cast_from(a / l);
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
    let (lanes, use_plane) = super::lanes_for(&client);
    let dtype = dtype_to_storage_type(q.dtype);
    if n_rows < SPLIT_BELOW_ROWS && keys > SEGMENT {
        // flash-decoding: a cube per row and segment of slots, then a cube per row combines
        let segments = keys.div_ceil(SEGMENT);
        let f32_buffer = |len: usize| {
            empty_device_contiguous_dtype(
                client.clone(),
                q.device.clone(),
                Shape::from(vec![len]),
                DType::F32,
            )
        };
        let (part, stats) = (
            f32_buffer(n_rows * segments * hd),
            f32_buffer(n_rows * segments * 2),
        );
        let key_lanes = if use_plane { KEY_LANES.min(lanes) } else { 1 };
        let parts = CubeCountSelection::new(&client, (n_rows * segments) as u32).cube_count();
        // SAFETY: as below, with `part` `n_rows · segments × hd` and `stats` `n_rows · segments
        // × 2` f32 (each cube writes its own), a segment's keys at most `SEGMENT` (the shared
        // scores' length); the combining cubes read only those, and each writes its own row.
        unsafe {
            attention_part_kernel::launch_unchecked(
                &client,
                parts,
                CubeDim::new_1d(THREADS as u32),
                q.into_buffer_arg(),
                k.into_buffer_arg(),
                v.into_buffer_arg(),
                part.clone().into_buffer_arg(),
                stats.clone().into_buffer_arg(),
                n_rows,
                t,
                heads,
                kv_heads,
                keys,
                start.start,
                start.offset_arg().into(),
                window.unwrap_or(0),
                scale as f32,
                segments,
                hd,
                THREADS,
                SEGMENT,
                key_lanes,
                dtype,
            );
            attention_combine_kernel::launch_unchecked(
                &client,
                CubeCountSelection::new(&client, n_rows as u32).cube_count(),
                CubeDim::new_1d(THREADS as u32),
                part.into_buffer_arg(),
                stats.into_buffer_arg(),
                out.clone().into_buffer_arg(),
                n_rows,
                segments,
                hd,
                THREADS,
                dtype,
            )
        };
        return Ok(out);
    }
    let cube_count = CubeCountSelection::new(&client, n_rows as u32).cube_count();
    let key_lanes = if use_plane && n_rows >= GROUPED_MIN_ROWS {
        KEY_LANES.min(lanes)
    } else {
        1
    };
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
