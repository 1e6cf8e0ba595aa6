//! The GELU(tanh)-gated MLP.

use burn::module::Module;
use burn::tensor::Tensor;

use crate::nn::GgufLinear;

/// `down(gelu_tanh(gate(x)) · up(x))`, the gating one fused op ([`crate::ops::gelu_mul`]).
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
        let gated = crate::ops::gelu_mul(self.gate.forward(x.clone()), self.up.forward(x));
        self.down.forward(gated)
    }
}
