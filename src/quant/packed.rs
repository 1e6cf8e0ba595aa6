//! A quantized GGUF weight as the ops take it: its bytes packed into little-endian 32-bit words
//! (the unit every GPU runtime can load; WGSL has no 8- or 16-bit storage) and a
//! [`QuantWeightDesc`] that says what those words hold — ggml type, on-device layout, shape.
//!
//! Packing is a permutation of the GGUF bytes (plus a header and padding for the aligned
//! layouts), so GGUF bytes → [`pack`] → [`unpack`] → GGUF bytes is exact.

use thiserror::Error;

use super::GgmlType;
use super::q6k::{
    BlockQ6K,
    planes::{self, PlanesError, PlanesView},
};

/// How a packed weight's bytes are arranged in its 32-bit words.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum PackedLayout {
    /// The GGUF bytes in file order, the last word zero-padded. Every type has it.
    Gguf,
    /// Q6_K only: every field of every block on a 16-byte boundary behind a 16-byte header
    /// ([`crate::quant::q6k::planes`]), which the fast GPU kernel reads with wide loads. The
    /// default for Q6_K.
    #[default]
    Q6kPlanes,
    /// Any fused type, for the GPU kernels: each block zero-padded to whole words, and the words
    /// of each 32 consecutive blocks (counted row-major over the weight) interleaved — word `p` of
    /// block `32 t + l` is word `32 (P t + p) + l` for blocks of `P` words — so that the lanes of a
    /// warp reading one field of 32 adjacent blocks read 32 adjacent words. The last group of 32
    /// is padded with zero blocks.
    Interleaved,
}

impl PackedLayout {
    /// The layout the ops use for `ggml_type` unless told otherwise: the aligned planes for Q6_K,
    /// the GGUF bytes for every other type.
    pub fn default_for(ggml_type: GgmlType) -> Self {
        if ggml_type == GgmlType::Q6_K {
            PackedLayout::Q6kPlanes
        } else {
            PackedLayout::Gguf
        }
    }

    /// Whether the products read int8 activations ([`crate::quant::Activations::Int8`]) from a
    /// weight in this layout: the generic kernel's layouts (GGUF, interleaved), not Q6_K's planes.
    pub fn reads_int8(self) -> bool {
        self != PackedLayout::Q6kPlanes
    }
}

/// What a packed quantized weight holds: a `[out_features, in_features]` matrix (GGUF
/// `ne = [in_features, out_features]`) of `ggml_type` blocks, packed in `layout`.
///
/// Built through [`QuantWeightDesc::new`], which checks that the type has a fused product, that
/// the rows are whole blocks and that the layout exists for the type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct QuantWeightDesc {
    /// The block format.
    pub ggml_type: GgmlType,
    /// How the bytes sit in the words.
    pub layout: PackedLayout,
    /// Rows of W (N).
    pub out_features: usize,
    /// Columns of W (K), a whole number of blocks.
    pub in_features: usize,
}

