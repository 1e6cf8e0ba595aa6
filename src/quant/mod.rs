//! ggml block formats in pure Rust: the type table, bit-exact dequantizers for every type real
//! GGUF models carry, ggml's reference Q6_K quantizer, and the packed form the fused ops take
//! ([`QuantWeightDesc`], [`pack`], [`unpack`]).
//!
//! Nothing here needs a GPU or a Burn backend.

pub(crate) mod dequant;
mod ggml_type;
mod packed;
pub mod q6k;

pub use ggml_type::{DEQUANTIZABLE, GgmlType, dequantizable_list};
pub use packed::{FUSED_TYPES, PackError, PackedLayout, QuantWeightDesc, pack, unpack};
pub use q6k::{BlockQ6K, QK_K};

use thiserror::Error;

/// Why a buffer could not be dequantized.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum QuantError {
    /// The type has no dequantizer in this crate.
    #[error(
        "ggml type {ggml_type} cannot be dequantized (supported: {})",
        dequantizable_list()
    )]
    Unsupported {
        /// The type asked for.
        ggml_type: GgmlType,
    },
    /// The byte buffer does not hold exactly the blocks the output needs.
    #[error(
        "{ggml_type}: {n_elements} elements need {expected} bytes, got {found} \
         (and a multiple of the block size {block_size})"
    )]
    Length {
        /// The type.
        ggml_type: GgmlType,
        /// Elements asked for.
        n_elements: u64,
        /// Bytes those elements take (0 if they are not a whole number of blocks).
        expected: u64,
        /// Bytes given.
        found: u64,
        /// Elements per block.
        block_size: u64,
    },
}

/// A block decoder: one block's bytes into its `block_size` f32 values, bit-exact with ggml.
pub(crate) type BlockFn = fn(&[u8], &mut [f32]);

/// Evaluates `$body` with `$f` the bit-exact block decoder of `$t` as a function item (so that a
/// generic product monomorphizes and inlines it) and `$bs` / `$ts` its block's element and byte
/// counts as constants: `Some($body)` for a type with a fused product (Q6_K excepted: it has its
/// own products), else `None`.
macro_rules! with_block_fn {
    ($t:expr, |$f:ident, $bs:ident, $ts:ident| $body:expr) => {{
        use $crate::quant::GgmlType as T;
        use $crate::quant::dequant as d;
        match $t {
            T::Q4_0 => {
                let $f = d::q4_0_block;
                const $bs: usize = 32;
                const $ts: usize = 18;
                Some($body)
            }
            T::Q4_1 => {
                let $f = d::q4_1_block;
                const $bs: usize = 32;
                const $ts: usize = 20;
                Some($body)
            }
            T::Q5_0 => {
                let $f = d::q5_0_block;
                const $bs: usize = 32;
                const $ts: usize = 22;
                Some($body)
            }
            T::Q5_1 => {
                let $f = d::q5_1_block;
                const $bs: usize = 32;
                const $ts: usize = 24;
                Some($body)
            }
            T::Q8_0 => {
                let $f = d::q8_0_block;
                const $bs: usize = 32;
                const $ts: usize = 34;
                Some($body)
            }
            T::Q2_K => {
                let $f = d::q2_k_block;
                const $bs: usize = 256;
                const $ts: usize = 84;
                Some($body)
            }
            T::Q3_K => {
                let $f = d::q3_k_block;
                const $bs: usize = 256;
                const $ts: usize = 110;
                Some($body)
            }
            T::Q4_K => {
                let $f = d::q4_k_block;
                const $bs: usize = 256;
                const $ts: usize = 144;
                Some($body)
            }
            T::Q5_K => {
                let $f = d::q5_k_block;
                const $bs: usize = 256;
                const $ts: usize = 176;
                Some($body)
            }
            _ => None,
        }
    }};
}
pub(crate) use with_block_fn;

/// The bit-exact block decoder of `t`, if this crate has one.
pub(crate) fn block_fn(t: GgmlType) -> Option<BlockFn> {
    Some(match t {
        GgmlType::F32 => dequant::f32_block,
        GgmlType::F16 => dequant::f16_block,
        GgmlType::BF16 => dequant::bf16_block,
        GgmlType::Q4_0 => dequant::q4_0_block,
        GgmlType::Q4_1 => dequant::q4_1_block,
        GgmlType::Q5_0 => dequant::q5_0_block,
        GgmlType::Q5_1 => dequant::q5_1_block,
        GgmlType::Q8_0 => dequant::q8_0_block,
        GgmlType::Q2_K => dequant::q2_k_block,
        GgmlType::Q3_K => dequant::q3_k_block,
        GgmlType::Q4_K => dequant::q4_k_block,
        GgmlType::Q5_K => dequant::q5_k_block,
        GgmlType::Q6_K => dequant::q6_k_block,
        GgmlType::Q8_K => dequant::q8_k_block,
        _ => return None,
    })
}

/// The block decoder for `ggml_type`, once `bytes` is known to hold exactly `n_elements`.
fn checked_block_fn(
    ggml_type: GgmlType,
    bytes: &[u8],
    n_elements: u64,
) -> Result<BlockFn, QuantError> {
    let f = block_fn(ggml_type).ok_or(QuantError::Unsupported { ggml_type })?;
    let expected = ggml_type.bytes_for(n_elements);
    if expected != Some(bytes.len() as u64) {
        return Err(QuantError::Length {
            ggml_type,
            n_elements,
            expected: expected.unwrap_or(0),
            found: bytes.len() as u64,
            block_size: ggml_type.block_size().unwrap_or(1),
        });
    }
    Ok(f)
}

/// Dequantizes `bytes` of type `ggml_type` into `out`, whose length is the element count.
///
/// Bit-exact with gguf-py 0.19's numpy dequantizers and ggml's `dequantize_row_*`.
pub fn dequantize_into(
    ggml_type: GgmlType,
    bytes: &[u8],
    out: &mut [f32],
) -> Result<(), QuantError> {
    let f = checked_block_fn(ggml_type, bytes, out.len() as u64)?;
    let (block, size) = (
        ggml_type.block_size().unwrap_or(1),
        ggml_type.type_size().unwrap_or(1),
    );
    for (b, y) in bytes
        .chunks_exact(size as usize)
        .zip(out.chunks_exact_mut(block as usize))
    {
        f(b, y);
    }
    Ok(())
}

/// Dequantizes `n_elements` values of type `ggml_type` from `bytes` into a new vector.
pub fn dequantize(
    ggml_type: GgmlType,
    bytes: &[u8],
    n_elements: usize,
) -> Result<Vec<f32>, QuantError> {
    // The length check runs before the allocation: `n_elements` must match `bytes`.
    checked_block_fn(ggml_type, bytes, n_elements as u64)?;
    let mut out = vec![0f32; n_elements];
    dequantize_into(ggml_type, bytes, &mut out)?;
    Ok(out)
}
