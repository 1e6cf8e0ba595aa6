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
    /// Each run of 32 activations rounded to int8, `x̂ = dx · round(x / dx)` with
    /// `dx = max |x| / 127` (ggml's `q8_1` rounding), and multiplied into the weight's codes as
    /// integers, as llama.cpp's CUDA kernels do: fewer instructions per weight. The result is
    /// the product with `x̂` (within f32 rounding), so it differs from the float one by up to
    /// half an activation step per element: `|Σ_k w_k · (x_k − x̂_k)| ≤ Σ_k |w_k| · dx_k / 2`.
    /// The CubeCL kernels, the GGUF and interleaved layouts.
    Int8,
}