/// Why a packed weight could not be described, packed or read back.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PackError {
    /// The type has no fused product in this crate (yet).
    #[error(
        "ggml type {ggml_type} has no fused product (supported: {})",
        fused_list()
    )]
    Unsupported {
        /// The type asked for.
        ggml_type: GgmlType,
    },
    /// The layout does not exist for the type.
    #[error("layout {layout:?} does not exist for ggml type {ggml_type}")]
    Layout {
        /// The type.
        ggml_type: GgmlType,
        /// The layout asked for.
        layout: PackedLayout,
    },
    /// The layout exists for the type, but the CPU products do not read it (they read the GGUF
    /// layout, and Q6_K's planes).
    #[error(
        "the CPU products do not read layout {layout:?} (ggml type {ggml_type}): pack the weight in the GGUF layout"
    )]
    CpuLayout {
        /// The type.
        ggml_type: GgmlType,
        /// The layout given.
        layout: PackedLayout,
    },
    /// Int8 activations asked of a layout whose kernel reads float activations only (Q6_K's
    /// planes).
    #[error(
        "int8 activations are not read in layout {layout:?} (ggml type {ggml_type}): pack the weight in the GGUF or interleaved layout"
    )]
    Int8Layout {
        /// The type.
        ggml_type: GgmlType,
        /// The layout given.
        layout: PackedLayout,
    },
    /// A row is not a whole, non-zero number of blocks.
    #[error(
        "in_features = {in_features} is not a positive multiple of {ggml_type}'s block of {block_size}"
    )]
    Columns {
        /// The type.
        ggml_type: GgmlType,
        /// The row length asked for.
        in_features: usize,
        /// Weights per block.
        block_size: usize,
    },
    /// The weight's byte or word count does not fit in `usize`.
    #[error("a {out_features}x{in_features} weight is too large to address")]
    TooLarge {
        /// Rows.
        out_features: usize,
        /// Columns.
        in_features: usize,
    },
    /// The GGUF bytes are not the weight's size.
    #[error("{desc:?} is {expected} bytes, got {found}")]
    ByteLength {
        /// The weight.
        desc: QuantWeightDesc,
        /// Bytes it takes.
        expected: usize,
        /// Bytes given.
        found: usize,
    },
    /// The packed words are not the weight's size in its layout.
    #[error("{desc:?} packs into {expected} words, found {found}")]
    WordLength {
        /// The weight.
        desc: QuantWeightDesc,
        /// Words it takes.
        expected: usize,
        /// Words found.
        found: usize,
    },
    /// An activation buffer does not hold whole rows of the weight's input (or output) width.
    #[error("an input of {found} values is not {rows} rows of {width}")]
    InputLength {
        /// Rows said.
        rows: usize,
        /// Values per row.
        width: usize,
        /// Values found.
        found: usize,
    },
    /// A row index past the weight's rows (an embedding lookup of a token the table lacks).
    #[error("row {index} is out of range for a weight of {rows} rows")]
    Row {
        /// The index asked for.
        index: usize,
        /// Rows the weight has.
        rows: usize,
    },
    /// The words are not a valid aligned-planes buffer.
    #[error(transparent)]
    Planes(#[from] PlanesError),
}

/// The types with a fused product (on every backend the op has), in ggml id order.
pub const FUSED_TYPES: &[GgmlType] = &[
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
];

fn fused_list() -> String {
    FUSED_TYPES
        .iter()
        .map(|t| t.name())
        .collect::<Vec<_>>()
        .join(", ")
}

impl QuantWeightDesc {
    /// Describes an `out_features × in_features` weight of `ggml_type` in `layout`, or says which
    /// rule it breaks.
    pub fn new(
        ggml_type: GgmlType,
        layout: PackedLayout,
        out_features: usize,
        in_features: usize,
    ) -> Result<Self, PackError> {
        if !FUSED_TYPES.contains(&ggml_type) {
            return Err(PackError::Unsupported { ggml_type });
        }
        if layout == PackedLayout::Q6kPlanes && ggml_type != GgmlType::Q6_K {
            return Err(PackError::Layout { ggml_type, layout });
        }
        let block_size = ggml_type.block_size().unwrap_or(1) as usize;
        if in_features == 0 || !in_features.is_multiple_of(block_size) {
            return Err(PackError::Columns {
                ggml_type,
                in_features,
                block_size,
            });
        }
        let desc = QuantWeightDesc {
            ggml_type,
            layout,
            out_features,
            in_features,
        };
        // Every size the ops compute from the desc must fit: bytes, words and f32 outputs.
        let fits = out_features
            .checked_mul(in_features)
            .and_then(|n| n.checked_mul(4))
            .is_some()
            && desc
                .blocks()
                .checked_mul(ggml_type.type_size().unwrap_or(1) as usize + 16)
                .is_some();
        if !fits {
            return Err(PackError::TooLarge {
                out_features,
                in_features,
            });
        }
        Ok(desc)
    }

    /// A weight of `ggml_type` in that type's default layout ([`PackedLayout::default_for`]).
    pub fn of(
        ggml_type: GgmlType,
        out_features: usize,
        in_features: usize,
    ) -> Result<Self, PackError> {
        let layout = PackedLayout::default_for(ggml_type);
        Self::new(ggml_type, layout, out_features, in_features)
    }

    /// A Q6_K weight in the default layout (aligned planes).
    pub fn q6k(out_features: usize, in_features: usize) -> Result<Self, PackError> {
        Self::of(GgmlType::Q6_K, out_features, in_features)
    }

    /// Weights per block.
    pub fn block_size(&self) -> usize {
        self.ggml_type.block_size().unwrap_or(1) as usize
    }

    /// Blocks per row.
    pub fn blocks_per_row(&self) -> usize {
        self.in_features / self.block_size()
    }

    /// Blocks in the whole weight.
    pub fn blocks(&self) -> usize {
        self.out_features * self.blocks_per_row()
    }

