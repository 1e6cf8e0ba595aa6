//! Shared by the examples: the device `--backend` names, and the one taken when it is not given.

use std::fmt;

use burn::tensor::Device;
#[cfg(any(feature = "wgpu", feature = "metal"))]
use burn::tensor::DeviceKind;

/// The backends this build has (one cargo feature each).
const BUILT: &[&str] = &[
    #[cfg(feature = "cuda")]
    "cuda",
    #[cfg(feature = "metal")]
    "metal",
    #[cfg(feature = "wgpu")]
    "wgpu",
    #[cfg(feature = "flex")]
    "flex",
];

/// The device an example runs on, and why it was taken.
pub struct Picked {
    /// The backend's name, as `--backend` spells it.
    pub name: &'static str,
    /// The device.
    pub device: Device,
    /// Why: asked for, or which rule of the automatic choice.
    pub why: &'static str,
}

impl fmt::Display for Picked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {:?}", self.name, self.why, self.device)
    }
}

/// The device `asked` names (`cuda`, `wgpu`, `flex`; `metal` too where built), each needing its
/// cargo feature. Without `asked`: CUDA where the `cuda` feature is built (an opt-in feature,
/// so building it says it is wanted; likewise `metal`), else a real GPU through wgpu where the
/// machine has one (a discrete or integrated adapter; a software one such as lavapipe does not
/// count), else Flex on the CPU.
pub fn device(asked: Option<&str>) -> Result<Picked, String> {
    match asked {
        Some(name) => named(name),
        None => automatic(),
    }
}

fn named(name: &str) -> Result<Picked, String> {
    let asked = |backend: &'static str, device: Device| Picked {
        name: backend,
        device,
        why: "asked for",
    };
    match name {
        #[cfg(feature = "cuda")]
        "cuda" => Ok(asked("cuda", Device::cuda(0))),
        #[cfg(feature = "metal")]
        "metal" => Ok(asked("metal", Device::metal(DeviceKind::DefaultDevice))),
        #[cfg(feature = "wgpu")]
        "wgpu" => Ok(asked("wgpu", Device::wgpu(DeviceKind::DefaultDevice))),
        #[cfg(feature = "flex")]
        "flex" => Ok(asked("flex", Device::flex())),
        other if matches!(other, "cuda" | "metal" | "wgpu" | "flex") => Err(format!(
            "backend {other:?} is not built in: build with --features {other} \
             (this build has {})",
            built()
        )),
        other => Err(format!(
            "unknown backend {other:?}: cuda, wgpu or flex (this build has {})",
            built()
        )),
    }
}

fn built() -> String {
    if BUILT.is_empty() {
        "none".into()
    } else {
        BUILT.join(", ")
    }
}

/// Why Flex was taken.
#[cfg(feature = "flex")]
const FLEX_WHY: &str = if cfg!(feature = "wgpu") {
    "the CPU: wgpu found no GPU adapter (software ones such as lavapipe do not count)"
} else {
    "the CPU"
};

/// The rules of the automatic choice, `(name, why, device if it applies)`; the first that
/// applies wins.
type Rule = (&'static str, &'static str, fn() -> Option<Device>);

fn automatic() -> Result<Picked, String> {
    let rules: &[Rule] = &[
        #[cfg(feature = "cuda")]
        ("cuda", "the `cuda` feature is built", || {
            Some(Device::cuda(0))
        }),
        #[cfg(feature = "metal")]
        ("metal", "the `metal` feature is built", || {
            Some(Device::metal(DeviceKind::DefaultDevice))
        }),
        #[cfg(feature = "wgpu")]
        ("wgpu", "a GPU adapter found through wgpu", wgpu_gpu),
        #[cfg(feature = "flex")]
        ("flex", FLEX_WHY, || Some(Device::flex())),
        // Without Flex, wgpu's own choice, which may be a software adapter.
        #[cfg(feature = "wgpu")]
        (
            "wgpu",
            "no GPU adapter found, and Flex is not built",
            || Some(Device::wgpu(DeviceKind::DefaultDevice)),
        ),
    ];
    rules
        .iter()
        .find_map(|&(name, why, device)| device().map(|device| Picked { name, device, why }))
        .ok_or_else(|| "no backend is built: build with --features flex, wgpu or cuda".to_string())
}

/// The first discrete, else integrated, GPU adapter wgpu lists, if any. Listing only asks the
/// graphics APIs for their adapters (nothing is opened, nothing panics); a software rasterizer
/// such as lavapipe lists as a CPU adapter and is left out.
#[cfg(feature = "wgpu")]
fn wgpu_gpu() -> Option<Device> {
    let listed = Device::enumerate(burn::tensor::DeviceType::Wgpu);
    [DeviceKind::DiscreteGpu(0), DeviceKind::IntegratedGpu(0)]
        .into_iter()
        .map(Device::wgpu)
        .find(|gpu| listed.contains(gpu))
}

/// Keeps the kernels CubeCL compiles in its on-disk cache (CubeCL's `persistence`, which the
/// `cuda` feature builds; autotune results are kept there by default), so that a later process
/// loads them instead of compiling again. A `cubecl.toml` and CubeCL's environment variables
/// still apply, except that this turns the kernel cache on. Call before the first device.
#[cfg(feature = "cuda")]
pub fn cache_compiled_kernels() {
    use cubecl::config::{CubeClRuntimeConfig, RuntimeConfig};
    let mut config = CubeClRuntimeConfig::from_current_dir().override_from_env();
    config.compilation.cache = true;
    CubeClRuntimeConfig::try_set(config);
}
