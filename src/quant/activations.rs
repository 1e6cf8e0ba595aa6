//! How a fused product reads its activations.

/// The activations' precision in a fused quantized product.
///
/// ```
/// use burn_gguf::quant::Activations;
/// assert_eq!(Activations::default(), Activations::Float);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Activations {
    /// The activations as given, products and sums in f32: within f32 rounding of f64 math on
    /// the dequantized weights.
    #[default]
    Float,
    /// Each run of activations rounded to int8, `x̂ = dx · round(x / dx)` with
    /// `dx = max |x| / 127`, and multiplied into the weight's codes as integers, as llama.cpp
    /// does: fewer instructions per weight. The result is the product with `x̂` (within f32
    /// rounding), so it differs from the float one by up to half an activation step per
    /// element: `|Σ_k w_k · (x_k − x̂_k)| ≤ Σ_k |w_k| · dx_k / 2`.
    ///
    /// The runs are those of llama.cpp on the same device: 32 activations on the GPU (the
    /// CubeCL kernels, ggml's `q8_1` as its CUDA kernels round), and on the CPU (Flex,
    /// [`crate::cpu::matmul_int8`]) the weight's block, 32 or 256 for the K formats (ggml's
    /// `q8_0` and `q8_K`, as its CPU products round). The kernels take it in the GGUF and
    /// interleaved layouts, the CPU in every layout it reads; both multiply every type's codes
    /// as integers. Where the compiler has no four-way integer dot product (WGSL on wgpu, and
    /// Metal's) the kernels use CubeCL's polyfill: on an H200's Vulkan about as fast as
    /// [`Self::Float`] at one row and about half as fast at eight (PERF.md, sessions 28–30), so
    /// keep `Float` on wgpu through WGSL. With Burn's `vulkan` feature CubeCL compiles the
    /// kernels to SPIR-V on a capable Vulkan adapter, with the device's own dot product: there
    /// the `Int8` kernel is 1.1–1.7× as fast as `Float`'s (an H200, PERF.md session 31), though
    /// Gemma 3's decoding was not faster with it (session 32). Metal was never measured.
    /// Applies to the fused product's rows (up to
    /// [`crate::ops::FUSED_MAX_ROWS`]); larger batches multiply the activations as given.
    Int8,
}
