//! Q5_0 `{ f16 d; u8 qh[4]; u8 qs[16] }` (22 bytes): `(q5 − 16) · d`, the nibbles placed as in
//! Q4_0 and bit `j` of the little-endian `qh` the fifth bit of element `j`.

use cubecl::prelude::*;

use super::{BlockFormat, Chunk, Geometry, load_f16, load_u32, vec4};

/// Q5_0.
pub struct Q5_0;

impl Geometry for Q5_0 {
    const BLOCK: usize = 32;
    const BYTES: usize = 22;
    const GAP: usize = 16;
}

/// Element `j`'s code from nibble `shift` of `q` and bit `j` of `qh` (`hb = qh >> j0`).
#[cube]
fn code(q: u32, hb: u32, #[comptime] shift: u32, #[comptime] bit: u32) -> i32 {
    i32::cast_from(((q >> shift) & 0xFu32) | (((hb >> bit) & 1u32) << 4u32))
}

#[cube]
fn weight(q: u32, hb: u32, #[comptime] shift: u32, #[comptime] bit: u32, d: f32) -> f32 {
    f32::cast_from(code(q, hb, shift, bit) - 16i32) * d
}

#[cube]
impl BlockFormat for Q5_0 {
    fn decode(w: &[u32], bb: usize, c: usize) -> Chunk {
        let d = load_f16(w, bb);
        let hb = load_u32(w, bb + 2) >> (4 * c) as u32;
        let q = load_u32(w, bb + 6 + 4 * c);
        Chunk {
            lo: vec4(
                weight(q, hb, 0u32, 0u32, d),
                weight(q, hb, 8u32, 1u32, d),
                weight(q, hb, 16u32, 2u32, d),
                weight(q, hb, 24u32, 3u32, d),
            ),
            hi: vec4(
                weight(q, hb, 4u32, 16u32, d),
                weight(q, hb, 12u32, 17u32, d),
                weight(q, hb, 20u32, 18u32, d),
                weight(q, hb, 28u32, 19u32, d),
            ),
            offset: 4 * c,
        }
    }
}
