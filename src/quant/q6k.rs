//! Q6_K (`GGML_TYPE_Q6_K`, id 14): the block struct, ggml's reference quantizer and the
//! dequantizer, all bit-exact with ggml (`quantize_row_q6_K_ref`, `dequantize_row_q6_K`).
//!
//! A block holds 256 weights as 16 sub-blocks of 16: six-bit codes split into a low-nibble plane
//! (`ql`) and a two-bit plane (`qh`), one signed 8-bit scale per sub-block and one f16 super-scale:
//! `w = d · scales[e/16] · (q6 − 32)`. Every such product is exact in f32 (at most 23 significant
//! bits), so decoders agree bit for bit whatever their evaluation order.

use half::f16;

pub mod planes;
mod source;

pub use source::BlockSource;

/// Weights per Q6_K block (`QK_K`).
pub const QK_K: usize = 256;

/// One Q6_K block exactly as ggml stores it: 210 bytes, no padding.
///
/// `d` is kept as its two little-endian bytes so the struct has alignment 1 and a `&[u8]` taken
/// from a GGUF file (whose Q6_K blocks are only 2-byte aligned) can be viewed as `&[BlockQ6K]`
/// without copying; see [`BlockQ6K::slice_from_bytes`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockQ6K {
    /// Low 4 bits of the 256 codes, two codes per byte.
    pub ql: [u8; 128],
    /// High 2 bits of the codes, four codes per byte.
    pub qh: [u8; 64],
    /// Signed scale of each 16-weight sub-block.
    pub scales: [i8; 16],
    /// Super-block scale, f16 little-endian.
    pub d: [u8; 2],
}

const _: () = assert!(core::mem::size_of::<BlockQ6K>() == 210);
const _: () = assert!(core::mem::align_of::<BlockQ6K>() == 1);

// SAFETY: `BlockQ6K` is `repr(C)`, made only of byte arrays (alignment 1, no padding, size 210
// checked above), and every bit pattern is a valid value.
unsafe impl bytemuck::Zeroable for BlockQ6K {}
// SAFETY: see above.
unsafe impl bytemuck::Pod for BlockQ6K {}

impl BlockQ6K {
    /// Bytes per block.
    pub const BYTES: usize = 210;

    /// An all-zero block (what ggml writes for an all-zero input).
    pub const ZERO: BlockQ6K = BlockQ6K {
        ql: [0; 128],
        qh: [0; 64],
        scales: [0; 16],
        d: [0; 2],
    };

    /// The super-block scale.
    pub fn d(&self) -> f16 {
        f16::from_le_bytes(self.d)
    }

    /// Views raw GGUF bytes as blocks, without copying. `None` unless the length is a multiple
    /// of 210.
    pub fn slice_from_bytes(bytes: &[u8]) -> Option<&[BlockQ6K]> {
        bytemuck::try_cast_slice(bytes).ok()
    }

    /// The raw bytes of a run of blocks.
    pub fn slice_as_bytes(blocks: &[BlockQ6K]) -> &[u8] {
        bytemuck::cast_slice(blocks)
    }

    /// The six-bit code (0..=63) of element `e` (0..256), by the closed-form index map.
    #[inline]
    pub fn code(&self, e: usize) -> u8 {
        let h = e >> 7;
        let p = e & 127;
        let g = p >> 5;
        let l = p & 31;
        let lo = (self.ql[64 * h + 32 * (g & 1) + l] >> (4 * (g >> 1))) & 0xF;
        let hi = (self.qh[32 * h + l] >> (2 * g)) & 3;
        lo | (hi << 4)
    }

    /// Dequantizes the block into `out` (256 values), as ggml does: `(d · sc) · (q − 32)` in f32.
    pub fn dequantize_into(&self, out: &mut [f32; QK_K]) {
        dequantize_parts(
            &self.ql,
            &self.qh,
            bytemuck::cast_ref(&self.scales),
            self.d().to_f32(),
            out,
        );
    }

