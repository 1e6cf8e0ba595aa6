//! Q3_K `{ u8 hmask[32]; u8 qs[64]; u8 scales[12]; f16 d }` (110 bytes): element
//! `e = 128g + 32s + l` is `(d · sc) · q` with `q = (bits 2s..2s + 2 of qs[32g + l]) − 4` unless
//! bit `e / 32` of `hmask[l]` is set, and `sc` the six-bit signed scale `e / 16` (ggml's
//! `dequantize_row_q3_K`). Run `r = 4g + s`; its code is the two bits with the hmask bit above.

use cubecl::prelude::*;

use super::{BlockFormat, Geometry, RunScales, WordLayout, load_byte, load_f16, load_u32, pack4};

/// Q3_K.
pub struct Q3K;

impl Geometry for Q3K {
    const BLOCK: usize = 256;
    const BYTES: usize = 110;
    const MIN: bool = false;
    const SUB: usize = 16;
}

/// The signed six-bit scale `i` (0..16) of block `bb` from its 12 scale bytes at byte 96: the low nibble of
/// byte `i` (i < 8) or the high nibble of byte `i − 8`, with two bits of byte `8 + i % 4` above.
#[cube]
fn scale<L: WordLayout>(w: &[u32], bb: usize, i: usize) -> f32 {
    let low = (load_byte::<L>(w, bb, 96 + i % 8) >> ((4 * (i / 8)) as u32)) & 0xFu32;
    let high = (load_byte::<L>(w, bb, 104 + i % 4) >> ((2 * (i / 4)) as u32)) & 3u32;
    f32::cast_from(i32::cast_from(low | (high << 4u32)) - 32i32)
}

#[cube]
impl BlockFormat for Q3K {
    fn scales<L: WordLayout>(w: &[u32], bb: usize, r: usize) -> RunScales {
        let d = load_f16::<L>(w, bb, 108);
        RunScales {
            d0: d * scale::<L>(w, bb, 2 * r),
            d1: d * scale::<L>(w, bb, 2 * r + 1),
            m0: 0.0f32,
            m1: 0.0f32,
        }
    }

    fn word<L: WordLayout>(w: &[u32], bb: usize, r: usize, #[comptime] j: usize) -> u32 {
        let v = load_u32::<L>(w, bb, 32 + 32 * (r / 4), j, comptime!(L::WORD_BLOCKS));
        let shift = (2 * (r % 4)) as u32;
        let hm = load_u32::<L>(w, bb, 0, j, comptime!(L::WORD_BLOCKS));
        pack4(v, shift, 3u32, hm, r as u32, 8u32, 1u32, 2u32, 4u32)
    }
}
