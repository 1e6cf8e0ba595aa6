//! The ggml block formats as the kernels decode them: one file per format, each a
//! [`BlockFormat`] (its geometry, and how one thread decodes a *run* — 32 consecutive weights of a
//! block — from the packed GGUF words: the run's 32 integer codes and the one or two scales, and
//! mins, that turn them into weights). The kernels (matrix-vector product, dequantization, row
//! lookup) are written once, generic over the format, and instantiated per type like ggml's
//! `mul_mat_vec_q<type>`; [`with_format`] picks the instantiation from a [`GgmlType`] at run time.
//!
//! A code is a small integer, exact in f32, and so is `scale · code` (a product of an f32 and an
//! integer below 2⁸ whose scale has at most 16 significant bits): `scale · code − min` rounds once,
//! so the dequantized weights are ggml's (`d · q`, `d · q + m`, `(d · sc) · q − dmin · m`) bit
//! for bit, whether or not the device compiler contracts the multiply and the add.

mod q2_k;
mod q3_k;
mod q4_0;
mod q4_1;
mod q4_k;
mod q5_0;
mod q5_1;
mod q5_k;
mod q6_k;
mod q8_0;

pub use q2_k::Q2K;
pub use q3_k::Q3K;
pub use q4_0::Q4_0;
pub use q4_1::Q4_1;
pub use q4_k::Q4K;
pub use q5_0::Q5_0;
pub use q5_1::Q5_1;
pub use q5_k::Q5K;
pub use q6_k::Q6K;
pub use q8_0::Q8_0;

use cubecl::prelude::*;

/// A format's geometry, known when the kernel is compiled.
pub trait Geometry: Send + Sync + 'static {
    /// Weights per block.
    const BLOCK: usize;
    /// Bytes per block.
    const BYTES: usize;
    /// Whether a weight is `scale · code − min` (else `scale · code`).
    const MIN: bool;
    /// Weights per scale: 16 or 32.
    const SUB: usize;
    /// Runs (of 32 weights) per block.
    const RUNS: usize = Self::BLOCK / 32;
}

/// The scales (and mins) of one run: elements `0..16` of the run are `d0 · code − m0`, elements
/// `16..32` `d1 · code − m1` (`d0 = d1`, `m0 = m1` for 32-weight sub-blocks; the mins are zero,
/// and unused, for a format without them).
#[derive(CubeType)]
pub struct RunScales {
    /// Scale of the run's first 16 weights.
    pub d0: f32,
    /// Scale of its last 16.
    pub d1: f32,
    /// Min of its first 16.
    pub m0: f32,
    /// Min of its last 16.
    pub m1: f32,
}

/// A block format the kernels decode: run `r` (0..RUNS, elements `32r .. 32r + 32`) of the block
/// whose GGUF bytes start at byte `bb` of the words `w`.
#[cube]
pub trait BlockFormat: Geometry {
    /// The scales and mins of run `r`.
    fn scales(w: &[u32], bb: usize, r: usize) -> RunScales;
    /// Word `j` (0..8) of run `r`'s codes: its elements `4j .. 4j + 4`, each minus the format's
    /// offset (`scale · (code − offset) − min` is the weight), as signed bytes (little-endian,
    /// element `4j + i` in byte `i`): what an integer dot product takes, and what [`unpack`]
    /// turns into exact floats. [`codes`] decodes all eight, a word at a time, so each format's
    /// decoder is one function of the run and the word.
    fn word(w: &[u32], bb: usize, r: usize, j: usize) -> u32;
}

/// The 32 codes of run `r` of the block at byte `bb`, as [`BlockFormat::word`] gives them, into
/// `q[0..8]`.
#[cube]
pub fn codes<Q: BlockFormat>(w: &[u32], bb: usize, r: usize, q: &mut Array<u32>) {
    #[unroll]
    for j in 0..8usize {
        q[j] = Q::word(w, bb, r, j);
    }
}

