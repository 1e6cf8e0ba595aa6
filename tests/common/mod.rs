//! Shared helpers of the integration tests: seeded randomness, fixture paths, the Python oracles,
//! and a raw byte builder for malformed files.
#![allow(dead_code)]

#[cfg(any(feature = "wgpu", feature = "cuda"))]
pub mod cube;

use std::path::PathBuf;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

/// SplitMix64: small, fast, good enough for test data.
pub struct Rng(u64);

impl Rng {
    /// A generator seeded from `BURN_GGUF_SEED` or the clock; the seed is printed so a failure
    /// can be replayed.
    pub fn fresh(test: &str) -> Self {
        let seed = std::env::var("BURN_GGUF_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    ^ 0x9E37_79B9_7F4A_7C15
            });
        eprintln!("{test}: seed {seed} (replay with BURN_GGUF_SEED={seed})");
        Rng(seed)
    }

    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u = self.unit().max(1e-300);
        let v = self.unit();
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

/// The repository root: `BURN_GGUF_ROOT` when set (test binaries copied to another machine),
/// else where cargo built them.
pub fn root() -> PathBuf {
    std::env::var_os("BURN_GGUF_ROOT")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

pub fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures").join(name)
}

/// A scratch directory unique to this test process and `name`.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("burn-gguf-test-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The digest `oracle.py` prints: Σ bits[i]·(2i+1) mod 2⁶⁴ over the f32 bit patterns.
pub fn digest(values: &[f32]) -> u64 {
    values.iter().enumerate().fold(0u64, |acc, (i, v)| {
        acc.wrapping_add(u64::from(v.to_bits()).wrapping_mul(2 * i as u64 + 1))
    })
}

/// Whether missing oracles must fail the test (CI sets `BURN_GGUF_REQUIRE_ORACLES=1`).
pub fn oracles_required() -> bool {
    std::env::var("BURN_GGUF_REQUIRE_ORACLES").is_ok_and(|v| v == "1")
}

