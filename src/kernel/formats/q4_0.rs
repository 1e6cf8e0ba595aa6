//! Q4_0 `{ f16 d; u8 qs[16] }` (18 bytes): `(nibble − 8) · d`; byte `j`'s low nibble is element
//! `j`, its high nibble element `j + 16`. Chunk `c` is the four bytes `4c .. 4c + 4`.

use cubecl::prelude::*;

use super::{BlockFormat, Chunk, Geometry, load_f16, load_u32, vec4};

/// Q4_0.
pub struct Q4_0;

impl Geometry for Q4_0 {
    const BLOCK: usize = 32;
    const BYTES: usize = 18;
    const GAP: usize = 16;
}

#[cube]
fn weight(q: u32, #[comptime] shift: u32, d: f32) -> f32 {
    f32::cast_from(i32::cast_from((q >> shift) & 0xFu32) - 8i32) * d
}

#[cube]
impl BlockFormat for Q4_0 {
    fn decode(w: &[u32], bb: usize, c: usize) -> Chunk {
        let d = load_f16(w, bb);
        let q = load_u32(w, bb + 2 + 4 * c);
        Chunk {
            lo: vec4(
                weight(q, 0u32, d),
                weight(q, 8u32, d),
                weight(q, 16u32, d),
                weight(q, 24u32, d),
            ),
            hi: vec4(
                weight(q, 4u32, d),
                weight(q, 12u32, d),
                weight(q, 20u32, d),
                weight(q, 28u32, d),
            ),
            offset: 4 * c,
        }
    }
}
