//! The CPU's int8 product ([`crate::quant::Activations::Int8`]): the activations rounded to
//! int8 once per call, in runs of the weight's block (32, or 256 for the K formats, one step
//! each, as llama.cpp's CPU rounds them for its integer products: `q8_0`, `q8_K`); then, per
//! block, the weight's codes against the rounded activations as integers, into 32-bit lanes
//! ([`RunDot`]).
//!
//! - The K formats (8 runs of 32 a block): the unsigned codes the block stores, each run scaled
//!   by its sub-blocks' integer scales. The codes' offset and the mins enter through the sums of
//!   each sub-block's activation codes, taken once per call: with `q = u − o`,
//!   `Σ sc·q·xq = Σ sc·u·xq − o · Σ sc·Σxq`. Float work is once per block and lane,
//!   `dx · d · lanes − dx · dmin · Σ m·Σxq`, into float lanes summed once per row.
//! - Blocks of one run (Q4_0 … Q8_0): as ggml's `vec_dot_q4_0_q8_0`, the signed codes against
//!   the activations' in one byte dot, folded with `dx · d` into float lanes; the mins, where the
//!   format has them, as one scalar a row from each run's `dx · Σxq`.
//!
//! Written once, generic over the block decoder (as the float product, [`super::blocks`]) and
//! over [`RunDot`], the one piece written per instruction set: ggml's byte dot (`vpmaddubsw`,
//! then `vpmaddwd`), F16C's conversion and ggml's byte shuffles for unpacking a block where the
//! CPU has AVX2, FMA and F16C, which compilers do not form from portable code (PERF.md, sessions
//! 22 and 24–27); elsewhere portable code compiled for every instruction set macerator knows.

use std::marker::PhantomData;

use macerator::Simd;

use crate::quant::BlockDecode;
use crate::quant::codes::{Ints, Soft, Unpack};

/// Activation rows rounded to int8 in runs of `run` elements (a weight's block), the values
/// `x̂ = dx · q` with `q = round(x · 127 / max |x|)` in −127..=127 and `dx = max |x| / 127` for
/// each run: a run of zeros stays zeros, and a run holding an infinity or a NaN gets a NaN step
/// (every product it enters is then NaN, as the float product's would be).
pub(crate) struct Int8Rows {
    /// The codes, `m × k`.
    q: Vec<i8>,
    /// Each run's step, `m × k / run`.
    dx: Vec<f32>,
    /// Each run's sub-blocks' sums of codes (the offsets' and mins' terms), 16 a run (the
    /// sub-blocks, then zeros): `m × k / run × 16`, each at most `32 · 127` in magnitude.
    sums: Vec<i16>,
    /// Each run's `dx · Σq` (a one-run block's mins' term, ggml's `q8_1` sums): `m × k / run`.
    dxs: Vec<f32>,
    /// Elements a row.
    k: usize,
    /// Elements a run.
    run: usize,
    /// Elements a sub-block.
    sub: usize,
}