    /// Quantizes 256 values exactly as ggml's `quantize_row_q6_K_ref` does (no importance matrix).
    pub fn quantize(x: &[f32; QK_K]) -> BlockQ6K {
        let mut codes = [0u8; QK_K];
        let mut scales_f = [0f32; 16];
        let mut max_scale = 0f32;
        let mut max_abs_scale = 0f32;
        for ib in 0..16 {
            let sub: &[f32; 16] = x[16 * ib..16 * ib + 16].try_into().expect("16 values");
            let out: &mut [u8; 16] = (&mut codes[16 * ib..16 * ib + 16])
                .try_into()
                .expect("16 codes");
            let scale = make_qx_quants_16(sub, out);
            scales_f[ib] = scale;
            // strict '>': the first sub-block of largest magnitude wins, with its sign.
            if scale.abs() > max_abs_scale {
                max_abs_scale = scale.abs();
                max_scale = scale;
            }
        }
        if max_abs_scale < GROUP_MAX_EPS {
            // ggml writes all 210 bytes as zero, d = +0.0.
            return BlockQ6K::ZERO;
        }

        let mut block = BlockQ6K::ZERO;
        let iscale = -128.0f32 / max_scale;
        // ggml stores d = 1/iscale (not max_scale / -128), rounded to nearest-even f16.
        let d = f16::from_f32(1.0 / iscale);
        block.d = d.to_le_bytes();
        for (sc, &sf) in block.scales.iter_mut().zip(&scales_f) {
            // No lower clamp: the largest-magnitude scale lands on -128. `as i8` wraps like C.
            *sc = nearest_int(iscale * sf).min(127) as i8;
        }
        let d = d.to_f32();
        for j in 0..16 {
            let dj = d * block.scales[j] as f32;
            if dj == 0.0 {
                // Skipped sub-blocks keep the codes of the scale search.
                continue;
            }
            for ii in 0..16 {
                // A true division, as ggml does: x * (1/dj) can flip a code at a .5 boundary.
                let l = nearest_int(x[16 * j + ii] / dj).clamp(-32, 31);
                codes[16 * j + ii] = (l + 32) as u8;
            }
        }
        pack_codes(&codes, &mut block);
        block
    }
}

/// ggml's `GROUP_MAX_EPS`: groups whose largest magnitude is below it quantize to zero.
const GROUP_MAX_EPS: f32 = 1e-15;

/// ggml's `nearest_int`: round half to even through the 1.5·2²³ trick, bit for bit (also for the
/// out-of-range inputs ggml does not guard against, so garbage in gives ggml's garbage out).
#[inline]
fn nearest_int(f: f32) -> i32 {
    let v = f + 12_582_912.0f32;
    (v.to_bits() as i32 & 0x007F_FFFF) - 0x0040_0000
}

/// ggml's `make_qx_quants(16, 32, x, L, rmse_type = 1, qw = NULL)`: the least-squares scale of a
/// 16-value sub-block over 19 candidate inverse scales, with the codes (0..=63) written to `codes`.
/// All arithmetic is f32 in ggml's order: `(w·x)·l` and `(w·l)·l`, sequential sums.
fn make_qx_quants_16(x: &[f32; 16], codes: &mut [u8; 16]) -> f32 {
    const NMAX: i32 = 32;
    let mut max = 0f32;
    let mut amax = 0f32;
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    if amax < GROUP_MAX_EPS {
        *codes = [0; 16];
        return 0.0;
    }
    let sums = |iscale: f32| {
        let mut sumlx = 0f32;
        let mut suml2 = 0f32;
        for &v in x {
            let l = nearest_int(iscale * v).clamp(-NMAX, NMAX - 1) as f32;
            let w = v * v;
            sumlx += w * v * l;
            suml2 += w * l * l;
        }
        (sumlx, suml2)
    };
    let quantize_with = |iscale: f32, codes: &mut [u8; 16]| {
        for (c, &v) in codes.iter_mut().zip(x) {
            *c = (nearest_int(iscale * v).clamp(-NMAX, NMAX - 1) + NMAX) as u8;
        }
    };

    let iscale = -(NMAX as f32) / max;
    quantize_with(iscale, codes);
    let (sumlx, suml2) = sums(iscale);
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for is in -9i32..=9 {
        if is == 0 {
            continue;
        }
        let iscale = -(NMAX as f32 + 0.1f32 * is as f32) / max;
        let (sumlx, suml2) = sums(iscale);
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            quantize_with(iscale, codes);
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// Packs 256 codes (0..=63) into `ql`/`qh` with the inverse of the index map.
fn pack_codes(codes: &[u8; QK_K], block: &mut BlockQ6K) {
    for h in 0..2 {
        let c = &codes[128 * h..128 * h + 128];
        for l in 0..32 {
            block.ql[64 * h + l] = (c[l] & 0xF) | ((c[l + 64] & 0xF) << 4);
            block.ql[64 * h + l + 32] = (c[l + 32] & 0xF) | ((c[l + 96] & 0xF) << 4);
            block.qh[32 * h + l] = (c[l] >> 4)
                | ((c[l + 32] >> 4) << 2)
                | ((c[l + 64] >> 4) << 4)
                | ((c[l + 96] >> 4) << 6);
        }
    }
}

/// Quantizes `x` (a whole number of 256-value blocks, rows laid end to end) to Q6_K, bit-exact
/// with ggml, spreading the blocks over `threads` threads (0 = all available cores).
///
/// Returns `None` if `x.len()` is not a multiple of 256.
pub fn quantize(x: &[f32], threads: usize) -> Option<Vec<BlockQ6K>> {
    if !x.len().is_multiple_of(QK_K) {
        return None;
    }
    let mut out = vec![BlockQ6K::ZERO; x.len() / QK_K];
    let threads = crate::parallel::thread_count(threads, out.len());
    let per = out.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        for (xs, ys) in x.chunks(per * QK_K).zip(out.chunks_mut(per)) {
            s.spawn(move || {
                for (xb, yb) in xs.chunks_exact(QK_K).zip(ys) {
                    *yb = BlockQ6K::quantize(xb.try_into().expect("256 values"));
                }
            });
        }
    });
    Some(out)
}

