//! The CPU's fused product for every block format in the GGUF layout: `y[m, n] = Σ_k x[m, k] ·
//! W[n, k]` with the blocks read in place from the packed words, threads splitting the rows of W.
//! A row is decoded a few blocks at a time into f32 (exactly as ggml dequantizes, into a buffer
//! that stays in the L1 cache) and each stretch is multiplied into every activation row with
//! explicit SIMD vectors.
//!
//! Written once, generic over the block decoder (a [`BlockDecode`] type, inlined) and the block's
//! geometry (constants, so the decoder's indexing needs no bounds checks), on macerator's portable
//! SIMD: the product is compiled for every instruction set macerator knows (SSE4.2, AVX2 + FMA,
//! AVX-512 on x86-64; NEON on aarch64; a scalar fallback) and the best the CPU has is picked at
//! run time. The decoders are compiled inside each of those builds, so the compiler vectorizes
//! them with the same instructions.

use std::marker::PhantomData;

use macerator::{Scalar, Simd, VMulAdd, Vector, vload_unaligned};

use crate::parallel::{SendPtr, for_each_range};
use crate::quant::{BlockDecode, PackError, QuantWeightDesc};

/// Weights decoded before they are multiplied into the activation rows: 4 KiB of f32, a few
/// blocks, small enough to stay in the L1 cache between the decode and the dots.
const STRETCH: usize = 1024;

/// `y[m, n]` (row-major, `m × out_features`) for `x` `m × in_features` (length checked by the
/// caller) over the weight's GGUF `bytes` (`desc.n_bytes()` of them), blocks of `BS` elements in
/// `TS` bytes (`Q`'s geometry) decoded by `Q`.
pub(super) fn matmul<Q: BlockDecode, const BS: usize, const TS: usize>(
    x: &[f32],
    m: usize,
    desc: QuantWeightDesc,
    bytes: &[u8],
) -> Vec<f32> {
    debug_assert!(Q::BLOCK == BS && Q::BYTES == TS);
    let n = desc.out_features;
    let k = desc.in_features;
    let mut yt = vec![0f32; n * m]; // [n, m]: a thread's rows are contiguous
    let out = SendPtr(yt.as_mut_ptr());
    for_each_range(n, |r0, r1| {
        // SAFETY: threads write disjoint rows [r0, r1) of yt, which outlives the scope.
        let out = unsafe { std::slice::from_raw_parts_mut(out.get().add(r0 * m), (r1 - r0) * m) };
        rows::<Q, BS, TS>(PhantomData, x, m, k, bytes, r0, r1, out);
    });
    let mut y = vec![0f32; m * n];
    for row in 0..n {
        for mi in 0..m {
            y[mi * n + row] = yt[row * m + mi];
        }
    }
    y
}

/// Rows `r0..r1` of W (GGUF `bytes`, `k` weights a row) against the `m` rows of `x`, into `out`
/// (`[r1 − r0, m]`): each stretch of a row decoded once, then multiplied into every activation
/// row.
#[macerator::with_simd]
#[allow(clippy::too_many_arguments)]
fn rows<S: Simd, Q: BlockDecode, const BS: usize, const TS: usize>(
    _decoder: PhantomData<Q>,
    x: &[f32],
    m: usize,
    k: usize,
    bytes: &[u8],
    r0: usize,
    r1: usize,
    out: &mut [f32],
) {
    let nb = k / BS;
    let per_stretch = (STRETCH / BS).max(1);
    let mut buf = [0f32; STRETCH];
    for row in r0..r1 {
        let src = &bytes[row * nb * TS..][..nb * TS];
        let sums = &mut out[(row - r0) * m..][..m];
        sums.fill(0.0);
        let mut b0 = 0;
        while b0 < nb {
            let blocks = per_stretch.min(nb - b0);
            let len = blocks * BS;
            let stretch = src[b0 * TS..][..blocks * TS].chunks_exact(TS);
            for (b, wb) in stretch.zip(buf.chunks_exact_mut(BS)) {
                let b: &[u8; TS] = b.try_into().expect("TS bytes");
                let wb: &mut [f32; BS] = wb.try_into().expect("BS values");
                Q::decode(b, wb);
            }
            for (mi, sum) in sums.iter_mut().enumerate() {
                *sum += dot::<S>(&x[mi * k + b0 * BS..][..len], &buf[..len]);
            }
            b0 += blocks;
        }
    }
}

/// `Σ a·b` in f32 over the shorter of the two: four independent vector accumulators (so that
/// consecutive multiply-adds do not wait on each other), then the lanes' sum, then the tail.
#[inline(always)]
fn dot<S: Simd>(a: &[f32], b: &[f32]) -> f32 {
    let lanes = f32::lanes::<S>();
    let len = a.len().min(b.len());
    let load = |i: usize| -> (Vector<S, f32>, Vector<S, f32>) {
        debug_assert!(i + lanes <= len);
        // SAFETY: i + lanes ≤ len ≤ both lengths.
        unsafe {
            (
                vload_unaligned(a.as_ptr().add(i)),
                vload_unaligned(b.as_ptr().add(i)),
            )
        }
    };
    let mut acc = [0f32.splat::<S>(); 4];
    let mut i = 0;
    while i + 4 * lanes <= len {
        for (j, acc) in acc.iter_mut().enumerate() {
            let (va, vb) = load(i + j * lanes);
            *acc = f32::vmul_add(va, vb, *acc);
        }
        i += 4 * lanes;
    }
    while i + lanes <= len {
        let (va, vb) = load(i);
        acc[0] = f32::vmul_add(va, vb, acc[0]);
        i += lanes;
    }
    let mut sum = ((acc[0] + acc[1]) + (acc[2] + acc[3])).reduce_add();
    for j in i..len {
        sum += a[j] * b[j];
    }
    sum
}

/// Checks that a GGUF-layout weight's words hold `desc`; returns its bytes.
pub(super) fn gguf_bytes(words: &[u32], desc: QuantWeightDesc) -> Result<&[u8], PackError> {
    desc.check_words(words)?;
    Ok(&bytemuck::cast_slice::<u32, u8>(words)[..desc.n_bytes()])
}