impl Int8Rows {
    /// `x` (`m × k` row-major, `k` a multiple of `run`, `run` of `sub`, `sub` at most 32 and
    /// `run / sub` at most 16) rounded in runs of `run`, with the sums of each `sub` codes.
    pub(crate) fn new(x: &[f32], k: usize, run: usize, sub: usize) -> Self {
        debug_assert!(
            k.is_multiple_of(run)
                && run.is_multiple_of(sub)
                && sub <= 32
                && run / sub <= 16
                && x.len().is_multiple_of(k)
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
        let mut sums = vec![0i16; q.len() / run * 16];
        for (q, sums) in q.chunks_exact(run).zip(sums.chunks_exact_mut(16)) {
            for (q, sum) in q.chunks_exact(sub).zip(sums) {
                *sum = q.iter().map(|&q| i16::from(q)).sum();
            }
        }
        let dxs = (q.chunks_exact(run).zip(&dx))
            .map(|(q, dx)| dx * q.iter().map(|&q| i32::from(q)).sum::<i32>() as f32)
            .collect();
        Self {
            q,
            dx,
            sums,
            dxs,
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
    #[cfg(test)]
    pub(crate) fn values(&self) -> Vec<f32> {
        let run = self.run;
        (self.q.iter().enumerate())
            .map(|(i, &q)| self.dx[i / run] * f32::from(q))
            .collect()
    }
}

/// The integer dot product of runs of 32 weights and activations, scaled per sub-block, into
/// 32-bit lanes; those lanes scaled into float lanes once per block; the float lanes summed once
/// per row. Implemented once per instruction set with a multiply-add of bytes, and once in
/// portable code. Every integer sum stays within an i32: a block's `Σ sc·u·x` is at most
/// `256 · 128 · 127 · 127` in magnitude, its offsets' and mins' `Σ f·a·b` at most
/// `16 · 4096 · 32 · 127`. It also unpacks the blocks' fields ([`Unpack`]), with the
/// instruction set's own instructions where it has them.
pub(crate) trait RunDot: Copy + Unpack {
    /// A block's integer sub-block scales, as [`Self::add`] takes them.
    type Scales: Copy;
    /// A block's integer sums, in lanes.
    type Acc: Copy;
    /// A row's float sums, in lanes.
    type Sum: Copy;
    /// A block's sub-block scales `sc`, for its runs.
    fn scales(self, sc: &Ints) -> Self::Scales;
    /// Integer sums of zero.
    fn zero(self) -> Self::Acc;
    /// `acc` plus a run's products: its weights' unsigned codes `u` (below 128) and its
    /// activations' codes `x` (in −127..=127), the first 16 scaled by sub-block `s[0]`'s scale,
    /// the other 16 by `s[1]`'s.
    fn add(
        self,
        acc: Self::Acc,
        u: &[u8; 32],
        x: &[i8; 32],
        sc: Self::Scales,
        s: [usize; 2],
    ) -> Self::Acc;
    /// A one-run block's products, `Σ q · x` in lanes: its weights' signed codes `q` (in
    /// −128..=127) and its activations' codes `x` (in −127..=127).
    fn signed(self, q: &[i8; 32], x: &[i8; 32]) -> Self::Acc;
    /// `acc` plus `Σ f · a[s] · b[s]` (`|f · a[s]|` at most 4096).
    fn add16(self, acc: Self::Acc, a: &Ints, f: i16, b: &[i16; 16]) -> Self::Acc;
    /// Float sums of zero.
    fn sum_zero(self) -> Self::Sum;
    /// `sum` plus `s` times the lanes of `acc`.
    fn fold(self, sum: Self::Sum, acc: Self::Acc, s: f32) -> Self::Sum;
    /// The float lanes' total.
    fn total(self, sum: Self::Sum) -> f32;
}

/// [`RunDot`] in portable code: 16-bit products summed in 32 bits, one lane.
#[derive(Clone, Copy)]
struct Portable;

impl Unpack for Portable {
    #[inline(always)]
    fn f16(self, b: &[u8], at: usize) -> f32 {
        Soft.f16(b, at)
    }
    #[inline(always)]
    fn nibbles(self, qs: &[u8; 16]) -> [u8; 32] {
        Soft.nibbles(qs)
    }
    #[inline(always)]
    fn nibbles5(self, qs: &[u8; 16], high: u32) -> [u8; 32] {
        Soft.nibbles5(qs, high)
    }
}

impl RunDot for Portable {
    type Scales = Ints;
    type Acc = i32;
    type Sum = f32;
    #[inline(always)]
    fn scales(self, sc: &Ints) -> Ints {
        *sc
    }
    #[inline(always)]
    fn zero(self) -> i32 {
        0
    }
    #[inline(always)]
    fn add(self, acc: i32, u: &[u8; 32], x: &[i8; 32], sc: Ints, s: [usize; 2]) -> i32 {
        let mut halves = [0i32; 2];
        for (h, half) in halves.iter_mut().enumerate() {
            for l in 16 * h..16 * h + 16 {
                *half += i32::from(i16::from(u[l]) * i16::from(x[l]));
            }
        }
        acc + halves[0] * i32::from(sc[s[0]]) + halves[1] * i32::from(sc[s[1]])
    }
    #[inline(always)]
    fn signed(self, q: &[i8; 32], x: &[i8; 32]) -> i32 {
        (q.iter().zip(x))
            .map(|(&q, &x)| i32::from(i16::from(q) * i16::from(x)))
            .sum()
    }
    #[inline(always)]
    fn add16(self, acc: i32, a: &Ints, f: i16, b: &[i16; 16]) -> i32 {
        acc + (a.iter().zip(b))
            .map(|(&a, &b)| i32::from(f * i16::from(a)) * i32::from(b))
            .sum::<i32>()
    }
    #[inline(always)]
    fn sum_zero(self) -> f32 {
        0.0
    }
    #[inline(always)]
    fn fold(self, sum: f32, acc: i32, s: f32) -> f32 {
        sum + s * acc as f32
    }
    #[inline(always)]
    fn total(self, sum: f32) -> f32 {
        sum
    }
}

/// [`RunDot`] on AVX2 with FMA and F16C: ggml's byte dot, `vpmaddubsw` (unsigned codes times
/// signed activations, pairs summed in 16 bits: at most 2 · 127 · 127, no saturation), then
/// `vpmaddwd` with the two sub-blocks' scales, picked from the block's 16 by a byte shuffle;
/// eight float lanes a row; f16 fields by `vcvtph2ps`. A value of it exists only where the CPU
/// has AVX2, FMA and F16C ([`rows`] makes it after checking), which makes its intrinsics sound.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
struct Avx2(());

#[cfg(target_arch = "x86_64")]
impl Avx2 {
    /// Whether this CPU has AVX2, FMA and F16C: the one check before a value is made.
    fn available() -> bool {
        std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("f16c")
    }
}

#[cfg(target_arch = "x86_64")]
impl Unpack for Avx2 {
    #[inline(always)]
    fn f16(self, b: &[u8], at: usize) -> f32 {
        use std::arch::x86_64::*;
        // `vcvtph2ps` loads eight bytes itself (the half wanted and three more, converted and
        // dropped): from `at`, or ending where the block does when `at` is among its last six
        // (Q2_K's and Q3_K's `d`), the half then in a higher lane. Two bytes inserted into a
        // register (what the compiler makes of any load it sees, even of eight bytes) merge
        // into whatever that register held: a false dependency that chained a block's loop to
        // the previous block's sum (Q5_0 1.6x slower, Q2_K 1.4x, PERF.md session 27); hence
        // the instruction by hand.
        let start = at.min(b.len().saturating_sub(8));
        let lane = (at - start) / 2;
        if b.len() < 8 || !(at - start).is_multiple_of(2) {
            return Soft.f16(b, at);
        }
        let v: __m128;
        // SAFETY: F16C is present (a value of `Avx2` exists); the instruction reads the 8 bytes
        // `b[start..start + 8]` (within `b`: `start + 8 <= b.len()`), unaligned, and writes only
        // `v`.
        unsafe {
            std::arch::asm!(
                "vcvtph2ps {v}, qword ptr [{p}]",
                p = in(reg) b[start..start + 8].as_ptr(),
                v = out(xmm_reg) v,
                options(pure, readonly, nostack, preserves_flags),
            );
        }
        // SAFETY: an `__m128` is four f32.
        let lanes: [f32; 4] = unsafe { std::mem::transmute(v) };
        lanes[lane]
    }
    #[inline(always)]
    fn nibbles(self, qs: &[u8; 16]) -> [u8; 32] {
        use std::arch::x86_64::*;
        // SAFETY: AVX2 is present (a value of `Avx2` exists); the load reads the 16 bytes of
        // `qs`, the store writes the 32 of `out`, unaligned.
        unsafe {
            let x = _mm_loadu_si128(qs.as_ptr().cast());
            let low = _mm256_and_si256(
                _mm256_set_m128i(_mm_srli_epi16(x, 4), x),
                _mm256_set1_epi8(0xF),
            );
            let mut out = [0u8; 32];
            _mm256_storeu_si256(out.as_mut_ptr().cast(), low);
            out
        }
    }
    #[inline(always)]
    fn nibbles5(self, qs: &[u8; 16], high: u32) -> [u8; 32] {
        use std::arch::x86_64::*;
        // SAFETY: AVX2 is present (a value of `Avx2` exists); the load reads the 32 bytes of
        // `low`, the store writes the 32 of `out`, unaligned.
        unsafe {
            let low = _mm256_loadu_si256(self.nibbles(qs).as_ptr().cast());
            // ggml's `bytes_from_bits_32`: byte `e / 8` of `high` in byte `e`, with all bits
            // but bit `e % 8` set, is all ones where that bit is
            let spread = _mm256_shuffle_epi8(
                _mm256_set1_epi32(high as i32),
                _mm256_set_epi64x(
                    0x0303_0303_0303_0303,
                    0x0202_0202_0202_0202,
                    0x0101_0101_0101_0101,
                    0,
                ),
            );
            let others = _mm256_set1_epi64x(0x7FBF_DFEF_F7FB_FDFE);
            let set = _mm256_cmpeq_epi8(_mm256_or_si256(spread, others), _mm256_set1_epi64x(-1));
            let codes = _mm256_or_si256(low, _mm256_and_si256(set, _mm256_set1_epi8(16)));
            let mut out = [0u8; 32];
            _mm256_storeu_si256(out.as_mut_ptr().cast(), codes);
            out
        }
    }
}

#[cfg(target_arch = "x86_64")]
impl RunDot for Avx2 {
    type Scales = std::arch::x86_64::__m128i;
    type Acc = std::arch::x86_64::__m256i;
    type Sum = std::arch::x86_64::__m256;
    #[inline(always)]
    fn scales(self, sc: &Ints) -> Self::Scales {
        // SAFETY: AVX2 is present (a value of `Avx2` exists); the load reads the 16 bytes of
        // `sc`, unaligned.
        unsafe { std::arch::x86_64::_mm_loadu_si128(sc.as_ptr().cast()) }
    }
    #[inline(always)]
    fn zero(self) -> Self::Acc {
        // SAFETY: AVX2 is present (a value of `Avx2` exists).
        unsafe { std::arch::x86_64::_mm256_setzero_si256() }
    }
    #[inline(always)]
    fn add(
        self,
        acc: Self::Acc,
        u: &[u8; 32],
        x: &[i8; 32],
        sc: Self::Scales,
        s: [usize; 2],
    ) -> Self::Acc {
        use std::arch::x86_64::*;
        // SAFETY: AVX2 is present (a value of `Avx2` exists); the loads read the 32 bytes of
        // `u` and `x`, unaligned.
        unsafe {
            let u = _mm256_loadu_si256(u.as_ptr().cast());
            let x = _mm256_loadu_si256(x.as_ptr().cast());
            // scale s[0] in the low eight 16-bit lanes, s[1] in the high eight (a shuffle
            // index below 16 picks that byte)
            let (s0, s1) = (s[0] as i8, s[1] as i8);
            let pick = _mm_set_epi8(
                s1, s1, s1, s1, s1, s1, s1, s1, s0, s0, s0, s0, s0, s0, s0, s0,
            );
            let scales = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(sc, pick));
            let pairs = _mm256_maddubs_epi16(u, x);
            _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, scales))
        }
    }
    #[inline(always)]
    fn signed(self, q: &[i8; 32], x: &[i8; 32]) -> Self::Acc {
        use std::arch::x86_64::*;
        // SAFETY: AVX2 is present (a value of `Avx2` exists); the loads read the 32 bytes of
        // `q` and `x`, unaligned.
        unsafe {
            let q = _mm256_loadu_si256(q.as_ptr().cast());
            let x = _mm256_loadu_si256(x.as_ptr().cast());
            // ggml's sign trick: `|q|` (−128 becomes the unsigned 128) times `x` with `q`'s
            // sign (0 where `q` is 0), pairs summed in 16 bits (at most 2 · 128 · 127)
            let pairs = _mm256_maddubs_epi16(_mm256_sign_epi8(q, q), _mm256_sign_epi8(x, q));
            _mm256_madd_epi16(pairs, _mm256_set1_epi16(1))
        }
    }
    #[inline(always)]
    fn add16(self, acc: Self::Acc, a: &Ints, f: i16, b: &[i16; 16]) -> Self::Acc {
        use std::arch::x86_64::*;
        // SAFETY: AVX2 is present (a value of `Avx2` exists); the loads read the 16 bytes of
        // `a` and the 32 of `b`, unaligned.
        unsafe {
            let a = _mm256_cvtepi8_epi16(_mm_loadu_si128(a.as_ptr().cast()));
            let a = _mm256_mullo_epi16(a, _mm256_set1_epi16(f));
            let b = _mm256_loadu_si256(b.as_ptr().cast());
            _mm256_add_epi32(acc, _mm256_madd_epi16(a, b))
        }
    }
    #[inline(always)]
    fn sum_zero(self) -> Self::Sum {
        // SAFETY: AVX2 is present (a value of `Avx2` exists).
        unsafe { std::arch::x86_64::_mm256_setzero_ps() }
    }
    #[inline(always)]
    fn fold(self, sum: Self::Sum, acc: Self::Acc, s: f32) -> Self::Sum {
        use std::arch::x86_64::*;
        // SAFETY: AVX2 and FMA are present (a value of `Avx2` exists).
        unsafe { _mm256_fmadd_ps(_mm256_set1_ps(s), _mm256_cvtepi32_ps(acc), sum) }
    }
    #[inline(always)]
    fn total(self, sum: Self::Sum) -> f32 {
        use std::arch::x86_64::*;
        // SAFETY: AVX2 is present (a value of `Avx2` exists).
        unsafe {
            let s = _mm_add_ps(_mm256_castps256_ps128(sum), _mm256_extractf128_ps::<1>(sum));
            let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
            _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
        }
    }
}

