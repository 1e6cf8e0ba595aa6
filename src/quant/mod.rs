//! ggml block formats in pure Rust: the type table, bit-exact dequantizers for every type real
//! GGUF models carry, ggml's reference Q6_K quantizer, and the packed form the fused ops take
//! ([`QuantWeightDesc`], [`pack`], [`unpack`]).
//!
//! Nothing here needs a GPU or a Burn backend.

mod activations;
pub(crate) mod codes;
pub(crate) mod dequant;
mod ggml_type;
mod packed;
pub mod q6k;

pub use activations::Activations;
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

/// A block format's decoder as a type, with its geometry as constants: generic products call it
/// statically, so it inlines into every SIMD build of them. It decodes a block into integer
/// codes, integer per-sub-block scales and mins, and the block's two floats ([`codes`]): weight
/// `i` is `d · sc[s] · q[i] − dmin · m[s]` (`s = i / SUB`), ggml's value bit for bit when
/// computed as `scale[s] · q[i] − min[s]` ([`Self::scales`]) and rounded once.
///
/// It reads block `i` (row-major over the whole weight) of a [`Self::Src`]: a weight's GGUF
/// bytes for every format but Q6_K, whose blocks may also lie in its aligned planes.
pub(crate) trait BlockDecode {
    /// Elements per block.
    const BLOCK: usize;
    /// Bytes per block.
    const BYTES: usize;
    /// Elements per sub-block: one scale and one min each.
    const SUB: usize;
    /// Whether the format has mins (else every `m` is zero and is not written).
    const MIN: bool;
    /// What the signed codes are less than the unsigned ones the block stores
    /// ([`Self::ucodes`]): `q = u − OFFSET` (8 for Q4_0's nibbles, 0 for a format with mins).
    const OFFSET: u8;
    /// Bits of an unsigned code: `u < 2^BITS`.
    const BITS: u32;
    /// Where the blocks are read from.
    type Src<'a>: Copy;
    /// One block's fields, as the decoder reads them.
    type Block<'a>: Copy;
    /// Blocks `first .. first + n` of `src`, in order.
    fn blocks<'a>(
        src: Self::Src<'a>,
        first: usize,
        n: usize,
    ) -> impl Iterator<Item = Self::Block<'a>> {
        (first..first + n).map(move |i| Self::block(src, i))
    }
    /// Block `i` of `src`.
    fn block<'a>(src: Self::Src<'a>, i: usize) -> Self::Block<'a>;
    /// A block's `BLOCK / SUB` sub-blocks' integer scales `sc` and (where [`Self::MIN`]) mins
    /// `m`; returns the block's `(d, dmin)` (`dmin` 0 without mins), its fields unpacked by `un`.
    fn int_scales(
        b: Self::Block<'_>,
        un: impl codes::Unpack,
        sc: &mut codes::Ints,
        m: &mut codes::Ints,
    ) -> (f32, f32);
    /// A block's `BLOCK / SUB` sub-blocks' `scale = d · sc` and (where [`Self::MIN`])
    /// `min = dmin · m`, each exact in f32.
    #[inline(always)]
    fn scales(b: Self::Block<'_>, scale: &mut [f32], min: &mut [f32]) {
        let (mut sc, mut m) = ([0i8; 16], [0i8; 16]);
        let (d, dmin) = Self::int_scales(b, codes::Soft, &mut sc, &mut m);
        // fixed-size views, widened to 32-bit lanes first: the compiler computes the scales in
        // vectors (from the narrow integers, it converts and multiplies each alone)
        let (scale, min): (&mut [f32; 16], &mut [f32; 16]) = (
            (&mut scale[..16]).try_into().expect("16 scales"),
            (&mut min[..16]).try_into().expect("16 mins"),
        );
        let (sc, m): ([i32; 16], [i32; 16]) = (sc.map(i32::from), m.map(i32::from));
        for s in 0..Self::BLOCK / Self::SUB {
            scale[s] = d * sc[s] as f32;
            if Self::MIN {
                min[s] = dmin * m[s] as f32;
            }
        }
    }
    /// The 32 unsigned codes of run `r` of a block (elements `32r .. 32r + 32`, one or two
    /// sub-blocks), as the block stores them: the codes plus [`Self::OFFSET`]; its fields
    /// unpacked by `un`.
    fn ucodes(b: Self::Block<'_>, un: impl codes::Unpack, r: usize, u: &mut [u8; 32]);
    /// The 32 codes of run `r` of a block: [`Self::ucodes`] less [`Self::OFFSET`].
    #[inline(always)]
    fn codes(b: Self::Block<'_>, un: impl codes::Unpack, r: usize, q: &mut [i8; 32]) {
        let mut u = [0u8; 32];
        Self::ucodes(b, un, r, &mut u);
        for (q, u) in q.iter_mut().zip(u) {
            *q = u.wrapping_sub(Self::OFFSET) as i8;
        }
    }
    /// Where a block's bytes (or its largest field's) start, for a prefetch ahead of it.
    fn addr(b: Self::Block<'_>) -> *const u8;
}

/// One zero-sized [`BlockDecode`] per format with a generic CPU product.
macro_rules! block_decoders {
    ($(
        $Q:ident: $sc:ident, $f:ident, $bs:expr, $ts:expr, $sub:expr, $min:expr, $off:expr,
        $bits:expr;
    )*) => {
        /// The formats' decoders as types ([`BlockDecode`]).
        pub(crate) mod decoders {
            $(
                #[doc = concat!("[`super::codes::", stringify!($f), "`] as a [`super::BlockDecode`] over GGUF bytes.")]
                pub(crate) struct $Q;
                impl super::BlockDecode for $Q {
                    const BLOCK: usize = $bs;
                    const BYTES: usize = $ts;
                    const SUB: usize = $sub;
                    const MIN: bool = $min;
                    const OFFSET: u8 = $off;
                    const BITS: u32 = $bits;
                    type Src<'a> = &'a [u8];
                    type Block<'a> = &'a [u8];
                    // the bytes' exact chunks: the compiler vectorizes each block's decoding
                    // within the block (indexing block by block, it vectorized across a
                    // block's runs instead, with scatters: 8x slower for Q4_K)
                    #[inline(always)]
                    fn blocks<'a>(
                        src: Self::Src<'a>,
                        first: usize,
                        n: usize,
                    ) -> impl Iterator<Item = Self::Block<'a>> {
                        src[first * $ts..][..n * $ts].chunks_exact($ts)
                    }
                    #[inline(always)]
                    fn block<'a>(src: Self::Src<'a>, i: usize) -> Self::Block<'a> {
                        &src[i * $ts..][..$ts]
                    }
                    #[inline(always)]
                    fn int_scales(
                        b: &[u8],
                        un: impl super::codes::Unpack,
                        sc: &mut super::codes::Ints,
                        m: &mut super::codes::Ints,
                    ) -> (f32, f32) {
                        super::codes::$sc(b, un, sc, m)
                    }
                    #[inline(always)]
                    fn ucodes(
                        b: &[u8],
                        un: impl super::codes::Unpack,
                        r: usize,
                        u: &mut [u8; 32],
                    ) {
                        super::codes::$f(b, un, r, u)
                    }
                    #[inline(always)]
                    fn addr(b: &[u8]) -> *const u8 {
                        b.as_ptr()
                    }
                }
            )*

            /// Q6_K's [`super::BlockDecode`] over either layout ([`super::q6k::BlockSource`]).
            pub(crate) struct Q6K;
            impl super::BlockDecode for Q6K {
                const BLOCK: usize = 256;
                const BYTES: usize = 210;
                const SUB: usize = 16;
                const MIN: bool = false;
                const OFFSET: u8 = 32;
                const BITS: u32 = 6;
                type Src<'a> = super::q6k::BlockSource<'a>;
                type Block<'a> = (&'a [u8; 128], &'a [u8; 64], &'a [u8; 16], f32);
                #[inline(always)]
                fn block<'a>(src: Self::Src<'a>, i: usize) -> Self::Block<'a> {
                    src.parts(i)
                }
                #[inline(always)]
                fn int_scales(
                    (_, _, bytes, d): Self::Block<'_>,
                    _un: impl super::codes::Unpack,
                    sc: &mut super::codes::Ints,
                    _m: &mut super::codes::Ints,
                ) -> (f32, f32) {
                    super::codes::q6_k_scales(bytes, d, sc)
                }
                #[inline(always)]
                fn ucodes(
                    (ql, qh, _, _): Self::Block<'_>,
                    _un: impl super::codes::Unpack,
                    r: usize,
                    u: &mut [u8; 32],
                ) {
                    super::codes::q6_k_codes(ql, qh, r, u)
                }
                #[inline(always)]
                fn addr((ql, _, _, _): Self::Block<'_>) -> *const u8 {
                    ql.as_ptr()
                }
            }
        }
    };
}
// type: its scales and codes in `codes`, elements and bytes a block, elements a sub-block,
// whether it has mins, its codes' offset and bits
block_decoders! {
    Q4_0: q4_0_scales, q4_0_codes, 32, 18, 32, false, 8, 4;
    Q4_1: q4_1_scales, q4_1_codes, 32, 20, 32, true, 0, 4;
    Q5_0: q5_0_scales, q5_0_codes, 32, 22, 32, false, 16, 5;
    Q5_1: q5_1_scales, q5_1_codes, 32, 24, 32, true, 0, 5;
    Q8_0: q8_0_scales, q8_0_codes, 32, 34, 32, false, 128, 8;
    Q2K: q2_k_scales, q2_k_codes, 256, 84, 16, true, 0, 2;
    Q3K: q3_k_scales, q3_k_codes, 256, 110, 16, false, 4, 3;
    Q4K: q4_k_scales, q4_k_codes, 256, 144, 32, true, 0, 4;
    Q5K: q5_k_scales, q5_k_codes, 256, 176, 32, true, 0, 5;
}

