//! Q8_0 `{ f16 d; i8 qs[32] }` (34 bytes): `q · d`. One run per block; its bytes are the codes
//! as they are (signed, offset 0).

use cubecl::prelude::*;

use super::{BlockFormat, Geometry, RunScales, WordLayout, load_f16, load_u32, one_scale, pack4};

/// Q8_0.
pub struct Q8_0;

impl Geometry for Q8_0 {
    const BLOCK: usize = 32;
    const BYTES: usize = 34;
    const MIN: bool = false;
    const SUB: usize = 32;
    // one row group per warp: 19.9 µs against 23.6 with two (M = 1; PERF.md, session 24)
    const INT8_GROUPS: usize = 1;
}

#[cube]
impl BlockFormat for Q8_0 {
    fn scales<L: WordLayout>(w: &[u32], bb: usize, _r: usize) -> RunScales {
        let d = load_f16::<L>(w, bb, 0);
        one_scale(d, 0.0f32)
    }

    fn word<L: WordLayout>(w: &[u32], bb: usize, _r: usize, #[comptime] j: usize) -> u32 {
        let v = load_u32::<L>(w, bb, 2, j, false);
        pack4(v, 0u32, 0xFFu32, 0u32, 0u32, 0u32, 0u32, 0u32, 0u32)
    }
}
