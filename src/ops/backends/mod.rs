//! One file per backend family: `cpu` (the default methods' host path, also NdArray's), `cube`
//! (the CubeCL backend: wgpu, CUDA, Metal), `fusion` (Burn's fusion wrapper), `autodiff`.

#[cfg(feature = "autodiff")]
mod autodiff;
pub mod cpu;
mod cpu_fused;
#[cfg(feature = "cube")]
mod cube;
#[cfg(feature = "cube")]
mod fusion;
#[cfg(feature = "ndarray")]
mod ndarray;