/// Rows `r0..r1` of W (its blocks in `src`, `x.k` weights a row) against the rows of `x`
/// (rounded in runs of `BS`), into `out` (`[r1 − r0, m]`): with ggml's byte dot where the CPU
/// has AVX2, FMA and F16C, else the portable one. A block of several runs must have unsigned codes
/// below 128 (`Q::BITS <= 7`: every K format); a one-run block's codes are taken signed.
pub(super) fn rows<Q: BlockDecode, const BS: usize, const TS: usize>(
    x: &Int8Rows,
    src: Q::Src<'_>,
    r0: usize,
    r1: usize,
    out: &mut [f32],
) {
    assert!(
        Q::BITS <= 7 || BS == 32,
        "the int8 product takes a large block's codes of at most 7 bits"
    );
    #[cfg(target_arch = "x86_64")]
    if Avx2::available() {
        // SAFETY: the CPU has AVX2, FMA and F16C, which the function is compiled for.
        unsafe { rows_avx2::<Q, BS, TS>(x, src, r0, r1, out) };
        return;
    }
    rows_portable::<Q, BS, TS>(PhantomData, x, src, r0, r1, out)
}

/// [`passes`] with [`Avx2`], compiled for AVX2, FMA and F16C.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
fn rows_avx2<Q: BlockDecode, const BS: usize, const TS: usize>(
    x: &Int8Rows,
    src: Q::Src<'_>,
    r0: usize,
    r1: usize,
    out: &mut [f32],
) {
    passes::<Avx2, Q, BS, TS>(Avx2(()), x, src, r0, r1, out)
}

