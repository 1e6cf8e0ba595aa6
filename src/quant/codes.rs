//! The block formats as integer codes with one affine map per sub-block: weight `i` of a block is
//! `scale[s] · q[i] − min[s]` with `s = i / SUB`, where `scale[s] = d · sc[s]` and
//! `min[s] = dmin · m[s]`: two floats per block and small integers (`sc`, `m`, the codes `q`).
//! Every format ggml has decodes this way (`d · q`, `d · q + m`, `(d · sc) · q − dmin · m`, …),
//! and `scale · q` is exact in f32 for each of them (an f16 scale, at most an 8-bit sub-block
//! scale and a code of at most 8 bits need at most 24 bits), so `scale · q − min` rounded once is
//! ggml's dequantized value bit for bit. The CPU products multiply codes, not decoded weights:
//! the float product applies each sub-block's scale once, after the codes' dot product (formats
//! without mins), the int8 one every integer factor before its block's two floats.
//!
//! A block decodes in two steps: its sub-blocks' integer scales and mins with the block's `d` and
//! `dmin` (`*_scales`, returning `(d, dmin)`), then its codes 32 at a time (`*_codes` of run `r`:
//! elements `32r .. 32r + 32`, fixed-size runs the compiler vectorizes). The codes come
//! unsigned, as the bits the block stores: a format with signed codes (Q4_0's `nibble − 8`, …)
//! states its offset, [`super::BlockDecode::OFFSET`], which the decoder's signed `codes`
//! subtract and the int8 product folds into its sums (a product of unsigned bytes needs no
//! sign fix-up per byte).

use super::dequant::f16_at;

/// How a decoder unpacks a block's fields (f16 to f32, nibbles and bits to bytes), in portable
/// code ([`Soft`]) or with an instruction set's own instructions where a caller compiled for it
/// has them (the CPU's int8 product: F16C's conversion, ggml's byte shuffles). Each gives the
/// same values for every input.
pub(crate) trait Unpack: Copy {
    /// The f16 at byte `at` of `b` (little-endian), as f32.
    fn f16(self, b: &[u8], at: usize) -> f32;
    /// The 32 codes of Q4_0 / Q4_1: byte `j` the low nibble of `qs[j]`, byte `16 + j` its high
    /// one.
    fn nibbles(self, qs: &[u8; 16]) -> [u8; 32];
    /// The 32 codes of Q5_0 / Q5_1: [`Self::nibbles`], each plus 16 where bit `e` of `high` is
    /// set (the fifth bits).
    fn nibbles5(self, qs: &[u8; 16], high: u32) -> [u8; 32];
}

/// [`Unpack`] in portable code.
#[derive(Clone, Copy)]
pub(crate) struct Soft;

impl Unpack for Soft {
    #[inline(always)]
    fn f16(self, b: &[u8], at: usize) -> f32 {
        f16_at(b, at)
    }
    #[inline(always)]
    fn nibbles(self, qs: &[u8; 16]) -> [u8; 32] {
        let mut q = [0u8; 32];
        for j in 0..16 {
            q[j] = qs[j] & 0xF;
            q[j + 16] = qs[j] >> 4;
        }
        q
    }
    #[inline(always)]
    fn nibbles5(self, qs: &[u8; 16], high: u32) -> [u8; 32] {
        // in 32-bit lanes, a shift a lane: what the compiler vectorizes best for the float
        // product (as bytes, or with a byte a lane tested against a mask, it shuffled bytes to
        // twice the time: PERF.md session 27)
        let mut q = [0u32; 32];
        for j in 0..16 {
            q[j] = (qs[j] & 0xF) as u32 | (((high >> j) & 1) << 4);
            q[j + 16] = (qs[j] >> 4) as u32 | (((high >> (j + 16)) & 1) << 4);
        }
        // a loop, not `map`: `map` stays a call in the products' SIMD builds, its arrays spilled
        let mut out = [0u8; 32];
        for (out, q) in out.iter_mut().zip(q) {
            *out = q as u8;
        }
        out
    }
}

/// A block's integer sub-block scales or mins (at most 16 sub-blocks; every format's fit in a
/// byte: Q6_K's signed 8-bit scales, the others' at most 6 bits).
pub(crate) type Ints = [i8; 16];

