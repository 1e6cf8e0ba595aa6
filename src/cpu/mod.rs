//! The quantized products on the CPU, in pure Rust over packed words (no Burn): threaded,
//! reading the blocks in place (one block decoded at a time, never a dequantized copy of the
//! whole weight), f32 accumulation. They serve the Flex backend and are the reference the GPU
//! kernels are tested against.
//!
//! Also the transformer layer's fused ops on the CPU ([`rms_norm`], [`rope`], [`gelu_mul`],
//! [`attention`]), and the choice of a token from logits ([`sampling`]).
//!
//! One product for every fused type: `blocks`, over the type's bit-exact block decoder on
//! macerator's portable SIMD (the CPU's best instruction set picked at run time). Q6_K's decoder
//! reads either of its layouts.

mod attention;
mod blocks;
mod gelu;
mod int8;
#[cfg(feature = "flex")]
mod layer;
mod norm;
mod rope;
pub mod sampling;

pub use attention::{AttentionShape, attention};
pub use gelu::{GELU_CUBIC, SQRT_2_OVER_PI, gelu_mul};
#[cfg(feature = "flex")]
pub(crate) use layer::{KvCache, LayerShape, LayerWeights, Projection, decoder_step};
pub use norm::rms_norm;
pub use rope::rope;

use std::marker::PhantomData;

use crate::parallel::{SendPtr, for_each_range};
use crate::quant::{BlockDecode, GgmlType, PackError, QuantWeightDesc};

fn check_input(values: &[f32], rows: usize, width: usize) -> Result<(), PackError> {
    if rows.checked_mul(width) != Some(values.len()) {
        return Err(PackError::InputLength {
            rows,
            width,
            found: values.len(),
        });
    }
    Ok(())
}

/// `y[m, n] = Σ_k x[m, k] · W[n, k]`: `x` is `m × in_features` row-major, `y` `m × out_features`.
pub fn matmul(
    x: &[f32],
    words: &[u32],
    m: usize,
    desc: QuantWeightDesc,
) -> Result<Vec<f32>, PackError> {
    check_input(x, m, desc.in_features)?;
    let w = Weight::new(words, desc)?;
    Ok(threaded(desc.out_features, m, |r0, r1, out| {
        w.rows(x, m, r0, r1, out)
    }))
}

/// [`matmul`] with the activations rounded to int8 ([`crate::quant::Activations::Int8`]): each
/// run of the weight's block (32 weights, or 256 for the K formats: llama.cpp's CPU rounding)
/// rounded with one step, `x̂ = dx · round(x / dx)`, `dx = max |x| / 127`, then multiplied
/// into the weight's codes as integers (with AVX2's byte dot where the CPU has it), as ggml's
/// CPU does. The result is the product with `x̂`, within f32 rounding.
///
/// ```
/// use burn_gguf::quant::{GgmlType, QuantWeightDesc, pack};
/// // one Q8_0 block: d = 1/2, codes 0, 1, …, 31
/// let mut block = half::f16::from_f32(0.5).to_le_bytes().to_vec();
/// block.extend(0..32u8);
/// let desc = QuantWeightDesc::of(GgmlType::Q8_0, 1, 32).unwrap();
/// let words = pack(&block, desc).unwrap();
/// // x = 1.01 everywhere but x[31] = 127/64 (the step 1/64): x̂ rounds 1.01 to 65/64
/// let mut x = vec![1.01f32; 32];
/// x[31] = 127.0 / 64.0;
/// let y = burn_gguf::cpu::matmul_int8(&x, &words, 1, desc).unwrap();
/// // Σ_{i<31} (i/2)(65/64) + (31/2)(127/64), exact in f32
/// assert_eq!(y, [465.0 / 2.0 * 65.0 / 64.0 + 31.0 * 127.0 / 128.0]);
/// ```
pub fn matmul_int8(
    x: &[f32],
    words: &[u32],
    m: usize,
    desc: QuantWeightDesc,
) -> Result<Vec<f32>, PackError> {
    check_input(x, m, desc.in_features)?;
    let w = Weight::new(words, desc)?;
    let xq = w.int8_rows(x);
    Ok(threaded(desc.out_features, m, |r0, r1, out| {
        w.each(&xq, r0, r1, out)
    }))
}