/// Runs `$body` with `$Q` the [`BlockFormat`] of `$t` (a [`crate::quant::GgmlType`]), or
/// evaluates to `Err(KernelError::Unsupported)` for a type without one.
macro_rules! with_format {
    ($t:expr, $Q:ident => $body:expr) => {{
        use $crate::kernel::formats as f;
        use $crate::quant::GgmlType as T;
        match $t {
            T::Q4_0 => {
                type $Q = f::Q4_0;
                Ok($body)
            }
            T::Q4_1 => {
                type $Q = f::Q4_1;
                Ok($body)
            }
            T::Q5_0 => {
                type $Q = f::Q5_0;
                Ok($body)
            }
            T::Q5_1 => {
                type $Q = f::Q5_1;
                Ok($body)
            }
            T::Q8_0 => {
                type $Q = f::Q8_0;
                Ok($body)
            }
            T::Q2_K => {
                type $Q = f::Q2K;
                Ok($body)
            }
            T::Q3_K => {
                type $Q = f::Q3K;
                Ok($body)
            }
            T::Q4_K => {
                type $Q = f::Q4K;
                Ok($body)
            }
            T::Q5_K => {
                type $Q = f::Q5K;
                Ok($body)
            }
            T::Q6_K => {
                type $Q = f::Q6K;
                Ok($body)
            }
            t => Err($crate::kernel::KernelError::Unsupported(t)),
        }
    }};
}
pub(crate) use with_format;

/// The four bytes at byte `base + 4 j` as a little-endian u32. `aligned`: `base` is a multiple
/// of 4 (a block of a multiple of 4 bytes, at a word offset in it), one load. Otherwise the
/// bytes may straddle words: words `i = base / 4 + j` and `i + 1` (each index capped at the last
/// word, so never a load past the end; a capped second word only ever meets a shift of 0),
/// shifted together. Word `i + 1` of `j` is word `i` of `j + 1`, the same expression, so a
/// caller reading `j = 0, 1, 2, …` of one `base` loads each word once, not twice.
#[cube]
pub fn load_u32(w: &[u32], base: usize, j: usize, #[comptime] aligned: bool) -> u32 {
    let i = base / 4 + j;
    if comptime!(aligned) {
        w[i]
    } else {
        let last = w.len() - 1;
        let s = ((base % 4) * 8) as u32;
        // `<< (32 − s)` as two shifts: a shift by 32 is not defined everywhere.
        (w[i.min(last)] >> s) | ((w[(i + 1).min(last)] << (31u32 - s)) << 1u32)
    }
}

/// The integer `c − offset` (for `c` below 2²³) as f32, without an integer-to-float conversion
/// (a slow instruction on GPUs): `c` in the mantissa of 2²³, then 2²³ + `offset` subtracted;
/// both terms and the difference are exact.
#[cube]
pub fn code(c: u32, #[comptime] offset: u32) -> f32 {
    f32::reinterpret(c | 0x4B00_0000u32) - f32::reinterpret(comptime!(0x4B00_0000u32 | offset))
}

/// Four codes as the signed bytes of one word (byte `i` is code `i` minus `offset`): code
/// `i` is bits `shift + 8i ..` of `lo` under `mask`, with bits `hshift + hstride · i ..` of `hi`
/// under `hmask` placed at bit `hpos` above them (no high part when `hmask` is 0). Every code
/// fits its byte (`shift` plus the mask's bits, and `hpos` plus the high mask's, stay within 8;
/// a code minus its offset lies in −128..=127), so the four are formed together, as a word.
#[cube]
#[allow(clippy::too_many_arguments)]
pub fn pack4(
    lo: u32,
    shift: u32,
    #[comptime] mask: u32,
    hi: u32,
    hshift: u32,
    #[comptime] hstride: u32,
    #[comptime] hmask: u32,
    #[comptime] hpos: u32,
    #[comptime] offset: u32,
) -> u32 {
    let mut c = (lo >> shift) & comptime!(mask * 0x0101_0101u32);
    if comptime!(hmask != 0 && hstride == 8) {
        c |= ((hi >> hshift) & comptime!(hmask * 0x0101_0101u32)) << hpos;
    } else if comptime!(hmask != 0) {
        #[unroll]
        for i in 0..4u32 {
            c |= ((hi >> (hshift + hstride * i)) & hmask) << comptime!(hpos + 8 * i);
        }
    }
    if comptime!(offset != 0) {
        // per byte `c + 128 − offset` (no carry: a code is below 128 + offset), then its top bit
        // flipped: `c − offset` in two's complement
        c = (c + comptime!((128 - offset) * 0x0101_0101u32)) ^ 0x8080_8080u32;
    }
    c
}

