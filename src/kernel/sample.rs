//! A token chosen from logits on the device ([`sample_token`]), the choice
//! [`crate::cpu::sampling::pick`] makes: the candidates are found in passes over runs of [`RUN`]
//! values, each cube sorting its run in shared memory (a bitonic network; most likely first,
//! the lower id first among equals) and keeping its best `keep` (`top_k` rounded up to a power
//! of two), until one run holds them all. That cube sorts them, its units weigh the first
//! `top_k` (the softmax's numerators at the temperature), and one unit cuts the top-p nucleus
//! and picks with a uniform draw, read from a device table at a device index (a recorded step
//! replays unchanged) or given at launch. Greedy is `top_k` 1, where a tree reduction to each
//! run's best replaces the sort. Gemma 3's 262,144 logits take two launches greedy, three with
//! top-k 40.
//!
//! Logits are compared as integers (their f32 bits made order-preserving), so no infinity
//! literal is needed (WGSL has none) and NaN is below every number, as if it were not there.

use burn::tensor::{DType, Shape};
use burn_cubecl::{
    kernel::into_contiguous, ops::numeric::empty_device_contiguous_dtype, tensor::CubeTensor,
};
use cubecl::prelude::*;

use super::KernelError;
use crate::cpu::sampling::{MAX_DEVICE_TOP_K, TokenSampling};
use burn::backend::cubecl::dtype_to_storage_type;

/// Values one cube sorts.
const RUN: usize = 1024;
const _: () = assert!(RUN == 1024, "best_of_run starts from a literal RUN / 2");
/// Units per cube (what every wgpu device allows), each exchanging `RUN / 2 / UNITS` pairs per
/// step of the network; also the most candidates the last cube weighs, one per unit.
const UNITS: usize = 256;
/// The key of `-inf`: keys at or below it (`-inf`, NaN, padding) weigh nothing.
const NEG_INF_KEY: u32 = 0x007F_FFFF;
/// The key of `+inf`.
const INF_KEY: u32 = 0xFF80_0000;

/// The uniform draw of a [`sample_token`] launch.
#[derive(Clone, Debug)]
pub struct Draw {
    /// The draw, in `[0, 1)`, when `table` is absent.
    pub value: f32,
    /// `(uniforms, index)`: the draw is `uniforms[index[0]]` (the index clamped to the table),
    /// `uniforms` `F32` values, `index` one `U32` value, both on the logits' device.
    pub table: Option<(CubeTensor, CubeTensor)>,
}

/// The order-preserving key of an f32's bits (NaN: 0, below `-inf`'s).
#[cube]
fn sortable(bits: u32) -> u32 {
    let mut key = 0u32;
    if (bits & 0x7FFF_FFFFu32) <= 0x7F80_0000u32 {
        if bits >= 0x8000_0000u32 {
            key = bits ^ 0xFFFF_FFFFu32;
        } else {
            key = bits | 0x8000_0000u32;
        }
    }
    key
}

/// The f32 of a key (of a number: not NaN's key).
#[cube]
fn value_of(key: u32) -> f32 {
    let mut bits = key ^ 0xFFFF_FFFFu32;
    if key >= 0x8000_0000u32 {
        bits = key & 0x7FFF_FFFFu32;
    }
    f32::reinterpret(bits)
}

/// Run `run` of the logits or of the candidates into `key`, `id` (past `n`: key 0 and id
/// `u32::MAX`, after everything); synchronizes the cube.
#[cube]
#[allow(clippy::too_many_arguments)]
fn load_run<F: Float>(
    logits: ComptimeOption<&[F]>,
    keys: ComptimeOption<&[u32]>,
    ids: ComptimeOption<&[u32]>,
    n: usize,
    run: usize,
    key: &mut [u32],
    id: &mut [u32],
) {
    let base = run * RUN;
    #[comptime]
    match logits {
        ComptimeOption::Some(l) => {
            let mut j = UNIT_POS as usize;
            while j < RUN {
                let g = base + j;
                let mut k = 0u32;
                let mut i = 0xFFFF_FFFFu32;
                if g < n {
                    k = sortable(u32::reinterpret(f32::cast_from(l[g])));
                    i = g as u32;
                }
                key[j] = k;
                id[j] = i;
                j += UNITS;
            }
        }
        ComptimeOption::None => {
            let ks = keys.unwrap();
            let is = ids.unwrap();
            let mut j = UNIT_POS as usize;
            while j < RUN {
                let g = base + j;
                let mut k = 0u32;
                let mut i = 0xFFFF_FFFFu32;
                if g < n {
                    k = ks[g];
                    i = is[g];
                }
                key[j] = k;
                id[j] = i;
                j += UNITS;
            }
        }
    }
    sync_cube();
}

