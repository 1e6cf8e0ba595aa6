//! The CPU's int8 product ([`crate::quant::Activations::Int8`]) for the K formats: the
//! activations rounded to int8 once per call, in runs of the weight's block (256, one step each,
//! as llama.cpp's CPU rounds them for its integer products: `q8_K`); then, per block, the codes
//! against the rounded activations as integers, each run of 32 scaled by its sub-blocks' integer
//! scales into 32-bit lanes ([`RunDot`]), and float work once per block:
//! `dx · (d · Σ sc·q·xq − dmin · Σ m·Σxq)`, the mins' term from the sums of each sub-block's
//! activation codes, taken once per call. (The formats of 32-weight blocks round their
//! activations here too, then take the float product, faster for them: [`super::matmul_int8`].)
//!
//! Written once, generic over the block decoder (as the float product, [`super::blocks`]) and
//! over [`RunDot`], the one piece written per instruction set: ggml's signed byte dot (`vpsignb`,
//! `vpmaddubsw`, then `vpmaddwd` with the scales) where the CPU has AVX2, which compilers do not
//! form from portable code (PERF.md, sessions 22, 24 and 25); elsewhere a portable 16-bit dot
//! compiled for every instruction set macerator knows.

use std::marker::PhantomData;

use macerator::Simd;

use crate::quant::{BlockDecode, codes::Ints};

/// Activation rows rounded to int8 in runs of `run` elements (a weight's block), the values
/// `x̂ = dx · q` with `q = round(x · 127 / max |x|)` in −127..=127 and `dx = max |x| / 127` for
/// each run: a run of zeros stays zeros, and a run holding an infinity or a NaN gets a NaN step
/// (every product it enters is then NaN, as the float product's would be).
pub(crate) struct Int8Rows {
    /// The codes, `m × k`.
    q: Vec<i8>,
    /// Each run's step, `m × k / run`.
    dx: Vec<f32>,
    /// Each sub-block's sum of codes (the mins' term), `m × k / sub`.
    sums: Vec<i32>,
    /// Elements a row.
    k: usize,
    /// Elements a run.
    run: usize,
    /// Elements a sub-block.
    sub: usize,
}

impl Int8Rows {
    /// `x` (`m × k` row-major, `k` a multiple of `run`, `run` of `sub`) rounded in runs of `run`,
    /// with the sums of each `sub` codes.
    pub(crate) fn new(x: &[f32], k: usize, run: usize, sub: usize) -> Self {
        debug_assert!(
            k.is_multiple_of(run) && run.is_multiple_of(sub) && x.len().is_multiple_of(k)
        );
        let mut q = vec![0i8; x.len()];
        let mut dx = Vec::with_capacity(x.len() / run);
        for (x, q) in x.chunks_exact(run).zip(q.chunks_exact_mut(run)) {
            let amax = x.iter().fold(0f32, |a, v| a.max(v.abs()));
            dx.push(if x.iter().all(|v| v.is_finite()) {
                amax / 127.0
            } else {
                f32::NAN
            });
            let inv = if amax > 0.0 { 127.0 / amax } else { 0.0 };
            for (q, v) in q.iter_mut().zip(x) {
                // a NaN (an infinity times a zero `inv`) becomes 0: the run's NaN step carries it
                *q = (v * inv).round().clamp(-127.0, 127.0) as i8;
            }
        }
        let sums = q
            .chunks_exact(sub)
            .map(|s| s.iter().map(|&q| i32::from(q)).sum())
            .collect();
        Self {
            q,
            dx,
            sums,
            k,
            run,
            sub,
        }
    }

    /// Rows held.
    pub(crate) fn m(&self) -> usize {
        self.q.len() / self.k.max(1)
    }

    /// The rounded activations `dx · q`, `m × k`: what the product multiplies.
    pub(crate) fn values(&self) -> Vec<f32> {
        let run = self.run;
        (self.q.iter().enumerate())
            .map(|(i, &q)| self.dx[i / run] * f32::from(q))
            .collect()
    }
}

