//! Q4_1 `{ f16 d; f16 m; u8 qs[16] }` (20 bytes): `nibble · d + m`, nibbles placed as in Q4_0.

use cubecl::prelude::*;

use super::{BlockFormat, Chunk, Geometry, load_f16, load_u32, vec4};

/// Q4_1.
pub struct Q4_1;

impl Geometry for Q4_1 {
    const BLOCK: usize = 32;
    const BYTES: usize = 20;
    const GAP: usize = 16;
}

#[cube]
fn weight(q: u32, #[comptime] shift: u32, d: f32, m: f32) -> f32 {
    f32::cast_from((q >> shift) & 0xFu32) * d + m
}

#[cube]
impl BlockFormat for Q4_1 {
    fn decode(w: &[u32], bb: usize, c: usize) -> Chunk {
        let d = load_f16(w, bb);
        let m = load_f16(w, bb + 2);
        let q = load_u32(w, bb + 4 + 4 * c);
        Chunk {
            lo: vec4(
                weight(q, 0u32, d, m),
                weight(q, 8u32, d, m),
                weight(q, 16u32, d, m),
                weight(q, 24u32, d, m),
            ),
            hi: vec4(
                weight(q, 4u32, d, m),
                weight(q, 12u32, d, m),
                weight(q, 20u32, d, m),
                weight(q, 28u32, d, m),
            ),
            offset: 4 * c,
        }
    }
}
