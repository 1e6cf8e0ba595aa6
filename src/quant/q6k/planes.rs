//! The aligned layout of a Q6_K weight ("planes"): the bytes of every block, regrouped so that
//! each field of each block starts on a 16-byte boundary. A GGUF Q6_K row is a run of 210-byte
//! blocks, only 2-byte aligned; GPUs read fastest with 16-byte loads, which need 16-byte aligned
//! data. Regrouping is a permutation of the bytes, so GGUF bytes → planes → GGUF bytes is exact.
//!
//! The layout, in little-endian 32-bit words, for `T = rows · blocks_per_row` blocks in row-major
//! order (block `t` is row `t / blocks_per_row`, block `t % blocks_per_row` of that row):
//!
//! | words | what |
//! |---|---|
//! | 4 | header: [`PLANES_MAGIC`], [`PLANES_VERSION`], rows, columns (saturated to `u32::MAX`) |
//! | 32·T | `ql` plane: block `t`'s 128 bytes at word `4 + 32t` |
//! | 16·T | `qh` plane: its 64 bytes at word `4 + 32T + 16t` |
//! | 4·T | `scales` plane: its 16 bytes at word `4 + 48T + 4t` |
//! | ⌈T/2⌉, padded to a multiple of 4 | `d` plane: its f16 in half `t % 2` of word `4 + 52T + t/2` |
//!
//! Every plane starts on a 16-byte boundary and the total is a whole number of 16-byte vectors.
//! The total is 4 to 7 words more than the same weight as plain GGUF words. The layout is named
//! by [`crate::quant::PackedLayout::Q6kPlanes`]; the header is checked on every read back.

use crate::quant::BlockQ6K;

/// Word 0 of a planes buffer: `"Q6KP"` in little-endian bytes.
pub const PLANES_MAGIC: u32 = u32::from_le_bytes(*b"Q6KP");
/// Word 1 of a planes buffer: the layout version described in this module.
pub const PLANES_VERSION: u32 = 1;
/// Header words before the first plane.
pub const HEADER_WORDS: usize = 4;

/// Where each plane starts, in words, for a weight of `blocks` blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlaneOffsets {
    /// Start of the `ql` plane (32 words a block).
    pub ql: usize,
    /// Start of the `qh` plane (16 words a block).
    pub qh: usize,
    /// Start of the `scales` plane (4 words a block).
    pub scales: usize,
    /// Start of the `d` plane (two f16 a word).
    pub d: usize,
    /// Total words, a multiple of 4.
    pub total: usize,
}

impl PlaneOffsets {
    /// The offsets for `blocks` blocks.
    pub fn new(blocks: usize) -> PlaneOffsets {
        let ql = HEADER_WORDS;
        let qh = ql + 32 * blocks;
        let scales = qh + 16 * blocks;
        let d = scales + 4 * blocks;
        let total = d + blocks.div_ceil(2).next_multiple_of(4);
        PlaneOffsets {
            ql,
            qh,
            scales,
            d,
            total,
        }
    }
}

/// Why a buffer is not a valid planes buffer for the weight it is said to hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanesError {
    /// The length is not the planes length for this many blocks.
    #[error("a planes buffer of {blocks} Q6_K blocks has {expected} words, found {found}")]
    Length {
        /// Blocks expected.
        blocks: usize,
        /// Words that takes.
        expected: usize,
        /// Words found.
        found: usize,
    },
    /// The header's magic, version or shape differs.
    #[error(
        "planes header {found:08x?} does not match magic {PLANES_MAGIC:08x}, version \
         {PLANES_VERSION}, {rows} rows × {columns} columns"
    )]
    Header {
        /// The four header words found.
        found: [u32; 4],
        /// Rows expected.
        rows: usize,
        /// Columns expected.
        columns: usize,
    },
}

fn header(rows: usize, columns: usize) -> [u32; 4] {
    let sat = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
    [PLANES_MAGIC, PLANES_VERSION, sat(rows), sat(columns)]
}

/// The planes of `blocks`, a `rows × columns` weight (`columns / 256` blocks a row, row-major).
pub fn to_planes(blocks: &[BlockQ6K], rows: usize, columns: usize) -> Vec<u32> {
    let t = blocks.len();
    let o = PlaneOffsets::new(t);
    let mut words = vec![0u32; o.total];
    words[..HEADER_WORDS].copy_from_slice(&header(rows, columns));
    let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut words);
    for (i, b) in blocks.iter().enumerate() {
        bytes[4 * o.ql + 128 * i..][..128].copy_from_slice(&b.ql);
        bytes[4 * o.qh + 64 * i..][..64].copy_from_slice(&b.qh);
        bytes[4 * o.scales + 16 * i..][..16].copy_from_slice(bytemuck::cast_slice(&b.scales));
        bytes[4 * o.d + 2 * i..][..2].copy_from_slice(&b.d);
    }
    words
}

