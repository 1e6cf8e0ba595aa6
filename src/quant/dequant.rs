//! Dequantization to f32 of every type a real GGUF model carries, bit-exact with gguf-py's numpy
//! dequantizers (and so with ggml's `dequantize_row_*`): each value is computed with the same f32
//! operations in the same order (`d·q`, `d·q + m`, `(d·sc)·q − dmin·m`, …), never fused.

use half::{bf16, f16};

#[inline(always)]
fn f16_at(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

/// F32: the values themselves.
#[inline(always)]
pub(crate) fn f32_block(b: &[u8], y: &mut [f32]) {
    y[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
}

/// F16: exact widening.
#[inline(always)]
pub(crate) fn f16_block(b: &[u8], y: &mut [f32]) {
    y[0] = f16_at(b, 0);
}

/// BF16: the 16 bits become the high half of an f32.
#[inline(always)]
pub(crate) fn bf16_block(b: &[u8], y: &mut [f32]) {
    y[0] = bf16::from_le_bytes([b[0], b[1]]).to_f32();
}

/// Q4_0 `{ f16 d; u8 qs[16] }`: `d · (nibble − 8)`; low nibbles are elements 0..16.
#[inline(always)]
pub(crate) fn q4_0_block(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let qs: &[u8; 16] = b[2..18].try_into().expect("16 bytes");
    let y: &mut [f32; 32] = (&mut y[..32]).try_into().expect("32 values");
    for j in 0..16 {
        y[j] = d * ((qs[j] & 0xF) as i32 - 8) as f32;
        y[j + 16] = d * ((qs[j] >> 4) as i32 - 8) as f32;
    }
}

/// Q4_1 `{ f16 d; f16 m; u8 qs[16] }`: `d · nibble + m`.
#[inline(always)]
pub(crate) fn q4_1_block(b: &[u8], y: &mut [f32]) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    let qs: &[u8; 16] = b[4..20].try_into().expect("16 bytes");
    let y: &mut [f32; 32] = (&mut y[..32]).try_into().expect("32 values");
    for j in 0..16 {
        y[j] = d * (qs[j] & 0xF) as f32 + m;
        y[j + 16] = d * (qs[j] >> 4) as f32 + m;
    }
}

/// The fifth bits of Q5_0 / Q5_1: bit `j` of the little-endian u32 `qh` belongs to element `j`.
#[inline(always)]
fn q5_codes(qh: &[u8], qs: &[u8]) -> [u32; 32] {
    let qh = u32::from_le_bytes([qh[0], qh[1], qh[2], qh[3]]);
    // a fixed-size view and 32-bit lanes throughout: the loop vectorizes (per-lane shifts)
    let qs: &[u8; 16] = qs[..16].try_into().expect("16 bytes");
    let mut q = [0u32; 32];
    for j in 0..16 {
        q[j] = (qs[j] & 0xF) as u32 | (((qh >> j) & 1) << 4);
        q[j + 16] = (qs[j] >> 4) as u32 | (((qh >> (j + 16)) & 1) << 4);
    }
    q
}

/// Q5_0 `{ f16 d; u8 qh[4]; u8 qs[16] }`: `d · (q5 − 16)`.
#[inline(always)]
pub(crate) fn q5_0_block(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let q = q5_codes(&b[2..6], &b[6..22]);
    let y: &mut [f32; 32] = (&mut y[..32]).try_into().expect("32 values");
    for i in 0..32 {
        y[i] = d * (q[i] as i32 - 16) as f32;
    }
}

/// Q5_1 `{ f16 d; f16 m; u8 qh[4]; u8 qs[16] }`: `d · q5 + m`.
#[inline(always)]
pub(crate) fn q5_1_block(b: &[u8], y: &mut [f32]) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    for (y, q) in y.iter_mut().zip(q5_codes(&b[4..8], &b[8..24])) {
        *y = d * q as f32 + m;
    }
}

