//! Q4_1 `{ f16 d; f16 m; u8 qs[16] }` (20 bytes): `nibble · d + m`, nibbles placed as in Q4_0.

use cubecl::prelude::*;

use super::{BlockFormat, Geometry, RunScales, WordLayout, load_f16, nibble_word, one_scale};

/// Q4_1.
pub struct Q4_1;

impl Geometry for Q4_1 {
    const BLOCK: usize = 32;
    const BYTES: usize = 20;
    const MIN: bool = true;
    const SUB: usize = 32;
}

#[cube]
impl BlockFormat for Q4_1 {
    fn scales<L: WordLayout>(w: &[u32], bb: usize, _r: usize) -> RunScales {
        let d = load_f16::<L>(w, bb, 0);
        let m = -load_f16::<L>(w, bb, 2);
        one_scale(d, m)
    }

    fn word<L: WordLayout>(w: &[u32], bb: usize, _r: usize, #[comptime] j: usize) -> u32 {
        nibble_word::<L>(w, bb, 4, 0u32, j, 0u32, 0u32, true)
    }
}
