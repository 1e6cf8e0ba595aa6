//! The CPU's fused Q6_K product: `y[m, n] = Σ_k x[m, k] · W[n, k]` straight from the packed words
//! (either layout, read in place: no copy of the weight per call), threads splitting the rows of
//! W, each block decoded once into f32 (exactly as ggml dequantizes) and multiplied into every
//! activation row.
//!
//! Written for the compiler's auto-vectorizer: fixed-size blocks and 32-lane accumulators. On
//! x86-64 CPUs with AVX2 and FMA (detected at run time) the same code is compiled for them, since
//! the default x86-64 target has only SSE2.

use crate::ops::Q6kShape;
pub(crate) use crate::ops::packed::BlockSource;
use crate::quant::QK_K;
use crate::quant::q6k::dequantize_parts;

use super::cpu::{SendPtr, for_each_range};

impl<'a> BlockSource<'a> {
    /// `ql`, `qh`, scales and `d` of block `i`.
    #[inline(always)]
    fn parts(&self, i: usize) -> (&'a [u8], &'a [u8], &'a [u8], f32) {
        match self {
            BlockSource::Gguf(b) => {
                let b = &b[i];
                (
                    &b.ql[..],
                    &b.qh[..],
                    bytemuck::cast_slice(&b.scales[..]),
                    b.d().to_f32(),
                )
            }
            BlockSource::Planes(p) => (
                p.ql(i),
                p.qh(i),
                p.scales(i),
                half::f16::from_le_bytes(p.d(i)).to_f32(),
            ),
        }
    }
}

/// `y[m, n]` (row-major, `m × out_features`) for `x` `m × in_features`.
pub(crate) fn matmul(x: &[f32], w: BlockSource<'_>, m: usize, shape: Q6kShape) -> Vec<f32> {
    let n = shape.out_features;
    assert_eq!(x.len(), m * shape.in_features, "x length");
    let mut yt = vec![0f32; n * m]; // [n, m]: a thread's rows are contiguous
    let out = SendPtr(yt.as_mut_ptr());
    for_each_range(n, |r0, r1| {
        // SAFETY: threads write disjoint rows [r0, r1) of yt, which outlives the scope.
        let out = unsafe { std::slice::from_raw_parts_mut(out.get().add(r0 * m), (r1 - r0) * m) };
        rows(x, w, m, shape, r0, r1, out);
    });
    let mut y = vec![0f32; m * n];
    for row in 0..n {
        for mi in 0..m {
            y[mi * n + row] = yt[row * m + mi];
        }
    }
    y
}

fn rows(
    x: &[f32],
    w: BlockSource<'_>,
    m: usize,
    shape: Q6kShape,
    r0: usize,
    r1: usize,
    out: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has the features the function is compiled for.
        unsafe { rows_avx2_fma(x, w, m, shape, r0, r1, out) };
        return;
    }
    rows_generic::<false>(x, w, m, shape, r0, r1, out);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn rows_avx2_fma(
    x: &[f32],
    w: BlockSource<'_>,
    m: usize,
    shape: Q6kShape,
    r0: usize,
    r1: usize,
    out: &mut [f32],
) {
    rows_generic::<true>(x, w, m, shape, r0, r1, out);
}

/// Rows `r0..r1` into `out` (`[r1 − r0, m]`). `FMA`: accumulate with fused multiply-adds (only
/// where the CPU has them: otherwise `mul_add` is a slow library call).
#[inline(always)]
fn rows_generic<const FMA: bool>(
    x: &[f32],
    w: BlockSource<'_>,
    m: usize,
    shape: Q6kShape,
    r0: usize,
    r1: usize,
    out: &mut [f32],
) {
    let (k, nb) = (shape.in_features, shape.blocks_per_row());
    // 32 lanes per activation row: four independent 8-wide accumulators, so that consecutive
    // fused multiply-adds do not wait on each other.
    let mut acc = vec![[0f32; 32]; m];
    let mut wb = [0f32; QK_K];
    for row in r0..r1 {
        acc.iter_mut().for_each(|a| *a = [0.0; 32]);
        for b in 0..nb {
            let (ql, qh, sc, d) = w.parts(row * nb + b);
            dequantize_parts(
                ql.try_into().expect("128"),
                qh.try_into().expect("64"),
                sc.try_into().expect("16"),
                d,
                &mut wb,
            );
            for (mi, a) in acc.iter_mut().enumerate() {
                let xb: &[f32; QK_K] = x[mi * k + b * QK_K..][..QK_K].try_into().expect("256");
                for (xc, wc) in xb.chunks_exact(32).zip(wb.chunks_exact(32)) {
                    for i in 0..32 {
                        if FMA {
                            a[i] = xc[i].mul_add(wc[i], a[i]);
                        } else {
                            a[i] += xc[i] * wc[i];
                        }
                    }
                }
            }
        }
        for (mi, a) in acc.iter().enumerate() {
            let mut lanes = *a;
            let mut width = 32;
            while width > 1 {
                width /= 2;
                for i in 0..width {
                    lanes[i] += lanes[i + width];
                }
            }
            out[(row - r0) * m + mi] = lanes[0];
        }
    }
}