/// Q4_0 `{ f16 d; u8 qs[16] }`: codes `nibble − 8` (offset 8), scale `d`; low nibbles are
/// elements 0..16.
#[inline(always)]
pub(crate) fn q4_0_scales(b: &[u8], un: impl Unpack, sc: &mut Ints, _m: &mut Ints) -> (f32, f32) {
    sc[0] = 1;
    (un.f16(b, 0), 0.0)
}
/// Q4_0's codes: the nibbles.
#[inline(always)]
pub(crate) fn q4_0_codes(b: &[u8], un: impl Unpack, _r: usize, q: &mut [u8; 32]) {
    *q = un.nibbles(b[2..18].try_into().expect("16 bytes"));
}

/// Q4_1 `{ f16 d; f16 m; u8 qs[16] }`: codes the nibbles, scale `d`, min `−m`.
#[inline(always)]
pub(crate) fn q4_1_scales(b: &[u8], un: impl Unpack, sc: &mut Ints, m: &mut Ints) -> (f32, f32) {
    (sc[0], m[0]) = (1, 1);
    (un.f16(b, 0), -un.f16(b, 2))
}
/// Q4_1's codes.
#[inline(always)]
pub(crate) fn q4_1_codes(b: &[u8], un: impl Unpack, _r: usize, q: &mut [u8; 32]) {
    *q = un.nibbles(b[4..20].try_into().expect("16 bytes"));
}

/// The five-bit codes of Q5_0 / Q5_1 into `q`: the nibbles placed as in Q4_0, bit `e` of the
/// little-endian u32 `qh` the fifth bit of element `e`.
#[inline(always)]
fn q5_codes(un: impl Unpack, qh: &[u8], qs: &[u8], q: &mut [u8; 32]) {
    let [qh] = words::<1>(qh);
    *q = un.nibbles5(qs[..16].try_into().expect("16 bytes"), qh);
}

/// Q5_0 `{ f16 d; u8 qh[4]; u8 qs[16] }`: codes `q5 − 16` (offset 16), scale `d`.
#[inline(always)]
pub(crate) fn q5_0_scales(b: &[u8], un: impl Unpack, sc: &mut Ints, _m: &mut Ints) -> (f32, f32) {
    sc[0] = 1;
    (un.f16(b, 0), 0.0)
}
/// Q5_0's codes.
#[inline(always)]
pub(crate) fn q5_0_codes(b: &[u8], un: impl Unpack, _r: usize, q: &mut [u8; 32]) {
    q5_codes(un, &b[2..6], &b[6..22], q)
}

/// Q5_1 `{ f16 d; f16 m; u8 qh[4]; u8 qs[16] }`: codes `q5`, scale `d`, min `−m`.
#[inline(always)]
pub(crate) fn q5_1_scales(b: &[u8], un: impl Unpack, sc: &mut Ints, m: &mut Ints) -> (f32, f32) {
    (sc[0], m[0]) = (1, 1);
    (un.f16(b, 0), -un.f16(b, 2))
}
/// Q5_1's codes.
#[inline(always)]
pub(crate) fn q5_1_codes(b: &[u8], un: impl Unpack, _r: usize, q: &mut [u8; 32]) {
    q5_codes(un, &b[4..8], &b[8..24], q)
}

/// Q8_0 `{ f16 d; i8 qs[32] }`: codes `qs`, scale `d` (as unsigned codes: `qs + 128`, offset
/// 128).
#[inline(always)]
pub(crate) fn q8_0_scales(b: &[u8], un: impl Unpack, sc: &mut Ints, _m: &mut Ints) -> (f32, f32) {
    sc[0] = 1;
    (un.f16(b, 0), 0.0)
}
/// Q8_0's codes.
#[inline(always)]
pub(crate) fn q8_0_codes(b: &[u8], _un: impl Unpack, _r: usize, q: &mut [u8; 32]) {
    let qs: &[u8; 32] = b[2..34].try_into().expect("32 codes");
    for i in 0..32 {
        q[i] = qs[i] ^ 0x80;
    }
}

