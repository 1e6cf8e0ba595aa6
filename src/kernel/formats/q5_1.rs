//! Q5_1 `{ f16 d; f16 m; u8 qh[4]; u8 qs[16] }` (24 bytes): `q5 · d + m`, codes as in Q5_0.

use cubecl::prelude::*;

use super::{BlockFormat, Chunk, Geometry, load_f16, load_u32, vec4};

/// Q5_1.
pub struct Q5_1;

impl Geometry for Q5_1 {
    const BLOCK: usize = 32;
    const BYTES: usize = 24;
    const GAP: usize = 16;
}

#[cube]
#[allow(clippy::too_many_arguments)]
fn weight(q: u32, hb: u32, #[comptime] shift: u32, #[comptime] bit: u32, d: f32, m: f32) -> f32 {
    let code = ((q >> shift) & 0xFu32) | (((hb >> bit) & 1u32) << 4u32);
    f32::cast_from(code) * d + m
}

#[cube]
impl BlockFormat for Q5_1 {
    fn decode(w: &[u32], bb: usize, c: usize) -> Chunk {
        let d = load_f16(w, bb);
        let m = load_f16(w, bb + 2);
        let hb = load_u32(w, bb + 4) >> (4 * c) as u32;
        let q = load_u32(w, bb + 8 + 4 * c);
        Chunk {
            lo: vec4(
                weight(q, hb, 0u32, 0u32, d, m),
                weight(q, hb, 8u32, 1u32, d, m),
                weight(q, hb, 16u32, 2u32, d, m),
                weight(q, hb, 24u32, 3u32, d, m),
            ),
            hi: vec4(
                weight(q, hb, 4u32, 16u32, d, m),
                weight(q, hb, 12u32, 17u32, d, m),
                weight(q, hb, 20u32, 18u32, d, m),
                weight(q, hb, 28u32, 19u32, d, m),
            ),
            offset: 4 * c,
        }
    }
}