/// [`passes`] with [`Portable`], compiled for every instruction set macerator knows (`S`, the
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
    passes::<Portable, Q, BS, TS>(Portable, x, src, r0, r1, out)
}

/// The int8 product in portable code whatever the CPU has: for the tests, whose machines
/// would otherwise take the AVX2 one only.
#[cfg(test)]
pub(crate) struct PortableRows<'x>(pub(crate) &'x Int8Rows);

#[cfg(test)]
impl super::BlockRows for PortableRows<'_> {
    fn rows<Q: BlockDecode, const BS: usize, const TS: usize>(
        &self,
        src: Q::Src<'_>,
        r0: usize,
        r1: usize,
        out: &mut [f32],
    ) {
        rows_portable::<Q, BS, TS>(PhantomData, self.0, src, r0, r1, out)
    }
}

/// Each weight row of `r0..r1` against the activation rows, eight a pass, then four, then the
/// last one to three in one pass (as the float product, [`super::blocks`]): each block decoded
/// once per pass.
#[inline(always)]
fn passes<D: RunDot, Q: BlockDecode, const BS: usize, const TS: usize>(
    dot: D,
    x: &Int8Rows,
    src: Q::Src<'_>,
    r0: usize,
    r1: usize,
    out: &mut [f32],
) {
    debug_assert!(x.run == BS && x.sub == Q::SUB);
    let m = x.m();
    for row in r0..r1 {
        let ys = &mut out[(row - r0) * m..][..m];
        let mut mi = 0;
        while mi < m {
            let y = &mut ys[mi..];
            mi += match m - mi {
                8.. => put(y, row_dot::<D, Q, BS, TS, 8>(dot, x, mi, src, row)),
                4..=7 => put(y, row_dot::<D, Q, BS, TS, 4>(dot, x, mi, src, row)),
                3 => put(y, row_dot::<D, Q, BS, TS, 3>(dot, x, mi, src, row)),
                2 => put(y, row_dot::<D, Q, BS, TS, 2>(dot, x, mi, src, row)),
                _ => put(y, row_dot::<D, Q, BS, TS, 1>(dot, x, mi, src, row)),
            };
        }
    }
}