/// Q8_0 `{ f16 d; i8 qs[32] }`: `q · d`.
#[inline(always)]
pub(crate) fn q8_0_block(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    // fixed-size views: the loop vectorizes (int8 → f32 conversions, one multiply)
    let q: &[u8; 32] = b[2..34].try_into().expect("32 codes");
    let y: &mut [f32; 32] = (&mut y[..32]).try_into().expect("32 values");
    for i in 0..32 {
        y[i] = (q[i] as i8) as f32 * d;
    }
}

/// Q2_K `{ u8 scales[16]; u8 qs[64]; f16 d; f16 dmin }`:
/// `(d · (sc & 15)) · q − dmin · (sc >> 4)` per 16-element sub-block.
#[inline(always)]
pub(crate) fn q2_k_block(b: &[u8], y: &mut [f32]) {
    let (scales, qs) = (&b[0..16], &b[16..80]);
    let (d, dmin) = (f16_at(b, 80), f16_at(b, 82));
    // element e = 128g + 32s + l: bits 2s of qs[32g + l], scale byte e / 16; runs of 16 as
    // fixed-size views with a constant shift, so that each vectorizes
    #[inline(always)]
    fn run<const SHIFT: u32>(q: &[u8; 16], sc: u8, d: f32, dmin: f32, out: &mut [f32]) {
        let out: &mut [f32; 16] = (&mut out[..16]).try_into().expect("16");
        let dl = d * (sc & 0xF) as f32;
        let ml = dmin * (sc >> 4) as f32;
        for l in 0..16 {
            out[l] = dl * ((q[l] >> SHIFT) & 3) as f32 - ml;
        }
    }
    for g in 0..2 {
        for h in 0..2 {
            let q: &[u8; 16] = qs[32 * g + 16 * h..][..16].try_into().expect("16");
            let (sc, y) = (&scales[8 * g + h..], &mut y[128 * g + 16 * h..]);
            run::<0>(q, sc[0], d, dmin, y);
            run::<2>(q, sc[2], d, dmin, &mut y[32..]);
            run::<4>(q, sc[4], d, dmin, &mut y[64..]);
            run::<6>(q, sc[6], d, dmin, &mut y[96..]);
        }
    }
}

/// Q3_K `{ u8 hmask[32]; u8 qs[64]; u8 scales[12]; f16 d }`: six-bit signed sub-block scales,
/// codes `(low 2 bits) − 4·(1 − hmask bit)`, value `(d · sc) · q`.
#[inline(always)]
pub(crate) fn q3_k_block(b: &[u8], y: &mut [f32]) {
    let (hmask, qs, sc) = (&b[0..32], &b[32..96], &b[96..108]);
    let d = f16_at(b, 108);
    let mut scales = [0f32; 16];
    for (i, s) in scales.iter_mut().enumerate() {
        let low = if i < 8 { sc[i] & 0xF } else { sc[i - 8] >> 4 };
        let high = (sc[8 + i % 4] >> (2 * (i / 4))) & 3;
        *s = (((low | (high << 4)) as i8).wrapping_sub(32)) as f32;
    }
    // element e = 128g + 32s + l: bits 2s of qs[32g + l], hmask bit e / 32 = 4g + s of byte l,
    // scale e / 16; runs of 16 as fixed-size views with constant shifts, so that each vectorizes
    #[inline(always)]
    fn run<const S: u32>(q: &[u8; 16], hm: &[u8; 16], ds: f32, out: &mut [f32]) {
        let out: &mut [f32; 16] = (&mut out[..16]).try_into().expect("16");
        for l in 0..16 {
            // 32-bit lanes (the same small integers): the loop vectorizes
            let low = ((q[l] >> (2 * S)) & 3) as i32;
            // a set hmask bit means no −4 offset
            let high = (((hm[l] >> S) & 1) ^ 1) as i32;
            out[l] = ds * (low - 4 * high) as f32;
        }
    }
    for g in 0..2 {
        for h in 0..2 {
            let q: &[u8; 16] = qs[32 * g + 16 * h..][..16].try_into().expect("16");
            let hm: &[u8; 16] = hmask[16 * h..][..16].try_into().expect("16");
            // this half's hmask bits 4g .. 4g + 4 moved to 0 .. 4
            let hm = hm.map(|v| v >> (4 * g));
            let (sc, y) = (&scales[8 * g + h..], &mut y[128 * g + 16 * h..]);
            run::<0>(q, &hm, d * sc[0], y);
            run::<1>(q, &hm, d * sc[2], &mut y[32..]);
            run::<2>(q, &hm, d * sc[4], &mut y[64..]);
            run::<3>(q, &hm, d * sc[6], &mut y[96..]);
        }
    }
}

