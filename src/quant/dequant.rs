//! Dequantization to f32 of every type a real GGUF model carries, bit-exact with gguf-py's numpy
//! dequantizers (and so with ggml's `dequantize_row_*`): each value is computed with the same f32
//! operations in the same order (`d·q`, `d·q + m`, `(d·sc)·q − dmin·m`, …), never fused. The
//! formats with codes decode through their [`super::BlockDecode`] ([`from_codes`]).

use half::{bf16, f16};

/// The little-endian f16 at byte `at`, as f32 (exact).
///
/// A normal f16 (every block scale in practice) widens with integer operations alone: the
/// exponent rebased from 15 to 127 and the mantissa shifted into place. Zeros, subnormals,
/// infinities and NaNs take `half`'s conversion. `half` alone checks for F16C at run time on
/// every call and moves the value between register files; in the CPU products' inner loops that
/// was a dozen instructions per 32 weights.
#[inline(always)]
pub(crate) fn f16_at(b: &[u8], at: usize) -> f32 {
    let h = u16::from_le_bytes(b[at..at + 2].try_into().expect("two bytes"));
    let magnitude = u32::from(h & 0x7FFF);
    // normal: biased exponent 1..=30, i.e. magnitude in [0x0400, 0x7C00)
    if magnitude.wrapping_sub(0x0400) < 0x7800 {
        let sign = u32::from(h & 0x8000) << 16;
        f32::from_bits(sign | ((magnitude + ((127 - 15) << 10)) << 13))
    } else {
        f16::from_bits(h).to_f32()
    }
}

/// F32: the values themselves.
#[inline(always)]
pub(crate) fn f32_block(b: &[u8], y: &mut [f32]) {
    y[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
}

/// F16: exact widening.
#[inline(always)]
pub(crate) fn f16_block(b: &[u8], y: &mut [f32]) {
    y[0] = f16_at(b, 0);
}

/// BF16: the 16 bits become the high half of an f32.
#[inline(always)]
pub(crate) fn bf16_block(b: &[u8], y: &mut [f32]) {
    y[0] = bf16::from_le_bytes([b[0], b[1]]).to_f32();
}

/// Block `i` of a format with codes ([`super::BlockDecode`]): every weight `scale · q − min`,
/// rounded once, which is ggml's value bit for bit (`scale · q` is exact: see [`super::codes`]).
#[inline(always)]
pub(crate) fn from_codes<Q: super::BlockDecode>(src: Q::Src<'_>, i: usize, y: &mut [f32]) {
    let (mut scale, mut min) = ([0f32; 16], [0f32; 16]);
    let b = Q::block(src, i);
    Q::scales(b, &mut scale, &mut min);
    let mut q = [0i8; 32];
    for (run, y) in y[..Q::BLOCK].chunks_exact_mut(32).enumerate() {
        Q::codes(b, super::codes::Soft, run, &mut q);
        for (i, (v, &q)) in y.iter_mut().zip(&q).enumerate() {
            let s = (32 * run + i) / Q::SUB;
            *v = scale[s] * f32::from(q) - min[s];
        }
    }
}

/// Q6_K: see [`crate::quant::q6k`].
#[inline(always)]
pub(crate) fn q6_k_block(b: &[u8], y: &mut [f32]) {
    let block: &crate::quant::BlockQ6K = bytemuck::from_bytes(b);
    block.dequantize_into(y.try_into().expect("256 values"));
}

/// Q8_K `{ f32 d; i8 qs[256]; i16 bsums[16] }`: `d · q` in f32, as ggml computes it (gguf-py has
/// no Q8_K dequantizer; `bsums` are redundant partial sums and are not read).
#[inline(always)]
pub(crate) fn q8_k_block(b: &[u8], y: &mut [f32]) {
    let d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    for (y, &q) in y.iter_mut().zip(&b[4..260]) {
        *y = d * (q as i8) as f32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every one of the 65,536 f16 bit patterns widens to `half`'s f32, bit for bit (NaN
    /// payloads, signed zeros and subnormals included).
    #[test]
    fn f16_at_is_half_for_every_pattern() {
        for h in 0..=u16::MAX {
            let want = f16::from_bits(h).to_f32().to_bits();
            let got = f16_at(&h.to_le_bytes(), 0).to_bits();
            assert_eq!(got, want, "f16 bits {h:#06x}");
        }
    }
}
