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

    /// The `(cos, sin)` tables, `[positions, head_dim / 2]` each, as
    /// [`ops::rope`](crate::ops::rope) and [`ops::decoder_layer`](crate::ops::decoder_layer)
    /// take them: pair `i` of a head (elements `i` and `i + head_dim / 2`) at position `p` turns
    /// by the angle whose cosine and sine are `cos[p, i]` and `sin[p, i]`.
    pub fn tables(&self) -> (&Tensor<2>, &Tensor<2>) {
        (&self.cos, &self.sin)
    }
}
