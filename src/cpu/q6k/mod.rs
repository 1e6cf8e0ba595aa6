//! The CPU's fused Q6_K product over a range of W's rows: `y[m, n] = Σ_k x[m, k] · W[n, k]`
//! straight from the packed words (either layout, read in place: no copy of the weight per call),
//! each block decoded once into f32 (exactly as ggml dequantizes) and multiplied into every
//! activation row.
//!
//! On x86-64 the product is written with intrinsics and picked at run time: [`avx512`] for one or
//! two activation rows where the CPU has AVX-512F, [`avx2`] (AVX2 + FMA) otherwise. Elsewhere it
//! is portable code written for the compiler's auto-vectorizer (fixed-size blocks, 32-lane
//! accumulators). The unit tests run every build the CPU has, not only the one picked.

use crate::quant::QK_K;
use crate::quant::QuantWeightDesc;
use crate::quant::q6k::BlockSource;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;

/// Rows `r0..r1` of the weight against the `m` rows of `x`, into `out` (`[r1 − r0, m]`): the
/// best build this CPU has.
pub(super) fn rows(
    x: &[f32],
    w: BlockSource<'_>,
    m: usize,
    shape: QuantWeightDesc,
    r0: usize,
    r1: usize,
    out: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    // AVX-512 wins for one or two activation rows (fewer instructions per weight); with more,
    // the activations' loads dominate and the 256-bit build is faster on the CPUs measured.
    if m <= 2 && std::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has the features the function is compiled for.
        unsafe { avx512::rows(x, w, m, shape, r0, r1, out) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has the features the function is compiled for.
        unsafe { avx2::rows(x, w, m, shape, r0, r1, out) };
        return;
    }
    rows_portable(x, w, m, shape, r0, r1, out);
}

/// Rows `r0..r1` into `out` (`[r1 − r0, m]`), in portable code for the auto-vectorizer: each block
/// decoded into f32 weights, then multiplied into 32-lane accumulators.
fn rows_portable(
    x: &[f32],
    w: BlockSource<'_>,
    m: usize,
    shape: QuantWeightDesc,
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
            w.dequantize_block(row * nb + b, &mut wb);
            for (mi, a) in acc.iter_mut().enumerate() {
                let xb: &[f32; QK_K] = x[mi * k + b * QK_K..][..QK_K].try_into().expect("256");
                for (xc, wc) in xb.chunks_exact(32).zip(wb.chunks_exact(32)) {
                    for i in 0..32 {
                        a[i] += xc[i] * wc[i];
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::{PackedLayout, pack, q6k};

    type Rows = fn(&[f32], BlockSource<'_>, usize, QuantWeightDesc, usize, usize, &mut [f32]);

    /// Every build of the product this CPU can run, each called directly (the dispatcher picks
    /// only one per row count).
    fn builds() -> Vec<(&'static str, Rows)> {
        let mut v: Vec<(&'static str, Rows)> = vec![("portable", rows_portable)];
        #[cfg(target_arch = "x86_64")]
        {
            if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                // SAFETY: the features were just detected.
                v.push(("avx2", |x, w, m, s, r0, r1, o| unsafe {
                    avx2::rows(x, w, m, s, r0, r1, o)
                }));
            } else {
                eprintln!("SKIP avx2 build: this CPU lacks AVX2 or FMA");
            }
            if std::is_x86_feature_detected!("avx512f") {
                // SAFETY: the feature was just detected.
                v.push(("avx512", |x, w, m, s, r0, r1, o| unsafe {
                    avx512::rows(x, w, m, s, r0, r1, o)
                }));
            } else {
                eprintln!("SKIP avx512 build: this CPU lacks AVX-512F");
            }
        }
        v
    }

    /// A fresh pseudo-random stream per run (seeded from the clock, printed for a rerun).
    fn rng() -> impl FnMut() -> f32 {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            | 1;
        eprintln!("cpu_fused tests: seed {seed}");
        let mut s = seed;
        move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        }
    }

    /// Each build, both layouts, odd row ranges and row counts 1..=11 (past one pass of eight),
    /// against f64 on ggml's dequantized weights, within the f32 dot-product bound
    /// γ_K · Σ|x·w| (every dequantized weight is exact in f32).
    #[test]
    fn every_build_matches_f64() {
        let mut r = rng();
        let shape = QuantWeightDesc::q6k(13, 3 * QK_K).unwrap();
        let (n, k) = (shape.out_features, shape.in_features);
        // Rows of different magnitudes; never all zero.
        let wf: Vec<f32> = (0..n * k)
            .map(|i| r() * (1 + i / k) as f32 * 0.37)
            .collect();
        let blocks = q6k::quantize(&wf, 1).expect("quantize");
        let mut deq = vec![0f32; n * k];
        q6k::dequantize_into(&blocks, &mut deq);
        let bytes = q6k::BlockQ6K::slice_as_bytes(&blocks);
        let u = 2f64.powi(-24);
        let gamma = k as f64 * u / (1.0 - k as f64 * u);
        for layout in [PackedLayout::Gguf, PackedLayout::Q6kPlanes] {
            let shape = shape.with_layout(layout).unwrap();
            let words = pack(bytes, shape).unwrap();
            let w = BlockSource::new(&words, shape).expect("packed");
            for m in [1, 2, 3, 5, 8, 11] {
                let x: Vec<f32> = (0..m * k).map(|_| r() * 3.0).collect();
                for (name, f) in builds() {
                    let (r0, r1) = (2, n); // a range that does not start at row 0
                    let mut out = vec![f32::NAN; (r1 - r0) * m];
                    f(&x, w, m, shape, r0, r1, &mut out);
                    for row in r0..r1 {
                        for mi in 0..m {
                            let (mut exact, mut abs) = (0f64, 0f64);
                            for ki in 0..k {
                                let p = x[mi * k + ki] as f64 * deq[row * k + ki] as f64;
                                exact += p;
                                abs += p.abs();
                            }
                            let got = out[(row - r0) * m + mi] as f64;
                            assert!(
                                (got - exact).abs() <= gamma * abs + 1e-30,
                                "{name} {layout:?} m={m}: y[{mi}, {row}] = {got}, f64 {exact}"
                            );
                        }
                    }
                }
            }
        }
    }
}
