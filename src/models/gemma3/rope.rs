//! NEOX-style ("rotate half") rotary position embedding over device tables.

use burn::tensor::{Device, Tensor, TensorData};

/// cos/sin tables of positions `0..positions` on a device, `[positions, head_dim / 2]`
/// ([`crate::ops::rope_tables`]: ggml's angles and rounding), read in place by
/// [`crate::ops::rope`]: a decoding step uploads nothing for RoPE.
#[derive(Clone, Debug)]
pub struct RopeTables {
    cos: Tensor<2>,
    sin: Tensor<2>,
}

impl RopeTables {
    /// Tables for positions `0..positions`: pair `i` rotates by `scale · pos · base^(−2i/head_dim)`.
    pub fn new(positions: usize, head_dim: usize, base: f32, scale: f32, device: &Device) -> Self {
        let (cos, sin) = crate::ops::rope_tables(positions, head_dim, base, scale);
        let shape = [positions, head_dim / 2];
        RopeTables {
            cos: Tensor::from_data(TensorData::new(cos, shape), device),
            sin: Tensor::from_data(TensorData::new(sin, shape), device),
        }
    }

    /// Positions the tables cover.
    pub fn positions(&self) -> usize {
        self.cos.dims()[0]
    }

    /// Rotates `x` (`[batch, positions, heads, head_dim]`, positions `start..`): element `i` of
    /// a head's first half pairs with element `i` of its second half.
    pub fn apply(&self, x: Tensor<4>, start: usize) -> Tensor<4> {
        crate::ops::rope(x, self.cos.clone(), self.sin.clone(), start)
    }
}
