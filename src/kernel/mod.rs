//! The CubeCL kernels, written once and compiled at run time to PTX (CUDA), WGSL or SPIR-V
//! (wgpu) and MSL (Metal). Each kernel shares its file with its launch function.

mod decode;
mod dequantize;
mod gemv;

pub use dequantize::q6k_dequantize;
pub use gemv::{ROWS_PER_CUBE, q6k_gemv, q6k_gemv_msl_source};