/// Writes a pass's `R` results at the start of `y`; returns `R`.
#[inline(always)]
fn put<const R: usize>(y: &mut [f32], pass: [f32; R]) -> usize {
    y[..R].copy_from_slice(&pass);
    R
}

/// Weight row `row` against activation rows `mi .. mi + R` over [`RunDot`] `dot`: each block's
/// scales decoded once and its codes a run at a time, each run into every activation row's
/// integer lanes, float work once per block and row. A one-run block goes to [`one_run_dot`].
#[inline(always)]
fn row_dot<D: RunDot, Q: BlockDecode, const BS: usize, const TS: usize, const R: usize>(
    dot: D,
    x: &Int8Rows,
    mi: usize,
    src: Q::Src<'_>,
    row: usize,
) -> [f32; R] {
    if BS == 32 {
        return one_run_dot::<D, Q, TS, R>(dot, x, mi, src, row);
    }
    let (k, nb) = (x.k, x.k / BS);
    // each activation row's runs, steps and sums, block by block
    let xq: [&[[i8; BS]]; R] = std::array::from_fn(|j| x.q[(mi + j) * k..][..k].as_chunks().0);
    let dx: [&[f32]; R] = std::array::from_fn(|j| &x.dx[(mi + j) * nb..][..nb]);
    let xs: [&[[i16; 16]]; R] =
        std::array::from_fn(|j| x.sums[(mi + j) * nb * 16..][..nb * 16].as_chunks().0);
    // the scales beyond a block's `BS / SUB` sub-blocks stay 0 (`int_scales` writes its own)
    let (mut sc, mut mn): (Ints, Ints) = ([0; 16], [0; 16]);
    let mut sums = [dot.sum_zero(); R];
    for (b, block) in Q::blocks(src, row * nb, nb).enumerate() {
        super::blocks::prefetch_ahead::<Q, TS>(block);
        let (d, dmin) = Q::int_scales(block, dot, &mut sc, &mut mn);
        let scales = dot.scales(&sc);
        let mut acc = [dot.zero(); R];
        unrolled(
            BS / 32,
            #[inline(always)]
            |r| {
                let mut u = [0u8; 32];
                Q::ucodes(block, dot, r, &mut u);
                let s = [32 * r / Q::SUB, (32 * r + 16) / Q::SUB];
                for j in 0..R {
                    let (xr, _) = xq[j][b].as_chunks::<32>();
                    acc[j] = dot.add(acc[j], &u, &xr[r], scales, s);
                }
            },
        );
        for j in 0..R {
            let (xs, dx) = (&xs[j][b], dx[j][b]);
            // `q = u − o`: the offset's term, `−o · Σ sc · Σx`, joins the codes' in integers
            let acc = match Q::OFFSET {
                0 => acc[j],
                o => dot.add16(acc[j], &sc, -i16::from(o), xs),
            };
            sums[j] = dot.fold(sums[j], acc, dx * d);
            if Q::MIN {
                sums[j] = dot.fold(sums[j], dot.add16(dot.zero(), &mn, 1, xs), -dx * dmin);
            }
        }
    }
    sums.map(|s| dot.total(s))
}

