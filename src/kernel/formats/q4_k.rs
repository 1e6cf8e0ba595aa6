//! Q4_K `{ f16 d; f16 dmin; u8 scales[12]; u8 qs[128] }` (144 bytes): element
//! `e = 64g + 32s + l` is `(d · sc) · q − dmin · m` with `q` nibble `s` of `qs[32g + l]` and
//! `(sc, m)` the six-bit pair of sub-block `2g + s`. Run `r = 2g + s`.

use cubecl::prelude::*;

use super::{BlockFormat, Geometry, RunScales, WordLayout, k_run_scales, pack4};

/// Q4_K.
pub struct Q4K;

impl Geometry for Q4K {
    const BLOCK: usize = 256;
    const BYTES: usize = 144;
    const MIN: bool = true;
    const SUB: usize = 32;
}

#[cube]
impl BlockFormat for Q4K {
    fn scales<L: WordLayout>(w: &[u32], bb: usize, r: usize) -> RunScales {
        k_run_scales::<L>(w, bb, r)
    }

    fn word<L: WordLayout>(w: &[u32], bb: usize, r: usize, #[comptime] j: usize) -> u32 {
        let v = L::field_word(w, bb, 16 + 32 * (r / 2), j);
        let shift = (4 * (r % 2)) as u32;
        pack4(v, shift, 0xFu32, 0u32, 0u32, 0u32, 0u32, 0u32, 0u32)
    }
}