/// Evaluates `$body` with `$Q` the [`BlockDecode`] type of `$t`: `Some($body)` for a type with a
/// generic fused product (Q6_K excepted: it has its own products), else `None`.
macro_rules! with_block_decoder {
    ($t:expr, $Q:ident => $body:expr) => {{
        use $crate::quant::GgmlType as T;
        use $crate::quant::decoders as q;
        match $t {
            T::Q4_0 => {
                type $Q = q::Q4_0;
                Some($body)
            }
            T::Q4_1 => {
                type $Q = q::Q4_1;
                Some($body)
            }
            T::Q5_0 => {
                type $Q = q::Q5_0;
                Some($body)
            }
            T::Q5_1 => {
                type $Q = q::Q5_1;
                Some($body)
            }
            T::Q8_0 => {
                type $Q = q::Q8_0;
                Some($body)
            }
            T::Q2_K => {
                type $Q = q::Q2K;
                Some($body)
            }
            T::Q3_K => {
                type $Q = q::Q3K;
                Some($body)
            }
            T::Q4_K => {
                type $Q = q::Q4K;
                Some($body)
            }
            T::Q5_K => {
                type $Q = q::Q5K;
                Some($body)
            }
            _ => None,
        }
    }};
}
pub(crate) use with_block_decoder;