/// [`row_dot`] for blocks of one run of 32 weights (one sub-block: Q4_0 … Q8_0), as ggml's
/// `vec_dot_q4_0_q8_0` and its siblings: the signed codes against the activations' in one
/// [`RunDot::signed`], folded with `dx · d · sc` into float lanes; a format's mins as one scalar
/// a row, `Σ dmin · m · dx · Σx` (ggml's `q8_1` sums), subtracted once at the end. The codes'
/// offset is subtracted from the decoded bytes (a byte op per run), not carried in the sums.
#[inline(always)]
fn one_run_dot<D: RunDot, Q: BlockDecode, const TS: usize, const R: usize>(
    dot: D,
    x: &Int8Rows,
    mi: usize,
    src: Q::Src<'_>,
    row: usize,
) -> [f32; R] {
    let (k, nb) = (x.k, x.k / 32);
    let xq: [&[[i8; 32]]; R] = std::array::from_fn(|j| x.q[(mi + j) * k..][..k].as_chunks().0);
    let dx: [&[f32]; R] = std::array::from_fn(|j| &x.dx[(mi + j) * nb..][..nb]);
    let dxs: [&[f32]; R] = std::array::from_fn(|j| &x.dxs[(mi + j) * nb..][..nb]);
    let (mut sc, mut mn): (Ints, Ints) = ([0; 16], [0; 16]);
    let mut sums = [dot.sum_zero(); R];
    let mut mins = [0f32; R];
    for (b, block) in Q::blocks(src, row * nb, nb).enumerate() {
        super::blocks::prefetch_ahead::<Q, TS>(block);
        let (d, dmin) = Q::int_scales(block, dot, &mut sc, &mut mn);
        let (d, dmin) = (d * f32::from(sc[0]), dmin * f32::from(mn[0]));
        let mut q = [0i8; 32];
        Q::codes(block, dot, 0, &mut q);
        for j in 0..R {
            let dx = dx[j][b];
            sums[j] = dot.fold(sums[j], dot.signed(&q, &xq[j][b]), dx * d);
            if Q::MIN {
                mins[j] += dmin * dxs[j][b];
            }
        }
    }
    std::array::from_fn(|j| dot.total(sums[j]) - mins[j])
}

