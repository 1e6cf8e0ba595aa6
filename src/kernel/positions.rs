//! Where a kernel's positions start ([`Start`]): a number known when the kernel is launched, or
//! one the kernel reads from a device buffer, so that a recorded launch (a CUDA graph of a whole
//! decoding step) replays unchanged while the position moves on.

use burn::tensor::DType;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;

use super::KernelError;

/// The first position of a kernel's rows: `start`, plus `offset[0]` where `offset` (one `U32`
/// value on the kernel's device) is given. A kernel reading a device offset clamps what it reads
/// and writes to its buffers' bounds (positions past them are not checked on the host).
#[derive(Clone, Debug)]
pub struct Start {
    /// Added to the offset, or the first position itself.
    pub start: usize,
    /// A one-element `U32` tensor the kernel adds to `start`.
    pub offset: Option<CubeTensor>,
}

impl Start {
    /// Positions from `start`, known on the host.
    pub fn at(start: usize) -> Self {
        Start {
            start,
            offset: None,
        }
    }

    /// Positions from `offset[0]`, read on the device.
    pub fn on_device(offset: CubeTensor) -> Self {
        Start {
            start: 0,
            offset: Some(offset),
        }
    }

    /// Whether the kernel reads the position on the device (the host cannot bound it).
    pub(super) fn is_on_device(&self) -> bool {
        self.offset.is_some()
    }

    /// Checks the offset (one `U32` value on `like`'s device).
    pub(super) fn check(&self, like: &CubeTensor) -> Result<(), KernelError> {
        match &self.offset {
            Some(o) if o.meta.num_elements() != 1 || o.dtype != DType::U32 => {
                Err(KernelError::Offset {
                    shape: o.meta.shape().to_vec(),
                    dtype: o.dtype,
                })
            }
            Some(o) if o.device != like.device => Err(KernelError::Device),
            _ => Ok(()),
        }
    }

    /// The offset as a kernel argument (`.into()` a `ComptimeOption<&[u32]>`).
    pub(super) fn offset_arg(&self) -> Option<BufferArg> {
        self.offset
            .clone()
            .map(|o| burn_cubecl::kernel::into_contiguous(o).into_buffer_arg())
    }
}

/// `start + offset[0]` (the offset absent: `start`).
#[cube]
pub(super) fn first_position(start: usize, offset: ComptimeOption<&[u32]>) -> usize {
    let extra: ComptimeOption<usize> = offset.map(|o| o[0] as usize);
    start + extra.unwrap_or_else(|| 0usize)
}