/// `y` (`m × n`) from `f(r0, r1, out)` run over ranges of the `n` rows by the threads, each
/// writing `out = y[.., r0..r1]` transposed (`[r1 − r0, m]`).
fn threaded(n: usize, m: usize, f: impl Fn(usize, usize, &mut [f32]) + Sync) -> Vec<f32> {
    let mut yt = vec![0f32; n * m]; // [n, m]: a thread's rows are contiguous
    let out = SendPtr(yt.as_mut_ptr());
    for_each_range(n, |r0, r1| {
        // SAFETY: threads write disjoint rows [r0, r1) of yt, which outlives the scope.
        let out = unsafe { std::slice::from_raw_parts_mut(out.get().add(r0 * m), (r1 - r0) * m) };
        f(r0, r1, out);
    });
    let mut y = vec![0f32; m * n];
    for row in 0..n {
        for mi in 0..m {
            y[mi * n + row] = yt[row * m + mi];
        }
    }
    y
}

/// A product over a range of a weight's rows, generic over its blocks' decoder: what
/// [`Weight::each`] runs on the blocks it holds.
pub(crate) trait BlockRows {
    /// Rows `r0..r1` of the weight whose blocks `src` holds, into `out` (`[r1 − r0, m]`).
    fn rows<Q: BlockDecode, const BS: usize, const TS: usize>(
        &self,
        src: Q::Src<'_>,
        r0: usize,
        r1: usize,
        out: &mut [f32],
    );
}

/// The float product's activations: `m` rows of `k`.
struct FloatRows<'x> {
    x: &'x [f32],
    m: usize,
    k: usize,
}

impl BlockRows for FloatRows<'_> {
    #[inline(always)]
    fn rows<Q: BlockDecode, const BS: usize, const TS: usize>(
        &self,
        src: Q::Src<'_>,
        r0: usize,
        r1: usize,
        out: &mut [f32],
    ) {
        blocks::rows::<Q, BS, TS>(PhantomData, self.x, self.m, self.k, src, r0, r1, out)
    }
}

impl BlockRows for int8::Int8Rows {
    #[inline(always)]
    fn rows<Q: BlockDecode, const BS: usize, const TS: usize>(
        &self,
        src: Q::Src<'_>,
        r0: usize,
        r1: usize,
        out: &mut [f32],
    ) {
        int8::rows::<Q, BS, TS>(self, src, r0, r1, out)
    }
}

/// A quantized weight checked once and multiplied a range of its rows at a time: what
/// [`matmul`] splits over threads and the fused decoder layer over its chunks of work.
#[derive(Clone, Copy)]
pub(crate) struct Weight<'a> {
    blocks: WeightBlocks<'a>,
    desc: QuantWeightDesc,
}