/// Whether the candidate `(ka, ia)` comes before `(kb, ib)`: the larger key, or the lower id
/// among equal keys ([`crate::cpu::sampling::pick`]'s order).
#[cube]
fn ranks_before(ka: u32, ia: u32, kb: u32, ib: u32) -> bool {
    ka > kb || (ka == kb && ia < ib)
}

/// Sorts `key`, `id` (`RUN` pairs in shared memory) most likely first: larger key first, the
/// lower id first among equal keys. A bitonic network, one barrier per step; every unit must
/// call it.
#[cube]
fn sort_run(key: &mut [u32], id: &mut [u32]) {
    let mut k = 2usize;
    while k <= RUN {
        let mut j = k / 2;
        while j > 0 {
            let mut p = UNIT_POS as usize;
            while p < RUN / 2 {
                // the pair (i, i + j), i with bit j clear; blocks with bit k clear end most
                // likely first, the others reversed, so the last merge sorts the whole run
                let i = 2 * p - (p & (j - 1));
                let l = i + j;
                let ki = key[i];
                let kl = key[l];
                let ii = id[i];
                let il = id[l];
                let l_first = ranks_before(kl, il, ki, ii);
                let up = (i & k) == 0;
                // (no `bool == bool`: CUDA's C++ emitter has no such comparison)
                if (l_first && up) || (!l_first && !up) {
                    key[i] = kl;
                    key[l] = ki;
                    id[i] = il;
                    id[l] = ii;
                }
                p += UNITS;
            }
            sync_cube();
            j /= 2;
        }
        k *= 2;
    }
}

/// Moves the most likely of `key`, `id` (`RUN` pairs in shared memory; the lower id among equal
/// keys) to position 0: a tree of `log2(RUN)` steps, what a greedy pass needs instead of the
/// sort. Every unit must call it.
#[cube]
fn best_of_run(key: &mut [u32], id: &mut [u32]) {
    // a literal, not `RUN / 2`: a `const` expression would be a comptime value, and the loop
    // would not see it change
    let mut half = 512usize;
    while half > 0 {
        let mut u = UNIT_POS as usize;
        while u < half {
            let ka = key[u];
            let kb = key[u + half];
            let ia = id[u];
            let ib = id[u + half];
            if ranks_before(kb, ib, ka, ia) {
                key[u] = kb;
                id[u] = ib;
            }
            u += UNITS;
        }
        sync_cube();
        half /= 2;
    }
}

/// The run's best `keep` first: sorted ([`sort_run`]), or for one the best alone
/// ([`best_of_run`]).
#[cube]
fn order_run(key: &mut [u32], id: &mut [u32], #[comptime] keep: usize) {
    if comptime![keep == 1] {
        best_of_run(key, id);
    } else {
        sort_run(key, id);
    }
}

/// One pass: cube `r` sorts run `r` of the logits (or of the last pass's candidates) and
/// writes its first `keep` keys and ids at `r · keep`.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
fn top_k_kernel<F: Float>(
    logits: ComptimeOption<&[F]>,
    keys: ComptimeOption<&[u32]>,
    ids: ComptimeOption<&[u32]>,
    n: usize,
    out_keys: &mut [u32],
    out_ids: &mut [u32],
    #[comptime] keep: usize,
    #[define(F)] _dtype: ElemType,
) {
    let mut key = Shared::<[u32]>::new_slice(RUN);
    let mut id = Shared::<[u32]>::new_slice(RUN);
    let run = CUBE_POS;
    load_run(logits, keys, ids, n, run, &mut key, &mut id);
    order_run(&mut key, &mut id, keep);
    let mut i = UNIT_POS as usize;
    while i < keep {
        out_keys[run * keep + i] = key[i];
        out_ids[run * keep + i] = id[i];
        i += UNITS;
    }
}