fn python() -> String {
    std::env::var("BURN_GGUF_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Whether the Python oracles (gguf 0.19, libgguf, numpy) can run. When they cannot, prints a
/// SKIP line, or panics if `BURN_GGUF_REQUIRE_ORACLES=1`.
pub fn oracles_available(test: &str) -> bool {
    let ok = Command::new(python())
        .args(["-c", "import gguf, libgguf, numpy"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            !oracles_required(),
            "{test}: the Python oracles are required (BURN_GGUF_REQUIRE_ORACLES=1) but \
             `{} -c 'import gguf, libgguf, numpy'` failed; pip install gguf==0.19.0 libgguf==0.2.2 numpy",
            python()
        );
        eprintln!("SKIP {test}: Python oracles (gguf, libgguf, numpy) not installed");
    }
    ok
}

/// Runs `oracle.py ARGS`, returning stdout; panics with stderr on failure.
pub fn oracle(args: &[&str]) -> String {
    let script = root().join("tests/oracle/oracle.py");
    let out = Command::new(python())
        .arg(script)
        .args(args)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "oracle.py {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub fn f32_to_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub fn bytes_to_f32(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// Asserts two f32 slices are identical bit for bit, reporting the first difference.
pub fn assert_bits_eq(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    if let Some(i) = (0..got.len()).find(|&i| got[i].to_bits() != want[i].to_bits()) {
        panic!(
            "{what}: element {i} differs: got {} ({:#010x}), want {} ({:#010x})",
            got[i],
            got[i].to_bits(),
            want[i],
            want[i].to_bits()
        );
    }
}

/// The f32 error bound of a k-term dot product, in any summation order (with or without FMA):
/// |fl(Σ x·w) − Σ x·w| ≤ γ_k · Σ|x·w| with γ_k = k·u / (1 − k·u), u = 2⁻²⁴ (Higham, Thm 3.1).
/// The weights are exact (every dequantized value is an f32), so this is the whole error of the
/// fused kernels and of an f32 matmul. A matmul that first rounds both inputs to a shorter format
/// with unit roundoff `u_in` (TF32 on CUDA tensor cores) adds at most 2·u_in (+ its square) per
/// product. An f16 output adds its rounding, half an f16 ulp: 2⁻¹¹·|y|.
pub fn bound(k: usize, abs_sum: f64, y: f64, f16_out: bool, u_in: f64) -> f64 {
    let u = 2f64.powi(-24);
    let gamma = k as f64 * u / (1.0 - k as f64 * u);
    let b = (gamma + 2.0 * u_in + u_in * u_in) * abs_sum;
    if f16_out {
        b + 2f64.powi(-11) * (y.abs() + b) + 6e-8
    } else {
        b + 1e-30
    }
}

/// Checks `got[m, n]` against f64 math on `x[m, k]` and the dequantized weight `deq[n, k]`,
/// within [`bound`].
#[allow(clippy::too_many_arguments)]
pub fn check_product(
    what: &str,
    got: &[f32],
    x: &[f32],
    deq: &[f32],
    (n, k): (usize, usize),
    m: usize,
    f16_out: bool,
    u_in: f64,
) {
    assert_eq!(got.len(), m * n, "{what}: output length");
    for mi in 0..m {
        for ni in 0..n {
            let (mut exact, mut abs) = (0f64, 0f64);
            for ki in 0..k {
                let p = x[mi * k + ki] as f64 * deq[ni * k + ki] as f64;
                exact += p;
                abs += p.abs();
            }
            let g = got[mi * n + ni] as f64;
            let tol = bound(k, abs, exact, f16_out, u_in);
            assert!(
                (g - exact).abs() <= tol,
                "{what}: y[{mi}, {ni}] = {g}, f64 says {exact} (tolerance {tol:e})"
            );
        }
    }
}

/// Builds GGUF bytes field by field, valid or not, for the malformed-file corpus.
#[derive(Clone, Default)]
pub struct Raw(pub Vec<u8>);

impl Raw {
    pub fn header(version: u32, n_tensors: u64, n_kv: u64) -> Self {
        let mut r = Raw(b"GGUF".to_vec());
        r.u32(version).u64(n_tensors).u64(n_kv);
        r
    }
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }
    pub fn str(&mut self, s: &[u8]) -> &mut Self {
        self.u64(s.len() as u64).bytes(s)
    }
    /// A key with a u32 value.
    pub fn kv_u32(&mut self, key: &str, v: u32) -> &mut Self {
        self.str(key.as_bytes()).u32(4).u32(v)
    }
    /// A tensor info.
    pub fn tensor(&mut self, name: &str, dims: &[u64], ty: u32, offset: u64) -> &mut Self {
        self.str(name.as_bytes()).u32(dims.len() as u32);
        for &d in dims {
            self.u64(d);
        }
        self.u32(ty).u64(offset)
    }
    /// Zero padding up to a multiple of `align`.
    pub fn pad(&mut self, align: usize) -> &mut Self {
        while !self.0.len().is_multiple_of(align) {
            self.0.push(0);
        }
        self
    }
    pub fn zeros(&mut self, n: usize) -> &mut Self {
        self.0.resize(self.0.len() + n, 0);
        self
    }
}

/// The scripts' cache: `$BURN_GGUF_CACHE`, else `$XDG_CACHE_HOME/burn-gguf`, else
/// `~/.cache/burn-gguf`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("BURN_GGUF_CACHE") {
        return dir.into();
    }
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache")
        })
        .join("burn-gguf")
}

/// The Gemma-3 270M Q4_K_M file (`BURN_GGUF_GEMMA`, else the cache `scripts/fetch-gemma.sh`
/// fills), or `None` with a SKIP line; with `BURN_GGUF_REQUIRE_GEMMA=1` a missing file fails.
pub fn gemma_path(test: &str) -> Option<PathBuf> {
    let path = std::env::var_os("BURN_GGUF_GEMMA")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache_dir().join("gemma-3-270m-q4_k_m.gguf"));
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var("BURN_GGUF_REQUIRE_GEMMA").as_deref() != Ok("1"),
        "{test}: BURN_GGUF_REQUIRE_GEMMA=1 but {} is missing (run scripts/fetch-gemma.sh)",
        path.display()
    );
    eprintln!(
        "SKIP {test}: {} not found (run scripts/fetch-gemma.sh, or set BURN_GGUF_GEMMA)",
        path.display()
    );
    None
}

