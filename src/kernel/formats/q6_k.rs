//! Q6_K `{ u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d }` (210 bytes), in the GGUF layout (the
//! aligned planes have their own kernel): element `128h + 32j + l` (run `r = 4h + j`) is
//! `(d · sc) · (q − 32)` with the low nibble of `ql[64h + l]` (j = 0), of `ql[64h + 32 + l]`
//! (j = 1), their high nibbles (j = 2, 3), bits `2j .. 2j + 2` of `qh[32h + l]` on top, and `sc`
//! the signed scale byte `e / 16`.

use cubecl::prelude::*;

use super::{
    BlockFormat, Geometry, RunScales, WordLayout, load_byte, load_f16, load_u32, pack4, sign_extend,
};

/// Q6_K.
pub struct Q6K;

impl Geometry for Q6K {
    const BLOCK: usize = 256;
    const BYTES: usize = 210;
    const MIN: bool = false;
    const SUB: usize = 16;
    // one row group per warp: 27.2 µs against 28.9 with two (M = 1; PERF.md, session 24)
    const INT8_GROUPS: usize = 1;
}

#[cube]
impl BlockFormat for Q6K {
    fn scales<L: WordLayout>(w: &[u32], bb: usize, r: usize) -> RunScales {
        let d = load_f16::<L>(w, bb, 208);
        RunScales {
            d0: d * f32::cast_from(sign_extend(load_byte::<L>(w, bb, 192 + 2 * r))),
            d1: d * f32::cast_from(sign_extend(load_byte::<L>(w, bb, 193 + 2 * r))),
            m0: 0.0f32,
            m1: 0.0f32,
        }
    }

    fn word<L: WordLayout>(w: &[u32], bb: usize, r: usize, #[comptime] t: usize) -> u32 {
        let h = r / 4;
        let j = r % 4;
        let v = load_u32::<L>(w, bb, 64 * h + 32 * (j % 2), t, comptime!(L::WORD_BLOCKS));
        let qh = load_u32::<L>(w, bb, 128 + 32 * h, t, comptime!(L::WORD_BLOCKS));
        let shift = (4 * (j / 2)) as u32;
        let hshift = (2 * j) as u32;
        pack4(v, shift, 0xFu32, qh, hshift, 8u32, 3u32, 4u32, 32u32)
    }
}
