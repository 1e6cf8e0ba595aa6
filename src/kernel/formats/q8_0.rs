//! Q8_0 `{ f16 d; i8 qs[32] }` (34 bytes): `q · d`. Chunk `c` is elements `8c .. 8c + 8`.

use cubecl::prelude::*;

use super::{BlockFormat, Chunk, Geometry, byte_of, load_f16, load_u32, sign_extend, vec4};

/// Q8_0.
pub struct Q8_0;

impl Geometry for Q8_0 {
    const BLOCK: usize = 32;
    const BYTES: usize = 34;
    const GAP: usize = 4;
}

#[cube]
fn weight(word: u32, #[comptime] i: u32, d: f32) -> f32 {
    f32::cast_from(sign_extend(byte_of(word, i))) * d
}

#[cube]
impl BlockFormat for Q8_0 {
    fn decode(w: &[u32], bb: usize, c: usize) -> Chunk {
        let d = load_f16(w, bb);
        let a = load_u32(w, bb + 2 + 8 * c);
        let b = load_u32(w, bb + 6 + 8 * c);
        Chunk {
            lo: vec4(
                weight(a, 0u32, d),
                weight(a, 1u32, d),
                weight(a, 2u32, d),
                weight(a, 3u32, d),
            ),
            hi: vec4(
                weight(b, 0u32, d),
                weight(b, 1u32, d),
                weight(b, 2u32, d),
                weight(b, 3u32, d),
            ),
            offset: 8 * c,
        }
    }
}