/// The integer dot product of one run of 32 weights and activations, scaled per sub-block:
/// `Σ_l sc[s(l)] · q[l] · x[l]` into 32-bit lanes (`|sc · q · x| ≤ 128 · 128 · 127`, and a block's
/// sum of at most 256 of them fits in an i32). Implemented once per instruction set with a
/// multiply-add of bytes, and once in portable code.
pub(crate) trait RunDot: Copy {
    /// The running sums, in lanes.
    type Acc: Copy;
    /// Sums of zero.
    fn zero(self) -> Self::Acc;
    /// `acc` plus a run's products: its weights' codes `q` and activations' codes `x` (both in
    /// −128..=127, `x` never −128), `sc[0]` the scale of its first 16 weights, `sc[1]` of the
    /// other 16.
    fn add(self, acc: Self::Acc, q: &[i8; 32], x: &[i8; 32], sc: [i16; 2]) -> Self::Acc;
    /// The lanes' total.
    fn total(self, acc: Self::Acc) -> i32;
}

/// [`RunDot`] in portable code: 16-bit products summed in 32-bit lanes (LLVM forms a
/// `vpmaddwd` or its kind from the sum).
#[derive(Clone, Copy)]
struct Portable;

impl RunDot for Portable {
    type Acc = i32;
    #[inline(always)]
    fn zero(self) -> i32 {
        0
    }
    #[inline(always)]
    fn add(self, acc: i32, q: &[i8; 32], x: &[i8; 32], sc: [i16; 2]) -> i32 {
        let mut halves = [0i32; 2];
        for (h, half) in halves.iter_mut().enumerate() {
            for l in 16 * h..16 * h + 16 {
                *half += i32::from(i16::from(q[l]) * i16::from(x[l]));
            }
        }
        acc + halves[0] * i32::from(sc[0]) + halves[1] * i32::from(sc[1])
    }
    #[inline(always)]
    fn total(self, acc: i32) -> i32 {
        acc
    }
}

/// [`RunDot`] on AVX2: ggml's signed byte dot. `|q|` and `x · sign(q)` into `vpmaddubsw`
/// (unsigned times signed bytes, pairs summed in 16 bits: at most 2 · 128 · 127, no
/// saturation), then `vpmaddwd` with the two sub-blocks' scales. A value of it exists only
/// where the CPU has AVX2 ([`rows`] makes it after checking), which makes its intrinsics sound.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
struct Avx2(());

#[cfg(target_arch = "x86_64")]
impl RunDot for Avx2 {
    type Acc = std::arch::x86_64::__m256i;
    #[inline(always)]
    fn zero(self) -> Self::Acc {
        // SAFETY: AVX2 is present (a value of `Avx2` exists).
        unsafe { std::arch::x86_64::_mm256_setzero_si256() }
    }
    #[inline(always)]
    fn add(self, acc: Self::Acc, q: &[i8; 32], x: &[i8; 32], sc: [i16; 2]) -> Self::Acc {
        use std::arch::x86_64::*;
        // SAFETY: AVX2 is present (a value of `Avx2` exists); the loads read the 32 bytes of
        // `q` and `x`, unaligned.
        unsafe {
            let q = _mm256_loadu_si256(q.as_ptr().cast());
            let x = _mm256_loadu_si256(x.as_ptr().cast());
            let pairs = _mm256_maddubs_epi16(_mm256_abs_epi8(q), _mm256_sign_epi8(x, q));
            let scales = _mm256_inserti128_si256::<1>(
                _mm256_castsi128_si256(_mm_set1_epi16(sc[0])),
                _mm_set1_epi16(sc[1]),
            );
            _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, scales))
        }
    }
    #[inline(always)]
    fn total(self, acc: Self::Acc) -> i32 {
        use std::arch::x86_64::*;
        // SAFETY: AVX2 is present (a value of `Avx2` exists).
        unsafe {
            let s = _mm_add_epi32(
                _mm256_castsi256_si128(acc),
                _mm256_extracti128_si256::<1>(acc),
            );
            let s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
            _mm_cvtsi128_si32(_mm_add_epi32(s, _mm_shuffle_epi32::<1>(s)))
        }
    }
}

