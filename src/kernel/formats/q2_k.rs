//! Q2_K `{ u8 scales[16]; u8 qs[64]; f16 d; f16 dmin }` (84 bytes): element
//! `e = 128g + 32s + l` is `(d · (sc & 15)) · q − dmin · (sc >> 4)` with `q` bits `2s..2s + 2` of
//! `qs[32g + l]` and `sc = scales[e / 16]`. Chunk `c` is one qs word (`l .. l + 4`) at two shifts
//! `s`: `g = c / 16`, `s = 2 · (c / 8 % 2) + {0, 1}`, `l = 4 · (c % 8)`.

use cubecl::prelude::*;

use super::{BlockFormat, Chunk, Geometry, load_byte, load_f16, load_u32, vec4};

/// Q2_K.
pub struct Q2K;

impl Geometry for Q2K {
    const BLOCK: usize = 256;
    const BYTES: usize = 84;
    const GAP: usize = 32;
}

/// Four weights of one sub-block: codes at bits `shift + 8i` of `q`, scale byte `sc`.
#[cube]
fn run(q: u32, shift: u32, sc: u32, d: f32, dmin: f32) -> Vector<f32, Const<4>> {
    let dl = d * f32::cast_from(sc & 0xFu32);
    let ml = dmin * f32::cast_from(sc >> 4u32);
    vec4(
        dl * f32::cast_from((q >> shift) & 3u32) - ml,
        dl * f32::cast_from((q >> (shift + 8u32)) & 3u32) - ml,
        dl * f32::cast_from((q >> (shift + 16u32)) & 3u32) - ml,
        dl * f32::cast_from((q >> (shift + 24u32)) & 3u32) - ml,
    )
}

#[cube]
impl BlockFormat for Q2K {
    fn decode(w: &[u32], bb: usize, c: usize) -> Chunk {
        let g = c / 16;
        let s = 2 * ((c / 8) % 2);
        let l = 4 * (c % 8);
        let d = load_f16(w, bb + 80);
        let dmin = load_f16(w, bb + 82);
        let q = load_u32(w, bb + 16 + 32 * g + l);
        let offset = 128 * g + 32 * s + l;
        let sc_lo = load_byte(w, bb + offset / 16);
        let sc_hi = load_byte(w, bb + offset / 16 + 2);
        Chunk {
            lo: run(q, (2 * s) as u32, sc_lo, d, dmin),
            hi: run(q, (2 * s + 2) as u32, sc_hi, d, dmin),
            offset,
        }
    }
}
