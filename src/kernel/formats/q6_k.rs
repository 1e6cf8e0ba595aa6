//! Q6_K `{ u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d }` (210 bytes), in the GGUF layout (the
//! aligned planes have their own kernel): element `128h + 32j + l` (j = 0..4) is
//! `(d · sc) · (q − 32)` with the low nibble of `ql[64h + l]` (j = 0), of `ql[64h + 32 + l]`
//! (j = 1), their high nibbles (j = 2, 3), and bits `2j .. 2j + 2` of `qh[32h + l]` on top. Chunk
//! `c` is one `ql` word, both nibbles: `h = c / 16`, `j = c / 8 % 2 + {0, 2}`, `l = 4 · (c % 8)`.

use cubecl::prelude::*;

use super::{BlockFormat, Chunk, Geometry, load_byte, load_f16, load_u32, sign_extend, vec4};

/// Q6_K.
pub struct Q6K;

impl Geometry for Q6K {
    const BLOCK: usize = 256;
    const BYTES: usize = 210;
    const GAP: usize = 64;
}

#[cube]
fn weight(ql: u32, qh: u32, #[comptime] i: u32, lshift: u32, hshift: u32, ds: f32) -> f32 {
    let code = ((ql >> (8 * i + lshift)) & 0xFu32) | (((qh >> (8 * i + hshift)) & 3u32) << 4u32);
    ds * f32::cast_from(i32::cast_from(code) - 32i32)
}

/// Four weights: nibble at `lshift` of each `ql` byte, `qh` bits at `hshift`, scale byte `s`.
#[cube]
fn run(
    w: &[u32],
    ql: u32,
    qh: u32,
    lshift: u32,
    hshift: u32,
    d: f32,
    s: usize,
) -> Vector<f32, Const<4>> {
    let ds = d * f32::cast_from(sign_extend(load_byte(w, s)));
    vec4(
        weight(ql, qh, 0u32, lshift, hshift, ds),
        weight(ql, qh, 1u32, lshift, hshift, ds),
        weight(ql, qh, 2u32, lshift, hshift, ds),
        weight(ql, qh, 3u32, lshift, hshift, ds),
    )
}

#[cube]
impl BlockFormat for Q6K {
    fn decode(w: &[u32], bb: usize, c: usize) -> Chunk {
        let h = c / 16;
        let half = (c / 8) % 2;
        let l = 4 * (c % 8);
        let ql = load_u32(w, bb + 64 * h + 32 * half + l);
        let qh = load_u32(w, bb + 128 + 32 * h + l);
        let d = load_f16(w, bb + 208);
        let offset = 128 * h + 32 * half + l;
        let s = bb + 192 + offset / 16;
        let hs = (2 * half) as u32;
        Chunk {
            lo: run(w, ql, qh, 0u32, hs, d, s),
            hi: run(w, ql, qh, 4u32, hs + 4u32, d, s + 4),
            offset,
        }
    }
}
