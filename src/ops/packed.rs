//! The packed form of a Q6_K weight on a Burn device: a 1-D int tensor of little-endian 32-bit
//! words holding the weight's bytes, either in GGUF order or regrouped into aligned planes
//! ([`crate::quant::planes`]); the layout is told by the length.

use std::borrow::Cow;

use burn::tensor::{DType, Shape, TensorData};

use crate::quant::planes::{self, PlanesView};
use crate::quant::{BlockQ6K, Q6kLayout};

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

    /// Q6_K blocks in the whole weight.
    pub fn blocks(&self) -> usize {
        self.out_features * self.blocks_per_row()
    }

    /// 32-bit words holding those bytes in GGUF order (the last one zero-padded).
    pub fn n_words(&self) -> usize {
        self.n_bytes().div_ceil(4)
    }

    /// Words of a packed weight of this shape in `layout`.
    pub fn words_in(&self, layout: Q6kLayout) -> usize {
        layout.words(self.blocks())
    }

    /// The layout of a packed weight of this shape with `n_words` words, or `None` if the length
    /// fits no layout.
    pub fn layout_of(&self, n_words: usize) -> Option<Q6kLayout> {
        planes::layout_of(n_words, self.blocks())
    }
}

/// Packs GGUF Q6_K `bytes` of a `shape` weight into words in `layout`, as `i32` bit patterns (see
/// [`packed_words`]). Panics if `bytes` is not exactly the weight's size.
pub fn pack(bytes: &[u8], shape: Q6kShape, layout: Q6kLayout) -> Vec<i32> {
    assert_eq!(bytes.len(), shape.n_bytes(), "Q6_K bytes of {shape:?}");
    match layout {
        Q6kLayout::Gguf => packed_words(bytes),
        Q6kLayout::Planes => {
            let blocks = BlockQ6K::slice_from_bytes(bytes).expect("whole blocks");
            planes::to_planes(blocks, shape.out_features, shape.in_features)
                .into_iter()
                .map(|w| w as i32)
                .collect()
        }
    }
}

/// The blocks of a packed weight, read in place.
#[derive(Clone, Copy)]
pub(crate) enum BlockSource<'a> {
    /// GGUF order.
    Gguf(&'a [BlockQ6K]),
    /// Aligned planes.
    Planes(PlanesView<'a>),
}

impl<'a> BlockSource<'a> {
    /// Views `words` as the blocks of a `shape` weight, or says why it cannot.
    pub(crate) fn new(words: &'a [u32], shape: Q6kShape) -> Result<Self, String> {
        match shape.layout_of(words.len()) {
            Some(Q6kLayout::Gguf) => {
                let bytes: &[u8] = bytemuck::cast_slice(words);
                Ok(BlockSource::Gguf(
                    BlockQ6K::slice_from_bytes(&bytes[..shape.n_bytes()]).expect("whole blocks"),
                ))
            }
            Some(Q6kLayout::Planes) => {
                PlanesView::new(words, shape.blocks(), shape.out_features, shape.in_features)
                    .map(BlockSource::Planes)
                    .map_err(|e| e.to_string())
            }
            None => Err(format!(
                "a packed {shape:?} weight has {} words (GGUF layout) or {} (planes), found {}",
                shape.words_in(Q6kLayout::Gguf),
                shape.words_in(Q6kLayout::Planes),
                words.len()
            )),
        }
    }
}

/// The blocks of a packed weight in GGUF form, whatever its layout: borrowed for the GGUF
/// layout, reassembled for planes. `Err` names what is wrong with the buffer.
pub fn packed_blocks(words: &[u32], shape: Q6kShape) -> Result<Cow<'_, [BlockQ6K]>, String> {
    Ok(match BlockSource::new(words, shape)? {
        BlockSource::Gguf(blocks) => Cow::Borrowed(blocks),
        BlockSource::Planes(view) => Cow::Owned(view.to_blocks()),
    })
}

/// The exact GGUF bytes of a packed weight, whatever its layout.
pub fn unpack(words: &[u32], shape: Q6kShape) -> Result<Vec<u8>, String> {
    packed_blocks(words, shape).map(|b| BlockQ6K::slice_as_bytes(&b).to_vec())
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
