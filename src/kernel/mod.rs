//! The CubeCL kernels, written once and compiled at run time to PTX (CUDA), WGSL or SPIR-V
//! (wgpu) and MSL (Metal). Each kernel shares its file with its launch function.

mod decode;
mod dequantize;
mod gemv;
mod gemv_planes;

pub use dequantize::q6k_dequantize;
pub use gemv::{ROWS_PER_CUBE, q6k_gemv, q6k_gemv_msl_source};
pub use gemv_planes::{PlanesGeometry, PlanesTuning, override_planes_geometry, planes_geometry};

use burn::tensor::DType;
use burn_cubecl::{CubeRuntime, tensor::CubeTensor};

/// What every kernel needs of a packed weight: 32-bit words (U32, or I32 bit patterns), exactly
/// as many as one of the layouts takes for `shape`; returns that layout.
fn check_packed<R: CubeRuntime>(
    packed: &CubeTensor<R>,
    shape: crate::ops::Q6kShape,
) -> Result<crate::quant::Q6kLayout, String> {
    if !matches!(packed.dtype, DType::U32 | DType::I32) {
        return Err(format!(
            "packed weight dtype {:?} is not 32-bit",
            packed.dtype
        ));
    }
    let found = packed.meta.num_elements();
    shape.layout_of(found).ok_or_else(|| {
        format!(
            "packed weight has {found} words; {shape:?} takes {} (GGUF layout) or {} (planes)",
            shape.words_in(crate::quant::Q6kLayout::Gguf),
            shape.words_in(crate::quant::Q6kLayout::Planes)
        )
    })
}
