//! The ggml block formats as the kernels decode them: one file per format, each a
//! [`BlockFormat`] (its geometry, and how one thread decodes a *run* — 32 consecutive weights of a
//! block — from the packed GGUF words: the run's 32 integer codes and the one or two scales, and
//! mins, that turn them into weights). The kernels (matrix-vector product, dequantization, row
//! lookup) are written once, generic over the format, and instantiated per type like ggml's
//! `mul_mat_vec_q<type>`; [`with_format`] picks the instantiation from a [`GgmlType`] at run time.
//!
//! A code is a small integer, exact in f32, and so is `scale · code` (a product of an f32 and an
//! integer below 2⁸ whose scale has at most 16 significant bits): `scale · code − min` rounds once,
//! so the dequantized weights are ggml's (`d · q`, `d · q + m`, `(d · sc) · q − dmin · m`) bit
//! for bit, whether or not the device compiler contracts the multiply and the add.

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
    /// Whether a weight is `scale · code − min` (else `scale · code`).
    const MIN: bool;
    /// Weights per scale: 16 or 32.
    const SUB: usize;
    /// Runs (of 32 weights) per block.
    const RUNS: usize = Self::BLOCK / 32;
    /// Row groups per warp of the int8 product (`super::gemv_q8`) at one or two activation rows
    /// in the GGUF layout, where the caller forces no geometry: 2, or 1 for the formats whose
    /// kernel measured faster so (PERF.md, session 24: an H200, 4096 × 14336, each kernel's
    /// duration under Nsight Compute).
    const INT8_GROUPS: usize = 2;
}

/// The scales (and mins) of one run: elements `0..16` of the run are `d0 · code − m0`, elements
/// `16..32` `d1 · code − m1` (`d0 = d1`, `m0 = m1` for 32-weight sub-blocks; the mins are zero,
/// and unused, for a format without them).
#[derive(CubeType)]
pub struct RunScales {
    /// Scale of the run's first 16 weights.
    pub d0: f32,
    /// Scale of its last 16.
    pub d1: f32,
    /// Min of its first 16.
    pub m0: f32,
    /// Min of its last 16.
    pub m1: f32,
}

/// A block format the kernels decode: run `r` (0..RUNS, elements `32r .. 32r + 32`) of the block
/// `bb` of the words `w`, whose bytes sit in the words as the [`WordLayout`] `L` places them
/// (`bb` is the handle [`WordLayout::block`] gives; a decoder names a field by its byte offset in
/// the block and reads it through [`load_u32`], [`load_byte`] and [`load_f16`]).
#[cube]
pub trait BlockFormat: Geometry {
    /// The scales and mins of run `r`.
    fn scales<L: WordLayout>(w: &[u32], bb: usize, r: usize) -> RunScales;
    /// Word `j` (0..8) of run `r`'s codes: its elements `4j .. 4j + 4`, each minus the format's
    /// offset (`scale · (code − offset) − min` is the weight), as signed bytes (little-endian,
    /// element `4j + i` in byte `i`): what an integer dot product takes, and what [`unpack`]
    /// turns into exact floats. [`codes`] decodes all eight, a word at a time, so each format's
    /// decoder is one function of the run and the word.
    fn word<L: WordLayout>(w: &[u32], bb: usize, r: usize, #[comptime] j: usize) -> u32;
}

/// The 32 codes of run `r` of the block `bb`, as [`BlockFormat::word`] gives them, into
/// `q[0..8]`.
#[cube]
pub fn codes<Q: BlockFormat, L: WordLayout>(w: &[u32], bb: usize, r: usize, q: &mut Array<u32>) {
    #[unroll]
    for j in 0..8usize {
        q[j] = Q::word::<L>(w, bb, r, j);
    }
}

/// What a [`WordLayout`] fixes when the kernel is compiled.
pub trait Words: Send + Sync + 'static {
    /// Whether every block starts on a word (so a field at a multiple of four bytes in its block
    /// is one word).
    const WORD_BLOCKS: bool;
    /// Whether a row's work items go block by block within a run (item `i` is run `i / nb` of
    /// block `i % nb`, so adjacent lanes read the same field of adjacent blocks) rather than run
    /// by run within a block.
    const BLOCKS_INNER: bool;
}

