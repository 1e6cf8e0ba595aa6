//! The GELU(tanh)-gated MLP's weights.

use burn::module::Module;

use crate::nn::GgufLinear;

/// `down(gelu_tanh(gate(x)) · up(x))`'s weights; [`Block`](super::Block)'s layer runs it as
/// part of one [`ops::decoder_layer`](crate::ops::decoder_layer), the gating one fused op
/// ([`ops::gelu_mul`](crate::ops::gelu_mul)).
#[derive(Module, Debug)]
pub struct Mlp {
    /// `ffn_gate`.
    pub gate: GgufLinear,
    /// `ffn_up`.
    pub up: GgufLinear,
    /// `ffn_down` (Q6_K in 9 of the 270M model's 18 layers: the fused path).
    pub down: GgufLinear,
}
