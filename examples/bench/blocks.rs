//! Random blocks of any fused GGUF type, for timing types this crate has no quantizer for:
//! random codes and sub-block scales (every byte pattern is a valid block), the f16 scale fields
//! set to moderate finite values, so the products stay in range.

use burn_gguf::quant::GgmlType;

/// `n_blocks` random blocks of type `t` (a fused type), from `seed`.
pub fn random(t: GgmlType, n_blocks: usize, seed: u64) -> Vec<u8> {
    let size = t.type_size().expect("a sized type") as usize;
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let mut bytes: Vec<u8> = (0..n_blocks * size).map(|_| next() as u8).collect();
    let fields: &[usize] = match t {
        GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 => &[0],
        GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q4_K | GgmlType::Q5_K => &[0, 2],
        GgmlType::Q2_K => &[80, 82],
        GgmlType::Q3_K => &[108],
        GgmlType::Q6_K => &[208],
        _ => &[],
    };
    for b in bytes.chunks_exact_mut(size) {
        for &at in fields {
            // |scale| in [2^-10, 2^-6): a normal f16, either sign
            let mag = 0.001 + (next() % 1000) as f32 * 0.000_014;
            let v = if next() & 1 == 0 { mag } else { -mag };
            b[at..at + 2].copy_from_slice(&half::f16::from_f32(v).to_le_bytes());
        }
    }
    bytes
}
