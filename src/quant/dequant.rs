//! Dequantization to f32 of every type a real GGUF model carries, bit-exact with gguf-py's numpy
//! dequantizers (and so with ggml's `dequantize_row_*`): each value is computed with the same f32
//! operations in the same order (`d·q`, `d·q + m`, `(d·sc)·q − dmin·m`, …), never fused.

use half::{bf16, f16};

#[inline]
fn f16_at(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

/// F32: the values themselves.
#[inline]
pub(crate) fn f32_block(b: &[u8], y: &mut [f32]) {
    y[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
}

/// F16: exact widening.
#[inline]
pub(crate) fn f16_block(b: &[u8], y: &mut [f32]) {
    y[0] = f16_at(b, 0);
}

/// BF16: the 16 bits become the high half of an f32.
#[inline]
pub(crate) fn bf16_block(b: &[u8], y: &mut [f32]) {
    y[0] = bf16::from_le_bytes([b[0], b[1]]).to_f32();
}

/// Q4_0 `{ f16 d; u8 qs[16] }`: `d · (nibble − 8)`; low nibbles are elements 0..16.
#[inline]
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
#[inline]
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
#[inline]
fn q5_codes(qh: &[u8], qs: &[u8]) -> [u8; 32] {
    let qh = u32::from_le_bytes([qh[0], qh[1], qh[2], qh[3]]);
    let mut q = [0u8; 32];
    for j in 0..16 {
        q[j] = (qs[j] & 0xF) | ((((qh >> j) & 1) as u8) << 4);
        q[j + 16] = (qs[j] >> 4) | ((((qh >> (j + 16)) & 1) as u8) << 4);
    }
    q
}

/// Q5_0 `{ f16 d; u8 qh[4]; u8 qs[16] }`: `d · (q5 − 16)`.
#[inline]
pub(crate) fn q5_0_block(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let q = q5_codes(&b[2..6], &b[6..22]);
    let y: &mut [f32; 32] = (&mut y[..32]).try_into().expect("32 values");
    for i in 0..32 {
        y[i] = d * (q[i] as i32 - 16) as f32;
    }
}

/// Q5_1 `{ f16 d; f16 m; u8 qh[4]; u8 qs[16] }`: `d · q5 + m`.
#[inline]
pub(crate) fn q5_1_block(b: &[u8], y: &mut [f32]) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    for (y, q) in y.iter_mut().zip(q5_codes(&b[4..8], &b[8..24])) {
        *y = d * q as f32 + m;
    }
}

/// Q8_0 `{ f16 d; i8 qs[32] }`: `q · d`.
#[inline]
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
#[inline]
pub(crate) fn q2_k_block(b: &[u8], y: &mut [f32]) {
    let (scales, qs) = (&b[0..16], &b[16..80]);
    let (d, dmin) = (f16_at(b, 80), f16_at(b, 82));
    for g in 0..2 {
        for s in 0..4 {
            for l in 0..32 {
                let e = 128 * g + 32 * s + l;
                let sc = scales[e / 16];
                let dl = d * (sc & 0xF) as f32;
                let ml = dmin * (sc >> 4) as f32;
                let q = (qs[32 * g + l] >> (2 * s)) & 3;
                y[e] = dl * q as f32 - ml;
            }
        }
    }
}

/// Q3_K `{ u8 hmask[32]; u8 qs[64]; u8 scales[12]; f16 d }`: six-bit signed sub-block scales,
/// codes `(low 2 bits) − 4·(1 − hmask bit)`, value `(d · sc) · q`.
#[inline]
pub(crate) fn q3_k_block(b: &[u8], y: &mut [f32]) {
    let (hmask, qs, sc) = (&b[0..32], &b[32..96], &b[96..108]);
    let d = f16_at(b, 108);
    let mut scales = [0f32; 16];
    for (i, s) in scales.iter_mut().enumerate() {
        let low = if i < 8 { sc[i] & 0xF } else { sc[i - 8] >> 4 };
        let high = (sc[8 + i % 4] >> (2 * (i / 4))) & 3;
        *s = (((low | (high << 4)) as i8).wrapping_sub(32)) as f32;
    }
    for g in 0..2 {
        for s in 0..4 {
            for l in 0..32 {
                let e = 128 * g + 32 * s + l;
                let low = ((qs[32 * g + l] >> (2 * s)) & 3) as i8;
                // hmask bit (e / 32) of byte l; a set bit means no −4 offset.
                let high = ((hmask[l] >> (e / 32)) & 1) ^ 1;
                let q = low - ((high << 2) as i8);
                y[e] = (d * scales[e / 16]) * q as f32;
            }
        }
    }
}

/// The 6-bit scales and mins of Q4_K / Q5_K, packed in 12 bytes.
#[inline]
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
#[inline]
pub(crate) fn q4_k_block(b: &[u8], y: &mut [f32]) {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    let (sc, mn) = k_scale_min(&b[4..16]);
    let qs: &[u8; 128] = b[16..144].try_into().expect("128 bytes");
    let y: &mut [f32; 256] = (&mut y[..256]).try_into().expect("256 values");
    for g in 0..4 {
        for s in 0..2 {
            let sub = 2 * g + s;
            let (dl, ml) = (d * sc[sub] as f32, dmin * mn[sub] as f32);
            for l in 0..32 {
                let q = (qs[32 * g + l] >> (4 * s)) & 0xF;
                y[64 * g + 32 * s + l] = dl * q as f32 - ml;
            }
        }
    }
}

/// Q5_K `{ f16 d; f16 dmin; u8 scales[12]; u8 qh[32]; u8 qs[128] }`: as Q4_K with a fifth bit.
#[inline]
pub(crate) fn q5_k_block(b: &[u8], y: &mut [f32]) {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    let (sc, mn) = k_scale_min(&b[4..16]);
    let qh: &[u8; 32] = b[16..48].try_into().expect("32 bytes");
    let qs: &[u8; 128] = b[48..176].try_into().expect("128 bytes");
    let y: &mut [f32; 256] = (&mut y[..256]).try_into().expect("256 values");
    for g in 0..4 {
        for s in 0..2 {
            let sub = 2 * g + s;
            let (dl, ml) = (d * sc[sub] as f32, dmin * mn[sub] as f32);
            for l in 0..32 {
                let q = ((qs[32 * g + l] >> (4 * s)) & 0xF) | (((qh[l] >> sub) & 1) << 4);
                y[64 * g + 32 * s + l] = dl * q as f32 - ml;
            }
        }
    }
}

/// Q6_K: see [`crate::quant::q6k`].
#[inline]
pub(crate) fn q6_k_block(b: &[u8], y: &mut [f32]) {
    let block: &crate::quant::BlockQ6K = bytemuck::from_bytes(b);
    block.dequantize_into(y.try_into().expect("256 values"));
}

/// Q8_K `{ f32 d; i8 qs[256]; i16 bsums[16] }`: `d · q` in f32, as ggml computes it (gguf-py has
/// no Q8_K dequantizer; `bsums` are redundant partial sums and are not read).
#[inline]
pub(crate) fn q8_k_block(b: &[u8], y: &mut [f32]) {
    let d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    for (y, &q) in y.iter_mut().zip(&b[4..260]) {
        *y = d * (q as i8) as f32;
    }
}