/// The 6-bit scales and mins of Q4_K / Q5_K, packed in 12 bytes.
#[inline(always)]
fn k_scale_min(s: &[u8]) -> ([u8; 8], [u8; 8]) {
    let mut sc = [0u8; 8];
    let mut mn = [0u8; 8];
    for j in 0..4 {
        sc[j] = s[j] & 0x3F;
        mn[j] = s[4 + j] & 0x3F;
        sc[4 + j] = (s[8 + j] & 0x0F) | ((s[j] >> 2) & 0x30);
        mn[4 + j] = (s[8 + j] >> 4) | ((s[4 + j] >> 2) & 0x30);
    }
    (sc, mn)
}

/// Q4_K `{ f16 d; f16 dmin; u8 scales[12]; u8 qs[128] }`: `(d·sc)·q − dmin·m` per 32 elements.
#[inline(always)]
pub(crate) fn q4_k_block(b: &[u8], y: &mut [f32]) {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    let (sc, mn) = k_scale_min(&b[4..16]);
    for g in 0..4 {
        // fixed-size views, both nibbles in one loop (as Q4_0): the loop vectorizes
        let q: &[u8; 32] = b[16 + 32 * g..][..32].try_into().expect("32 bytes");
        let (lo, hi) = y[64 * g..][..64].split_at_mut(32);
        let lo: &mut [f32; 32] = lo.try_into().expect("32");
        let hi: &mut [f32; 32] = hi.try_into().expect("32");
        let (d1, m1) = (d * sc[2 * g] as f32, dmin * mn[2 * g] as f32);
        let (d2, m2) = (d * sc[2 * g + 1] as f32, dmin * mn[2 * g + 1] as f32);
        for l in 0..32 {
            lo[l] = d1 * (q[l] & 0xF) as f32 - m1;
            hi[l] = d2 * (q[l] >> 4) as f32 - m2;
        }
    }
}

/// Q5_K `{ f16 d; f16 dmin; u8 scales[12]; u8 qh[32]; u8 qs[128] }`: as Q4_K with a fifth bit.
#[inline(always)]
pub(crate) fn q5_k_block(b: &[u8], y: &mut [f32]) {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    let (sc, mn) = k_scale_min(&b[4..16]);
    let qh: &[u8; 32] = b[16..48].try_into().expect("32 bytes");
    for g in 0..4 {
        // fixed-size views: each run of 32 vectorizes
        let qs: &[u8; 32] = b[48 + 32 * g..][..32].try_into().expect("32 bytes");
        for s in 0..2 {
            let sub = 2 * g + s;
            let (dl, ml) = (d * sc[sub] as f32, dmin * mn[sub] as f32);
            let out: &mut [f32; 32] = (&mut y[64 * g + 32 * s..][..32]).try_into().expect("32");
            for l in 0..32 {
                let q = ((qs[l] >> (4 * s)) & 0xF) | (((qh[l] >> sub) & 1) << 4);
                out[l] = dl * q as f32 - ml;
            }
        }
    }
}

/// Q6_K: see [`crate::quant::q6k`].
#[inline(always)]
pub(crate) fn q6_k_block(b: &[u8], y: &mut [f32]) {
    let block: &crate::quant::BlockQ6K = bytemuck::from_bytes(b);
    block.dequantize_into(y.try_into().expect("256 values"));
}

/// Q8_K `{ f32 d; i8 qs[256]; i16 bsums[16] }`: `d · q` in f32, as ggml computes it (gguf-py has
/// no Q8_K dequantizer; `bsums` are redundant partial sums and are not read).
#[inline(always)]
pub(crate) fn q8_k_block(b: &[u8], y: &mut [f32]) {
    let d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    for (y, &q) in y.iter_mut().zip(&b[4..260]) {
        *y = d * (q as i8) as f32;
    }
}
