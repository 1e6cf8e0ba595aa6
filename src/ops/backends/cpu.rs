//! The CPU path of the Q6_K ops: threaded, reading the Q6_K blocks directly (one 256-weight block
//! decoded at a time, never a dequantized copy of the whole weight), f32 accumulation.
//!
//! The slice functions are also the reference the GPU kernels are tested against; the generic
//! functions move tensors of any backend to the host and back (the default methods of
//! [`super::super::Q6kBackend`], and NdArray's implementation).

use burn::tensor::backend::Backend;
use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{Shape, TensorData, TensorMetadata, read_sync};

use std::borrow::Cow;

use super::cpu_fused::BlockSource;
use crate::ops::{Q6kShape, packed_blocks, with_last_dim, words_from_data};
use crate::quant::{BlockQ6K, QK_K};

/// The weight's blocks, whatever the packed layout; panics with the reason on a malformed buffer
/// (the op's contract: `packed` comes from [`crate::ops::pack`]).
fn blocks(words: &[u32], shape: Q6kShape) -> Cow<'_, [BlockQ6K]> {
    packed_blocks(words, shape).unwrap_or_else(|e| panic!("{e}"))
}

/// Splits `0..n` into at most one contiguous range per available core.
pub(crate) fn for_each_range(n: usize, f: impl Fn(usize, usize) + Sync) {
    let threads = crate::quant::thread_count(0, n.div_ceil(8));
    let per = n.div_ceil(threads).max(1);
    std::thread::scope(|s| {
        for start in (0..n).step_by(per) {
            let f = &f;
            s.spawn(move || f(start, (start + per).min(n)));
        }
    });
}

/// `y[m, n] = Σ_k x[m, k] · W[n, k]` on the CPU; `x` is `m × in_features`, row-major; `words`
/// in either layout (see [`super::cpu_fused`]).
pub fn matmul_slices(x: &[f32], words: &[u32], m: usize, shape: Q6kShape) -> Vec<f32> {
    let w = BlockSource::new(words, shape).unwrap_or_else(|e| panic!("{e}"));
    super::cpu_fused::matmul(x, w, m, shape)
}

/// `g_x[m, k] = Σ_n g_y[m, n] · W[n, k]` on the CPU; `g_y` is `m × out_features`.
pub fn matmul_t_slices(grad_y: &[f32], words: &[u32], m: usize, shape: Q6kShape) -> Vec<f32> {
    let (n, k, nb) = (
        shape.out_features,
        shape.in_features,
        shape.blocks_per_row(),
    );
    assert_eq!(grad_y.len(), m * n, "grad_y length");
    let blocks = blocks(words, shape);
    // Each thread owns a range of block columns: it reads W[.., b] for all rows and accumulates
    // into g_x[.., 256b..256b+256], which no other thread touches.
    let mut gx = vec![0f32; m * k];
    let gx_ptr = SendPtr(gx.as_mut_ptr());
    for_each_range(nb, |b0, b1| {
        let mut w = [0f32; QK_K];
        let mut acc = vec![0f32; m * (b1 - b0) * QK_K];
        let width = (b1 - b0) * QK_K;
        for row in 0..n {
            for b in b0..b1 {
                blocks[row * nb + b].dequantize_into(&mut w);
                for mi in 0..m {
                    let g = grad_y[mi * n + row];
                    let dst = &mut acc[mi * width + (b - b0) * QK_K..][..QK_K];
                    for (d, &wv) in dst.iter_mut().zip(&w) {
                        *d += g * wv;
                    }
                }
            }
        }
        for mi in 0..m {
            // SAFETY: threads write disjoint column ranges of g_x.
            let dst = unsafe {
                std::slice::from_raw_parts_mut(gx_ptr.get().add(mi * k + b0 * QK_K), width)
            };
            dst.copy_from_slice(&acc[mi * width..][..width]);
        }
    });
    gx
}