/// `f(0)`, `f(1)`, … `f(n − 1)` (`n` 1 or 8, a constant: a block's runs) as separate calls, so
/// that each sees its run's constants (its shifts and scale indices). As a loop over a block's
/// runs, the compiler kept a large decoder's body (Q6_K's) rolled, with shifts and shuffles by
/// variable amounts: 2.3× slower (PERF.md, session 26). `f` must be `#[inline(always)]`: else
/// it is compiled outside the caller's instruction set and each intrinsic becomes a call. Any
/// other `n` (a block of 64 or 128 weights) panics rather than skip runs.
#[inline(always)]
fn unrolled(n: usize, mut f: impl FnMut(usize)) {
    assert!(n == 1 || n == 8, "a block of 1 or 8 runs of 32, not {n}");
    f(0);
    if n == 8 {
        f(1);
        f(2);
        f(3);
        f(4);
        f(5);
        f(6);
        f(7);
    }
}

#[cfg(test)]
mod tests {
    use super::{Int8Rows, Ints, Portable, RunDot, Soft, Unpack};

    /// Both byte dots sum exactly and fold into float lanes that total exactly, on random runs
    /// whose sums stay below 2^24 (f32's integers); at the extremes (codes 127, activations
    /// ±127, scales of Q6_K's range, the offsets' terms at their largest), where f32 rounds the
    /// lanes, within that rounding (no saturation, no overflow).
    #[test]
    fn run_dots_are_exact() {
        /// `(2 (u·x·sc) + f·a·b) / 2` through `dot`: two runs (scales 3 and 12 of `sc`), the 16
        /// products, two folds of 1/4.
        fn through<D: RunDot>(
            dot: D,
            u: &[u8; 32],
            x: &[i8; 32],
            sc: &Ints,
            fab: (i16, &Ints, &[i16; 16]),
        ) -> f32 {
            let (f, a, b) = fab;
            let scales = dot.scales(sc);
            let acc = dot.add(dot.zero(), u, x, scales, [3, 12]);
            let acc = dot.add16(dot.add(acc, u, x, scales, [3, 12]), a, f, b);
            dot.total(dot.fold(dot.fold(dot.sum_zero(), acc, 0.25), acc, 0.25))
        }
        let (seed, mut rng) = super::super::tests::fresh_rng();
        for case in 0..2000 {
            let extreme = case % 4 < 2;
            let mut u = [0u8; 32];
            let mut x = [0i8; 32];
            for l in 0..32 {
                (u[l], x[l]) = match case % 4 {
                    0 => (127, if l % 2 == 0 { 127 } else { -127 }),
                    1 => (127, -127),
                    _ => ((rng.next() % 128) as u8, (rng.next() % 255) as i8),
                };
                x[l] = x[l].max(-127);
            }
            let (sc, f, a, b): (Ints, i16, Ints, [i16; 16]) = if extreme {
                let b = if case % 2 == 0 { 4064 } else { -4064 };
                ([-128; 16], 32, [-128; 16], [b; 16])
            } else {
                let f = [1, -4, -8, -16, -32][(rng.next() % 5) as usize];
                let mut draw = |range: u64| (rng.next() % (2 * range)) as i64 - range as i64;
                (
                    std::array::from_fn(|_| draw(8) as i8),
                    f,
                    std::array::from_fn(|_| draw(4) as i8),
                    std::array::from_fn(|_| draw(128) as i16),
                )
            };
            let want = 0.5
                * (2 * (0..32)
                    .map(|l| i64::from(sc[[3, 12][l / 16]]) * i64::from(u[l]) * i64::from(x[l]))
                    .sum::<i64>()
                    + (0..16)
                        .map(|s| i64::from(f) * i64::from(a[s]) * i64::from(b[s]))
                        .sum::<i64>()) as f64;
            let tolerance = if extreme { want.abs() * 1e-6 } else { 0.0 };
            let got = through(Portable, &u, &x, &sc, (f, &a, &b));
            assert!(
                (f64::from(got) - want).abs() <= tolerance,
                "portable {got} {want}, seed {seed}"
            );
            #[cfg(target_arch = "x86_64")]
            if super::Avx2::available() {
                let got = through(super::Avx2(()), &u, &x, &sc, (f, &a, &b));
                assert!(
                    (f64::from(got) - want).abs() <= tolerance,
                    "avx2 {got} {want}, seed {seed}"
                );
            }
        }
    }

