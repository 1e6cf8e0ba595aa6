//! Q5_0 `{ f16 d; u8 qh[4]; u8 qs[16] }` (22 bytes): `(q5 − 16) · d`, the nibbles placed as in
//! Q4_0 and bit `j` of the little-endian `qh` the fifth bit of element `j`. One run per block.

use cubecl::prelude::*;

use super::{
    BlockFormat, Geometry, RunScales, WordLayout, load_f16, load_u32, nibble_word, one_scale,
};

/// Q5_0.
pub struct Q5_0;

impl Geometry for Q5_0 {
    const BLOCK: usize = 32;
    const BYTES: usize = 22;
    const MIN: bool = false;
    const SUB: usize = 32;
}

#[cube]
impl BlockFormat for Q5_0 {
    fn scales<L: WordLayout>(w: &[u32], bb: usize, _r: usize) -> RunScales {
        let d = load_f16::<L>(w, bb, 0);
        one_scale(d, 0.0f32)
    }

    fn word<L: WordLayout>(w: &[u32], bb: usize, _r: usize, #[comptime] j: usize) -> u32 {
        let qh = load_u32::<L>(w, bb, 2, 0, false);
        nibble_word::<L>(w, bb, 6, qh, j, 1u32, 16u32, false)
    }
}