/// The last pass, one cube; `greedy` (`top_k` 1): the best of the `n ≤ RUN` candidates to
/// `token[0]` by [`best_of_run`]. Else it sorts the candidates, weighs the first `top_k` (unit `u`
/// the `u`-th: `exp((l − max) / temperature)`, 0 past `-inf`), and unit 0 writes the chosen id
/// to `token[0]`: the first candidate when `top_k` is 1 or the maximum is not finite, else the
/// first of the top-p nucleus where the running weight passes the draw's share of the nucleus'
/// weight (the last weighed candidate if rounding leaves none).
#[cube(launch_unchecked)]
// the nested `if` is a comptime choice around a runtime one: they cannot be one condition
#[allow(clippy::too_many_arguments, clippy::collapsible_if)]
fn pick_kernel<F: Float>(
    logits: ComptimeOption<&[F]>,
    keys: ComptimeOption<&[u32]>,
    ids: ComptimeOption<&[u32]>,
    n: usize,
    uniforms: ComptimeOption<&[f32]>,
    index: ComptimeOption<&[u32]>,
    value: f32,
    top_k: usize,
    temperature: f32,
    top_p: f32,
    token: &mut [u32],
    #[comptime] greedy: bool,
    #[define(F)] _dtype: ElemType,
) {
    let mut key = Shared::<[u32]>::new_slice(RUN);
    let mut id = Shared::<[u32]>::new_slice(RUN);
    let mut weight = Shared::<[f32]>::new_slice(UNITS);
    load_run(logits, keys, ids, n, 0, &mut key, &mut id);
    let u = UNIT_POS as usize;
    if comptime![greedy] {
        best_of_run(&mut key, &mut id);
    } else {
        sort_run(&mut key, &mut id);
        let top = key[0];
        let mut w = 0.0f32;
        if is_finite(top) && u < top_k && key[u] > NEG_INF_KEY {
            w = f32::exp((value_of(key[u]) - value_of(top)) / temperature);
        }
        weight[u] = w;
        sync_cube();
    }
    if u == 0 {
        let mut chosen = id[0];
        if comptime![!greedy] {
            if is_finite(key[0]) && top_k > 1 {
                let r = draw(uniforms, index, value);
                chosen = choose(&weight, &id, top_k, top_p, r);
            }
        }
        token[0] = chosen;
    }
}

/// Whether a key is a finite number's.
#[cube]
fn is_finite(key: u32) -> bool {
    key > NEG_INF_KEY && key < INF_KEY
}

/// The draw: `uniforms[index[0]]` (clamped to the table) where a table is given, else `value`.
#[cube]
fn draw(uniforms: ComptimeOption<&[f32]>, index: ComptimeOption<&[u32]>, value: f32) -> f32 {
    let mut r = value;
    #[comptime]
    match uniforms {
        ComptimeOption::Some(table) => {
            let at = index.unwrap()[0] as usize;
            r = table[at.min(table.len() - 1)];
        }
        ComptimeOption::None => {}
    }
    r
}

/// The id the draw `r` picks from the first `k` weighed candidates: cut to the shortest prefix
/// whose weight reaches `top_p` of theirs (`top_p` ≥ 1: all), then the first whose running
/// weight passes `r` of the prefix's.
#[cube]
fn choose(weight: &[f32], id: &[u32], k: usize, top_p: f32, r: f32) -> u32 {
    let total = prefix_weight(weight, k);
    let mut keep = k;
    if top_p < 1.0 {
        let mut sum = 0.0f32;
        let mut i = 0usize;
        while keep == k && i < k {
            sum += weight[i];
            if sum >= top_p * total {
                keep = i + 1;
            }
            i += 1;
        }
    }
    let mut target = r * prefix_weight(weight, keep);
    let mut chosen = id[0];
    let mut done = false;
    let mut i = 0usize;
    while !done && i < keep {
        let w = weight[i];
        if w > 0.0 {
            chosen = id[i];
            done = target < w;
            target -= w;
        }
        i += 1;
    }
    chosen
}

/// The weight of the first `len` candidates.
#[cube]
fn prefix_weight(weight: &[f32], len: usize) -> f32 {
    let mut total = 0.0f32;
    let mut i = 0usize;
    while i < len {
        total += weight[i];
        i += 1;
    }
    total
}

