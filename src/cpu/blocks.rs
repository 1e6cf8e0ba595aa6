//! The CPU's fused product for every block format in the GGUF layout: `y[m, n] = Σ_k x[m, k] ·
//! W[n, k]` with the blocks read in place from the packed words, threads splitting the rows of W.
//! Each row is decoded once into f32 (one row at a time per thread, exactly as ggml dequantizes)
//! and multiplied into every activation row with 32-lane accumulators.
//!
//! Written once, generic over the block decoder (a function item, inlined) and the block's
//! geometry (constants, so the decoder's indexing needs no bounds checks); on x86-64 the same
//! code is also compiled with AVX2 + FMA + F16C and that build is picked at run time where the CPU has
//! them.

use crate::parallel::{SendPtr, for_each_range};
use crate::quant::{PackError, QuantWeightDesc};

/// `y[m, n]` (row-major, `m × out_features`) for `x` `m × in_features` (length checked by the
/// caller) over the weight's GGUF `bytes` (`desc.n_bytes()` of them), blocks of `BS` elements in
/// `TS` bytes decoded by `decode`.
pub(super) fn matmul<const BS: usize, const TS: usize, D>(
    x: &[f32],
    m: usize,
    desc: QuantWeightDesc,
    bytes: &[u8],
    decode: D,
) -> Vec<f32>
where
    D: Fn(&[u8], &mut [f32]) + Copy + Sync,
{
    let n = desc.out_features;
    let mut yt = vec![0f32; n * m]; // [n, m]: a thread's rows are contiguous
    let out = SendPtr(yt.as_mut_ptr());
    for_each_range(n, |r0, r1| {
        // SAFETY: threads write disjoint rows [r0, r1) of yt, which outlives the scope.
        let out = unsafe { std::slice::from_raw_parts_mut(out.get().add(r0 * m), (r1 - r0) * m) };
        let rows = Rows {
            x,
            m,
            k: desc.in_features,
            bytes,
            decode,
        };
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("fma")
            && std::is_x86_feature_detected!("f16c")
        {
            // SAFETY: the CPU has the features the function is compiled for.
            unsafe { rows.run_avx2::<BS, TS>(r0, r1, out) };
            return;
        }
        rows.run::<BS, TS>(r0, r1, out);
    });
    let mut y = vec![0f32; m * n];
    for row in 0..n {
        for mi in 0..m {
            y[mi * n + row] = yt[row * m + mi];
        }
    }
    y
}

/// One thread's share of the product.
struct Rows<'a, D> {
    x: &'a [f32],
    m: usize,
    k: usize,
    bytes: &'a [u8],
    decode: D,
}

impl<D: Fn(&[u8], &mut [f32]) + Copy> Rows<'_, D> {
    /// [`Rows::run`] compiled for AVX2 + FMA + F16C.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn run_avx2<const BS: usize, const TS: usize>(
        &self,
        r0: usize,
        r1: usize,
        out: &mut [f32],
    ) {
        self.run::<BS, TS>(r0, r1, out)
    }

    /// Rows `r0..r1` of W into `out` (`[r1 − r0, m]`): each row decoded once into f32, then
    /// multiplied into every activation row.
    #[inline(always)]
    fn run<const BS: usize, const TS: usize>(&self, r0: usize, r1: usize, out: &mut [f32]) {
        let (k, m) = (self.k, self.m);
        let nb = k / BS;
        let mut w = vec![0f32; k];
        for row in r0..r1 {
            let src = &self.bytes[row * nb * TS..][..nb * TS];
            for (b, wb) in src.chunks_exact(TS).zip(w.chunks_exact_mut(BS)) {
                let b: &[u8; TS] = b.try_into().expect("TS bytes");
                let wb: &mut [f32; BS] = wb.try_into().expect("BS values");
                (self.decode)(b, wb);
            }
            for mi in 0..m {
                out[(row - r0) * m + mi] = dot(&self.x[mi * k..][..k], &w);
            }
        }
    }
}

/// `Σ a·b` in f32 over 32 interleaved lanes (four independent 8-wide accumulators, so that
/// consecutive multiply-adds do not wait on each other), then a pairwise sum of the lanes.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 32];
    let (ac, bc) = (a.chunks_exact(32), b.chunks_exact(32));
    let tail: f32 = ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (xa, xb) in ac.zip(bc) {
        let xa: &[f32; 32] = xa.try_into().expect("32");
        let xb: &[f32; 32] = xb.try_into().expect("32");
        for i in 0..32 {
            lanes[i] += xa[i] * xb[i];
        }
    }
    reduce(&lanes) + tail
}

/// The sum of 32 lanes, pairwise.
#[inline(always)]
fn reduce(lanes: &[f32; 32]) -> f32 {
    let mut l = *lanes;
    let mut width = 32;
    while width > 1 {
        width /= 2;
        for i in 0..width {
            l[i] += l[i + width];
        }
    }
    l[0]
}

/// Checks that a GGUF-layout weight's words hold `desc`; returns its bytes.
pub(super) fn gguf_bytes(words: &[u32], desc: QuantWeightDesc) -> Result<&[u8], PackError> {
    desc.check_words(words)?;
    Ok(&bytemuck::cast_slice::<u32, u8>(words)[..desc.n_bytes()])
}
