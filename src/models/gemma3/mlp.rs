//! The GELU(tanh)-gated MLP.

use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use crate::nn::GgufLinear;
use crate::ops::Q6kBackend;

/// `down(gelu_tanh(gate(x)) · up(x))`.
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    /// `ffn_gate`.
    pub gate: GgufLinear<B>,
    /// `ffn_up`.
    pub up: GgufLinear<B>,
    /// `ffn_down` (Q6_K in 9 of the 270M model's 18 layers: the fused path).
    pub down: GgufLinear<B>,
}

impl<B: Q6kBackend> Mlp<B> {
    /// Applies the MLP to `[batch, positions, d_model]`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let gate = gelu_tanh(self.gate.forward(x.clone()));
        self.down.forward(gate * self.up.forward(x))
    }
}

/// GELU with the tanh approximation, as Gemma (`gelu_pytorch_tanh`) and ggml's `ggml_gelu` use:
/// `x/2 · (1 + tanh(√(2/π) · (x + 0.044715 x³)))`.
pub fn gelu_tanh<const D: usize, B: Backend>(x: Tensor<B, D>) -> Tensor<B, D> {
    const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;
    let inner =
        (x.clone() + x.clone().powi_scalar(3).mul_scalar(0.044715)).mul_scalar(SQRT_2_OVER_PI);
    x.mul_scalar(0.5) * inner.tanh().add_scalar(1.0)
}