/// Rows `r0..r1` of W (its blocks in `src`, `x.k` weights a row) against the rows of `x`
/// (rounded in runs of `BS`), into `out` (`[r1 − r0, m]`): with ggml's byte dot where the CPU
/// has AVX2, else the portable one.
pub(super) fn rows<Q: BlockDecode, const BS: usize, const TS: usize>(
    x: &Int8Rows,
    src: Q::Src<'_>,
    r0: usize,
    r1: usize,
    out: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, which the function is compiled for.
        unsafe { rows_avx2::<Q, BS, TS>(x, src, r0, r1, out) };
        return;
    }
    rows_portable::<Q, BS, TS>(PhantomData, x, src, r0, r1, out)
}

/// [`product`] with [`Avx2`], compiled for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn rows_avx2<Q: BlockDecode, const BS: usize, const TS: usize>(
    x: &Int8Rows,
    src: Q::Src<'_>,
    r0: usize,
    r1: usize,
    out: &mut [f32],
) {
    product::<Avx2, Q, BS, TS>(Avx2(()), x, src, r0, r1, out)
}

/// [`product`] with [`Portable`], compiled for every instruction set macerator knows (`S`, the
/// one it runs on, only selects the build: the portable loops are vectorized for it).
#[macerator::with_simd]
#[allow(clippy::extra_unused_type_parameters)]
fn rows_portable<'a, S: Simd, Q: BlockDecode, const BS: usize, const TS: usize>(
    _decoder: PhantomData<Q>,
    x: &Int8Rows,
    src: Q::Src<'a>,
    r0: usize,
    r1: usize,
    out: &mut [f32],
) {
    product::<Portable, Q, BS, TS>(Portable, x, src, r0, r1, out)
}

