//! Q5_0 `{ f16 d; u8 qh[4]; u8 qs[16] }` (22 bytes): `(q5 − 16) · d`, the nibbles placed as in
//! Q4_0 and bit `j` of the little-endian `qh` the fifth bit of element `j`. One run per block.

use cubecl::prelude::*;

use super::{BlockFormat, Geometry, RunScales, load_f16, load_u32, one_scale, put4};

/// Q5_0.
pub struct Q5_0;

impl Geometry for Q5_0 {
    const BLOCK: usize = 32;
    const BYTES: usize = 22;
    const MIN: bool = false;
    const SUB: usize = 32;
}

#[cube]
impl BlockFormat for Q5_0 {
    fn scales(w: &[u32], bb: usize, _r: usize) -> RunScales {
        let d = load_f16(w, bb);
        one_scale(d, 0.0f32)
    }

    fn codes(w: &[u32], bb: usize, _r: usize, q: &mut Array<f32>) {
        let qh = load_u32(w, bb + 2);
        #[unroll]
        for j in 0..4usize {
            let v = load_u32(w, bb + 6 + 4 * j);
            let b = (4 * j) as u32;
            put4(q, 4 * j, v, 0u32, 0xFu32, qh, b, 1u32, 1u32, 4u32, 16u32);
            put4(
                q,
                16 + 4 * j,
                v,
                4u32,
                0xFu32,
                qh,
                b + 16u32,
                1u32,
                1u32,
                4u32,
                16u32,
            );
        }
    }
}