/// A read-only view of a planes buffer: block `i` can be reassembled in GGUF form.
#[derive(Clone, Copy, Debug)]
pub struct PlanesView<'a> {
    ql: &'a [u8],
    qh: &'a [u8],
    scales: &'a [u8],
    d: &'a [u8],
}

impl<'a> PlanesView<'a> {
    /// Checks `words` (length and header) for a `rows × columns` weight of `blocks` blocks.
    pub fn new(
        words: &'a [u32],
        blocks: usize,
        rows: usize,
        columns: usize,
    ) -> Result<Self, PlanesError> {
        let o = PlaneOffsets::new(blocks);
        if words.len() != o.total {
            return Err(PlanesError::Length {
                blocks,
                expected: o.total,
                found: words.len(),
            });
        }
        let found: [u32; 4] = words[..HEADER_WORDS].try_into().expect("4 header words");
        if found != header(rows, columns) {
            return Err(PlanesError::Header {
                found,
                rows,
                columns,
            });
        }
        let bytes: &[u8] = bytemuck::cast_slice(words);
        Ok(PlanesView {
            ql: &bytes[4 * o.ql..4 * o.qh],
            qh: &bytes[4 * o.qh..4 * o.scales],
            scales: &bytes[4 * o.scales..4 * o.d],
            d: &bytes[4 * o.d..4 * o.d + 2 * blocks],
        })
    }

    /// Blocks in the view.
    pub fn len(&self) -> usize {
        self.d.len() / 2
    }

    /// Whether the view holds no block.
    pub fn is_empty(&self) -> bool {
        self.d.is_empty()
    }

    /// The 128 `ql` bytes of block `i`.
    pub fn ql(&self, i: usize) -> &'a [u8] {
        &self.ql[128 * i..][..128]
    }

    /// The 64 `qh` bytes of block `i`.
    pub fn qh(&self, i: usize) -> &'a [u8] {
        &self.qh[64 * i..][..64]
    }

    /// The 16 scale bytes (int8) of block `i`.
    pub fn scales(&self, i: usize) -> &'a [u8] {
        &self.scales[16 * i..][..16]
    }

    /// The f16 bytes of block `i`'s `d`.
    pub fn d(&self, i: usize) -> [u8; 2] {
        [self.d[2 * i], self.d[2 * i + 1]]
    }

    /// Block `i` in GGUF form.
    pub fn block(&self, i: usize) -> BlockQ6K {
        let mut b = BlockQ6K::ZERO;
        b.ql.copy_from_slice(self.ql(i));
        b.qh.copy_from_slice(self.qh(i));
        b.scales = bytemuck::cast_slice::<u8, i8>(self.scales(i))
            .try_into()
            .expect("16 scales");
        b.d = self.d(i);
        b
    }

    /// Every block in GGUF form.
    pub fn to_blocks(&self) -> Vec<BlockQ6K> {
        (0..self.len()).map(|i| self.block(i)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocks(n: usize, seed: u64) -> Vec<BlockQ6K> {
        let mut s = seed | 1;
        let mut bytes = vec![0u8; n * BlockQ6K::BYTES];
        for b in &mut bytes {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            *b = s as u8;
        }
        BlockQ6K::slice_from_bytes(&bytes).unwrap().to_vec()
    }

    #[test]
    fn round_trip_and_lengths() {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        for t in [0usize, 1, 2, 3, 7, 8, 9, 56, 57] {
            let bl = blocks(t, seed ^ t as u64);
            let words = to_planes(&bl, t, 256);
            assert_eq!(words.len() % 4, 0);
            assert_eq!(words.len(), PlaneOffsets::new(t).total, "t={t}");
            let extra = words.len() - (t * BlockQ6K::BYTES).div_ceil(4);
            assert!((4..=7).contains(&extra), "t={t}: {extra} extra words");
            let view = PlanesView::new(&words, t, t, 256).unwrap();
            assert_eq!(view.to_blocks(), bl, "seed {seed} t={t}");
        }
    }

    #[test]
    fn rejects_bad_headers_and_lengths() {
        let bl = blocks(3, 7);
        let mut words = to_planes(&bl, 3, 256);
        assert!(matches!(
            PlanesView::new(&words, 3, 1, 768),
            Err(PlanesError::Header { .. })
        ));
        assert!(matches!(
            PlanesView::new(&words[..words.len() - 4], 3, 3, 256),
            Err(PlanesError::Length { .. })
        ));
        words[0] ^= 1;
        assert!(matches!(
            PlanesView::new(&words, 3, 3, 256),
            Err(PlanesError::Header { .. })
        ));
    }
}