/// The directory `scripts/fetch-llama-vocab.sh` fills with llama.cpp's SPM vocab-only GGUFs and
/// their `.inp`/`.out` test vectors (`BURN_GGUF_LLAMA_VOCAB`, else the cache), or `None` with a
/// SKIP line; with `BURN_GGUF_REQUIRE_VOCAB=1` a missing directory fails.
pub fn llama_vocab_dir(test: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("BURN_GGUF_LLAMA_VOCAB")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache_dir().join("llama-vocab"));
    if dir.join("ggml-vocab-llama-spm.gguf").exists() {
        return Some(dir);
    }
    assert!(
        std::env::var("BURN_GGUF_REQUIRE_VOCAB").as_deref() != Ok("1"),
        "{test}: BURN_GGUF_REQUIRE_VOCAB=1 but {} is missing (run scripts/fetch-llama-vocab.sh)",
        dir.display()
    );
    eprintln!(
        "SKIP {test}: {} not found (run scripts/fetch-llama-vocab.sh, or set BURN_GGUF_LLAMA_VOCAB)",
        dir.display()
    );
    None
}

/// The values of a float tensor of any dtype, as f32.
#[cfg(feature = "backend")]
pub fn floats<const D: usize>(t: burn::tensor::Tensor<D>) -> Vec<f32> {
    t.into_data()
        .try_into_vec_as::<f32>()
        .expect("float values")
}

/// Fills the device's memory pool with NaN buffers of `len` floats, so an output a kernel
/// forgets to write reads as NaN.
#[cfg(feature = "backend")]
pub fn poison(len: usize, device: &burn::tensor::Device) {
    for _ in 0..2 {
        let _ = floats(burn::tensor::Tensor::<1>::full([len], f32::NAN, device));
    }
}

/// The first CUDA device when `BURN_GGUF_CUDA=1` (the GPU machine), else `None` after a SKIP
/// line: a CUDA build may run where there is no NVIDIA GPU.
#[cfg(feature = "cuda")]
pub fn cuda_device() -> Option<burn::tensor::Device> {
    if std::env::var("BURN_GGUF_CUDA").as_deref() == Ok("1") {
        return Some(burn::tensor::Device::cuda(0usize));
    }
    eprintln!("SKIP cuda tests: set BURN_GGUF_CUDA=1 on a machine with an NVIDIA GPU");
    None
}

/// The default wgpu device, if it can run a tensor op; else `None` with a SKIP line. Without any
/// Vulkan/Metal/DX12 driver (not even lavapipe) wgpu panics, so the probe runs under
/// `catch_unwind`. With `BURN_GGUF_REQUIRE_WGPU=1` a missing adapter fails the test.
#[cfg(feature = "wgpu")]
pub fn wgpu_device(test: &str) -> Option<burn::tensor::Device> {
    use burn::tensor::{Device, DeviceKind, Tensor};
    let device = Device::wgpu(DeviceKind::DefaultDevice);
    // Read the values back: `into_data` alone may leave the read (and the failure) lazy.
    let probe = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        Tensor::<1>::zeros([1], &device)
            .into_data()
            .try_into_vec::<f32>()
            .map(|v| v.len())
    }));
    if matches!(probe, Ok(Ok(1))) {
        return Some(device);
    }
    assert!(
        std::env::var("BURN_GGUF_REQUIRE_WGPU").as_deref() != Ok("1"),
        "{test}: BURN_GGUF_REQUIRE_WGPU=1 but no wgpu adapter is available (install mesa-vulkan-drivers)"
    );
    eprintln!("SKIP {test}: no wgpu adapter (no GPU and no lavapipe)");
    None
}
