//! Q4_K `{ f16 d; f16 dmin; u8 scales[12]; u8 qs[128] }` (144 bytes): element
//! `e = 64g + 32s + l` is `(d · sc) · q − dmin · m` with `q` nibble `s` of `qs[32g + l]` and
//! `(sc, m)` the six-bit pair of sub-block `2g + s`. Chunk `c` is one qs word (`l .. l + 4`, both
//! nibbles): `g = c / 8`, `l = 4 · (c % 8)`.

use cubecl::prelude::*;

use super::{BlockFormat, Chunk, Geometry, k_scale_min, load_f16, load_u32, vec4};

/// Q4_K.
pub struct Q4K;

impl Geometry for Q4K {
    const BLOCK: usize = 256;
    const BYTES: usize = 144;
    const GAP: usize = 32;
}

/// Four weights: nibbles at bits `shift + 8i` of `q`, sub-block `j`.
#[cube]
fn run(w: &[u32], bb: usize, q: u32, #[comptime] shift: u32, j: usize) -> Vector<f32, Const<4>> {
    let (sc, mn) = k_scale_min(w, bb + 4, j);
    let d1 = load_f16(w, bb) * sc;
    let m1 = load_f16(w, bb + 2) * mn;
    vec4(
        d1 * f32::cast_from((q >> shift) & 0xFu32) - m1,
        d1 * f32::cast_from((q >> (shift + 8)) & 0xFu32) - m1,
        d1 * f32::cast_from((q >> (shift + 16)) & 0xFu32) - m1,
        d1 * f32::cast_from((q >> (shift + 24)) & 0xFu32) - m1,
    )
}

#[cube]
impl BlockFormat for Q4K {
    fn decode(w: &[u32], bb: usize, c: usize) -> Chunk {
        let g = c / 8;
        let l = 4 * (c % 8);
        let q = load_u32(w, bb + 16 + 32 * g + l);
        Chunk {
            lo: run(w, bb, q, 0u32, 2 * g),
            hi: run(w, bb, q, 4u32, 2 * g + 1),
            offset: 64 * g + l,
        }
    }
}
