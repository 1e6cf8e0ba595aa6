//! Q2_K `{ u8 scales[16]; u8 qs[64]; f16 d; f16 dmin }` (84 bytes): element
//! `e = 128g + 32s + l` is `(d · (sc & 15)) · q − dmin · (sc >> 4)` with `q` bits `2s..2s + 2` of
//! `qs[32g + l]` and `sc = scales[e / 16]`. Run `r = 4g + s`.

use cubecl::prelude::*;

use super::{BlockFormat, Geometry, RunScales, WordLayout, load_byte, load_f16, load_u32, pack4};

/// Q2_K.
pub struct Q2K;

impl Geometry for Q2K {
    const BLOCK: usize = 256;
    const BYTES: usize = 84;
    const MIN: bool = true;
    const SUB: usize = 16;
}

#[cube]
impl BlockFormat for Q2K {
    fn scales<L: WordLayout>(w: &[u32], bb: usize, r: usize) -> RunScales {
        let d = load_f16::<L>(w, bb, 80);
        let dmin = load_f16::<L>(w, bb, 82);
        let s0 = load_byte::<L>(w, bb, 2 * r);
        let s1 = load_byte::<L>(w, bb, 2 * r + 1);
        RunScales {
            d0: d * f32::cast_from(s0 & 0xFu32),
            d1: d * f32::cast_from(s1 & 0xFu32),
            m0: dmin * f32::cast_from(s0 >> 4u32),
            m1: dmin * f32::cast_from(s1 >> 4u32),
        }
    }

    fn word<L: WordLayout>(w: &[u32], bb: usize, r: usize, #[comptime] j: usize) -> u32 {
        let v = load_u32::<L>(w, bb, 16 + 32 * (r / 4), j, true);
        let shift = (2 * (r % 4)) as u32;
        pack4(v, shift, 3u32, 0u32, 0u32, 0u32, 0u32, 0u32, 0u32)
    }
}