/// The blocks a [`Weight`] reads: Q6_K's view of either layout, or any other fused type's GGUF
/// bytes (both multiplied by the one product over the type's block decoder).
#[derive(Clone, Copy)]
enum WeightBlocks<'a> {
    Q6k(crate::quant::q6k::BlockSource<'a>),
    Gguf(&'a [u8]),
}

impl<'a> Weight<'a> {
    /// `words` as the weight `desc` describes, or why they are not one this CPU multiplies.
    pub(crate) fn new(words: &'a [u32], desc: QuantWeightDesc) -> Result<Self, PackError> {
        let t = desc.ggml_type;
        let blocks = if t == GgmlType::Q6_K {
            WeightBlocks::Q6k(crate::quant::q6k::BlockSource::new(words, desc)?)
        } else if crate::quant::FUSED_TYPES.contains(&t) {
            WeightBlocks::Gguf(blocks::gguf_bytes(words, desc)?)
        } else {
            return Err(PackError::Unsupported { ggml_type: t });
        };
        Ok(Self { blocks, desc })
    }

    /// What the weight holds.
    #[cfg(feature = "flex")]
    pub(crate) fn desc(&self) -> QuantWeightDesc {
        self.desc
    }

    /// Rows `r0..r1` of W against the `m` rows of `x` (`m × in_features`, which the caller
    /// checked), into `out` (`[r1 − r0, m]`).
    pub(crate) fn rows(&self, x: &[f32], m: usize, r0: usize, r1: usize, out: &mut [f32]) {
        let k = self.desc.in_features;
        self.each(&FloatRows { x, m, k }, r0, r1, out)
    }

    /// `p` over rows `r0..r1` of W, with the decoder of the blocks it holds.
    fn each(&self, p: &impl BlockRows, r0: usize, r1: usize, out: &mut [f32]) {
        match self.blocks {
            WeightBlocks::Q6k(source) => {
                type Q = crate::quant::decoders::Q6K;
                p.rows::<Q, { Q::BLOCK }, { Q::BYTES }>(source, r0, r1, out)
            }
            WeightBlocks::Gguf(bytes) => {
                // `new` admitted only types with a block decoder: the match always runs
                let _ = crate::quant::with_block_decoder!(self.desc.ggml_type, Q => p.rows::<
                    Q,
                    { <Q as BlockDecode>::BLOCK },
                    { <Q as BlockDecode>::BYTES },
                >(bytes, r0, r1, out));
            }
        }
    }

    /// `x` (rows of `in_features`) rounded to int8 as this weight's int8 product reads it: in
    /// runs of its block, with the sums of its sub-blocks ([`Weight::runs`]).
    fn int8_rows(&self, x: &[f32]) -> int8::Int8Rows {
        let (run, sub) = self.runs();
        int8::Int8Rows::new(x, self.desc.in_features, run, sub)
    }

    /// The weight's elements a block and a sub-block: the int8 product's runs and sums.
    fn runs(&self) -> (usize, usize) {
        type Q6 = crate::quant::decoders::Q6K;
        match self.blocks {
            WeightBlocks::Q6k(_) => (Q6::BLOCK, Q6::SUB),
            WeightBlocks::Gguf(_) => crate::quant::with_block_decoder!(
                self.desc.ggml_type,
                Q => (<Q as BlockDecode>::BLOCK, <Q as BlockDecode>::SUB)
            )
            .expect("a type with a block decoder"),
        }
    }
}

/// `g_x[m, k] = Σ_n g_y[m, n] · W[n, k]` (the gradient of [`matmul`] with respect to `x`):
/// `g_y` is `m × out_features`, `g_x` `m × in_features`.
pub fn matmul_t(
    grad_y: &[f32],
    words: &[u32],
    m: usize,
    desc: QuantWeightDesc,
) -> Result<Vec<f32>, PackError> {
    check_input(grad_y, m, desc.out_features)?;
    let (n, k, bs) = (desc.out_features, desc.in_features, desc.block_size());
    let nb = desc.blocks_per_row();
    let decode = block_decoder(words, desc)?;
    // Each thread owns a range of block columns: it reads W[.., b] for all rows and accumulates
    // into g_x[.., bs·b .. bs·(b + 1)], which no other thread touches.
    let mut gx = vec![0f32; m * k];
    let gx_ptr = SendPtr(gx.as_mut_ptr());
    for_each_range(nb, |b0, b1| {
        let mut w = vec![0f32; bs];
        let width = (b1 - b0) * bs;
        let mut acc = vec![0f32; m * width];
        for row in 0..n {
            for b in b0..b1 {
                decode(row * nb + b, &mut w);
                for mi in 0..m {
                    let g = grad_y[mi * n + row];
                    let dst = &mut acc[mi * width + (b - b0) * bs..][..bs];
                    for (d, &wv) in dst.iter_mut().zip(&w) {
                        *d += g * wv;
                    }
                }
            }
        }
        for mi in 0..m {
            // SAFETY: threads write disjoint column ranges of g_x, which outlives the scope.
            let dst = unsafe {
                std::slice::from_raw_parts_mut(gx_ptr.get().add(mi * k + b0 * bs), width)
            };
            dst.copy_from_slice(&acc[mi * width..][..width]);
        }
    });
    Ok(gx)
}

/// The whole weight as `[out_features, in_features]` f32, bit-exact with ggml.
pub fn dequantize(words: &[u32], desc: QuantWeightDesc) -> Result<Vec<f32>, PackError> {
    let bs = desc.block_size();
    let decode = block_decoder(words, desc)?;
    let mut out = vec![0f32; desc.out_features * desc.in_features];
    for (i, y) in out.chunks_exact_mut(bs).enumerate() {
        decode(i, y);
    }
    Ok(out)
}

/// Rows `ids` of the weight (GGUF layout, as the GPU kernel takes it) dequantized,
/// `[ids.len(), in_features]` row-major: an embedding lookup that decodes only the rows asked
/// for, bit-exact with ggml.
pub fn rows(words: &[u32], desc: QuantWeightDesc, ids: &[usize]) -> Result<Vec<f32>, PackError> {
    if desc.layout != crate::quant::PackedLayout::Gguf {
        return Err(PackError::Layout {
            ggml_type: desc.ggml_type,
            layout: desc.layout,
        });
    }
    if let Some(&index) = ids.iter().find(|&&i| i >= desc.out_features) {
        return Err(PackError::Row {
            index,
            rows: desc.out_features,
        });
    }
    let (k, bs, nb) = (desc.in_features, desc.block_size(), desc.blocks_per_row());
    let decode = block_decoder(words, desc)?;
    let mut out = vec![0f32; ids.len() * k];
    for (&id, row) in ids.iter().zip(out.chunks_exact_mut(k)) {
        for (b, y) in row.chunks_exact_mut(bs).enumerate() {
            decode(id * nb + b, y);
        }
    }
    Ok(out)
}

/// A decoder of block `i` (row-major over the whole weight) into `block_size` f32 values: the
/// blocks of [`Weight`], decoded one at a time.
fn block_decoder(
    words: &[u32],
    desc: QuantWeightDesc,
) -> Result<impl Fn(usize, &mut [f32]) + Sync + '_, PackError> {
    let w = Weight::new(words, desc)?;
    let t = desc.ggml_type;
    let decode = crate::quant::block_fn(t).ok_or(PackError::Unsupported { ggml_type: t })?;
    let size = t.type_size().unwrap_or(1) as usize;
    Ok(move |i: usize, out: &mut [f32]| match w.blocks {
        WeightBlocks::Q6k(source) => {
            source.dequantize_block(i, out.try_into().expect("256 values"))
        }
        WeightBlocks::Gguf(bytes) => decode(&bytes[i * size..][..size], out),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::quant::{PackedLayout, dequantize, pack, q6k};

    /// Xorshift64: a small generator, so the unit tests need no dependency.
    pub(crate) struct Rng(pub(crate) u64);
    impl Rng {
        pub(crate) fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        /// Uniform in [−1, 1).
        pub(crate) fn unit(&mut self) -> f32 {
            (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        }
    }

    /// A generator seeded from the clock (a fresh stream each run) and its seed, to print.
    pub(crate) fn fresh_rng() -> (u64, Rng) {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        (seed, Rng(seed | 1))
    }

    /// Every fused type (Q6_K in both of its CPU layouts) through the one product, against f64 on the
    /// dequantized weight within the f32 dot-product bound `γ_K · Σ|x·w|` (every dequantized
    /// weight is exact in f32): activation row counts that take every pass size (8, 4, 3, 2, 1
    /// rows) and mixes of them, a row range that does not start at row 0, poisoned outputs and
    /// fresh random blocks each run.
    #[test]
    fn every_type_and_pass_matches_f64() {
        let (seed, mut rng) = fresh_rng();
        let n = 7;
        for &t in crate::quant::FUSED_TYPES {
            let bs = t.block_size().expect("block") as usize;
            let size = t.type_size().expect("size") as usize;
            let k = 2 * bs.max(256);
            // random blocks, each drawn again until it decodes to finite values (a random f16
            // scale can be an infinity or a NaN)
            let mut bytes = Vec::new();
            let mut w = Vec::new();
            while w.len() < n * k {
                let block: Vec<u8> = (0..size).map(|_| rng.next() as u8).collect();
                let v = dequantize(t, &block, bs).expect("dequantize");
                if v.iter().all(|v| v.is_finite()) {
                    bytes.extend(block);
                    w.extend(v);
                }
            }
            let u = 2f64.powi(-24);
            let gamma = k as f64 * u / (1.0 - k as f64 * u);
            let layouts: &[PackedLayout] = if t == GgmlType::Q6_K {
                &[PackedLayout::Gguf, PackedLayout::Q6kPlanes]
            } else {
                &[PackedLayout::Gguf]
            };
            for &layout in layouts {
                let desc = QuantWeightDesc::of(t, n, k)
                    .and_then(|d| d.with_layout(layout))
                    .expect("shape");
                let words = pack(&bytes, desc).expect("pack");
                let weight = Weight::new(&words, desc).expect("weight");
                for m in [1, 2, 3, 4, 5, 7, 8, 11, 15] {
                    let x: Vec<f32> = (0..m * k).map(|_| rng.unit()).collect();
                    let (r0, r1) = (2, n);
                    let mut out = vec![f32::NAN; (r1 - r0) * m];
                    weight.rows(&x, m, r0, r1, &mut out);
                    for row in r0..r1 {
                        for mi in 0..m {
                            let (xs, ws) = (&x[mi * k..][..k], &w[row * k..][..k]);
                            let p = xs.iter().zip(ws).map(|(&a, &b)| a as f64 * b as f64);
                            let (exact, abs) = p.fold((0.0, 0.0), |(e, a), p| (e + p, a + p.abs()));
                            let got = out[(row - r0) * m + mi] as f64;
                            assert!(
                                (got - exact).abs() <= gamma * abs + 1e-30,
                                "{t} {layout:?} seed {seed} m={m}: y[{mi}, {row}] = {got}, \
                                 f64 {exact}"
                            );
                        }
                    }
                }
            }
            // the int8 product (every layout): against f64 on the rounded activations, within
            // the same bound over `Σ (|w| + 2 |min|) · |x̂|`, `min` with the codes' offset (it
            // subtracts the offsets' and mins' terms from the unsigned codes', which may cancel)
            let blocks = bytes.len() / size;
            let mins: Vec<f32> =
                crate::quant::with_block_decoder!(t, Q => block_mins::<Q>(&bytes, blocks))
                    .unwrap_or_else(|| {
                        let desc = QuantWeightDesc::of(t, n, k).expect("shape");
                        let words = pack(&bytes, desc).expect("pack");
                        let src = q6k::BlockSource::new(&words, desc).expect("Q6_K blocks");
                        block_mins::<crate::quant::decoders::Q6K>(src, blocks)
                    });
            for &layout in layouts {
                let desc = QuantWeightDesc::of(t, n, k)
                    .and_then(|d| d.with_layout(layout))
                    .expect("shape");
                let words = pack(&bytes, desc).expect("pack");
                for m in [1, 2, 3, 7, 13] {
                    let x: Vec<f32> = (0..m * k).map(|_| 4.0 * rng.unit()).collect();
                    let weight = Weight::new(&words, desc).expect("weight");
                    let (run, sub) = weight.runs();
                    let rows = int8::Int8Rows::new(&x, k, run, sub);
                    let xq = rows.values();
                    // `[m, n]` as the caller gets it; the portable product too (the machines
                    // running this take the AVX2 one), `[n, m]`, poisoned first
                    let y = matmul_int8(&x, &words, m, desc).expect("int8 product");
                    let mut yt = vec![f32::NAN; n * m];
                    weight.each(&int8::PortableRows(&rows), 0, n, &mut yt);
                    let products = [("dispatched", y, n, 1), ("portable", yt, 1, m)];
                    for (path, y, mi_stride, row_stride) in products {
                        for row in 0..n {
                            for mi in 0..m {
                                let (xs, ws) = (&xq[mi * k..][..k], &w[row * k..][..k]);
                                let ms = &mins[row * k..][..k];
                                let mut exact = 0.0;
                                let mut abs = 0.0;
                                for i in 0..k {
                                    exact += xs[i] as f64 * ws[i] as f64;
                                    abs += (ws[i].abs() as f64 + 2.0 * ms[i].abs() as f64)
                                        * xs[i].abs() as f64;
                                }
                                let got = y[mi * mi_stride + row * row_stride] as f64;
                                assert!(
                                    (got - exact).abs() <= gamma * abs + 1e-30,
                                    "{t} {layout:?} int8 {path} seed {seed} m={m}: \
                                     y[{mi}, {row}] = {got}, f64 {exact}"
                                );
                            }
                        }
                    }
                }
            }
            // the GPU's interleaved words are refused, with the error that says so
            let il = QuantWeightDesc::new(t, PackedLayout::Interleaved, n, k).expect("shape");
            let words = pack(&bytes, il).expect("pack");
            assert!(
                matches!(
                    Weight::new(&words, il),
                    Err(crate::quant::PackError::CpuLayout { .. })
                ),
                "{t}: interleaved"
            );
        }
    }

    /// Each weight's `|min| + o · |scale|` (its sub-block's; `o` the codes' offset): the terms
    /// the int8 product subtracts from its unsigned codes' (`w = scale · u − (min + o · scale)`),
    /// from GGUF bytes of `Q`'s blocks.
    fn block_mins<Q: BlockDecode>(src: Q::Src<'_>, blocks: usize) -> Vec<f32> {
        let mut out = Vec::new();
        for i in 0..blocks {
            let (mut scale, mut min) = ([0f32; 16], [0f32; 16]);
            Q::scales(Q::block(src, i), &mut scale, &mut min);
            out.extend((0..Q::BLOCK).map(|e| {
                let s = e / Q::SUB;
                min[s].abs() + f32::from(Q::OFFSET) * scale[s].abs()
            }));
        }
        out
    }

    /// Products split over threads (one range per core) give, row for row, the f64 product of
    /// the dequantized weight: each range computed once and written in its place (Q8_0 and
    /// Q6_K).
    #[test]
    fn threaded_products_match_f64() {
        let (seed, mut rng) = fresh_rng();
        let (n, k, m) = (53, 1 << 15, 3);
        let x: Vec<f32> = (0..m * k).map(|_| rng.unit()).collect();
        let q8: Vec<u8> = (0..n * k / 32)
            .flat_map(|_| {
                let mut b = half::f16::from_f32(0.01 + 0.01 * rng.unit().abs())
                    .to_le_bytes()
                    .to_vec();
                b.extend((0..32).map(|_| rng.next() as u8));
                b
            })
            .collect();
        let values: Vec<f32> = (0..n * k).map(|_| rng.unit()).collect();
        let q6: Vec<u8> =
            bytemuck::cast_slice(&q6k::quantize(&values, 0).expect("blocks")).to_vec();
        for (t, bytes) in [(GgmlType::Q8_0, q8), (GgmlType::Q6_K, q6)] {
            let desc = QuantWeightDesc::of(t, n, k).expect("shape");
            let w = dequantize(t, &bytes, n * k).expect("dequantize");
            let y = matmul(&x, &pack(&bytes, desc).expect("pack"), m, desc).expect("product");
            for mi in 0..m {
                for row in 0..n {
                    let (xs, ws) = (&x[mi * k..][..k], &w[row * k..][..k]);
                    let exact: f64 = xs.iter().zip(ws).map(|(&a, &b)| a as f64 * b as f64).sum();
                    let abs: f64 = xs
                        .iter()
                        .zip(ws)
                        .map(|(&a, &b)| (a as f64 * b as f64).abs())
                        .sum();
                    let got = y[mi * n + row] as f64;
                    assert!(
                        (got - exact).abs() <= 1e-5 * abs + 1e-30,
                        "{t} seed {seed} row {row} m {mi}: {got} against {exact}"
                    );
                }
            }
        }
    }
}