/// Q2_K `{ u8 scales[16]; u8 qs[64]; f16 d; f16 dmin }`: 2-bit codes, per 16 elements scale
/// `d · (sc & 15)` and min `dmin · (sc >> 4)`.
#[inline(always)]
pub(crate) fn q2_k_scales(b: &[u8], un: impl Unpack, sc: &mut Ints, m: &mut Ints) -> (f32, f32) {
    // four bytes at a time: the compiler kept a byte loop vectorized in one build and took it
    // apart byte by byte in another (Q2_K 1.5x slower, PERF.md session 27)
    let w = words::<4>(&b[0..16]);
    let (mut low, mut high) = ([0u32; 4], [0u32; 4]);
    for i in 0..4 {
        low[i] = (w[i] & 0x0F0F_0F0F).to_le();
        high[i] = ((w[i] >> 4) & 0x0F0F_0F0F).to_le();
    }
    *sc = bytemuck::cast(low);
    *m = bytemuck::cast(high);
    (un.f16(b, 80), un.f16(b, 82))
}
/// Q2_K's codes, 32 at a time: element `l` of run `r` (element `32r + l = 128g + 32j + l`) is
/// bits `2j` of `qs[32g + l]`.
#[inline(always)]
pub(crate) fn q2_k_codes(b: &[u8], _un: impl Unpack, r: usize, q: &mut [u8; 32]) {
    let qs: &[u8; 32] = b[16 + 32 * (r / 4)..][..32].try_into().expect("32");
    let shift = 2 * (r % 4) as u32;
    for l in 0..32 {
        q[l] = (qs[l] >> shift) & 3;
    }
}

/// Q3_K `{ u8 hmask[32]; u8 qs[64]; u8 scales[12]; f16 d }`: codes `(low 2 bits) − 4·(1 − hmask
/// bit)`, i.e. `(low 2 bits | hmask bit << 2) − 4` (offset 4), per 16 elements scale `d · sc`
/// with `sc` a six-bit signed scale.
#[inline(always)]
pub(crate) fn q3_k_scales(b: &[u8], un: impl Unpack, sc: &mut Ints, _m: &mut Ints) -> (f32, f32) {
    // ggml's unpacking, four bytes at a time: scale `i`'s low nibble is nibble `i / 8` of byte
    // `i % 8`, its high two bits bits `2 (i / 4)` of byte `8 + i % 4`
    let [a0, a1, t] = words::<3>(&b[96..108]);
    const LOW: u32 = 0x0F0F_0F0F;
    const HIGH: u32 = 0x0303_0303;
    let six: [u8; 16] = bytemuck::cast([
        (a0 & LOW) | ((t & HIGH) << 4),
        (a1 & LOW) | (((t >> 2) & HIGH) << 4),
        ((a0 >> 4) & LOW) | (((t >> 4) & HIGH) << 4),
        ((a1 >> 4) & LOW) | (((t >> 6) & HIGH) << 4),
    ]);
    for i in 0..16 {
        sc[i] = six[i] as i8 - 32;
    }
    (un.f16(b, 108), 0.0)
}
/// Q3_K's codes, 32 at a time: element `l` of run `r` (element `32r + l = 128g + 32j + l`) is
/// bits `2j` of `qs[32g + l]` and bit `4g + j` of `hmask[l]`.
#[inline(always)]
pub(crate) fn q3_k_codes(b: &[u8], _un: impl Unpack, r: usize, q: &mut [u8; 32]) {
    let hm: &[u8; 32] = b[0..32].try_into().expect("32");
    let qs: &[u8; 32] = b[32 + 32 * (r / 4)..][..32].try_into().expect("32");
    let (shift, bit) = (2 * (r % 4) as u32, r as u32);
    for l in 0..32 {
        q[l] = ((qs[l] >> shift) & 3) | (((hm[l] >> bit) & 1) << 2);
    }
}

/// The per-32 scales `sc` and mins `m` of Q4_K / Q5_K, their 6-bit factors packed in the 12
/// bytes at 4, with `d` and `dmin` (the block's first two f16).
#[inline(always)]
fn k_scales(b: &[u8], un: impl Unpack, sc: &mut Ints, m: &mut Ints) -> (f32, f32) {
    // ggml's unpacking, four bytes at a time: scales and mins 0..4 are the low six bits of bytes
    // 0..4 and 4..8; 4..8 the nibbles of bytes 8..12 under the top two bits of bytes 0..8
    let [u0, u1, u2] = words::<3>(&b[4..16]);
    const SIX: u32 = 0x3F3F_3F3F;
    const LOW: u32 = 0x0F0F_0F0F;
    const TOP: u32 = 0x0303_0303;
    let six: [u8; 16] = bytemuck::cast([
        u0 & SIX,
        (u2 & LOW) | (((u0 >> 6) & TOP) << 4),
        u1 & SIX,
        ((u2 >> 4) & LOW) | (((u1 >> 6) & TOP) << 4),
    ]);
    for i in 0..8 {
        sc[i] = six[i] as i8;
        m[i] = six[8 + i] as i8;
    }
    (un.f16(b, 0), un.f16(b, 2))
}

