//! The AVX2 + FMA build of the fused product, written with intrinsics (picked at run time on
//! x86-64 CPUs that have both).
//!
//! Per block: the 256 six-bit codes are decoded 32 at a time with byte masks into `q − 32` as
//! signed bytes (one small stack buffer, the codes of the blocks ahead prefetched); then, per
//! 16-weight sub-block, the codes are widened to f32 once for all activation rows. With one row
//! the sub-block's sum is scaled by ggml's `d · sc` with one fused multiply-add,
//! `acc += (d·sc) · Σ x·(q − 32)`; with several, ggml's weight `(d·sc)·(q − 32)` is made once
//! and multiplied into every row. Up to eight activation rows share each decoded block.

use std::arch::x86_64::*;

use crate::quant::QK_K;
use crate::quant::QuantWeightDesc;

use super::BlockSource;

/// Most activation rows one pass over the weight serves (eight accumulators, four working
/// registers: twelve of the sixteen `ymm` registers).
const ROWS_PER_PASS: usize = 8;

/// One decoded block.
#[repr(C, align(32))]
pub(super) struct Decoded {
    /// `q − 32` as signed bytes, in ggml's element order.
    pub(super) codes: [i8; QK_K],
    /// ggml's sub-block scales `d · sc`, rounded as ggml rounds them.
    pub(super) scales: [f32; 16],
}

/// Rows `r0..r1` of `y` into `out` (`[r1 − r0, m]`); `x` is `m × in_features`.
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn rows(
    x: &[f32],
    w: BlockSource<'_>,
    m: usize,
    shape: QuantWeightDesc,
    r0: usize,
    r1: usize,
    out: &mut [f32],
) {
    let k = shape.in_features;
    assert!(
        x.len() == m * k && out.len() == (r1 - r0) * m,
        "operand lengths"
    );
    let mut m0 = 0;
    while m0 < m {
        let mr = (m - m0).min(ROWS_PER_PASS);
        let xs = &x[m0 * k..(m0 + mr) * k];
        // One monomorphized pass per row count: the accumulators stay in registers.
        match mr {
            1 => pass::<1, 4>(xs, w, m, m0, shape, r0, r1, out),
            2 => pass::<2, 2>(xs, w, m, m0, shape, r0, r1, out),
            3 => pass::<3, 1>(xs, w, m, m0, shape, r0, r1, out),
            4 => pass::<4, 1>(xs, w, m, m0, shape, r0, r1, out),
            5 => pass::<5, 1>(xs, w, m, m0, shape, r0, r1, out),
            6 => pass::<6, 1>(xs, w, m, m0, shape, r0, r1, out),
            7 => pass::<7, 1>(xs, w, m, m0, shape, r0, r1, out),
            _ => pass::<8, 1>(xs, w, m, m0, shape, r0, r1, out),
        }
        m0 += mr;
    }
}

/// Activation rows `m0..m0 + MR` (given as `xs`, `MR × in_features`) against weight rows
/// `r0..r1`, with `A` independent accumulators per activation row (so that at least four fused
/// multiply-add chains are in flight).
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
fn pass<const MR: usize, const A: usize>(
    xs: &[f32],
    w: BlockSource<'_>,
    m: usize,
    m0: usize,
    shape: QuantWeightDesc,
    r0: usize,
    r1: usize,
    out: &mut [f32],
) {
    let (k, nb) = (shape.in_features, shape.blocks_per_row());
    debug_assert_eq!(xs.len(), MR * k);
    let mut block = Decoded {
        codes: [0; QK_K],
        scales: [0.0; 16],
    };
    for row in r0..r1 {
        let out = &mut out[(row - r0) * m..];
        let mut acc = [[_mm256_setzero_ps(); A]; MR];
        for b in 0..nb {
            let (ql, qh, sc, d) = w.parts(row * nb + b);
            decode(ql, qh, sc, d, &mut block);
            let xb = b * QK_K;
            // Sub-blocks in groups of `A`, so every accumulator index is a constant once the
            // inner loops unroll (a dynamic index would keep the accumulators in memory).
            for j0 in (0..16).step_by(A) {
                for t in 0..A {
                    let j = j0 + t;
                    let c = &block.codes[16 * j..16 * j + 16];
                    // SAFETY: `c` has 16 bytes; each load reads 8 of them.
                    let (c0, c1) = unsafe {
                        (
                            _mm_loadl_epi64(c.as_ptr().cast()),
                            _mm_loadl_epi64(c.as_ptr().add(8).cast()),
                        )
                    };
                    let q0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(c0));
                    let q1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(c1));
                    let dv = _mm256_set1_ps(block.scales[j]);
                    // One row: scale the sub-block's sum once (three operations per 16
                    // weights). Several: scale the weights once (ggml's exact values), then two
                    // fused multiply-adds per row.
                    let (w0, w1) = if MR == 1 {
                        (q0, q1)
                    } else {
                        (_mm256_mul_ps(q0, dv), _mm256_mul_ps(q1, dv))
                    };
                    for (r, a) in acc.iter_mut().enumerate() {
                        let xj = &xs[r * k + xb + 16 * j..][..16];
                        // SAFETY: `xj` has 16 floats; each load reads 8 of them.
                        let (x0, x1) = unsafe {
                            (
                                _mm256_loadu_ps(xj.as_ptr()),
                                _mm256_loadu_ps(xj.as_ptr().add(8)),
                            )
                        };
                        a[t] = if MR == 1 {
                            let p = _mm256_fmadd_ps(w1, x1, _mm256_mul_ps(w0, x0));
                            _mm256_fmadd_ps(dv, p, a[t])
                        } else {
                            _mm256_fmadd_ps(w1, x1, _mm256_fmadd_ps(w0, x0, a[t]))
                        };
                    }
                }
            }
        }
        for (r, a) in acc.iter().enumerate() {
            let mut s = a[0];
            for &ai in &a[1..] {
                s = _mm256_add_ps(s, ai);
            }
            out[m0 + r] = hsum(s);
        }
    }
}

