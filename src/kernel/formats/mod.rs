//! The ggml block formats as the kernels decode them: one file per format, each a
//! [`BlockFormat`] (its geometry, and how one thread decodes a *chunk* — eight weights of a block,
//! two runs of four consecutive elements `GAP` apart — from the packed GGUF words). The kernels
//! (matrix-vector product, dequantization, row lookup) are written once, generic over the format,
//! and instantiated per type like ggml's `mul_mat_vec_q<type>`; [`with_format`] picks the
//! instantiation from a [`GgmlType`] at run time.
//!
//! Every decoder reproduces ggml's `dequantize_row_*` expression for expression (`d · q`,
//! `d · q + m`, `(d · sc) · q − dmin · m`), so the dequantized weights are ggml's bit for bit
//! wherever the device compiler does not contract a multiply and an add.

mod q2_k;
mod q3_k;
mod q4_0;
mod q4_1;
mod q4_k;
mod q5_0;
mod q5_1;
mod q5_k;
mod q6_k;
mod q8_0;

pub use q2_k::Q2K;
pub use q3_k::Q3K;
pub use q4_0::Q4_0;
pub use q4_1::Q4_1;
pub use q4_k::Q4K;
pub use q5_0::Q5_0;
pub use q5_1::Q5_1;
pub use q5_k::Q5K;
pub use q6_k::Q6K;
pub use q8_0::Q8_0;

use cubecl::prelude::*;

/// A format's geometry, known when the kernel is compiled.
pub trait Geometry: Send + Sync + 'static {
    /// Weights per block.
    const BLOCK: usize;
    /// Bytes per block.
    const BYTES: usize;
    /// Elements between a chunk's two runs of four.
    const GAP: usize;
    /// Chunks (of eight weights) per block.
    const CHUNKS: usize = Self::BLOCK / 8;
}

/// Eight decoded weights of one block: elements `offset .. offset + 4` (`lo`) and
/// `offset + GAP .. offset + GAP + 4` (`hi`) of the block, as f32.
#[derive(CubeType)]
pub struct Chunk {
    /// The first run of four.
    pub lo: Vector<f32, Const<4>>,
    /// The second run, `GAP` elements later.
    pub hi: Vector<f32, Const<4>>,
    /// Element index of `lo`'s first weight within the block.
    pub offset: usize,
}

/// A block format the kernels decode: chunk `c` (0..CHUNKS) of the block whose GGUF bytes start
/// at byte `bb` of the words `w`.
#[cube]
pub trait BlockFormat: Geometry {
    /// Decodes chunk `c` of the block at byte `bb`.
    fn decode(w: &[u32], bb: usize, c: usize) -> Chunk;
}

/// Runs `$body` with `$Q` the [`BlockFormat`] of `$t` (a [`crate::quant::GgmlType`]), or
/// evaluates to `Err(KernelError::Unsupported)` for a type without one.
macro_rules! with_format {
    ($t:expr, $Q:ident => $body:expr) => {{
        use $crate::kernel::formats as f;
        use $crate::quant::GgmlType as T;
        match $t {
            T::Q4_0 => {
                type $Q = f::Q4_0;
                Ok($body)
            }
            T::Q4_1 => {
                type $Q = f::Q4_1;
                Ok($body)
            }
            T::Q5_0 => {
                type $Q = f::Q5_0;
                Ok($body)
            }
            T::Q5_1 => {
                type $Q = f::Q5_1;
                Ok($body)
            }
            T::Q8_0 => {
                type $Q = f::Q8_0;
                Ok($body)
            }
            T::Q2_K => {
                type $Q = f::Q2K;
                Ok($body)
            }
            T::Q3_K => {
                type $Q = f::Q3K;
                Ok($body)
            }
            T::Q4_K => {
                type $Q = f::Q4K;
                Ok($body)
            }
            T::Q5_K => {
                type $Q = f::Q5K;
                Ok($body)
            }
            T::Q6_K => {
                type $Q = f::Q6K;
                Ok($body)
            }
            t => Err($crate::kernel::KernelError::Unsupported(t)),
        }
    }};
}
pub(crate) use with_format;

/// Four bytes starting at any byte offset, as a little-endian u32 (one or two word loads; the
/// second only when the bytes straddle a word, so no load past the last byte).
#[cube]
pub fn load_u32(w: &[u32], byte: usize) -> u32 {
    let i = byte / 4;
    let s = ((byte % 4) * 8) as u32;
    let mut v = w[i];
    if s != 0u32 {
        v = (v >> s) | (w[i + 1] << (32u32 - s));
    }
    v
}

/// Byte `i` (0..4) of a word.
#[cube]
pub fn byte_of(word: u32, #[comptime] i: u32) -> u32 {
    (word >> (8 * i)) & 0xFFu32
}

/// A vector of four f32.
#[cube]
pub fn vec4(a: f32, b: f32, c: f32, d: f32) -> Vector<f32, Const<4>> {
    let mut v = Vector::<f32, Const<4>>::empty();
    v.insert(0usize, a);
    v.insert(1usize, b);
    v.insert(2usize, c);
    v.insert(3usize, d);
    v
}

/// The 6-bit scale and min of sub-block `j` (0..8) of Q4_K / Q5_K, from the 12 scale bytes at
/// byte `sb` (ggml's `get_scale_min_k4`), as f32.
#[cube]
#[allow(unused_assignments)]
pub fn k_scale_min(w: &[u32], sb: usize, j: usize) -> (f32, f32) {
    let mut sc = 0u32;
    let mut mn = 0u32;
    if j < 4 {
        sc = load_byte(w, sb + j) & 63u32;
        mn = load_byte(w, sb + j + 4) & 63u32;
    } else {
        let hi = load_byte(w, sb + j + 4);
        sc = (hi & 0xFu32) | ((load_byte(w, sb + j - 4) >> 6u32) << 4u32);
        mn = (hi >> 4u32) | ((load_byte(w, sb + j) >> 6u32) << 4u32);
    }
    (f32::cast_from(sc), f32::cast_from(mn))
}

pub use super::decode::{load_byte, load_f16, sign_extend};

#[cfg(test)]
mod tests {
    use super::Geometry;
    use crate::quant::FUSED_TYPES;

    /// Each GPU block format carries the geometry of the ggml type it decodes.
    #[test]
    fn formats_match_the_type_table() {
        for &t in FUSED_TYPES {
            let geometry = with_format!(t, Q => (Q::BLOCK as u64, Q::BYTES as u64))
                .unwrap_or_else(|e| panic!("{t}: {e}"));
            assert_eq!(Some(geometry), t.block_size().zip(t.type_size()), "{t}");
        }
    }
}
