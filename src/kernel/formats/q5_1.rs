//! Q5_1 `{ f16 d; f16 m; u8 qh[4]; u8 qs[16] }` (24 bytes): `q5 · d + m`, codes as in Q5_0.

use cubecl::prelude::*;

use super::{
    BlockFormat, Geometry, RunScales, WordLayout, load_f16, load_u32, nibble_word, one_scale,
};

/// Q5_1.
pub struct Q5_1;

impl Geometry for Q5_1 {
    const BLOCK: usize = 32;
    const BYTES: usize = 24;
    const MIN: bool = true;
    const SUB: usize = 32;
}

#[cube]
impl BlockFormat for Q5_1 {
    fn scales<L: WordLayout>(w: &[u32], bb: usize, _r: usize) -> RunScales {
        let d = load_f16::<L>(w, bb, 0);
        let m = -load_f16::<L>(w, bb, 2);
        one_scale(d, m)
    }

    fn word<L: WordLayout>(w: &[u32], bb: usize, _r: usize, #[comptime] j: usize) -> u32 {
        let qh = load_u32::<L>(w, bb, 4, 0, true);
        nibble_word::<L>(w, bb, 8, qh, j, 1u32, 0u32, true)
    }
}
