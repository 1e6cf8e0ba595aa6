//! RMS norm of each row, scaled by a weight, as ggml's CPU `rms_norm` then `mul` compute it.

use crate::quant::PackError;

/// `y[r, i] = (x[r, i] · s_r) · w[i]` with `s_r = 1 / √(Σ_i x[r, i]² / d + eps)` over the rows
/// of `x` (`d = w.len()` values each; `x.len()` must be a multiple of it). The sum of squares is
/// accumulated in f64 and the rest in f32, as in ggml.
pub fn rms_norm(x: &[f32], w: &[f32], eps: f64) -> Result<Vec<f32>, PackError> {
    let d = w.len();
    let rows = x.len().checked_div(d).unwrap_or(0);
    super::check_input(x, rows, d)?;
    let mut y = vec![0f32; x.len()];
    for (xs, ys) in x.chunks_exact(d).zip(y.chunks_exact_mut(d)) {
        rms_norm_row(xs, w, eps, ys);
    }
    Ok(y)
}

/// One row of [`rms_norm`]: `y[i] = (x[i] · s) · w[i]` (three slices of one length).
pub(crate) fn rms_norm_row(x: &[f32], w: &[f32], eps: f64, y: &mut [f32]) {
    let sum: f64 = x.iter().map(|&v| f64::from(v * v)).sum();
    let scale = 1.0 / ((sum / x.len() as f64) as f32 + eps as f32).sqrt();
    for ((y, &v), &w) in y.iter_mut().zip(x).zip(w) {
        *y = (v * scale) * w;
    }
}