    /// Bytes of the weight in the GGUF file.
    pub fn n_bytes(&self) -> usize {
        self.blocks() * self.block_bytes()
    }

    /// 32-bit words the packed weight takes in its layout.
    pub fn n_words(&self) -> usize {
        match self.layout {
            PackedLayout::Gguf => self.n_bytes().div_ceil(4),
            PackedLayout::Q6kPlanes => planes::PlaneOffsets::new(self.blocks()).total,
            PackedLayout::Interleaved => self.blocks().div_ceil(32) * 32 * self.block_words(),
        }
    }

    /// Bytes per block.
    fn block_bytes(&self) -> usize {
        self.ggml_type.type_size().unwrap_or(1) as usize
    }

    /// Words a block takes when padded to whole words ([`PackedLayout::Interleaved`]).
    fn block_words(&self) -> usize {
        self.block_bytes().div_ceil(4)
    }

    /// The same weight in another layout, if the type has it.
    pub fn with_layout(self, layout: PackedLayout) -> Result<Self, PackError> {
        Self::new(self.ggml_type, layout, self.out_features, self.in_features)
    }

    /// Checks that `words` has this weight's length (and, for the aligned planes, its header).
    pub fn check_words(&self, words: &[u32]) -> Result<(), PackError> {
        if words.len() != self.n_words() {
            return Err(PackError::WordLength {
                desc: *self,
                expected: self.n_words(),
                found: words.len(),
            });
        }
        if self.layout == PackedLayout::Q6kPlanes {
            PlanesView::new(words, self.blocks(), self.out_features, self.in_features)?;
        }
        Ok(())
    }
}

/// Packs a weight's GGUF `bytes` into words in `desc`'s layout.
pub fn pack(bytes: &[u8], desc: QuantWeightDesc) -> Result<Vec<u32>, PackError> {
    if bytes.len() != desc.n_bytes() {
        return Err(PackError::ByteLength {
            desc,
            expected: desc.n_bytes(),
            found: bytes.len(),
        });
    }
    Ok(match desc.layout {
        PackedLayout::Gguf => gguf_words(bytes),
        PackedLayout::Interleaved => interleave(bytes, desc),
        PackedLayout::Q6kPlanes => {
            let blocks = BlockQ6K::slice_from_bytes(bytes).expect("the length was checked");
            planes::to_planes(blocks, desc.out_features, desc.in_features)
        }
    })
}

/// The exact GGUF bytes of a packed weight.
pub fn unpack(words: &[u32], desc: QuantWeightDesc) -> Result<Vec<u8>, PackError> {
    desc.check_words(words)?;
    Ok(match desc.layout {
        PackedLayout::Gguf => bytemuck::cast_slice::<u32, u8>(words)[..desc.n_bytes()].to_vec(),
        PackedLayout::Interleaved => deinterleave(words, desc),
        PackedLayout::Q6kPlanes => {
            let view = PlanesView::new(words, desc.blocks(), desc.out_features, desc.in_features)?;
            BlockQ6K::slice_as_bytes(&view.to_blocks()).to_vec()
        }
    })
}

/// The word of the interleaved layout that holds word `p` of block `b` ([`PackedLayout::Interleaved`]).
fn interleaved_at(b: usize, p: usize, block_words: usize) -> usize {
    (b / 32 * block_words + p) * 32 + b % 32
}

/// A weight's GGUF `bytes` (checked to be `desc`'s) in [`PackedLayout::Interleaved`].
fn interleave(bytes: &[u8], desc: QuantWeightDesc) -> Vec<u32> {
    let (size, pw) = (desc.block_bytes(), desc.block_words());
    let mut out = vec![0u32; desc.n_words()];
    for (b, block) in bytes.chunks_exact(size).enumerate() {
        for (p, w) in gguf_words(block).into_iter().enumerate() {
            out[interleaved_at(b, p, pw)] = w;
        }
    }
    out
}

/// The GGUF bytes of interleaved `words` (checked to be `desc`'s length).
fn deinterleave(words: &[u32], desc: QuantWeightDesc) -> Vec<u8> {
    let (size, pw) = (desc.block_bytes(), desc.block_words());
    let mut out = Vec::with_capacity(desc.n_bytes());
    let mut block = vec![0u8; pw * 4];
    for b in 0..desc.blocks() {
        for (p, chunk) in block.chunks_exact_mut(4).enumerate() {
            chunk.copy_from_slice(&words[interleaved_at(b, p, pw)].to_le_bytes());
        }
        out.extend_from_slice(&block[..size]);
    }
    out
}