/// The product over [`RunDot`] `dot`: each block's scales and codes decoded once, its runs of
/// 32 against each activation row's, float work once per block and row.
#[inline(always)]
fn product<D: RunDot, Q: BlockDecode, const BS: usize, const TS: usize>(
    dot: D,
    x: &Int8Rows,
    src: Q::Src<'_>,
    r0: usize,
    r1: usize,
    out: &mut [f32],
) {
    debug_assert!(x.run == BS && x.sub == Q::SUB);
    let (m, k) = (x.m(), x.k);
    let (nb, ns) = (k / BS, BS / Q::SUB);
    let (mut sc, mut mn): (Ints, Ints) = ([0; 16], [0; 16]);
    let mut q = [[0i8; 32]; 8];
    let q = &mut q[..BS / 32];
    for row in r0..r1 {
        let ys = &mut out[(row - r0) * m..][..m];
        ys.fill(0.0);
        for (b, block) in Q::blocks(src, row * nb, nb).enumerate() {
            super::blocks::prefetch_ahead::<Q, TS>(b, block);
            let (d, dmin) = Q::int_scales(block, &mut sc, &mut mn);
            for (r, q) in q.iter_mut().enumerate() {
                Q::codes(block, r, q);
            }
            for (mi, y) in ys.iter_mut().enumerate() {
                let xb = &x.q[mi * k + b * BS..][..BS];
                let mut acc = dot.zero();
                for (r, (q, xr)) in q.iter().zip(xb.chunks_exact(32)).enumerate() {
                    let xr: &[i8; 32] = xr.try_into().expect("a run");
                    let pair = [sc[32 * r / Q::SUB], sc[(32 * r + 16) / Q::SUB]];
                    acc = dot.add(acc, q, xr, pair);
                }
                let mut v = d * dot.total(acc) as f32;
                if Q::MIN {
                    let sums = &x.sums[(mi * nb + b) * ns..][..ns];
                    let mut mins = 0i32;
                    for (&m, &s) in mn.iter().zip(sums) {
                        mins += i32::from(m) * s;
                    }
                    v -= dmin * mins as f32;
                }
                *y += x.dx[mi * nb + b] * v;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Int8Rows, Portable, RunDot};

    /// Both byte dots give the exact sum, on random runs and on the extremes (codes −128 and
    /// 127, activations ±127, scales of Q6_K's range).
    #[test]
    fn run_dots_are_exact() {
        let (seed, mut rng) = super::super::tests::fresh_rng();
        for case in 0..2000 {
            let mut q = [0i8; 32];
            let mut x = [0i8; 32];
            for l in 0..32 {
                (q[l], x[l]) = match case % 4 {
                    0 => (-128, if l % 2 == 0 { 127 } else { -127 }),
                    1 => (127, 127),
                    _ => (rng.next() as i8, (rng.next() % 255) as i8),
                };
                x[l] = x[l].max(-127);
            }
            let sc = [
                (rng.next() % 256) as i16 - 128,
                (rng.next() % 256) as i16 - 128,
            ];
            let want: i64 = (0..32)
                .map(|l| i64::from(sc[l / 16]) * i64::from(q[l]) * i64::from(x[l]))
                .sum();
            let p = Portable;
            let got = p.total(p.add(p.add(p.zero(), &q, &x, sc), &q, &x, sc));
            assert_eq!(i64::from(got), 2 * want, "portable, seed {seed}");
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") {
                let a = super::Avx2(());
                let got = a.total(a.add(a.add(a.zero(), &q, &x, sc), &q, &x, sc));
                assert_eq!(i64::from(got), 2 * want, "avx2, seed {seed}");
            }
        }
    }

    /// Runs with a known rounding (`dx · (q + u)`, one element at ±127 · dx, `|u| ≤ 0.4`) in
    /// runs of 32 and of 256 (a run of 256 holding sub-runs of smaller steps), a run of zeros
    /// and a run holding a NaN or an infinity; the sums of each sub-block's codes.
    #[test]
    fn int8_rounding_is_the_kernels() {
        let (seed, mut rng) = super::super::tests::fresh_rng();
        let mut next = || rng.next();
        for run in [32, 256] {
            let (mut x, mut want) = (Vec::new(), Vec::new());
            for r in 0..4 {
                let dx = 2f32.powi((next() % 12) as i32 - 9);
                let peak = (next() % run as u64) as usize;
                for i in 0..run {
                    let (q, u) = if i == peak {
                        (if r % 2 == 0 { 127.0 } else { -127.0 }, 0.0)
                    } else {
                        let q = (next() % 253) as f32 - 126.0;
                        (q, ((next() >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.8)
                    };
                    x.push((q + u) * dx);
                    want.push(q * dx);
                }
            }
            x.extend(vec![0f32; run]);
            want.extend(vec![0f32; run]);
            let mut odd = vec![1f32; run];
            odd[(next() % run as u64) as usize] = [f32::NAN, f32::INFINITY][(next() % 2) as usize];
            x.extend(&odd);
            let k = x.len();
            let rows = Int8Rows::new(&x, k, run, 16);
            let got = rows.values();
            assert_eq!(&got[..want.len()], &want[..], "run {run} seed {seed}");
            let last = &got[want.len()..];
            assert!(last.iter().all(|v| v.is_nan()), "run {run} seed {seed}");
            // each sub-block's sum of codes: the rounded values over their (power-of-two) step
            for (s, want) in want.chunks_exact(16).enumerate() {
                let dx = rows.dx[16 * s / run];
                let codes: f32 = want.iter().map(|v| v / dx).sum();
                assert_eq!(
                    rows.sums[s] as f32,
                    if dx > 0.0 { codes } else { 0.0 },
                    "seed {seed}"
                );
            }
        }
    }
}