/// The whole weight as `[out_features, in_features]` f32 (bit-exact with ggml).
pub fn dequantize_slices(words: &[u32], shape: Q6kShape) -> Vec<f32> {
    let mut out = vec![0f32; shape.out_features * shape.in_features];
    crate::quant::q6k::dequantize_into(&blocks(words, shape), &mut out);
    out
}

/// `Σ a[i]·b[i]` over two slices of one length, eight partial sums as [`dot`].
#[inline]
pub(crate) fn dot_slices(a: &[f32], b: &[f32]) -> f32 {
    let mut s = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (ca, cb) in ca.zip(cb) {
        for i in 0..8 {
            s[i] += ca[i] * cb[i];
        }
    }
    ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7])) + tail
}

#[derive(Clone, Copy)]
pub(crate) struct SendPtr(pub(crate) *mut f32);
// SAFETY: only used to hand disjoint sub-slices of one buffer to scoped threads.
unsafe impl Send for SendPtr {}
// SAFETY: as above.
unsafe impl Sync for SendPtr {}
impl SendPtr {
    pub(crate) fn get(self) -> *mut f32 {
        self.0
    }
}

fn host_words<B: Backend>(packed: IntTensor<B>) -> Vec<u32> {
    words_from_data(&read_sync(B::int_into_data(packed)).expect("read the packed Q6_K weight"))
}

fn host_f32<B: Backend>(x: FloatTensor<B>) -> (Vec<f32>, Shape, burn::tensor::DType) {
    let (shape, dtype) = (x.shape(), x.dtype());
    let data = read_sync(B::float_into_data(x))
        .expect("read activations")
        .convert::<f32>();
    (data.into_vec::<f32>().expect("f32 data"), shape, dtype)
}

/// Runs a slice product on the host: `input` `[.., inner]` to `[.., out_last]`.
fn on_host<B: Backend>(
    input: FloatTensor<B>,
    packed: IntTensor<B>,
    shape: Q6kShape,
    (inner, out_last): (usize, usize),
    f: fn(&[f32], &[u32], usize, Q6kShape) -> Vec<f32>,
) -> FloatTensor<B> {
    let device = B::float_device(&input);
    let (values, in_shape, dtype) = host_f32::<B>(input);
    assert_eq!(
        in_shape.num_dims().checked_sub(1).map(|i| in_shape[i]),
        Some(inner),
        "the input's last dim must be {inner}"
    );
    let rows = values.len() / inner;
    let out = f(&values, &host_words::<B>(packed), rows, shape);
    let data = TensorData::new(out, with_last_dim(&in_shape, out_last)).convert_dtype(dtype);
    B::float_from_data(data, &device)
}

/// [`super::super::Q6kBackend::q6k_matmul`] on the host, for any backend.
pub fn matmul<B: Backend>(
    x: FloatTensor<B>,
    packed: IntTensor<B>,
    shape: Q6kShape,
) -> FloatTensor<B> {
    on_host::<B>(
        x,
        packed,
        shape,
        (shape.in_features, shape.out_features),
        matmul_slices,
    )
}

/// [`super::super::Q6kBackend::q6k_matmul_t`] on the host, for any backend.
pub fn matmul_t<B: Backend>(
    grad_y: FloatTensor<B>,
    packed: IntTensor<B>,
    shape: Q6kShape,
) -> FloatTensor<B> {
    on_host::<B>(
        grad_y,
        packed,
        shape,
        (shape.out_features, shape.in_features),
        matmul_t_slices,
    )
}

/// [`super::super::Q6kBackend::q6k_dequantize`] on the host, for any backend.
pub fn dequantize<B: Backend>(packed: IntTensor<B>, shape: Q6kShape) -> FloatTensor<B> {
    let device = B::int_device(&packed);
    let w = dequantize_slices(&host_words::<B>(packed), shape);
    B::float_from_data(
        TensorData::new(w, [shape.out_features, shape.in_features]),
        &device,
    )
}