/// Code `i` (0..32) of a run's packed words `q` (signed bytes, [`codes`]) as an
/// exact f32.
#[cube]
pub fn unpack(q: &Array<u32>, #[comptime] i: usize) -> f32 {
    // every byte's top bit flipped (the same expression for a word's four codes: formed once),
    // so that a byte is its code plus 128
    let biased = q[i / 4] ^ 0x8080_8080u32;
    code((biased >> comptime!(8 * (i % 4) as u32)) & 0xFFu32, 128u32)
}

/// Word `j` (0..8) of the codes of a Q4_0 / Q4_1 / Q5_0 / Q5_1 block ([`BlockFormat::word`]):
/// byte `e` of the 16 bytes at byte `qs` holds element `e` (low nibble) and element `e + 16`
/// (high nibble), so word `j` is the low (`j < 4`) or high nibbles of bytes `4 (j % 4) ..`;
/// where `hmask` is 1, bit `e` of `qh` (the little-endian `qh` word of Q5_0 / Q5_1) is element
/// `e`'s fifth bit. `aligned`: `qs` is a multiple of 4 ([`load_u32`]).
#[cube]
#[allow(clippy::too_many_arguments)]
pub fn nibble_word(
    w: &[u32],
    qs: usize,
    qh: u32,
    j: usize,
    #[comptime] hmask: u32,
    #[comptime] offset: u32,
    #[comptime] aligned: bool,
) -> u32 {
    let v = load_u32(w, qs, j % 4, aligned);
    let shift = (4 * (j / 4)) as u32;
    pack4(
        v,
        shift,
        0xFu32,
        qh,
        (4 * j) as u32,
        1u32,
        hmask,
        4u32,
        offset,
    )
}

/// The scales of a run with one scale `d` and min `m` for all its 32 weights.
#[cube]
pub fn one_scale(d: f32, m: f32) -> RunScales {
    RunScales {
        d0: d,
        d1: d,
        m0: m,
        m1: m,
    }
}

/// The scales of run `r` (sub-block `r`, 0..8) of the Q4_K / Q5_K block at byte `bb`: `d · sc`
/// and `dmin · m` with `(sc, m)` the sub-block's six-bit pair from the 12 scale bytes at
/// `bb + 4` (ggml's `get_scale_min_k4`). Branch-free: both of ggml's cases are formed from
/// in-bounds bytes and one is selected.
#[cube]
pub fn k_run_scales(w: &[u32], bb: usize, r: usize) -> RunScales {
    let sb = bb + 4;
    let lo = r % 4;
    let a = load_byte(w, sb + lo); // r < 4: the scale; else its top two bits
    let b = load_byte(w, sb + lo + 4); // r < 4: the min; else its top two bits
    let c = load_byte(w, sb + lo + 8); // r ≥ 4: the low nibbles of scale and min
    let high = r >= 4;
    let sc = select(high, (c & 0xFu32) | ((a >> 6u32) << 4u32), a & 63u32);
    let mn = select(high, (c >> 4u32) | ((b >> 6u32) << 4u32), b & 63u32);
    one_scale(
        load_f16(w, bb) * f32::cast_from(sc),
        load_f16(w, bb + 2) * f32::cast_from(mn),
    )
}

pub use super::decode::{load_byte, load_f16, sign_extend};

#[cfg(test)]
mod tests {
    use super::Geometry;
    use crate::quant::FUSED_TYPES;

    /// Each GPU block format carries the geometry of the ggml type it decodes.
    #[test]
    fn formats_match_the_type_table() {
        for &t in FUSED_TYPES {
            let geometry = with_format!(t, Q => (Q::BLOCK as u64, Q::BYTES as u64))
                .unwrap_or_else(|e| panic!("{t}: {e}"));
            assert_eq!(Some(geometry), t.block_size().zip(t.type_size()), "{t}");
        }
    }
}
