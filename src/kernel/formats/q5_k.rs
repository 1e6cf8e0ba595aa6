//! Q5_K `{ f16 d; f16 dmin; u8 scales[12]; u8 qh[32]; u8 qs[128] }` (176 bytes): Q4_K with a
//! fifth bit, bit `r` of `qh[l]` for run `r` (elements `32r + l`).

use cubecl::prelude::*;

use super::{BlockFormat, Geometry, RunScales, WordLayout, k_run_scales, pack4};

/// Q5_K.
pub struct Q5K;

impl Geometry for Q5K {
    const BLOCK: usize = 256;
    const BYTES: usize = 176;
    const MIN: bool = true;
    const SUB: usize = 32;
    // one row group per warp: 19.5 µs against 23.4 with two (M = 1; PERF.md, session 24)
    const INT8_GROUPS: usize = 1;
}

#[cube]
impl BlockFormat for Q5K {
    fn scales<L: WordLayout>(w: &[u32], bb: usize, r: usize) -> RunScales {
        k_run_scales::<L>(w, bb, r)
    }

    fn word<L: WordLayout>(w: &[u32], bb: usize, r: usize, #[comptime] j: usize) -> u32 {
        let v = L::field_word(w, bb, 48 + 32 * (r / 2), j);
        let shift = (4 * (r % 2)) as u32;
        let qh = L::field_word(w, bb, 16, j);
        pack4(v, shift, 0xFu32, qh, r as u32, 8u32, 1u32, 4u32, 0u32)
    }
}
