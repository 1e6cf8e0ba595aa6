//! The AVX-512 build of the fused product (x86-64, picked at run time where the CPU has
//! AVX-512F, for one or two activation rows): [`super::avx2`]'s decoder, then one 16-lane
//! register per 16-weight sub-block, so a sub-block costs one widening load, one conversion and
//! two floating-point operations per activation row.

use std::arch::x86_64::*;

use crate::quant::QK_K;
use crate::quant::QuantWeightDesc;

use super::BlockSource;
use super::avx2::{Decoded, decode};

/// Most activation rows one pass over the weight serves.
const ROWS_PER_PASS: usize = 8;

/// Rows `r0..r1` of `y` into `out` (`[r1 − r0, m]`); `x` is `m × in_features`.
///
/// # Safety
/// The CPU must have AVX-512F (which implies AVX2 and FMA).
#[target_feature(enable = "avx512f")]
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
            3 => pass::<3, 2>(xs, w, m, m0, shape, r0, r1, out),
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
#[target_feature(enable = "avx512f")]
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
        let mut acc = [[_mm512_setzero_ps(); A]; MR];
        for b in 0..nb {
            let (ql, qh, sc, d) = w.parts(row * nb + b);
            // A safe call: AVX-512F implies the AVX2 the decoder is compiled for.
            decode(ql, qh, sc, d, &mut block);
            let xb = b * QK_K;
            // Sub-blocks in groups of `A`, so every accumulator index is a constant once the
            // inner loops unroll.
            for j0 in (0..16).step_by(A) {
                for t in 0..A {
                    let j = j0 + t;
                    // SAFETY: reads the sub-block's 16 code bytes.
                    let c = unsafe { _mm_loadu_si128(block.codes.as_ptr().add(16 * j).cast()) };
                    let q = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(c));
                    let dv = _mm512_set1_ps(block.scales[j]);
                    // One row: scale the sub-block's products once. Several: scale the weights
                    // once (ggml's exact values), then one fused multiply-add per row.
                    let wq = if MR == 1 { q } else { _mm512_mul_ps(q, dv) };
                    for (r, a) in acc.iter_mut().enumerate() {
                        let xj = &xs[r * k + xb + 16 * j..][..16];
                        // SAFETY: `xj` has 16 floats.
                        let xv = unsafe { _mm512_loadu_ps(xj.as_ptr()) };
                        a[t] = if MR == 1 {
                            _mm512_fmadd_ps(dv, _mm512_mul_ps(wq, xv), a[t])
                        } else {
                            _mm512_fmadd_ps(wq, xv, a[t])
                        };
                    }
                }
            }
        }
        for (r, a) in acc.iter().enumerate() {
            let mut s = a[0];
            for &ai in &a[1..] {
                s = _mm512_add_ps(s, ai);
            }
            out[m0 + r] = _mm512_reduce_add_ps(s);
        }
    }
}
