//! Q5_K `{ f16 d; f16 dmin; u8 scales[12]; u8 qh[32]; u8 qs[128] }` (176 bytes): Q4_K with a
//! fifth bit, bit `2g + s` of `qh[l]`. Chunks are placed as in Q4_K.

use cubecl::prelude::*;

use super::{BlockFormat, Chunk, Geometry, k_scale_min, load_f16, load_u32, vec4};

/// Q5_K.
pub struct Q5K;

impl Geometry for Q5K {
    const BLOCK: usize = 256;
    const BYTES: usize = 176;
    const GAP: usize = 32;
}

#[cube]
fn code(q: u32, qh: u32, #[comptime] shift: u32, #[comptime] i: u32, hbit: u32) -> f32 {
    f32::cast_from(((q >> (shift + 8 * i)) & 0xFu32) | (((qh >> (hbit + 8 * i)) & 1u32) << 4u32))
}

/// Four weights: nibbles at bits `shift + 8i` of `q`, fifth bits `j + 8i` of `qh`, sub-block `j`.
#[cube]
fn run(
    w: &[u32],
    bb: usize,
    q: u32,
    qh: u32,
    #[comptime] shift: u32,
    j: usize,
) -> Vector<f32, Const<4>> {
    let (sc, mn) = k_scale_min(w, bb + 4, j);
    let d1 = load_f16(w, bb) * sc;
    let m1 = load_f16(w, bb + 2) * mn;
    let hb = j as u32;
    vec4(
        d1 * code(q, qh, shift, 0u32, hb) - m1,
        d1 * code(q, qh, shift, 1u32, hb) - m1,
        d1 * code(q, qh, shift, 2u32, hb) - m1,
        d1 * code(q, qh, shift, 3u32, hb) - m1,
    )
}

#[cube]
impl BlockFormat for Q5K {
    fn decode(w: &[u32], bb: usize, c: usize) -> Chunk {
        let g = c / 8;
        let l = 4 * (c % 8);
        let q = load_u32(w, bb + 48 + 32 * g + l);
        let qh = load_u32(w, bb + 16 + l);
        Chunk {
            lo: run(w, bb, q, qh, 0u32, 2 * g),
            hi: run(w, bb, q, qh, 4u32, 2 * g + 1),
            offset: 64 * g + l,
        }
    }
}
