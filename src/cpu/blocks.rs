//! The CPU's fused product for every block format (the GGUF layout, and Q6_K's planes) over a
//! range of W's rows: `y[m, n] = Σ_k x[m, k] · W[n, k]` with the blocks read in place from the
//! packed words. Each block is decoded once into its integer codes and per-sub-block scales and
//! mins ([`BlockDecode`]), its row's bytes fetched into the cache two kilobytes ahead, and
//! multiplied into up to eight activation rows at a time with explicit SIMD vectors: for one row
//! of a format without mins, the codes go into the activations and each sub-block's partial sums
//! are scaled once; otherwise each weight is formed once in a register (`scale · q − min`, ggml's
//! dequantized value bit for bit) and multiplied into every row.
//!
//! Written once, generic over the block decoder (a [`BlockDecode`] type, inlined) and the block's
//! geometry (constants, so the decoder's indexing needs no bounds checks), on macerator's portable
//! SIMD: the product is compiled for every instruction set macerator knows (SSE4.2, AVX2 + FMA,
//! AVX-512 on x86-64; NEON on aarch64; a scalar fallback) and the best the CPU has is picked at
//! run time. The decoders are compiled inside each of those builds, so the compiler vectorizes
//! them with the same instructions.

use std::marker::PhantomData;

use macerator::{Scalar, Simd, VMulAdd, Vector, vload_unaligned};

use crate::quant::{BlockDecode, PackError, QuantWeightDesc};

/// Rows `r0..r1` of W (its blocks in `src`, `k` weights a row) against the `m` rows of `x`, into
/// `out` (`[r1 − r0, m]`): each weight row against up to eight activation rows at a time.
#[macerator::with_simd]
#[allow(clippy::too_many_arguments)]
pub(super) fn rows<'a, S: Simd, Q: BlockDecode, const BS: usize, const TS: usize>(
    _decoder: PhantomData<Q>,
    x: &[f32],
    m: usize,
    k: usize,
    src: Q::Src<'a>,
    r0: usize,
    r1: usize,
    out: &mut [f32],
) {
    let nb = k / BS;
    for row in r0..r1 {
        let sums = &mut out[(row - r0) * m..][..m];
        let first = row * nb;
        // eight activation rows a pass, then four, then the last one to three in one pass: each
        // block decoded once per pass
        let mut mi = 0;
        while mi < m {
            let xs = &x[mi * k..];
            let left = m - mi;
            let done = match left {
                8.. => put(sums, mi, row_dot::<S, Q, BS, TS, 8>(src, first, nb, xs, k)),
                4..=7 => put(sums, mi, row_dot::<S, Q, BS, TS, 4>(src, first, nb, xs, k)),
                3 => put(sums, mi, row_dot::<S, Q, BS, TS, 3>(src, first, nb, xs, k)),
                2 => put(sums, mi, row_dot::<S, Q, BS, TS, 2>(src, first, nb, xs, k)),
                _ => put(sums, mi, row_dot::<S, Q, BS, TS, 1>(src, first, nb, xs, k)),
            };
            mi += done;
        }
    }
}

/// Writes a pass's `R` sums at `sums[mi..]`; returns `R`.
#[inline(always)]
fn put<const R: usize>(sums: &mut [f32], mi: usize, pass: [f32; R]) -> usize {
    sums[mi..mi + R].copy_from_slice(&pass);
    R
}