/// The bit-exact block decoder of `t`, if this crate has one.
pub(crate) fn block_fn(t: GgmlType) -> Option<BlockFn> {
    Some(match t {
        GgmlType::F32 => dequant::f32_block,
        GgmlType::F16 => dequant::f16_block,
        GgmlType::BF16 => dequant::bf16_block,
        GgmlType::Q4_0 => |b, y| dequant::from_codes::<decoders::Q4_0>(b, 0, y),
        GgmlType::Q4_1 => |b, y| dequant::from_codes::<decoders::Q4_1>(b, 0, y),
        GgmlType::Q5_0 => |b, y| dequant::from_codes::<decoders::Q5_0>(b, 0, y),
        GgmlType::Q5_1 => |b, y| dequant::from_codes::<decoders::Q5_1>(b, 0, y),
        GgmlType::Q8_0 => |b, y| dequant::from_codes::<decoders::Q8_0>(b, 0, y),
        GgmlType::Q2_K => |b, y| dequant::from_codes::<decoders::Q2K>(b, 0, y),
        GgmlType::Q3_K => |b, y| dequant::from_codes::<decoders::Q3K>(b, 0, y),
        GgmlType::Q4_K => |b, y| dequant::from_codes::<decoders::Q4K>(b, 0, y),
        GgmlType::Q5_K => |b, y| dequant::from_codes::<decoders::Q5K>(b, 0, y),
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

#[cfg(test)]
mod tests {
    use super::{BlockDecode, FUSED_TYPES, GgmlType};

    /// Each generic CPU product's decoder carries the geometry of the ggml type it decodes.
    #[test]
    fn block_decoders_match_the_type_table() {
        for &t in FUSED_TYPES {
            let geometry = with_block_decoder!(t, Q => (
                <Q as BlockDecode>::BLOCK as u64,
                <Q as BlockDecode>::BYTES as u64
            ));
            // the products and `dequant::from_codes` decode 32 codes at a time and keep at most
            // 16 sub-blocks' scales
            let runs = with_block_decoder!(t, Q => {
                <Q as BlockDecode>::BLOCK % 32 == 0
                    && 32 % <Q as BlockDecode>::SUB == 0
                    && <Q as BlockDecode>::BLOCK / <Q as BlockDecode>::SUB <= 16
            });
            assert_ne!(
                runs,
                Some(false),
                "{t}: runs of 32 codes, at most 16 sub-blocks"
            );
            match geometry {
                Some(g) => assert_eq!(Some(g), t.block_size().zip(t.type_size()), "{t}"),
                None => assert_eq!(t, GgmlType::Q6_K, "{t} has no decoder type"),
            }
        }
    }

    /// Each decoder's unsigned codes take exactly `BITS` bits over random blocks (below `2^BITS`,
    /// and the largest reached), and its signed codes are them less `OFFSET`.
    #[test]
    fn unsigned_codes_take_their_bits() {
        fn check<Q: BlockDecode>(t: GgmlType, src: Q::Src<'_>, blocks: usize, seed: u64) {
            let mut largest = 0u8;
            for i in 0..blocks {
                for r in 0..Q::BLOCK / 32 {
                    let (mut u, mut q) = ([0u8; 32], [0i8; 32]);
                    Q::ucodes(Q::block(src, i), super::codes::Soft, r, &mut u);
                    Q::codes(Q::block(src, i), super::codes::Soft, r, &mut q);
                    for (&u, &q) in u.iter().zip(&q) {
                        assert!(u32::from(u) < 1 << Q::BITS, "{t}: code {u}, seed {seed}");
                        let signed = i16::from(u) - i16::from(Q::OFFSET);
                        assert_eq!(i16::from(q), signed, "{t}, seed {seed}");
                        largest = largest.max(u);
                    }
                }
            }
            let most = (1 << Q::BITS) - 1;
            assert_eq!(
                u32::from(largest),
                most,
                "{t}: {blocks} blocks, seed {seed}"
            );
        }
        let (seed, mut rng) = crate::cpu::tests::fresh_rng();
        for &t in FUSED_TYPES {
            let size = t.type_size().expect("size") as usize;
            let bs = t.block_size().expect("block") as usize;
            let blocks = 256;
            let bytes: Vec<u8> = (0..blocks * size).map(|_| rng.next() as u8).collect();
            let checked = with_block_decoder!(t, Q => check::<Q>(t, &bytes, blocks, seed));
            if checked.is_none() {
                let desc = super::QuantWeightDesc::of(t, blocks, bs).expect("shape");
                let words = super::pack(&bytes, desc).expect("pack");
                let src = super::q6k::BlockSource::new(&words, desc).expect("blocks");
                check::<super::decoders::Q6K>(t, src, blocks, seed);
            }
        }
    }
}
