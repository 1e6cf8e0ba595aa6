//! Q4_0 `{ f16 d; u8 qs[16] }` (18 bytes): `(nibble − 8) · d`; byte `j`'s low nibble is element
//! `j`, its high nibble element `j + 16`. One run per block.

use cubecl::prelude::*;

use super::{BlockFormat, Geometry, RunScales, WordLayout, load_f16, nibble_word, one_scale};

/// Q4_0.
pub struct Q4_0;

impl Geometry for Q4_0 {
    const BLOCK: usize = 32;
    const BYTES: usize = 18;
    const MIN: bool = false;
    const SUB: usize = 32;
}

#[cube]
impl BlockFormat for Q4_0 {
    fn scales<L: WordLayout>(w: &[u32], bb: usize, _r: usize) -> RunScales {
        let d = load_f16::<L>(w, bb, 0);
        one_scale(d, 0.0f32)
    }

    fn word<L: WordLayout>(w: &[u32], bb: usize, _r: usize, #[comptime] j: usize) -> u32 {
        nibble_word::<L>(w, bb, 2, 0u32, j, 0u32, 8u32, false)
    }
}
