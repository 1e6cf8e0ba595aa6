//! Kernel times from the runtime's device timers, where it has them: wgpu with timestamp queries
//! (Vulkan, Metal, DX12) and, since CubeCL 0.11, CUDA (a pair of events recorded in the stream).
//! A runtime without them (wgpu on an adapter without timestamp queries) times on the host, and
//! the benchmark reports no `kernel` mode there. Nsight Compute around this binary stays the
//! reference for CUDA (`scripts/gpu-perf.sh ncu`): an event is stamped when the stream reaches
//! it, so the host's launch of the kernel after the window opened on an idle stream falls inside
//! the window.

/// Whether `device`'s runtime times profiling windows on the device.
#[cfg(feature = "cube")]
pub fn has_device_timer(device: &cubecl::Device) -> bool {
    device.client().properties().timing_method == cubecl::profile::TimingMethod::Device
}

/// The device time, in seconds, of the GPU work `f` submits on `device`; `None` where the runtime
/// times on the host, the window could not be opened, or it measured nothing.
#[cfg(feature = "cube")]
pub fn device_time(device: &cubecl::Device, f: impl FnOnce() + Send) -> Option<f64> {
    if !has_device_timer(device) {
        return None;
    }
    let client = device.client();
    let (_, duration) = client.profile(f, "burn_gguf::quant_matmul").ok()?;
    let ticks = cubecl::future::block_on(duration.resolve())?;
    Some(ticks.duration().as_secs_f64())
}
