//! Choosing the next token where the logits are ([`sample_token`]): the uniform draw it picks
//! with ([`Draw`]), known on the host or read from a device table, and the default body of
//! [`TransformerBackend::sample_token`](super::TransformerBackend::sample_token) (the logits
//! read back and [`pick`] on the host).

use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{Backend, Dispatch, ExtensionType, TensorMetadata};
use burn::tensor::{Int, Tensor, TensorData, try_read_sync};

use super::TransformerBackend;
use crate::cpu::sampling::{TokenSampling, pick};

/// The uniform draw in `[0, 1)` a token is picked with.
///
/// `Device` is what a recorded decoding step needs: the draw is `uniforms[index[0]]`, so a
/// replay of the same launches picks with the next draw once the index moves on (the decoder's
/// position serves). A kernel clamps the index to the table.
#[derive(ExtensionType, Clone, Debug)]
#[extension_type(fusion: cfg(feature = "cube"))]
pub enum Draw<B: Backend> {
    /// `value` itself.
    Host {
        /// The draw.
        value: f32,
    },
    /// `uniforms[index[0]]`: `uniforms` `F32` values, `index` one `U32` value, on the op's
    /// device.
    Device {
        /// The table of draws.
        uniforms: FloatTensor<B>,
        /// Which one.
        index: IntTensor<B>,
    },
}

impl Draw<Dispatch> {
    /// The draw `uniforms[index[0]]` (`index` one `U32` value).
    pub fn on_device(uniforms: Tensor<1>, index: Tensor<1, Int>) -> Self {
        Draw::Device {
            uniforms: uniforms.into_dispatch(),
            index: index.into_dispatch(),
        }
    }
}

impl<B: Backend> Draw<B> {
    /// The draw, on the host: a device table is read back (a sync).
    ///
    /// # Panics
    /// If the table or the index cannot be read, or either is empty.
    pub fn value(self) -> f32 {
        match self {
            Draw::Host { value } => value,
            Draw::Device { uniforms, index } => {
                let index = try_read_sync(B::int_into_data(index))
                    .expect("an index read synchronously")
                    .expect("an index read");
                let at = index.iter::<i64>().next().expect("an index") as usize;
                let table: Vec<f32> = try_read_sync(B::float_into_data(uniforms))
                    .expect("draws read synchronously")
                    .expect("draws read")
                    .try_into_vec_as::<f32>()
                    .expect("f32 draws");
                table[at.min(table.len() - 1)]
            }
        }
    }
}

/// [`TransformerBackend::sample_token`]'s default body: the logits read back and [`pick`] on
/// the host.
pub(super) fn pick_on_host<B: Backend>(
    logits: FloatTensor<B>,
    draw: Draw<B>,
    sampling: TokenSampling,
) -> IntTensor<B> {
    let device = logits.device();
    let values: Vec<f32> = try_read_sync(B::float_into_data(logits))
        .expect("logits read synchronously")
        .expect("logits read")
        .try_into_vec_as::<f32>()
        .expect("f32 logits");
    let r = if sampling.is_greedy() {
        0.0
    } else {
        draw.value()
    };
    let token = pick(&values, sampling, f64::from(r));
    B::int_from_data(TensorData::new(vec![token], [1]), &device)
}

/// The token chosen from `logits` `[n]` with `sampling` and `draw`, as a `[1]` `U32` tensor on
/// their device: [`pick`]'s choice (see
/// [`TransformerBackend::sample_token`](super::TransformerBackend::sample_token)). On the GPU
/// nothing is read back, and greedy settings or a top-k of 1..=[`MAX_DEVICE_TOP_K`] are what it
/// takes; Flex and Autodiff pick on the host from any settings.
///
/// ```
/// # #[cfg(feature = "flex")] {
/// use burn::tensor::{Device, Tensor};
/// use burn_gguf::cpu::sampling::TokenSampling;
/// use burn_gguf::ops::{Draw, sample_token};
/// let device = Device::flex();
/// let logits = || Tensor::<1>::from_floats([0.0, 2.0, 1.0, 2.0], &device);
/// let greedy = sample_token(logits(), TokenSampling::GREEDY, Draw::Host { value: 0.0 });
/// assert_eq!(greedy.into_data().iter::<i64>().next(), Some(1)); // the first maximum
/// // top-k 2 at temperature 1: tokens 1 and 3, one half each; a draw of 0.75 takes the second
/// let two = TokenSampling { top_k: 2, temperature: 1.0, top_p: 1.0 };
/// let token = sample_token(logits(), two, Draw::Host { value: 0.75 });
/// assert_eq!(token.into_data().iter::<i64>().next(), Some(3));
/// # }
/// ```
///
/// [`MAX_DEVICE_TOP_K`]: crate::cpu::sampling::MAX_DEVICE_TOP_K
pub fn sample_token(
    logits: Tensor<1>,
    sampling: TokenSampling,
    draw: Draw<Dispatch>,
) -> Tensor<1, Int> {
    let token =
        <Dispatch as TransformerBackend>::sample_token(logits.into_dispatch(), draw, sampling);
    Tensor::from_dispatch(token)
}
