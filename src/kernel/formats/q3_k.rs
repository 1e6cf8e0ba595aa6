//! Q3_K `{ u8 hmask[32]; u8 qs[64]; u8 scales[12]; f16 d }` (110 bytes): element
//! `e = 128g + 32s + l` is `(d · sc) · q` with `q = (bits 2s..2s + 2 of qs[32g + l]) − 4` unless
//! bit `e / 32` of `hmask[l]` is set, and `sc` the six-bit signed scale `e / 16` (ggml's
//! `dequantize_row_q3_K`). Chunks are placed as in Q2_K.

use cubecl::prelude::*;

use super::{BlockFormat, Chunk, Geometry, load_byte, load_f16, load_u32, vec4};

/// Q3_K.
pub struct Q3K;

impl Geometry for Q3K {
    const BLOCK: usize = 256;
    const BYTES: usize = 110;
    const GAP: usize = 32;
}

/// The signed six-bit scale `i` (0..16) from the 12 scale bytes at byte `sb`.
#[cube]
#[allow(unused_assignments)]
fn scale(w: &[u32], sb: usize, i: usize) -> f32 {
    let mut low = 0u32;
    if i < 8 {
        low = load_byte(w, sb + i) & 0xFu32;
    } else {
        low = load_byte(w, sb + i - 8) >> 4u32;
    }
    let high = (load_byte(w, sb + 8 + i % 4) >> ((2 * (i / 4)) as u32)) & 3u32;
    f32::cast_from(i32::cast_from(low | (high << 4u32)) - 32i32)
}

/// One weight: low bits at `shift` of `q`, the hmask bit at `hbit` of `hm`.
#[cube]
fn weight(q: u32, hm: u32, shift: u32, hbit: u32, ds: f32) -> f32 {
    let low = i32::cast_from((q >> shift) & 3u32);
    let off = i32::cast_from(((hm >> hbit) & 1u32) ^ 1u32) * 4i32;
    ds * f32::cast_from(low - off)
}

/// Four weights of sub-block shift `s` (codes at bits `2s + 8i`, hmask bits `e / 32 + 8i`).
#[cube]
fn run(q: u32, hm: u32, s: u32, hb: u32, ds: f32) -> Vector<f32, Const<4>> {
    vec4(
        weight(q, hm, 2u32 * s, hb, ds),
        weight(q, hm, 2u32 * s + 8u32, hb + 8u32, ds),
        weight(q, hm, 2u32 * s + 16u32, hb + 16u32, ds),
        weight(q, hm, 2u32 * s + 24u32, hb + 24u32, ds),
    )
}

#[cube]
impl BlockFormat for Q3K {
    fn decode(w: &[u32], bb: usize, c: usize) -> Chunk {
        let g = c / 16;
        let s = 2 * ((c / 8) % 2);
        let l = 4 * (c % 8);
        let d = load_f16(w, bb + 108);
        let q = load_u32(w, bb + 32 + 32 * g + l);
        let hm = load_u32(w, bb + l);
        let offset = 128 * g + 32 * s + l;
        let ds_lo = d * scale(w, bb + 96, offset / 16);
        let ds_hi = d * scale(w, bb + 96, offset / 16 + 2);
        let hb = (4 * g + s) as u32; // hmask bit e / 32 of the first run
        Chunk {
            lo: run(q, hm, s as u32, hb, ds_lo),
            hi: run(q, hm, (s + 1) as u32, hb + 1u32, ds_hi),
            offset,
        }
    }
}
