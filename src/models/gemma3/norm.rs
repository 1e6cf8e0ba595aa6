//! RMS norm with a stored weight (Gemma's `1 + w` already folded in by the converter).

use burn::module::{Module, Param};
use burn::tensor::Tensor;

/// `y = x / √(mean(x²) + ε) · w` over the last dim.
#[derive(Module, Debug)]
pub struct RmsNorm {
    /// The scale, as stored in the file.
    pub weight: Param<Tensor<1>>,
    /// ε.
    pub eps: f64,
}

impl RmsNorm {
    /// Normalizes over the last dim: one fused op ([`crate::ops::rms_norm`]).
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        crate::ops::rms_norm(x, self.weight.val(), self.eps)
    }
}
