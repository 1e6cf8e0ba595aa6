//! The CubeCL kernels, written once and compiled at run time to PTX (CUDA), WGSL or SPIR-V
//! (wgpu) and MSL (Metal). Each kernel shares its file with its launch function.

mod decode;
mod dequantize;
mod gemv;

pub use dequantize::q6k_dequantize;
pub use gemv::{ROWS_PER_CUBE, q6k_gemv, q6k_gemv_msl_source};

use burn::tensor::DType;
use burn_cubecl::{CubeRuntime, tensor::CubeTensor};

/// What every kernel needs of a packed weight: 32-bit words (U32, or I32 bit patterns), at
/// least as many as `shape`'s Q6_K bytes fill.
fn check_packed<R: CubeRuntime>(
    packed: &CubeTensor<R>,
    shape: crate::ops::Q6kShape,
) -> Result<(), String> {
    if !matches!(packed.dtype, DType::U32 | DType::I32) {
        return Err(format!(
            "packed weight dtype {:?} is not 32-bit",
            packed.dtype
        ));
    }
    if packed.meta.num_elements() < shape.n_words() {
        return Err(format!(
            "packed weight has {} words, {shape:?} needs {}",
            packed.meta.num_elements(),
            shape.n_words()
        ));
    }
    Ok(())
}
