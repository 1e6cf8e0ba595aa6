//! Kernel times from the runtime's device timers, where it has them: wgpu with timestamp
//! queries (Vulkan, Metal, DX12). CubeCL 0.10's CUDA runtime times on the host, so CUDA kernel
//! times come from Nsight Compute instead (`scripts/gpu-perf.sh ncu`).

use burn::tensor::backend::Backend;

/// Device-side timing of the GPU work a closure submits.
pub trait DeviceTimer: Backend {
    /// The device time of `f`'s work in seconds, or `None` where the runtime times on the host.
    fn device_time(_device: &Self::Device, _f: &mut (dyn FnMut() + Send)) -> Option<f64> {
        None
    }
}

#[cfg(feature = "ndarray")]
impl DeviceTimer for burn::backend::NdArray {}

#[cfg(any(feature = "wgpu", feature = "cuda"))]
impl<R, F, I, BT> DeviceTimer for burn_cubecl::CubeBackend<R, F, I, BT>
where
    R: burn_cubecl::CubeRuntime,
    F: burn_cubecl::FloatElement,
    I: burn_cubecl::IntElement,
    BT: burn_cubecl::BoolElement,
{
    fn device_time(device: &Self::Device, f: &mut (dyn FnMut() + Send)) -> Option<f64> {
        let client = R::client(device);
        if client.properties().timing_method != cubecl::profile::TimingMethod::Device {
            return None;
        }
        let (_, d) = client.profile(f, "q6k").ok()?;
        Some(
            cubecl::future::block_on(d.resolve())
                .duration()
                .as_secs_f64(),
        )
    }
}