/// A block's 256 weights from its fields (`scales` as int8 bit patterns, `d` already f32), exactly
/// as ggml dequantizes them: `(d · sc) · (q − 32)`. Loops with constant shifts, so that they
/// vectorize; shared by [`BlockQ6K::dequantize_into`] and the CPU's fused product, which reads the
/// fields in place from either packed layout.
#[inline(always)]
pub(crate) fn dequantize_parts(
    ql: &[u8; 128],
    qh: &[u8; 64],
    scales: &[u8; 16],
    d: f32,
    out: &mut [f32; QK_K],
) {
    for half in 0..2 {
        let ql = &ql[64 * half..64 * half + 64];
        let qh = &qh[32 * half..32 * half + 32];
        let ds: [f32; 8] = std::array::from_fn(|i| d * scales[8 * half + i] as i8 as f32);
        let y = &mut out[128 * half..128 * half + 128];
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i32 - 32;
            let q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
            let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
            y[l] = ds[is] * q1 as f32;
            y[l + 32] = ds[is + 2] * q2 as f32;
            y[l + 64] = ds[is + 4] * q3 as f32;
            y[l + 96] = ds[is + 6] * q4 as f32;
        }
    }
}

/// Dequantizes a run of blocks into `out` (`256 · blocks.len()` values).
///
/// # Panics
/// If `out.len() != 256 · blocks.len()`.
pub fn dequantize_into(blocks: &[BlockQ6K], out: &mut [f32]) {
    assert_eq!(out.len(), blocks.len() * QK_K, "output length");
    for (b, y) in blocks.iter().zip(out.chunks_exact_mut(QK_K)) {
        b.dequantize_into(y.try_into().expect("256 values"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_int_is_half_to_even() {
        assert_eq!(nearest_int(0.5), 0);
        assert_eq!(nearest_int(1.5), 2);
        assert_eq!(nearest_int(2.5), 2);
        assert_eq!(nearest_int(-0.5), 0);
        assert_eq!(nearest_int(-1.5), -2);
        assert_eq!(nearest_int(-31.6), -32);
        for i in -100_000..100_000 {
            let f = i as f32 * 0.37;
            assert_eq!(nearest_int(f), f.round_ties_even() as i32, "{f}");
        }
    }

    #[test]
    fn code_map_matches_loop_form() {
        let mut b = BlockQ6K::ZERO;
        for (i, v) in b.ql.iter_mut().enumerate() {
            *v = (i * 37 + 11) as u8;
        }
        for (i, v) in b.qh.iter_mut().enumerate() {
            *v = (i * 91 + 5) as u8;
        }
        b.scales = [1; 16];
        b.d = f16::ONE.to_le_bytes();
        let mut y = [0f32; 256];
        b.dequantize_into(&mut y);
        for (e, &v) in y.iter().enumerate() {
            assert_eq!(v, b.code(e) as f32 - 32.0, "element {e}");
        }
    }

    #[test]
    fn pack_inverts_code_map() {
        let mut codes = [0u8; 256];
        for (i, c) in codes.iter_mut().enumerate() {
            *c = ((i * 29 + 7) % 64) as u8;
        }
        let mut b = BlockQ6K::ZERO;
        pack_codes(&codes, &mut b);
        for (e, &c) in codes.iter().enumerate() {
            assert_eq!(b.code(e), c);
        }
    }

    #[test]
    fn zero_and_tiny_blocks() {
        assert_eq!(BlockQ6K::quantize(&[0.0; 256]), BlockQ6K::ZERO);
        assert_eq!(BlockQ6K::quantize(&[1e-16; 256]), BlockQ6K::ZERO);
        // -0.0 inputs are below the threshold too: +0.0 super-scale, not 0x8000.
        assert_eq!(BlockQ6K::quantize(&[-0.0; 256]).d, [0, 0]);
    }

    #[test]
    fn largest_scale_is_minus_128() {
        let mut x = [0f32; 256];
        for (i, v) in x.iter_mut().enumerate() {
            *v = ((i * 7919) % 257) as f32 / 50.0 - 2.5;
        }
        let b = BlockQ6K::quantize(&x);
        assert!(b.scales.contains(&-128));
        let mut y = [0f32; 256];
        b.dequantize_into(&mut y);
        let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (a, b) in x.iter().zip(&y) {
            assert!((a - b).abs() <= amax / 31.0, "{a} vs {b}");
        }
    }
}
