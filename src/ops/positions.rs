//! [`Positions`]: where an op's positions start, known on the host or read on the device.

use burn::backend::tensor::IntTensor;
use burn::backend::{Backend, Dispatch, ExtensionType};
use burn::tensor::{Int, Tensor};

/// Where the positions of an op's `t` rows start ([`TransformerBackend`](super::TransformerBackend)'s
/// RoPE, attention, cache writes and decoder layer).
///
/// `Device` is what a recorded decoding step needs: its kernels read the position from a device
/// buffer, so a replay of the same launches computes the next position once the buffer moves on
/// (a kernel reading it clamps to its buffers' bounds: the host cannot check the value).
/// Backends without such kernels (Flex, Autodiff's default bodies) read the value back.
#[derive(ExtensionType, Clone, Debug)]
#[extension_type(fusion: cfg(feature = "cube"))]
pub enum Positions<B: Backend> {
    /// From `start`.
    Host {
        /// The first position.
        start: usize,
    },
    /// From `offset[0]`, `offset` one `U32` value on the op's device.
    Device {
        /// The first position.
        offset: IntTensor<B>,
    },
}

impl Positions<Dispatch> {
    /// Positions from the value of `offset`, one `U32` value on the op's device.
    pub fn on_device(offset: Tensor<1, Int>) -> Self {
        Positions::Device {
            offset: offset.into_dispatch(),
        }
    }
}

impl<B: Backend> Positions<B> {
    /// The first position, on the host: a device offset is read back (a sync).
    ///
    /// # Panics
    /// If the offset cannot be read or holds no value.
    pub fn first(self) -> usize {
        match self {
            Positions::Host { start } => start,
            Positions::Device { offset } => {
                let data = burn::tensor::try_read_sync(B::int_into_data(offset))
                    .expect("a position offset read back synchronously")
                    .expect("a position offset read back");
                data.iter::<i64>().next().expect("a position offset value") as usize
            }
        }
    }
}