/// One weight row (its `nb` blocks from block `first` of `src`) against the `R` activation rows
/// of `x` (`k` apart), each block decoded once into codes for all of them. One row of a format
/// without mins multiplies the codes into the activations and scales each sub-block's partial
/// sums once; otherwise each weight is formed once in a register (`scale · q − min`, ggml's
/// value: `scale · q` is exact), then multiplied into every row.
#[inline(always)]
fn row_dot<S: Simd, Q: BlockDecode, const BS: usize, const TS: usize, const R: usize>(
    src: Q::Src<'_>,
    first: usize,
    nb: usize,
    x: &[f32],
    k: usize,
) -> [f32; R] {
    let lanes = f32::lanes::<S>();
    let zero = 0f32.splat::<S>();
    let load = |v: &[f32], at: usize| -> Vector<S, f32> {
        assert!(at + lanes <= v.len());
        // SAFETY: checked just above.
        unsafe { vload_unaligned(v.as_ptr().add(at)) }
    };
    let mut acc = [[zero; 2]; R];
    let (mut q, mut scale, mut min) = ([0f32; BS], [0f32; 16], [0f32; 16]);
    for (b, block) in Q::blocks(src, first, nb).enumerate() {
        prefetch_ahead::<Q, TS>(block);
        Q::scales(block, &mut scale, &mut min);
        // The scales stay one vectorized computation stored to memory, read back with one
        // broadcast load each: once the sub-block loop below unrolls, the compiler otherwise
        // scalarizes the arrays into a conversion, a multiply and a broadcast per scale (about
        // half of a Q2_K block's instructions). An identity for the values; formats with one
        // scale a block need none.
        if BS > Q::SUB {
            std::hint::black_box((&mut scale, &mut min));
        }
        // this block's activations, once per row: the sub-block slices below are then constant
        // offsets, without a bounds check each
        let xb: [&[f32]; R] = std::array::from_fn(|r| &x[r * k + b * BS..][..BS]);
        for (run, q) in q.chunks_exact_mut(32).enumerate() {
            let mut c = [0i8; 32];
            Q::codes(block, crate::quant::codes::Soft, run, &mut c);
            for (q, c) in q.iter_mut().zip(c) {
                *q = f32::from(c);
            }
        }
        // vectors per sub-block; where a sub-block is one vector (16 weights, 16 lanes),
        // consecutive sub-blocks alternate between the two accumulators (two dependency chains)
        let per = Q::SUB / lanes;
        for s in 0..BS / Q::SUB {
            let qs = &q[s * Q::SUB..][..Q::SUB];
            let sc = scale[s].splat::<S>();
            let mn = (-min[s]).splat::<S>();
            // SUB (16 or 32) is a multiple of the lane count (1 to 16), so every load is whole;
            // the loops count a constant number of vectors (after inlining), so they unroll. A
            // step that alternates the two chains adds into the first and swaps them, so that no
            // accumulator is picked by a run-time index: one so indexed lives in memory, and
            // each step waits on the last one's store.
            if Q::MIN || R > 1 {
                // each weight formed once (`scale · q − min`, or the exact `scale · q`), then
                // one fused multiply-add per activation row
                for j in 0..per {
                    let q = load(qs, j * lanes);
                    let w = if Q::MIN {
                        f32::vmul_add(sc, q, mn)
                    } else {
                        sc * q
                    };
                    for (r, acc) in acc.iter_mut().enumerate() {
                        let xs = &xb[r][s * Q::SUB..][..Q::SUB];
                        let [a0, a1] = *acc;
                        let a = f32::vmul_add(w, load(xs, j * lanes), a0);
                        // four rows or more are enough chains: one accumulator each (eight rows
                        // then fit AVX2's sixteen registers)
                        *acc = if R >= 4 { [a, a1] } else { [a1, a] };
                    }
                }
            } else {
                // one row, no mins: the codes into the activations, scaled once per sub-block
                let acc = &mut acc[0];
                let xs = &xb[0][s * Q::SUB..][..Q::SUB];
                let [a0, a1] = *acc;
                if per == 1 {
                    *acc = [a1, f32::vmul_add(sc, load(qs, 0) * load(xs, 0), a0)];
                } else {
                    let mut p = [zero; 2];
                    for j in 0..per {
                        let at = j * lanes;
                        p[j % 2] = f32::vmul_add(load(qs, at), load(xs, at), p[j % 2]);
                    }
                    *acc = [f32::vmul_add(sc, p[0], a0), f32::vmul_add(sc, p[1], a1)];
                }
            }
        }
    }
    // a loop, not `acc.map`: a closure would be compiled outside this SIMD build, not inlined,
    // and pay a call (with the intrinsics inside it called too) for every weight row
    let mut sums = [0f32; R];
    for (sum, [a, b]) in sums.iter_mut().zip(acc) {
        *sum = (a + b).reduce_add();
    }
    sums
}

/// How far ahead of the block being decoded its row's bytes are fetched into the cache. The
/// hardware prefetcher alone left one thread at 5–6 GB/s on the Q8_0 weights of one benchmark
/// machine (AMD EPYC), which reads 9–10 GB/s, where 1 KiB and 2 KiB ahead did equally well; on
/// another (Intel Xeon) 2 KiB read Gemma-3's Q8_0 head 1.13–1.33× faster than 1 KiB, and the
/// other formats were unchanged (PERF.md).
const PREFETCH: usize = 2048;

/// Fetches the row's bytes [`PREFETCH`] ahead of a block into the cache: every block asks for
/// each cache line of 64 bytes it spans (a block under a line, Q4_0 … Q8_0, asks for its first;
/// the two or three of a line ask for it alike). Asking once per line instead, behind a branch
/// on the block's index or address, cost a branch a block that mispredicts (PERF.md, session
/// 27); `TS` is a constant: the loop unrolls.
#[inline(always)]
pub(super) fn prefetch_ahead<Q: BlockDecode, const TS: usize>(block: Q::Block<'_>) {
    let at = Q::addr(block);
    for line in (0..TS).step_by(64) {
        prefetch(at.wrapping_add(PREFETCH + line));
    }
}

/// Asks the cache for the line holding `p` (a hint: never faults, whatever the address); a no-op
/// where the architecture has no stable prefetch instruction.
#[inline(always)]
fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch reads nothing architecturally visible and never faults, whatever the
    // address; SSE, which it needs, is part of x86-64.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(p.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Checks that `words` hold `desc` in the GGUF layout; returns its bytes.
pub(super) fn gguf_bytes(words: &[u32], desc: QuantWeightDesc) -> Result<&[u8], PackError> {
    if desc.layout != crate::quant::PackedLayout::Gguf {
        return Err(PackError::CpuLayout {
            ggml_type: desc.ggml_type,
            layout: desc.layout,
        });
    }
    desc.check_words(words)?;
    Ok(&bytemuck::cast_slice::<u32, u8>(words)[..desc.n_bytes()])
}