    /// The AVX2 product's [`Unpack`] is the portable one's, bit for bit: every f16 pattern, read
    /// with eight bytes after it (the instruction's own load) and at a block's end (two bytes),
    /// and random nibbles and fifth bits (and none).
    #[test]
    fn unpacking_is_the_portable_one() {
        #[cfg(target_arch = "x86_64")]
        if super::Avx2::available() {
            let (seed, mut rng) = super::super::tests::fresh_rng();
            let avx2 = super::Avx2(());
            for h in 0..=u16::MAX {
                let mut b = [0u8; 10];
                b.iter_mut().for_each(|b| *b = rng.next() as u8);
                b[1..3].copy_from_slice(&h.to_le_bytes());
                for (b, at) in [(&b[..], 1), (&b[..3], 1)] {
                    let (got, want) = (avx2.f16(b, at), Soft.f16(b, at));
                    assert_eq!(got.to_bits(), want.to_bits(), "f16 {h:#06x}, seed {seed}");
                }
            }
            for case in 0..4096 {
                let qs: [u8; 16] = std::array::from_fn(|_| rng.next() as u8);
                let high = if case % 4 == 0 { 0 } else { rng.next() as u32 };
                assert_eq!(avx2.nibbles(&qs), Soft.nibbles(&qs), "{qs:?}, seed {seed}");
                assert_eq!(
                    avx2.nibbles5(&qs, high),
                    Soft.nibbles5(&qs, high),
                    "{qs:?} {high:#x}, seed {seed}"
                );
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
            // each sub-block's sum of codes (the rounded values over their power-of-two step),
            // 16 a run: a run's sub-blocks, then zeros
            for (s, want) in want.chunks_exact(16).enumerate() {
                let dx = rows.dx[16 * s / run];
                let codes: f32 = want.iter().map(|v| v / dx).sum();
                let at = 16 * s / run * 16 + s % (run / 16);
                assert_eq!(
                    rows.sums[at] as f32,
                    if dx > 0.0 { codes } else { 0.0 },
                    "seed {seed}"
                );
            }
            for (r, sums) in rows.sums.chunks_exact(16).enumerate() {
                assert!(sums[run / 16..].iter().all(|&s| s == 0), "run {r}: padding");
            }
        }
    }
}
