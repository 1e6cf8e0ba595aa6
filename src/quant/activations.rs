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
    /// The CubeCL kernels take it in the GGUF and interleaved layouts; the CPU (Flex) rounds the
    /// activations the same way and multiplies them with its float product, so both give these
    /// values. Applies to the fused product's rows (up to [`crate::ops::FUSED_MAX_ROWS`]); larger
    /// batches multiply the activations as given.
    Int8,
}

impl Activations {
    /// Replaces `x` (whole runs of 32: rows of whole blocks) by the activations a product
    /// reading them as `self` multiplies: unchanged for [`Activations::Float`]; for
    /// [`Activations::Int8`] each run by `dx · q`, `q = round(x · 127 / max |x|)` in −127..=127
    /// and `dx = max |x| / 127` (the kernels' rounding), a run of zeros staying zeros and a run
    /// holding an infinity or a NaN becoming NaNs (as every product it enters would be). A
    /// trailing part of `x` shorter than a run is left as it is.
    #[cfg(any(feature = "flex", test))]
    pub(crate) fn round(self, x: &mut [f32]) {
        if self == Activations::Float {
            return;
        }
        for run in x.chunks_exact_mut(32) {
            let amax = run.iter().fold(0f32, |a, v| a.max(v.abs()));
            let dx = if run.iter().all(|v| v.is_finite()) {
                amax / 127.0
            } else {
                f32::NAN
            };
            let inv = if amax > 0.0 { 127.0 / amax } else { 0.0 };
            for v in run {
                *v = dx * (*v * inv).round().clamp(-127.0, 127.0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Activations;

    /// Runs with a known rounding (`dx · (q + u)`, one element at ±127 · dx, `|u| ≤ 0.4`), a run
    /// of zeros and a run holding a NaN, an infinity or both; and the float reading unchanged.
    #[test]
    fn int8_rounding_is_the_kernels() {
        let (seed, mut rng) = crate::cpu::tests::fresh_rng();
        let mut next = || rng.next();
        let (mut x, mut want) = (Vec::new(), Vec::new());
        for run in 0..6 {
            let dx = 2f32.powi((next() % 12) as i32 - 9);
            let peak = (next() % 32) as usize;
            for i in 0..32 {
                let (q, u) = if i == peak {
                    (if run % 2 == 0 { 127.0 } else { -127.0 }, 0.0)
                } else {
                    let q = (next() % 253) as f32 - 126.0;
                    (q, ((next() >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.8)
                };
                x.push((q + u) * dx);
                want.push(q * dx);
            }
        }
        x.extend([0f32; 32]);
        want.extend([0f32; 32]);
        let mut odd = vec![1f32; 32];
        odd[(next() % 32) as usize] = [f32::NAN, f32::INFINITY][(next() % 2) as usize];
        x.extend(&odd);
        let given = x.clone();
        Activations::Float.round(&mut x);
        let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&x), bits(&given), "seed {seed}");
        Activations::Int8.round(&mut x);
        assert_eq!(&x[..want.len()], &want[..], "seed {seed}");
        let last = &x[want.len()..];
        assert!(last.iter().all(|v| v.is_nan()), "seed {seed}: {last:?}");
    }
}
