//! The packed form of a Q6_K weight on a Burn device: the GGUF bytes as little-endian 32-bit words.

use burn::tensor::{DType, Shape, TensorData};

use crate::quant::BlockQ6K;

/// The logical shape of a packed Q6_K weight W: `out_features` rows of `in_features` weights
/// (`in_features` a multiple of 256), i.e. GGUF `ne = [in_features, out_features]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Q6kShape {
    /// Rows of W (N).
    pub out_features: usize,
    /// Columns of W (K), a multiple of 256.
    pub in_features: usize,
}

impl Q6kShape {
    /// Q6_K blocks per row.
    pub fn blocks_per_row(&self) -> usize {
        self.in_features / crate::quant::QK_K
    }

    /// Bytes of the Q6_K data (210 per 256 weights).
    pub fn n_bytes(&self) -> usize {
        self.out_features * self.blocks_per_row() * BlockQ6K::BYTES
    }

    /// 32-bit words holding those bytes (the last one zero-padded).
    pub fn n_words(&self) -> usize {
        self.n_bytes().div_ceil(4)
    }
}

/// The words of a packed tensor, as `i32` bit patterns (so that Burn's recorders, which convert
/// int tensors to `i32` under full precision, keep them exact): the bytes in order, little-endian,
/// the tail zero-padded to a whole word.
pub fn packed_words(bytes: &[u8]) -> Vec<i32> {
    bytes
        .chunks(4)
        .map(|c| {
            let mut w = [0u8; 4];
            w[..c.len()].copy_from_slice(c);
            i32::from_le_bytes(w)
        })
        .collect()
}

/// The u32 words of packed weight data read back from a device, whatever int dtype the backend
/// stored them as (U32 and I32 bit patterns; I64/U64 as produced by a recorder on a backend whose
/// int type is 64-bit, truncated back to their low 32 bits).
pub fn words_from_data(data: &TensorData) -> Vec<u32> {
    match data.dtype {
        DType::U32 => data.as_slice::<u32>().expect("u32 data").to_vec(),
        DType::I32 => data
            .as_slice::<i32>()
            .expect("i32 data")
            .iter()
            .map(|&w| w as u32)
            .collect(),
        DType::I64 => data
            .as_slice::<i64>()
            .expect("i64 data")
            .iter()
            .map(|&w| w as u32)
            .collect(),
        DType::U64 => data
            .as_slice::<u64>()
            .expect("u64 data")
            .iter()
            .map(|&w| w as u32)
            .collect(),
        other => panic!("a packed Q6_K weight must be 32- or 64-bit ints, found {other:?}"),
    }
}

/// `shape` with its last dimension replaced by `last`.
pub(crate) fn with_last_dim(shape: &Shape, last: usize) -> Shape {
    let mut s = shape.clone();
    let i = s.num_dims() - 1;
    s[i] = last;
    s
}