/// Decodes one block: its codes into `q − 32`, 32 bytes per instruction (ggml's element order:
/// in each 128-weight half, `ql[l]`'s low nibble is element `l`, `ql[l + 32]`'s is `l + 32`,
/// their high nibbles `l + 64` and `l + 96`, and `qh[l]` holds bits 4–5 of all four), and its
/// scales. Not inlined on purpose: the product then reads the results from memory with widening
/// loads, instead of the compiler carrying them in registers through shuffles.
#[target_feature(enable = "avx2")]
#[inline(never)]
pub(super) fn decode(ql: &[u8; 128], qh: &[u8; 64], sc: &[u8; 16], d: f32, out: &mut Decoded) {
    // Ask for the codes of the blocks ahead (eight blocks in the planes layout): the hardware
    // prefetcher alone leaves each core waiting on memory here. A prefetch never faults, and
    // the addresses are only computed (`wrapping_add`), never dereferenced.
    _mm_prefetch::<_MM_HINT_T0>(ql.as_ptr().wrapping_add(1024).cast());
    _mm_prefetch::<_MM_HINT_T0>(ql.as_ptr().wrapping_add(1024 + 64).cast());
    _mm_prefetch::<_MM_HINT_T0>(qh.as_ptr().wrapping_add(512).cast());
    let low = _mm256_set1_epi8(0x0F);
    let high = _mm256_set1_epi8(0x30);
    let offset = _mm256_set1_epi8(32);
    for h in 0..2 {
        // SAFETY: every load reads 32 bytes inside `ql` (128) or `qh` (64), every store 32 bytes
        // inside `out.codes` (256); unaligned loads and stores.
        unsafe {
            let a = _mm256_loadu_si256(ql.as_ptr().add(64 * h).cast());
            let b = _mm256_loadu_si256(ql.as_ptr().add(64 * h + 32).cast());
            let c = _mm256_loadu_si256(qh.as_ptr().add(32 * h).cast());
            // 16-bit shifts: the bits that cross into a neighbouring byte are masked off.
            let q = [
                _mm256_or_si256(
                    _mm256_and_si256(a, low),
                    _mm256_and_si256(_mm256_slli_epi16(c, 4), high),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(b, low),
                    _mm256_and_si256(_mm256_slli_epi16(c, 2), high),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16(a, 4), low),
                    _mm256_and_si256(c, high),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16(b, 4), low),
                    _mm256_and_si256(_mm256_srli_epi16(c, 2), high),
                ),
            ];
            for (g, qg) in q.into_iter().enumerate() {
                let dst = out.codes.as_mut_ptr().add(128 * h + 32 * g);
                _mm256_storeu_si256(dst.cast(), _mm256_sub_epi8(qg, offset));
            }
        }
    }
    // SAFETY: `sc` has 16 bytes; `out.scales` 16 floats, 32-byte aligned.
    unsafe {
        let sc = _mm_loadu_si128(sc.as_ptr().cast());
        let d = _mm256_set1_ps(d);
        let lo = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(sc));
        let hi = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(sc, 8)));
        _mm256_store_ps(out.scales.as_mut_ptr(), _mm256_mul_ps(d, lo));
        _mm256_store_ps(out.scales.as_mut_ptr().add(8), _mm256_mul_ps(d, hi));
    }
}

/// The sum of the eight lanes.
#[target_feature(enable = "avx2")]
fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    _mm_cvtss_f32(s)
}