/// `bytes` as little-endian words, the tail zero-padded to a whole word.
fn gguf_words(bytes: &[u8]) -> Vec<u32> {
    bytes
        .chunks(4)
        .map(|c| {
            let mut w = [0u8; 4];
            w[..c.len()].copy_from_slice(c);
            u32::from_le_bytes(w)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_name_the_rule_they_break() {
        assert!(matches!(
            QuantWeightDesc::new(GgmlType::Q8_K, PackedLayout::Gguf, 4, 256),
            Err(PackError::Unsupported { .. })
        ));
        assert!(matches!(
            QuantWeightDesc::new(GgmlType::Q8_0, PackedLayout::Q6kPlanes, 4, 32),
            Err(PackError::Layout { .. })
        ));
        assert!(matches!(
            QuantWeightDesc::of(GgmlType::Q4_K, 4, 32),
            Err(PackError::Columns { .. })
        ));
        let d = QuantWeightDesc::of(GgmlType::Q8_0, 3, 64).unwrap();
        assert_eq!(
            (d.layout, d.blocks(), d.n_bytes(), d.n_words()),
            (PackedLayout::Gguf, 6, 204, 51)
        );
        assert!(matches!(
            QuantWeightDesc::q6k(4, 300),
            Err(PackError::Columns { .. })
        ));
        assert!(matches!(
            QuantWeightDesc::q6k(4, 0),
            Err(PackError::Columns { .. })
        ));
        assert!(matches!(
            QuantWeightDesc::q6k(usize::MAX / 8, 256),
            Err(PackError::TooLarge { .. })
        ));
        let d = QuantWeightDesc::q6k(3, 512).unwrap();
        assert_eq!((d.blocks(), d.n_bytes()), (6, 6 * 210));
        assert_eq!(d.with_layout(PackedLayout::Gguf).unwrap().n_words(), 315);
    }

    #[test]
    fn pack_unpack_round_trips_every_layout() {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        let mut s = seed | 1;
        let mut random = |len: usize| -> Vec<u8> {
            (0..len)
                .map(|_| {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    s as u8
                })
                .collect()
        };
        // (type, layout, rows, blocks a row): a last group of 32 blocks cut short, one exact
        for &t in FUSED_TYPES {
            let layouts: &[PackedLayout] = if t == GgmlType::Q6_K {
                &[
                    PackedLayout::Gguf,
                    PackedLayout::Q6kPlanes,
                    PackedLayout::Interleaved,
                ]
            } else {
                &[PackedLayout::Gguf, PackedLayout::Interleaved]
            };
            for &layout in layouts {
                for (n, kb) in [(5, 2), (3, 13), (4, 8)] {
                    let bs = t.block_size().unwrap() as usize;
                    let d = QuantWeightDesc::new(t, layout, n, kb * bs).unwrap();
                    let bytes = random(d.n_bytes());
                    let words = pack(&bytes, d).unwrap();
                    assert_eq!(words.len(), d.n_words());
                    assert_eq!(unpack(&words, d).unwrap(), bytes, "seed {seed} {d:?}");
                    assert!(matches!(
                        unpack(&words[1..], d),
                        Err(PackError::WordLength { .. })
                    ));
                    assert!(matches!(
                        pack(&bytes[1..], d),
                        Err(PackError::ByteLength { .. })
                    ));
                }
            }
        }
        // the interleaved words: word p of block 32 t + l at 32 (P t + p) + l, padding zero
        let d =
            QuantWeightDesc::new(GgmlType::Q4_0, PackedLayout::Interleaved, 1, 33 * 32).unwrap();
        let bytes = random(d.n_bytes());
        let words = pack(&bytes, d).unwrap();
        assert_eq!(words.len(), 2 * 32 * 5);
        let gguf = gguf_words(&bytes[32 * 18..33 * 18]);
        for (p, &w) in gguf.iter().enumerate() {
            assert_eq!(words[(5 + p) * 32], w, "seed {seed} word {p} of block 32");
        }
        assert_eq!(words[(5 + 4) * 32] >> 16, 0, "a block's padding");
        assert!(
            words[5 * 32 + 1..]
                .iter()
                .enumerate()
                .all(|(i, &w)| i % 32 == 31 || w == 0)
        );
    }
}