/// The `N` little-endian u32 of `b` (`4 N` bytes).
#[inline(always)]
fn words<const N: usize>(b: &[u8]) -> [u32; N] {
    std::array::from_fn(|i| u32::from_le_bytes(b[4 * i..][..4].try_into().expect("4 bytes")))
}

/// Q4_K `{ f16 d; f16 dmin; u8 scales[12]; u8 qs[128] }`: 4-bit codes, per 32 elements scale
/// `d · sc` and min `dmin · m`.
#[inline(always)]
pub(crate) fn q4_k_scales(b: &[u8], un: impl Unpack, sc: &mut Ints, m: &mut Ints) -> (f32, f32) {
    k_scales(b, un, sc, m)
}
/// Q4_K's codes: runs (sub-blocks) `2g` and `2g + 1` are the low and high nibbles of
/// `qs[32g ..]`.
#[inline(always)]
pub(crate) fn q4_k_codes(b: &[u8], _un: impl Unpack, r: usize, q: &mut [u8; 32]) {
    let qs: &[u8; 32] = b[16 + 32 * (r / 2)..][..32].try_into().expect("32 bytes");
    let shift = 4 * (r % 2) as u32;
    for l in 0..32 {
        q[l] = (qs[l] >> shift) & 0xF;
    }
}

/// Q5_K `{ f16 d; f16 dmin; u8 scales[12]; u8 qh[32]; u8 qs[128] }`: as Q4_K with a fifth bit.
#[inline(always)]
pub(crate) fn q5_k_scales(b: &[u8], un: impl Unpack, sc: &mut Ints, m: &mut Ints) -> (f32, f32) {
    k_scales(b, un, sc, m)
}
/// Q5_K's codes: as Q4_K's, with bit `r` of `qh[l]` the fifth bit of element `l`.
#[inline(always)]
pub(crate) fn q5_k_codes(b: &[u8], _un: impl Unpack, r: usize, q: &mut [u8; 32]) {
    let qh: &[u8; 32] = b[16..48].try_into().expect("32 bytes");
    let qs: &[u8; 32] = b[48 + 32 * (r / 2)..][..32].try_into().expect("32 bytes");
    let shift = 4 * (r % 2) as u32;
    for l in 0..32 {
        q[l] = ((qs[l] >> shift) & 0xF) | (((qh[l] >> r) & 1) << 4);
    }
}

/// Q6_K `{ u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d }` from its fields (either layout:
/// [`super::q6k::BlockSource::parts`]): codes `q6 − 32`, per 16 elements scale `d · sc`.
#[inline(always)]
pub(crate) fn q6_k_scales(bytes: &[u8; 16], d: f32, sc: &mut Ints) -> (f32, f32) {
    for i in 0..16 {
        sc[i] = bytes[i] as i8;
    }
    (d, 0.0)
}
/// Q6_K's codes, 32 at a time: element `l` of run `r` (element `32r + l = 128h + 32j + l`) is
/// nibble `j / 2` of `ql[64h + 32 (j % 2) + l]` under bits `2j` of `qh[32h + l]` (offset 32).
#[inline(always)]
pub(crate) fn q6_k_codes(ql: &[u8; 128], qh: &[u8; 64], r: usize, q: &mut [u8; 32]) {
    let (h, j) = (r / 4, r % 4);
    let ql: &[u8; 32] = ql[64 * h + 32 * (j % 2)..][..32].try_into().expect("32");
    let qh: &[u8; 32] = qh[32 * h..][..32].try_into().expect("32");
    let (nibble, shift) = (4 * (j / 2) as u32, 2 * j as u32);
    for l in 0..32 {
        q[l] = ((ql[l] >> nibble) & 0xF) | (((qh[l] >> shift) & 3) << 4);
    }
}
