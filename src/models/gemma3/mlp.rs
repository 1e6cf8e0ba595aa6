//! The GELU(tanh)-gated MLP.

use burn::module::Module;
use burn::tensor::Tensor;

use crate::nn::GgufLinear;

/// `down(gelu_tanh(gate(x)) · up(x))`.
#[derive(Module, Debug)]
pub struct Mlp {
    /// `ffn_gate`.
    pub gate: GgufLinear,
    /// `ffn_up`.
    pub up: GgufLinear,
    /// `ffn_down` (Q6_K in 9 of the 270M model's 18 layers: the fused path).
    pub down: GgufLinear,
}

impl Mlp {
    /// Applies the MLP to `[batch, positions, d_model]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let gate = gelu_tanh(self.gate.forward(x.clone()));
        self.down.forward(gate * self.up.forward(x))
    }
}

/// GELU with the tanh approximation, as Gemma (`gelu_pytorch_tanh`) and ggml's `ggml_gelu` use:
/// `x/2 · (1 + tanh(√(2/π) · (x + 0.044715 x³)))`.
pub fn gelu_tanh<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;
    let inner =
        (x.clone() + x.clone().powi_scalar(3).mul_scalar(0.044715)).mul_scalar(SQRT_2_OVER_PI);
    x.mul_scalar(0.5) * inner.tanh().add_scalar(1.0)
}