/// How a packed weight's blocks sit in its words ([`crate::quant::PackedLayout`]): where byte
/// `c` of a block is.
#[cube]
pub trait WordLayout: Words {
    /// The handle of block `gb` of the weight (its blocks counted row-major) that the loads take.
    fn block<Q: Geometry>(gb: usize) -> usize;
    /// The index of the word that holds bytes `c + 4j ..` of block `bb` (`c + 4j` its first byte).
    fn word(bb: usize, c: usize, j: usize) -> usize;
    /// The bit of that word where byte `c` starts.
    fn shift(bb: usize, c: usize) -> u32;
    /// The index of the word of the same block after word `i`.
    fn next(i: usize) -> usize;
    /// Word `j` of the field at byte `c` of block `bb`, `w[word(bb, c, j)]`, for a format whose
    /// blocks are a multiple of 16 bytes and a field at a multiple of 16 (so every four words of
    /// it, from its first, are 16 aligned bytes): what [`GgufVectors`] loads four words at a time.
    fn field_word(w: &[u32], bb: usize, c: usize, #[comptime] j: usize) -> u32;
}

/// [`crate::quant::PackedLayout::Gguf`]: the GGUF bytes in order; a block's handle is its first
/// byte.
pub struct GgufWords;

impl Words for GgufWords {
    const WORD_BLOCKS: bool = false;
    const BLOCKS_INNER: bool = false;
}

#[cube]
impl WordLayout for GgufWords {
    fn block<Q: Geometry>(gb: usize) -> usize {
        gb * comptime!(Q::BYTES)
    }
    fn word(bb: usize, c: usize, j: usize) -> usize {
        (bb + c) / 4 + j
    }
    fn shift(bb: usize, c: usize) -> u32 {
        (((bb + c) % 4) * 8) as u32
    }
    fn next(i: usize) -> usize {
        i + 1
    }
    fn field_word(w: &[u32], bb: usize, c: usize, #[comptime] j: usize) -> u32 {
        w[Self::word(bb, c, j)]
    }
}

/// [`crate::quant::PackedLayout::Gguf`] as [`GgufWords`] reads it, but for the fields of a
/// format whose blocks are a multiple of 16 bytes (Q4_K, Q5_K): [`WordLayout::field_word`] loads
/// the 16 bytes that hold the word, and the field's three other words in them come from the same
/// load (the device compiler merges the identical loads). A quarter of the load instructions:
/// the products of those formats at one activation row are bound by the L1 cache's requests,
/// not by memory (PERF.md, session 29). It reinterprets the words as 16-byte vectors, which CubeCL's WGSL compiler
/// cannot express (`cubecl-std`'s `ReinterpretSlice`: not supported on wgpu), and only in
/// kernels launched unchecked; [`use_vectors`] says where the launches take it.
pub struct GgufVectors;

impl Words for GgufVectors {
    const WORD_BLOCKS: bool = false;
    const BLOCKS_INNER: bool = false;
}

#[cube]
impl WordLayout for GgufVectors {
    fn block<Q: Geometry>(gb: usize) -> usize {
        comptime!(assert!(
            Q::BYTES.is_multiple_of(16),
            "GgufVectors: blocks of a multiple of 16 bytes only"
        ));
        gb * comptime!(Q::BYTES)
    }
    fn word(bb: usize, c: usize, j: usize) -> usize {
        GgufWords::word(bb, c, j)
    }
    fn shift(bb: usize, c: usize) -> u32 {
        GgufWords::shift(bb, c)
    }
    fn next(i: usize) -> usize {
        GgufWords::next(i)
    }
    fn field_word(w: &[u32], bb: usize, c: usize, #[comptime] j: usize) -> u32 {
        let v = w.as_vectorized().with_vector_size::<Const<4>>();
        v[(bb + c) / 16 + comptime!(j / 4)].extract(comptime!(j % 4))
    }
}

/// Whether the products' launches on `runtime` read [`GgufVectors`] (for the formats it takes):
/// CUDA, where it was measured. Not wgpu, whose WGSL compiler cannot reinterpret a buffer's
/// words as vectors; not Metal or HIP, where it was never run.
pub(crate) fn use_vectors(runtime: cubecl::device::RuntimeId) -> bool {
    runtime == cubecl::device::RuntimeId::Cuda
}

/// [`crate::quant::PackedLayout::Interleaved`]: each block zero-padded to whole words (`P` of
/// them), and the words of each 32 consecutive blocks interleaved (word `p` of block `32t + l` at
/// `32 (P t + p) + l`), so the lanes of a warp reading one field of adjacent blocks read adjacent
/// words. A block's handle is the index of its first word.
pub struct InterleavedWords;

impl Words for InterleavedWords {
    const WORD_BLOCKS: bool = true;
    const BLOCKS_INNER: bool = true;
}

#[cube]
impl WordLayout for InterleavedWords {
    fn block<Q: Geometry>(gb: usize) -> usize {
        let p = comptime!(Q::BYTES.div_ceil(4));
        (gb / 32) * comptime!(32 * p) + gb % 32
    }
    fn word(bb: usize, c: usize, j: usize) -> usize {
        bb + 32 * (c / 4 + j)
    }
    fn shift(_bb: usize, c: usize) -> u32 {
        ((c % 4) * 8) as u32
    }
    fn next(i: usize) -> usize {
        i + 32
    }
    fn field_word(w: &[u32], bb: usize, c: usize, #[comptime] j: usize) -> u32 {
        w[Self::word(bb, c, j)]
    }
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

/// Runs `$body` with `$L` the [`WordLayout`] of the layout of `$desc` (a
/// [`crate::quant::QuantWeightDesc`]) for the [`BlockFormat`] `$Q`, or evaluates to
/// `Err(KernelError::Layout)` for a layout the generic kernels do not read (Q6_K's planes, which
/// have their own). `$vectors` (a kernel launched unchecked, on a runtime of [`use_vectors`]):
/// the GGUF layout of a format of 16-byte multiple blocks as [`GgufVectors`].
macro_rules! with_words {
    ($desc:expr, $Q:ty, $vectors:expr, $L:ident => $body:expr) => {{
        use $crate::kernel::formats as f;
        use $crate::quant::PackedLayout as P;
        match $desc.layout {
            P::Gguf if $vectors && <$Q as f::Geometry>::BYTES % 16 == 0 => {
                type $L = f::GgufVectors;
                Ok($body)
            }
            P::Gguf => {
                type $L = f::GgufWords;
                Ok($body)
            }
            P::Interleaved => {
                type $L = f::InterleavedWords;
                Ok($body)
            }
            P::Q6kPlanes => Err($crate::kernel::KernelError::Layout { desc: $desc }),
        }
    }};
}
pub(crate) use with_words;

/// Bytes `c + 4j .. c + 4j + 4` of block `bb` as a little-endian u32. `aligned`: `c` is a
/// multiple of 4 and so is the block's start (a block of a multiple of 4 bytes, or a layout whose
/// blocks start on words: [`Words::WORD_BLOCKS`]), one load. Otherwise the bytes may straddle
/// words: the word and the block's next one (each index capped at the last word, so never a
/// load past the end; a capped second word only ever meets a shift of 0), shifted together. The
/// next word of `j` is the word of `j + 1`, the same expression, so a caller reading `j = 0, 1,
/// 2, …` of one field loads each word once, not twice.
#[cube]
pub fn load_u32<L: WordLayout>(
    w: &[u32],
    bb: usize,
    c: usize,
    j: usize,
    #[comptime] aligned: bool,
) -> u32 {
    let i = L::word(bb, c, j);
    if comptime!(aligned) {
        w[i]
    } else {
        let last = w.len() - 1;
        let s = L::shift(bb, c);
        // `<< (32 − s)` as two shifts: a shift by 32 is not defined everywhere.
        (w[i.min(last)] >> s) | ((w[L::next(i).min(last)] << (31u32 - s)) << 1u32)
    }
}

/// Byte `c` of block `bb`.
#[cube]
pub fn load_byte<L: WordLayout>(w: &[u32], bb: usize, c: usize) -> u32 {
    (w[L::word(bb, c, 0)] >> L::shift(bb, c)) & 0xFFu32
}

/// The f16 at the even byte `c` of block `bb` (a 16-bit field never straddles a word: every
/// block is an even number of bytes), as f32 ([`f16_bits_to_f32`]).
#[cube]
pub fn load_f16<L: WordLayout>(w: &[u32], bb: usize, c: usize) -> f32 {
    f16_bits_to_f32((w[L::word(bb, c, 0)] >> L::shift(bb, c)) & 0xFFFFu32)
}

/// The integer `c − offset` (for `c` below 2²³) as f32, without an integer-to-float conversion
/// (a slow instruction on GPUs): `c` in the mantissa of 2²³, then 2²³ + `offset` subtracted;
/// both terms and the difference are exact.
#[cube]
pub fn code(c: u32, #[comptime] offset: u32) -> f32 {
    f32::reinterpret(c | 0x4B00_0000u32) - f32::reinterpret(comptime!(0x4B00_0000u32 | offset))
}

/// Four codes as the signed bytes of one word (byte `i` is code `i` minus `offset`): code
/// `i` is bits `shift + 8i ..` of `lo` under `mask`, with bits `hshift + hstride · i ..` of `hi`
/// under `hmask` placed at bit `hpos` above them (no high part when `hmask` is 0; `hstride` 8,
/// or 1 with `hmask` 1 and `hpos` at most 4). Every code
/// fits its byte (`shift` plus the mask's bits, and `hpos` plus the high mask's, stay within 8;
/// a code minus its offset lies in −128..=127), so the four are formed together, as a word.
#[cube]
#[allow(clippy::too_many_arguments)]
pub fn pack4(
    lo: u32,
    shift: u32,
    #[comptime] mask: u32,
    hi: u32,
    hshift: u32,
    #[comptime] hstride: u32,
    #[comptime] hmask: u32,
    #[comptime] hpos: u32,
    #[comptime] offset: u32,
) -> u32 {
    let mut c = (lo >> shift) & comptime!(mask * 0x0101_0101u32);
    if comptime!(hmask != 0 && hstride == 8) {
        c |= ((hi >> hshift) & comptime!(hmask * 0x0101_0101u32)) << hpos;
    } else if comptime!(hmask != 0) {
        comptime!(assert!(
            hstride == 1 && hmask == 1 && hpos <= 4,
            "pack4: a high part is a bit per byte (stride 8) or four consecutive bits (stride 1)"
        ));
        // Four consecutive bits (Q5_0 / Q5_1's fifth bits) spread to bit `hpos` of each byte
        // by one multiply: the copies shifted by 0, 7, 14 and 21 bits overlap nowhere, so the
        // product is their OR (no carry), and bit `i` lands at `hpos + 8i`. Four times fewer
        // instructions than a shift, mask and OR per byte.
        c |= (((hi >> hshift) & 0xFu32) * comptime!(0x0020_4081u32 << hpos))
            & comptime!(0x0101_0101u32 << hpos);
    }
    if comptime!(offset != 0) {
        // per byte `c + 128 − offset` (no carry: a code is below 128 + offset), then its top bit
        // flipped: `c − offset` in two's complement
        c = (c + comptime!((128 - offset) * 0x0101_0101u32)) ^ 0x8080_8080u32;
    }
    c
}

/// Code `i` (0..32) of a run's packed words `q` (signed bytes, [`codes`]) as an
/// exact f32.
#[cube]
pub fn unpack(q: &Array<u32>, #[comptime] i: usize) -> f32 {
    // every byte's top bit flipped (the same expression for a word's four codes: formed once),
    // so that a byte is its code plus 128
    let biased = q[i / 4] ^ 0x8080_8080u32;
    code((biased >> comptime!(8 * (i % 4) as u32)) & 0xFFu32, 128u32)
}

/// Word `j` (0..8) of the codes of a Q4_0 / Q4_1 / Q5_0 / Q5_1 block ([`BlockFormat::word`]):
/// byte `e` of the 16 bytes at byte `qs` of block `bb` holds element `e` (low nibble) and element `e + 16`
/// (high nibble), so word `j` is the low (`j < 4`) or high nibbles of bytes `4 (j % 4) ..`;
/// where `hmask` is 1, bit `e` of `qh` (the little-endian `qh` word of Q5_0 / Q5_1) is element
/// `e`'s fifth bit. `aligned` as [`load_u32`]'s.
#[cube]
#[allow(clippy::too_many_arguments)]
pub fn nibble_word<L: WordLayout>(
    w: &[u32],
    bb: usize,
    qs: usize,
    qh: u32,
    j: usize,
    #[comptime] hmask: u32,
    #[comptime] offset: u32,
    #[comptime] aligned: bool,
) -> u32 {
    let v = load_u32::<L>(w, bb, qs, j % 4, aligned);
    let shift = (4 * (j / 4)) as u32;
    pack4(
        v,
        shift,
        0xFu32,
        qh,
        (4 * j) as u32,
        1u32,
        hmask,
        4u32,
        offset,
    )
}

/// The scales of a run with one scale `d` and min `m` for all its 32 weights.
#[cube]
pub fn one_scale(d: f32, m: f32) -> RunScales {
    RunScales {
        d0: d,
        d1: d,
        m0: m,
        m1: m,
    }
}

/// The scales of run `r` (sub-block `r`, 0..8) of the Q4_K / Q5_K block `bb`: `d · sc`
/// and `dmin · m` with `(sc, m)` the sub-block's six-bit pair from the 12 scale bytes at
/// byte 4 (ggml's `get_scale_min_k4`). The block's first 16 bytes are its four first words
/// ([`WordLayout::field_word`]: one load in [`GgufVectors`]). Branch-free: both of ggml's cases
/// are formed from in-bounds bytes and one is selected.
#[cube]
pub fn k_run_scales<L: WordLayout>(w: &[u32], bb: usize, r: usize) -> RunScales {
    // d and dmin; then byte r % 4 of the scale bytes 4.., 8.. and 12..: for r < 4 the scale
    // and the min, else their top two bits, and (r ≥ 4) the low nibbles of both
    let head = L::field_word(w, bb, 0usize, 0usize);
    let shift = (8 * (r % 4)) as u32;
    let a = (L::field_word(w, bb, 0usize, 1usize) >> shift) & 0xFFu32;
    let b = (L::field_word(w, bb, 0usize, 2usize) >> shift) & 0xFFu32;
    let c = (L::field_word(w, bb, 0usize, 3usize) >> shift) & 0xFFu32;
    let high = r >= 4;
    let sc = select(high, (c & 0xFu32) | ((a >> 6u32) << 4u32), a & 63u32);
    let mn = select(high, (c >> 4u32) | ((b >> 6u32) << 4u32), b & 63u32);
    one_scale(
        f16_bits_to_f32(head & 0xFFFFu32) * f32::cast_from(sc),
        f16_bits_to_f32(head >> 16u32) * f32::cast_from(mn),
    )
}

pub use super::decode::{f16_bits_to_f32, sign_extend};

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
