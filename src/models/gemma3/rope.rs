//! NEOX-style ("rotate half") rotary position embedding, with angles computed as ggml does.

use burn::tensor::{Device, Tensor, TensorData};

/// cos/sin tables for a run of positions, shaped `[1, 1, positions, head_dim / 2]`.
#[derive(Clone, Debug)]
pub struct RopeTables {
    cos: Tensor<4>,
    sin: Tensor<4>,
}

impl RopeTables {
    /// Tables for positions `start .. start + len`: pair `i` of a head rotates by
    /// `scale · pos · base^(−2i/head_dim)`, the angle computed as ggml's `rope_cache_init` does
    /// (f32, each pair's frequency the previous one's times `base^(−2/head_dim)`), so the
    /// rounding matches llama.cpp's.
    pub fn new(
        start: usize,
        len: usize,
        head_dim: usize,
        base: f32,
        scale: f32,
        device: &Device,
    ) -> Self {
        let half = head_dim / 2;
        let theta_scale = base.powf(-2.0 / head_dim as f32);
        let (mut cos, mut sin) = (
            Vec::with_capacity(len * half),
            Vec::with_capacity(len * half),
        );
        for pos in start..start + len {
            let mut theta = pos as f32;
            for _ in 0..half {
                let angle = scale * theta;
                cos.push(angle.cos());
                sin.push(angle.sin());
                theta *= theta_scale;
            }
        }
        let shape = [1, 1, len, half];
        RopeTables {
            cos: Tensor::from_data(TensorData::new(cos, shape), device),
            sin: Tensor::from_data(TensorData::new(sin, shape), device),
        }
    }

    /// Rotates `x` (`[batch, heads, positions, head_dim]`): element `i` of the first half pairs
    /// with element `i` of the second half.
    pub fn apply(&self, x: Tensor<4>) -> Tensor<4> {
        let half = x.dims()[3] / 2;
        let x1 = x.clone().narrow(3, 0, half);
        let x2 = x.narrow(3, half, half);
        let (cos, sin) = (self.cos.clone(), self.sin.clone());
        let lo = x1.clone() * cos.clone() - x2.clone() * sin.clone();
        let hi = x1 * sin + x2 * cos;
        Tensor::cat(vec![lo, hi], 3)
    }
}
