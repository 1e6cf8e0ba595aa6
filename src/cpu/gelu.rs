//! Gemma's gated activation, `gelu_tanh(gate) · up`.

use crate::quant::PackError;

/// √(2/π), GELU's tanh approximation's factor.
pub const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;
/// The cubic term's coefficient of GELU's tanh approximation.
pub const GELU_CUBIC: f64 = 0.044715;

/// `g/2 · (1 + tanh(√(2/π) · (g + 0.044715 g³))) · up`, element-wise, in f32.
pub fn gelu_mul(gate: &[f32], up: &[f32]) -> Result<Vec<f32>, PackError> {
    super::check_input(up, 1, gate.len())?;
    Ok(gate
        .iter()
        .zip(up)
        .map(|(&g, &u)| gelu_mul_one(g, u))
        .collect())
}

/// One value of [`gelu_mul`].
#[inline]
pub(crate) fn gelu_mul_one(g: f32, u: f32) -> f32 {
    let (k, c) = (SQRT_2_OVER_PI as f32, GELU_CUBIC as f32);
    let inner = ((g + (g * g * g) * c) * k).clamp(-10.0, 10.0);
    (g * 0.5) * (inner.tanh() + 1.0) * u
}