/// The token chosen from `logits` (any float dtype and shape, read flat: `n` values) with
/// `sampling` and `draw`, as a `[1]` `U32` tensor on their device: the choice of
/// [`pick`](crate::cpu::sampling::pick), computed in f32 (a draw within f32 rounding of a
/// boundary between two candidates may pick the other), except that logits without a finite
/// maximum give the first of the sorted candidates. Nothing is read back: a recorded step
/// replays it, the draw moving on with its index.
pub fn sample_token(
    logits: CubeTensor,
    sampling: TokenSampling,
    draw: Draw,
) -> Result<CubeTensor, KernelError> {
    if !matches!(
        logits.dtype,
        DType::F32 | DType::F16 | DType::BF16 | DType::Flex32
    ) {
        return Err(KernelError::ActivationDtype(logits.dtype));
    }
    let n = logits.meta.num_elements();
    if n == 0 || u32::try_from(n).is_err() {
        return Err(KernelError::Logits { n });
    }
    if !sampling.runs_on_device() {
        return Err(KernelError::Sampling {
            top_k: sampling.top_k,
        });
    }
    if let Some((uniforms, index)) = &draw.table {
        if uniforms.dtype != DType::F32 || uniforms.meta.num_elements() == 0 {
            return Err(KernelError::Uniforms {
                shape: uniforms.meta.shape().to_vec(),
                dtype: uniforms.dtype,
            });
        }
        if index.meta.num_elements() != 1 || index.dtype != DType::U32 {
            return Err(KernelError::Offset {
                shape: index.meta.shape().to_vec(),
                dtype: index.dtype,
            });
        }
        if uniforms.device != logits.device || index.device != logits.device {
            return Err(KernelError::Device);
        }
    }
    let (top_k, temperature) = if sampling.is_greedy() {
        (1, 1.0)
    } else {
        (sampling.top_k.min(n), sampling.temperature)
    };
    let keep = top_k.next_power_of_two();
    debug_assert!(keep <= MAX_DEVICE_TOP_K && MAX_DEVICE_TOP_K <= UNITS && keep * 4 <= RUN);
    let client = logits.client.clone();
    let dtype = dtype_to_storage_type(logits.dtype);
    let cube_dim = CubeDim::new_1d(UNITS as u32);
    let device = logits.device.clone();
    let u32s = |len: usize| {
        empty_device_contiguous_dtype(
            client.clone(),
            device.clone(),
            Shape::new([len]),
            DType::U32,
        )
    };
    let logits = into_contiguous(logits);
    let (mut candidates, mut len): (Option<(CubeTensor, CubeTensor)>, usize) = (None, n);
    while len > RUN {
        let runs = len.div_ceil(RUN);
        let (keys, ids) = (u32s(runs * keep), u32s(runs * keep));
        let (from_logits, from_keys, from_ids) = inputs(&logits, &candidates);
        // SAFETY: `runs` cubes, cube r reading its run of `len` values (`len` elements in each
        // input; reads past `len` are skipped) and writing `keep` keys and ids at r · keep of
        // `runs · keep`; shared memory of RUN pairs, indexed below RUN.
        unsafe {
            top_k_kernel::launch_unchecked(
                &client,
                CubeCount::new_1d(runs as u32),
                cube_dim,
                from_logits.into(),
                from_keys.into(),
                from_ids.into(),
                len,
                keys.clone().into_buffer_arg(),
                ids.clone().into_buffer_arg(),
                keep,
                dtype,
            )
        };
        (candidates, len) = (Some((keys, ids)), runs * keep);
    }
    let token = u32s(1);
    let (from_logits, from_keys, from_ids) = inputs(&logits, &candidates);
    let (uniforms, index) = match draw.table {
        Some((u, i)) => (
            Some(into_contiguous(u).into_buffer_arg()),
            Some(into_contiguous(i).into_buffer_arg()),
        ),
        None => (None, None),
    };
    // SAFETY: one cube reading `len ≤ RUN` values (reads past `len` skipped), the draw's table
    // at most its last element and one index (checked above), writing token[0]; `top_k ≤
    // UNITS` weights in shared memory.
    unsafe {
        pick_kernel::launch_unchecked(
            &client,
            CubeCount::new_1d(1),
            cube_dim,
            from_logits.into(),
            from_keys.into(),
            from_ids.into(),
            len,
            uniforms.into(),
            index.into(),
            draw.value,
            top_k,
            temperature,
            sampling.top_p,
            token.clone().into_buffer_arg(),
            top_k == 1,
            dtype,
        )
    };
    Ok(token)
}

/// A pass's inputs: the logits on the first pass, the last pass's keys and ids after it.
fn inputs(
    logits: &CubeTensor,
    candidates: &Option<(CubeTensor, CubeTensor)>,
) -> (Option<BufferArg>, Option<BufferArg>, Option<BufferArg>) {
    match candidates {
        None => (Some(logits.clone().into_buffer_arg()), None, None),
        Some((keys, ids)) => (
            None,
            Some(keys.clone().into_buffer_arg()),
            Some(ids.clone().into_buffer_arg()),
        ),
    }
}
