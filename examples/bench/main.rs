//! `bench`: times the quantized matmul of each GGUF type (`--types`, Q6_K by default) the way a
//! model calls it (through the Burn op), against baselines measured in the same run: device copy
//! bandwidth, dense f32 and f16 matmuls on the same shape, and "dequantize to f16, then matmul"
//! (what a user without this crate would do).
//!
//! ```text
//! cargo run --release --example bench -- --backend flex
//! cargo run --release --example bench --features cuda -- --backend cuda --csv bench.csv --plot bench.png
//! cargo run --release --example bench -- --plot all.png --plot-from bench-cuda.csv,bench-wgpu.csv
//! ```
//!
//! Per case it prints the median of `--iters` timed calls (after warm-up) and the 10th–90th
//! percentile spread, in two modes: `call` (one op then a device sync: what one decode step pays,
//! host overhead included) and `stream` (`--iters` ops back to back, one sync: the device-side
//! throughput, close to the kernel time when the host enqueues faster than the device runs).
//! With `--no-fusion` (and for `--sweep`), a third mode, `kernel`, is the op's device time from
//! the runtime's own timers where it has them (wgpu with timestamp queries; CUDA events since
//! CubeCL 0.11: `device_timer.rs`; `--no-kernel-times` skips it). Its window opens on an idle
//! stream, so it also counts the host's work between the window's start and the launch (15–30 µs
//! an op on CUDA): an upper bound, far above the kernel's own time where that is tens of µs.
//! Nsight Compute around this binary is the reference for CUDA kernel times
//! (`scripts/gpu-kernel-times.sh`, every type beside ggml's kernels). Weight copies
//! rotate so that their total exceeds the GPU's L2 (`--l2-mb`, 50 for an H100), unless
//! `--same-buffer` (ggml's test-backend-ops way). GB/s counts each variant's own weight bytes
//! (the quantized blocks, or the dense f32/f16 matrix); "% of copy" compares it with the copy
//! bandwidth measured at the start.

use std::io::Write;
use std::time::Instant;

use burn::tensor::{Device, Distribution, FloatDType, Int, Tensor, TensorData};
use burn_gguf::ops::{quant_dequantize, quant_matmul, upload_words};
use burn_gguf::quant::{
    Activations, BlockQ6K, FUSED_TYPES, GgmlType, PackedLayout, QuantWeightDesc, pack, q6k,
};
use clap::Parser;

mod blocks;
mod device_timer;
mod plot;
mod png;

#[derive(Parser)]
#[command(name = "bench", about = "quantized matmul benchmark (burn-gguf)")]
struct Args {
    /// Runtime: flex (the CPU), wgpu, cuda or metal (each needs its cargo feature).
    #[arg(long, default_value = "wgpu")]
    backend: String,
    /// Shapes as NxK (out x in features), comma-separated. K must be a multiple of each type's
    /// block (32 for Q4_0 … Q8_0, 256 for the K types); a shape a type cannot take is skipped
    /// for it. Gemma-3 270M's vocabulary projection is 262144x640 (Q8_0 in its Q4_K_M file).
    #[arg(
        long,
        default_value = "4096x4096,4096x14336,14336x4096,640x2048,262144x768"
    )]
    shapes: String,
    /// GGUF types to time, comma-separated ggml names (q4_0, q4_1, q5_0, q5_1, q8_0, q2_k,
    /// q3_k, q4_k, q5_k, q6_k) or `all`. Q6_K's weight is random values through ggml's
    /// quantizer, in the layouts of `--layouts`; the other types' are random blocks (random codes
    /// and sub-block scales, moderate f16 scales), in the GGUF layout.
    #[arg(long, default_value = "q6_k")]
    types: String,
    /// Device layouts to time, comma-separated: `planes` (Q6_K's aligned planes,
    /// `PackedLayout::Q6kPlanes`: its default layout and kernel), `gguf` (the GGUF bytes as
    /// words, `PackedLayout::Gguf`) and `interleaved` (`PackedLayout::Interleaved`). Each type is
    /// timed in those of the listed layouts it has, and in the GGUF layout if it has none of them.
    #[arg(long, default_value = "planes")]
    layouts: String,
    /// How the op reads its activations, comma-separated: `float` (`quant::Activations::Float`)
    /// and `int8` (`quant::Activations::Int8`, timed as `<variant>_int8`, in the layouts that
    /// take it).
    #[arg(long, default_value = "float")]
    activations: String,
    /// Also time the fused kernel of every variant, on the backend without fusion, with these
    /// launch geometries, as `ROWSxWARPS[xUNITS][w][p][gGROUPS][i]` (rows and warps per cube, 1..=8; `i`:
    /// int8 activations, `quant::Activations::Int8`, the generic kernel's layouts; the
    /// planes kernel also reads units loaded per iteration, 1 or 2, `w`: the dequantized-weights
    /// path even at M = 1, `p`: pipelined loads), comma-separated (a tuning run: e.g. `2x4,4x4x2,4x4w,4x1p`). Each is passed to
    /// `burn_gguf::kernel::quant_gemv` as an explicit `PlanesTuning`, except `default` (and a
    /// lone `i`, int8), which leaves the geometry to the kernel; M above the fused kernel's limit
    /// (`kernel::MAX_ROWS`) is skipped. CubeCL runtimes only.
    #[arg(long)]
    sweep: Option<String>,
    /// Activation rows, comma-separated.
    #[arg(long, default_value = "1,2,4,8,16,64,512")]
    m: String,
    /// Milliseconds of compute-bound device work at least before each case is timed (ten times
    /// as long after an idle stretch: start-up, a shape's setup on the CPU), continued until the
    /// work runs at full speed again, so that the GPU's clocks are up; then 5 warm-up calls. 0
    /// under a profiler; not used on the CPU (flex).
    #[arg(long, default_value_t = 300)]
    warm_up_ms: u128,
    /// Timed iterations per case.
    #[arg(long, default_value_t = 50)]
    iters: usize,
    /// Rotate weight copies until their total exceeds this many MB (the L2 cache).
    #[arg(long, default_value_t = 50)]
    l2_mb: usize,
    /// Time one weight buffer only (cache-resident where it fits).
    #[arg(long)]
    same_buffer: bool,
    /// Also time the op on the runtime's backend without Burn's fusion (`<type>_nofusion`: Burn's
    /// `CubeBackend` on tensors built by hand, through `QuantBackend::quant_matmul`): the
    /// difference is the fusion layer's share of the host overhead. Where the runtime has device
    /// timers, also the op's kernel time (mode `kernel`). Flex has no fusion layer: nothing to add.
    #[arg(long)]
    no_fusion: bool,
    /// Skip the `kernel` mode (device timers) of `--no-fusion` and `--sweep`: each variant then
    /// launches exactly 11 times with `--iters 1` (5 warm-up, 1 call, 5 stream), as a profiler
    /// script counting launches expects.
    #[arg(long)]
    no_kernel_times: bool,
    /// Skip the dense and dequantize baselines.
    #[arg(long)]
    no_baselines: bool,
    /// Write every measurement as CSV here.
    #[arg(long)]
    csv: Option<std::path::PathBuf>,
    /// Write the PNG plot here (time and % of copy bandwidth against M, per shape).
    #[arg(long)]
    plot: Option<std::path::PathBuf>,
    /// Plot these CSVs (comma-separated, e.g. one per runtime) into `--plot` instead of running.
    #[arg(long)]
    plot_from: Option<String>,
}

struct Stat {
    median_us: f64,
    p10_us: f64,
    p90_us: f64,
}

fn stat(mut t: Vec<f64>) -> Stat {
    t.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| t[((t.len() - 1) as f64 * q).round() as usize] * 1e6;
    Stat {
        median_us: at(0.5),
        p10_us: at(0.1),
        p90_us: at(0.9),
    }
}

/// Where a case runs: Burn's tensor API on a device (fused on the GPU runtimes: Burn's `Cube`
/// backend is `Fusion<CubeBackend>` in this crate's GPU builds), or Burn's CubeCL backend
/// *without* fusion on the same runtime device, through `CubeTensor`s built by hand.
#[derive(Clone)]
enum Target {
    Burn(Device),
    #[cfg(feature = "cube")]
    Unfused(cubecl::Device),
}

impl Target {
    /// Waits for the device's queued work.
    fn sync(&self) {
        match self {
            Target::Burn(device) => device.sync().expect("sync"),
            #[cfg(feature = "cube")]
            Target::Unfused(device) => cube::sync(device),
        }
    }

    /// Which warm-up record this target keeps (fusion runs its own matmul).
    fn kind(&self) -> &'static str {
        match self {
            Target::Burn(_) => "burn",
            #[cfg(feature = "cube")]
            Target::Unfused(_) => "cube-unfused",
        }
    }

    /// One warm-up round: 8 matmuls of 1024² f32 on this target, then a sync.
    fn heater(&self) -> Box<dyn FnMut() + '_> {
        match self {
            Target::Burn(device) => {
                let a = Tensor::<2>::ones([1024, 1024], device).mul_scalar(0.001);
                Box::new(move || {
                    let outs: Vec<_> = (0..8).map(|_| a.clone().matmul(a.clone())).collect();
                    device.sync().expect("sync");
                    drop(outs);
                })
            }
            #[cfg(feature = "cube")]
            Target::Unfused(device) => {
                let a = cube::upload(device, &vec![0.001f32; 1 << 20], &[1024, 1024], cube::F32);
                Box::new(move || {
                    let outs: Vec<_> = (0..8).map(|_| cube::matmul(a.clone(), a.clone())).collect();
                    cube::sync(device);
                    drop(outs);
                })
            }
        }
    }
}

/// The runtime device of `device` when it is a CubeCL one (wgpu, CUDA, Metal), as the target
/// without fusion: the same `cubecl::Device`, hence the same client, memory and kernel caches.
#[cfg(feature = "cube")]
#[allow(unreachable_patterns)]
fn unfused_target(device: &Device) -> Option<Target> {
    match device.as_dispatch() {
        burn::backend::DispatchDevice::Cube(d) => Some(Target::Unfused(d.clone())),
        _ => None,
    }
}

/// No CubeCL runtime in this build: no target without fusion.
#[cfg(not(feature = "cube"))]
fn unfused_target(_device: &Device) -> Option<Target> {
    None
}

/// Burn's CubeCL backend without fusion, on `CubeTensor`s built by hand from a `cubecl::Device`
/// (a fused build's tensors are Fusion tensors; `Tensor::try_into_primitive` does not give a
/// bare `CubeBackend` primitive there).
#[cfg(feature = "cube")]
mod cube {
    use burn::backend::Backend;
    use burn::backend::ops::FloatTensorOps;
    use burn::tensor::{DType, Distribution, FloatDType, Scalar, Shape};
    use burn_cubecl::CubeBackend;
    use burn_cubecl::tensor::CubeTensor;

    pub const F32: DType = DType::F32;
    pub const U32: DType = DType::U32;

    /// `values` uploaded as a contiguous tensor of `shape` and `dtype` (`T` must be `dtype`'s
    /// element type: the bytes are taken as they are).
    pub fn upload<T: bytemuck::Pod>(
        device: &cubecl::Device,
        values: &[T],
        shape: &[usize],
        dtype: DType,
    ) -> CubeTensor {
        let client = device.client();
        let handle = client.create_from_slice(bytemuck::cast_slice(values));
        CubeTensor::new_contiguous(client, device.clone(), Shape::from(shape), handle, dtype)
    }

    pub fn sync(device: &cubecl::Device) {
        <CubeBackend as Backend>::sync(device).expect("sync");
    }

    pub fn matmul(a: CubeTensor, b: CubeTensor) -> CubeTensor {
        CubeBackend::float_matmul(a, b)
    }

    pub fn random_normal(device: &cubecl::Device, n: usize) -> CubeTensor {
        CubeBackend::float_random(
            Shape::from([n]),
            Distribution::Normal(0.0, 1.0),
            device,
            FloatDType::F32,
        )
    }

    pub fn mul_scalar(a: CubeTensor, s: f64) -> CubeTensor {
        CubeBackend::float_mul_scalar(a, Scalar::from(s))
    }
}

/// Keeps the device busy with compute-bound work (1024² f32 matmuls, whose speed follows the SM
/// clock) for at least `ms` milliseconds and then until the clock is back up: until the fastest
/// rounds of the last two 200 ms windows agree within 5 % and are within 10 % of the fastest
/// round this target has run in this process (at most 15 s, with a note; Burn's fusion runs its
/// own matmul, so the fused and the unfused target each keep their own best). An idle GPU drops
/// its SM clock within seconds; an H100 under Vulkan fell to 345 MHz during a shape's CPU-side
/// setup and, under load, stayed there about 1.5 s before taking another 5 s to climb back to
/// 1,980 MHz in steps of 6–50 % (`nvidia-smi` sampled every 100 ms), so a fixed warm-up timed
/// kernels mid-climb. CUDA kept its clock up in the same runs.
fn heat(target: &Target, ms: u128) {
    static BEST: std::sync::Mutex<Vec<(&'static str, f64)>> = std::sync::Mutex::new(Vec::new());
    if ms == 0 {
        return;
    }
    let mut run_round = target.heater();
    let t0 = Instant::now();
    let (mut last, mut window_min, mut window_start) =
        (f64::INFINITY, f64::INFINITY, Instant::now());
    loop {
        let round = Instant::now();
        run_round();
        window_min = window_min.min(round.elapsed().as_secs_f64());
        if window_start.elapsed().as_millis() < 200 {
            continue;
        }
        let best = {
            let mut bests = BEST.lock().expect("best");
            let name = target.kind();
            let i = match bests.iter().position(|(n, _)| *n == name) {
                Some(i) => i,
                None => {
                    bests.push((name, f64::INFINITY));
                    bests.len() - 1
                }
            };
            bests[i].1 = bests[i].1.min(window_min);
            bests[i].1
        };
        let settled =
            window_min <= last * 1.05 && last <= window_min * 1.05 && window_min <= best * 1.1;
        (last, window_min, window_start) = (window_min, f64::INFINITY, Instant::now());
        if t0.elapsed().as_millis() >= ms && settled {
            return;
        }
        if t0.elapsed().as_secs() >= 15 {
            eprintln!("note: the device's speed did not settle within 15 s of warm-up");
            return;
        }
    }
}

/// How much longer than `--warm-up-ms` the device is heated at least after an idle stretch
/// (start-up, a shape's CPU-side setup), when its clock has dropped furthest.
const AFTER_IDLE: u128 = 10;

/// Times `f` on `target` (`call` mode: each run synced; `stream` mode: `iters` runs, one sync, 5
/// repeats). The outputs are kept until after the sync: with Burn's fusion, an output dropped
/// unused may never be computed.
fn time<T>(
    target: &Target,
    iters: usize,
    warm_up_ms: u128,
    mut f: impl FnMut(usize) -> T,
) -> (Stat, Stat) {
    let mut keep = Vec::with_capacity(iters);
    heat(target, warm_up_ms);
    for i in 0..5 {
        keep.push(f(i));
    }
    target.sync();
    keep.clear();
    let mut calls = Vec::with_capacity(iters);
    for i in 0..iters {
        let t0 = Instant::now();
        let out = f(i);
        target.sync();
        calls.push(t0.elapsed().as_secs_f64());
        drop(out);
    }
    let mut streams = Vec::new();
    for _ in 0..5 {
        let t0 = Instant::now();
        for i in 0..iters {
            keep.push(f(i));
        }
        target.sync();
        streams.push(t0.elapsed().as_secs_f64() / iters as f64);
        keep.clear();
    }
    (stat(calls), stat(streams))
}

/// The device time of `launch(i)`'s kernels, one call at a time (`None` where the runtime has no
/// device timers).
#[cfg(feature = "cube")]
fn kernel_time(
    device: &cubecl::Device,
    iters: usize,
    mut launch: impl FnMut(usize) + Send,
) -> Option<Stat> {
    let mut ts = Vec::new();
    for i in 0..iters {
        ts.push(device_timer::device_time(device, || launch(i))?);
    }
    (!ts.is_empty()).then(|| stat(ts))
}

struct Row {
    shape: String,
    m: usize,
    variant: String,
    mode: &'static str,
    s: Stat,
    weight_bytes: usize,
}

/// Device copy bandwidth, read + write, in GB/s: `y = x · 1.0001` over a 128 MiB f32 tensor on
/// `target`, the runtime's backend *without* Burn's fusion (which merges the elementwise ops of a
/// stream that share an input into one kernel: one read for many writes, a rate above the
/// hardware's). Every op reads all of `x` and writes a new output, kept alive until the sync.
fn copy_bandwidth(target: &Target, warm_up_ms: u128) -> Row {
    // 128 MiB in and out: 2.5× an H100's L2, and within the 128 MiB storage binding that WebGPU
    // guarantees (256 MiB failed on lavapipe).
    let n_copy = 32 << 20;
    let copy = match target {
        Target::Burn(device) => {
            let src = Tensor::<1>::random([n_copy], Distribution::Normal(0.0, 1.0), device);
            let (_, copy) = time(target, 10, warm_up_ms * AFTER_IDLE, |_| {
                src.clone().mul_scalar(1.0001)
            });
            copy
        }
        #[cfg(feature = "cube")]
        Target::Unfused(device) => {
            let src = cube::random_normal(device, n_copy);
            let (_, copy) = time(target, 10, warm_up_ms * AFTER_IDLE, |_| {
                cube::mul_scalar(src.clone(), 1.0001)
            });
            copy
        }
    };
    Row {
        shape: "-".into(),
        m: 0,
        variant: "copy".into(),
        mode: "stream",
        s: copy,
        weight_bytes: 2 * 4 * n_copy,
    }
}

/// GB/s of a row's bytes.
fn gbs(r: &Row) -> f64 {
    r.weight_bytes as f64 / (r.s.median_us * 1e-6) / 1e9
}

/// One `--sweep` entry, `ROWSxWARPS[xUNITS][w][p][gN][i]`, as the tuning passed to the kernel
/// (`None`, the kernel's own choice, for `default` and a lone `i`).
#[cfg(feature = "cube")]
fn parse_geometry(geometry: &str) -> (Option<burn_gguf::kernel::PlanesTuning>, Activations) {
    // `i` (last): int8 activations (the generic kernel's layouts); `gN`: N row groups per warp
    // (the generic kernel); `w`: the dequantized-weights path even for one row; `p`: pipelined
    // loads.
    let (geometry, activations) = match geometry.strip_suffix('i') {
        Some(g) => (g, Activations::Int8),
        None => (geometry, Activations::Float),
    };
    if geometry.is_empty() || geometry == "default" {
        return (None, activations);
    }
    let (geometry, groups) = match geometry.split_once('g') {
        Some((g, n)) => (g, n.parse().expect("--sweep ...gN: N row groups")),
        None => (geometry, 0),
    };
    let dims = geometry.trim_end_matches(['w', 'p']);
    let suffix = &geometry[dims.len()..];
    let v: Vec<usize> = dims
        .split('x')
        .map(|v| v.parse().expect("--sweep ROWSxWARPS[xUNITS][w][p]"))
        .collect();
    let rows = v[0];
    let warps = v.get(1).copied().unwrap_or(0);
    let per_iter = v.get(2).copied().unwrap_or(1);
    // The kernel ignores a tuning out of these ranges (it takes its default geometry), which
    // would time the default under the tuning's name.
    assert!(
        v.len() <= 3
            && (1..=8).contains(&rows)
            && (1..=8).contains(&warps)
            && (1..=4).contains(&per_iter),
        "--sweep {geometry:?}: ROWSxWARPS[xUNITS] with rows and warps in 1..=8, units 1..=4 (the planes kernel: 1 or 2)"
    );
    let tuning = burn_gguf::kernel::PlanesTuning {
        rows,
        warps,
        per_iter,
        weights_path: suffix.contains('w'),
        pipeline: suffix.contains('p'),
        groups,
    };
    (Some(tuning), activations)
}

/// The unfused operands of one case: the activations and one variant's weight copies, as
/// `CubeTensor`s on the runtime device.
#[cfg(feature = "cube")]
struct Unfused {
    device: cubecl::Device,
    target: Target,
    x: burn_cubecl::tensor::CubeTensor,
    w: Vec<burn_cubecl::tensor::CubeTensor>,
    desc: QuantWeightDesc,
    /// The variant's name (`q6k`, `q8_0`, …).
    name: String,
}

#[cfg(feature = "cube")]
impl Unfused {
    /// `--no-fusion`: the op through `QuantBackend` on Burn's `CubeBackend` (fused kernel up to
    /// `FUSED_MAX_ROWS` rows, dequantize + matmul above), timed and, where the runtime has device
    /// timers, its kernel time.
    fn op(
        &self,
        args: &Args,
        record: &mut impl FnMut(&str, usize, (Stat, Stat)),
        kernels: &mut Vec<(String, usize, Stat)>,
    ) {
        use burn_cubecl::CubeBackend;
        use burn_gguf::ops::QuantBackend;
        let (x, w, desc) = (&self.x, &self.w, self.desc);
        let name = format!("{}_nofusion", self.name);
        record(
            &name,
            desc.n_bytes(),
            time(&self.target, args.iters, args.warm_up_ms, |i| {
                <CubeBackend as QuantBackend>::quant_matmul(
                    x.clone(),
                    w[i % w.len()].clone(),
                    desc,
                    Activations::Float,
                )
            }),
        );
        if args.no_kernel_times {
            return;
        }
        let launch = |i: usize| {
            let _ = <CubeBackend as QuantBackend>::quant_matmul(
                x.clone(),
                w[i % w.len()].clone(),
                desc,
                Activations::Float,
            );
        };
        if let Some(s) = kernel_time(&self.device, args.iters, launch) {
            kernels.push((name, desc.n_bytes(), s));
        }
    }

    /// `--sweep`: the fused kernel with each forced geometry, timed without fusion (the fusion
    /// layer's host cost varies from run to run on wgpu), with the kernel time where the runtime
    /// has device timers.
    fn sweep(
        &self,
        args: &Args,
        sweep: &str,
        record: &mut impl FnMut(&str, usize, (Stat, Stat)),
        kernels: &mut Vec<(String, usize, Stat)>,
    ) {
        use burn_gguf::kernel::{PlanesTuning, quant_gemv};
        let (x, w, desc) = (&self.x, &self.w, self.desc);
        // Every geometry's result against the simplest one's (one row, one warp, one group, one
        // item per iteration): they differ only in how the partial sums meet.
        let values = |y| {
            burn_cubecl::ops::into_data_sync(y)
                .convert::<f32>()
                .try_into_vec::<f32>()
                .expect("f32 values")
        };
        let single = PlanesTuning {
            rows: 1,
            warps: 1,
            per_iter: 1,
            weights_path: false,
            pipeline: false,
            groups: 1,
        };
        let reference = quant_gemv(
            x.clone(),
            w[0].clone(),
            desc,
            Activations::Float,
            Some(single),
        )
        .map(values);
        for geometry in sweep.split(',') {
            let (t, activations) = parse_geometry(geometry.trim());
            // A combination the kernels refuse (int8 activations on the planes layout) is
            // skipped, said once.
            if let Err(e) = quant_gemv(x.clone(), w[0].clone(), desc, activations, t) {
                println!("skip {} {geometry}: {e}", self.name);
                continue;
            }
            if let Ok(reference) = &reference {
                let y = quant_gemv(x.clone(), w[0].clone(), desc, activations, t);
                let y = values(y.expect("runs"));
                let scale = reference.iter().fold(0f32, |a, v| a.max(v.abs()));
                let diff = y
                    .iter()
                    .zip(reference)
                    .fold(0f32, |a, (p, q)| a.max((p - q).abs()));
                let bad = y.iter().filter(|v| !v.is_finite()).count();
                println!(
                    "check {} {geometry}: max |y - y(1x1x1g1)| / max |y| = {:.2e}, {bad} not finite",
                    self.name,
                    diff / scale
                );
            }
            let shape = match t {
                Some(t) => format!(
                    "r{}w{}u{}g{}{}{}",
                    t.rows,
                    t.warps,
                    t.per_iter,
                    t.groups,
                    if t.weights_path { "_wt" } else { "" },
                    if t.pipeline { "_p" } else { "" },
                ),
                None => "default".into(),
            };
            let int8 = if activations == Activations::Int8 {
                "_i8"
            } else {
                ""
            };
            let name = format!("{}_{shape}{int8}", self.name);
            let gemv = |i: usize| {
                quant_gemv(x.clone(), w[i % w.len()].clone(), desc, activations, t)
                    .unwrap_or_else(|e| panic!("--sweep {geometry}: {e}"))
            };
            record(
                &name,
                desc.n_bytes(),
                time(&self.target, args.iters, args.warm_up_ms, &gemv),
            );
            if args.no_kernel_times {
                continue;
            }
            let launch = |i: usize| {
                let _ = gemv(i);
            };
            if let Some(s) = kernel_time(&self.device, args.iters, launch) {
                // said at once too, so that a run cut short keeps what it measured
                println!("swept {name}: kernel {:.1} us", s.median_us);
                kernels.push((name, desc.n_bytes(), s));
            }
        }
    }
}

/// A variant's name: the type's (Q6_K's planes `q6k`, its GGUF layout `q6k_gguf_layout`), with
/// `_interleaved` for that layout.
fn variant_name(d: QuantWeightDesc) -> String {
    match (d.ggml_type, d.layout) {
        (GgmlType::Q6_K, PackedLayout::Q6kPlanes) => "q6k".into(),
        (GgmlType::Q6_K, PackedLayout::Gguf) => "q6k_gguf_layout".into(),
        (t, PackedLayout::Interleaved) => format!("{}_interleaved", t.name()),
        (t, _) => t.name(),
    }
}

fn run(args: &Args, device: &Device, runtime: &str) -> Vec<Row> {
    let target = Target::Burn(device.clone());
    let unfused = unfused_target(device);
    let copy = copy_bandwidth(unfused.as_ref().unwrap_or(&target), args.warm_up_ms);
    let copy_gbs = gbs(&copy);
    println!("{runtime}: copy bandwidth (read + write, no fusion) {copy_gbs:.0} GB/s");
    let mut rows = vec![copy];
    let layouts: Vec<PackedLayout> = args
        .layouts
        .split(',')
        .map(|l| match l.trim() {
            "planes" => PackedLayout::Q6kPlanes,
            "gguf" => PackedLayout::Gguf,
            "interleaved" => PackedLayout::Interleaved,
            other => panic!("--layouts: {other:?} is none of planes, gguf, interleaved"),
        })
        .collect();
    if unfused.is_none() && args.no_fusion {
        println!("{runtime}: no fusion layer on this backend, --no-fusion adds nothing");
    }
    if unfused.is_none() && args.sweep.is_some() {
        println!("{runtime}: --sweep needs a CubeCL runtime (wgpu, cuda, metal), skipped");
    }
    if unfused.is_none() && args.no_kernel_times {
        println!("{runtime}: no kernel mode on this backend, --no-kernel-times changes nothing");
    }
    #[cfg(feature = "cube")]
    if let Some(Target::Unfused(d)) = &unfused
        && (args.no_fusion || args.sweep.is_some())
        && !args.no_kernel_times
        && !device_timer::has_device_timer(d)
    {
        println!("{runtime}: the runtime has no device timers, no kernel mode");
    }

    // f16 baselines only where the backend has f16: ask the device, then probe once, quietly.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let f16_ok = device.supports_dtype(FloatDType::F16)
        && std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let t = Tensor::<2>::ones([2, 2], device).cast(FloatDType::F16);
            let _ = t.clone().matmul(t).into_data();
        }))
        .is_ok();
    std::panic::set_hook(hook);
    if !f16_ok {
        println!("{runtime}: no f16 support, the f16 baselines are skipped");
    }
    let ms: Vec<usize> = args
        .m
        .split(',')
        .map(|s| s.trim().parse().expect("--m"))
        .collect();
    let types: Vec<GgmlType> = if args.types.trim() == "all" {
        FUSED_TYPES.to_vec()
    } else {
        args.types
            .split(',')
            .map(|name| {
                let name = name.trim();
                *FUSED_TYPES
                    .iter()
                    .find(|t| t.name().eq_ignore_ascii_case(name))
                    .unwrap_or_else(|| panic!("--types: {name:?} has no fused product"))
            })
            .collect()
    };
    for spec in args.shapes.split(',') {
        let (n, k) = spec.split_once('x').expect("NxK");
        let (n, k): (usize, usize) = (n.trim().parse().unwrap(), k.trim().parse().unwrap());
        let shape_start = Instant::now();
        // One random weight (the Q6_K quantizer's input and the dense baselines).
        let w: Vec<f32> = {
            let t = Tensor::<1>::random([n * k], Distribution::Normal(0.0, 0.02), device);
            t.into_data().try_into_vec_as::<f32>().unwrap()
        };
        // The quantized variants: (name, desc, GGUF bytes) per type and layout.
        let mut variants: Vec<(String, QuantWeightDesc, Vec<u8>)> = Vec::new();
        for &t in &types {
            let desc = match QuantWeightDesc::of(t, n, k) {
                Ok(desc) => desc,
                Err(e) => {
                    println!("{runtime}: {n}x{k} skipped for {t}: {e}");
                    continue;
                }
            };
            let bytes = if t == GgmlType::Q6_K {
                BlockQ6K::slice_as_bytes(&q6k::quantize(&w, 0).unwrap()).to_vec()
            } else {
                blocks::random(t, desc.blocks(), n as u64)
            };
            let mut descs: Vec<QuantWeightDesc> = layouts
                .iter()
                .filter_map(|&l| desc.with_layout(l).ok())
                .collect();
            if descs.is_empty() {
                descs.push(
                    desc.with_layout(PackedLayout::Gguf)
                        .expect("every type has it"),
                );
            }
            for d in descs {
                variants.push((variant_name(d), d, bytes.clone()));
            }
        }
        if variants.is_empty() {
            continue;
        }
        let max_bytes = variants.iter().map(|v| v.1.n_bytes()).max().unwrap_or(1);
        let copies = if args.same_buffer {
            1
        } else {
            (args.l2_mb * 2_000_000 / max_bytes + 2).clamp(2, 8)
        };
        // Each variant's words, uploaded `copies` times (distinct device buffers).
        let packed: Vec<Vec<Tensor<1, Int>>> = variants
            .iter()
            .map(|(_, d, bytes)| {
                let words = pack(bytes, *d).expect("pack");
                (0..copies)
                    .map(|_| upload_words(words.clone(), device))
                    .collect()
            })
            .collect();
        let dense32: Vec<Tensor<2>> = if args.no_baselines {
            vec![]
        } else {
            let d = Tensor::<2>::from_data(TensorData::new(w.clone(), [n, k]), device).transpose();
            (0..copies)
                .map(|i| {
                    if i == 0 {
                        d.clone()
                    } else {
                        d.clone().mul_scalar(1.0)
                    }
                })
                .collect()
        };
        let dense16: Vec<Tensor<2>> = if f16_ok {
            dense32
                .iter()
                .map(|d| d.clone().cast(FloatDType::F16))
                .collect()
        } else {
            vec![]
        };
        // The words once more as bare `CubeTensor`s, for the target without fusion (--no-fusion,
        // --sweep).
        #[cfg(feature = "cube")]
        let raw_w: Option<(cubecl::Device, Vec<Vec<burn_cubecl::tensor::CubeTensor>>)> =
            match &unfused {
                Some(Target::Unfused(dev)) if args.no_fusion || args.sweep.is_some() => {
                    let w = variants
                        .iter()
                        .map(|(_, d, bytes)| {
                            let words = pack(bytes, *d).expect("pack");
                            (0..copies)
                                .map(|_| cube::upload(dev, &words, &[words.len()], cube::U32))
                                .collect()
                        })
                        .collect();
                    Some((dev.clone(), w))
                }
                _ => None,
            };
        let label = format!("{n}x{k}");
        println!(
            "{runtime} {label}: weights made, quantized and uploaded in {:.1} s",
            shape_start.elapsed().as_secs_f64()
        );
        heat(&target, args.warm_up_ms * AFTER_IDLE);
        for &m in &ms {
            let x = Tensor::<2>::random([m, k], Distribution::Normal(0.0, 1.0), device);
            let mut kernels: Vec<(String, usize, Stat)> = Vec::new();
            let mut record = |variant: &str, bytes: usize, (call, stream): (Stat, Stat)| {
                for (mode, s) in [("call", call), ("stream", stream)] {
                    rows.push(Row {
                        shape: label.clone(),
                        m,
                        variant: variant.to_string(),
                        mode,
                        s,
                        weight_bytes: bytes,
                    });
                }
            };
            for ((name, d, _), packed) in variants.iter().zip(&packed) {
                for a in args.activations.split(',') {
                    let (activations, name) = match a.trim() {
                        "float" => (Activations::Float, name.clone()),
                        "int8" if d.layout == PackedLayout::Q6kPlanes => continue,
                        "int8" => (Activations::Int8, format!("{name}_int8")),
                        other => panic!("--activations: {other:?} is not float or int8"),
                    };
                    record(
                        &name,
                        d.n_bytes(),
                        time(&target, args.iters, args.warm_up_ms, |i| {
                            quant_matmul(x.clone(), packed[i % copies].clone(), *d, activations)
                        }),
                    );
                }
            }
            // The op on the runtime's backend without fusion, for --no-fusion and the sweep.
            #[cfg(feature = "cube")]
            if let Some((dev, ws)) = &raw_w {
                let xs: Vec<f32> = x.to_data().try_into_vec_as::<f32>().unwrap();
                let xr = cube::upload(dev, &xs, &[m, k], cube::F32);
                for ((name, desc, _), w) in variants.iter().zip(ws) {
                    let raw = Unfused {
                        device: dev.clone(),
                        target: Target::Unfused(dev.clone()),
                        x: xr.clone(),
                        w: w.clone(),
                        desc: *desc,
                        name: name.clone(),
                    };
                    if args.no_fusion {
                        raw.op(args, &mut record, &mut kernels);
                    }
                    let Some(sweep) = &args.sweep else {
                        continue;
                    };
                    if m <= burn_gguf::kernel::MAX_ROWS {
                        raw.sweep(args, sweep, &mut record, &mut kernels);
                    } else {
                        println!(
                            "{runtime} {label} M={m}: --sweep skipped (the fused kernel takes \
                             up to {} rows)",
                            burn_gguf::kernel::MAX_ROWS
                        );
                    }
                }
            }
            if !args.no_baselines {
                record(
                    "dense_f32",
                    4 * n * k,
                    time(&target, args.iters, args.warm_up_ms, |i| {
                        x.clone().matmul(dense32[i % copies].clone())
                    }),
                );
                if f16_ok {
                    let x16 = x.clone().cast(FloatDType::F16);
                    record(
                        "dense_f16",
                        2 * n * k,
                        time(&target, args.iters, args.warm_up_ms, |i| {
                            x16.clone().matmul(dense16[i % copies].clone())
                        }),
                    );
                    // The first variant's weight dequantized to f32 (as a user holding the
                    // dequantized weight has it), cast to f16, then an f16 matmul.
                    let d0 = variants[0].1;
                    record(
                        "dequant_f16_matmul",
                        d0.n_bytes(),
                        time(&target, args.iters, args.warm_up_ms, |i| {
                            let wd = quant_dequantize(
                                packed[0][i % copies].clone(),
                                d0,
                                FloatDType::F32,
                            )
                            .cast(FloatDType::F16);
                            x16.clone().matmul(wd.transpose())
                        }),
                    );
                }
            }
            for (variant, bytes, s) in kernels {
                rows.push(Row {
                    shape: label.clone(),
                    m,
                    variant,
                    mode: "kernel",
                    s,
                    weight_bytes: bytes,
                });
            }
            print_case(runtime, &rows, &label, m, copy_gbs);
            if let Some(path) = &args.csv {
                write_csv(path, &args.backend, &rows);
            }
        }
        println!(
            "{runtime} {label}: {:.1} s in all (first calls of each kernel and matmul shape \
             include compiling and autotuning)",
            shape_start.elapsed().as_secs_f64()
        );
    }
    rows
}

/// Prints one case's rows; each stream row also as a multiple of the dense f32 matmul's time.
fn print_case(runtime: &str, rows: &[Row], shape: &str, m: usize, copy_gbs: f64) {
    let case: Vec<&Row> = rows
        .iter()
        .filter(|r| r.shape == shape && r.m == m)
        .collect();
    let dense_stream = case
        .iter()
        .find(|r| r.variant == "dense_f32" && r.mode == "stream")
        .map(|r| r.s.median_us);
    for r in &case {
        let gbs = r.weight_bytes as f64 / (r.s.median_us * 1e-6) / 1e9;
        let versus = match dense_stream {
            Some(d) if r.mode == "stream" && r.variant != "dense_f32" => {
                format!("  {:.2}x dense f32's time", r.s.median_us / d)
            }
            _ => String::new(),
        };
        println!(
            "{runtime} {shape:>11} M={m:<4} {:<19} {:<6} {:>10.1} us [{:.1}..{:.1}]  {:>8.1} GB/s of its weight ({:>5.1}% of copy){versus}",
            r.variant,
            r.mode,
            r.s.median_us,
            r.s.p10_us,
            r.s.p90_us,
            gbs,
            100.0 * gbs / copy_gbs
        );
    }
}

/// Writes `rows` as CSV to `path` (rewritten after every case, so that a run cut short keeps
/// what it measured).
fn write_csv(path: &std::path::Path, runtime: &str, rows: &[Row]) {
    let mut f = std::fs::File::create(path).expect("create csv");
    writeln!(
        f,
        "runtime,shape,m,variant,mode,median_us,p10_us,p90_us,weight_bytes"
    )
    .unwrap();
    for r in rows {
        writeln!(
            f,
            "{},{},{},{},{},{:.3},{:.3},{:.3},{}",
            runtime,
            r.shape,
            r.m,
            r.variant,
            r.mode,
            r.s.median_us,
            r.s.p10_us,
            r.s.p90_us,
            r.weight_bytes
        )
        .unwrap();
    }
}

/// Reads CSVs this benchmark wrote: the measurements and each runtime's copy bandwidth.
fn read_csvs(paths: &str) -> (Vec<plot::Point>, Vec<(String, f64)>) {
    let (mut points, mut copy) = (Vec::new(), Vec::new());
    for path in paths.split(',') {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split(',').collect();
            if f.len() < 9 {
                continue;
            }
            let p = plot::Point {
                runtime: f[0].into(),
                shape: f[1].into(),
                m: f[2].parse().unwrap_or(0),
                variant: f[3].into(),
                mode: f[4].into(),
                median_us: f[5].parse().unwrap_or(f64::NAN),
                weight_bytes: f[8].parse().unwrap_or(0),
            };
            if p.variant == "copy" {
                copy.push((
                    p.runtime,
                    p.weight_bytes as f64 / (p.median_us * 1e-6) / 1e9,
                ));
            } else {
                points.push(p);
            }
        }
    }
    (points, copy)
}

/// The device `--backend` names, or an error for one this build lacks.
fn device(backend: &str) -> Result<Device, String> {
    #[allow(unused_imports)]
    use burn::tensor::DeviceKind;
    Ok(match backend {
        #[cfg(feature = "flex")]
        "flex" => Device::flex(),
        #[cfg(feature = "wgpu")]
        "wgpu" => Device::wgpu(DeviceKind::DefaultDevice),
        #[cfg(feature = "cuda")]
        "cuda" => Device::cuda(0),
        #[cfg(feature = "metal")]
        "metal" => Device::metal(DeviceKind::DefaultDevice),
        "ndarray" => return Err("ndarray is gone with Burn 0.22: use --backend flex".into()),
        other => {
            return Err(format!(
                "backend {other:?} is not built in (features: flex, wgpu, cuda, metal)"
            ));
        }
    })
}

fn main() {
    let mut args = Args::parse();
    if let Some(from) = &args.plot_from {
        let path = args.plot.clone().unwrap_or_else(|| "bench.png".into());
        let (points, copy) = read_csvs(from);
        std::fs::write(&path, plot::plot(&points, &copy)).expect("write the plot");
        println!("wrote {}", path.display());
        return;
    }
    let device = device(&args.backend).unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(1);
    });
    if args.backend == "flex" {
        args.warm_up_ms = 0;
    }
    let rows = run(&args, &device, &args.backend);
    if let Some(path) = &args.csv {
        write_csv(path, &args.backend, &rows);
    }
    if let Some(path) = &args.plot {
        let point = |r: &Row| plot::Point {
            runtime: args.backend.clone(),
            shape: r.shape.clone(),
            m: r.m,
            variant: r.variant.clone(),
            mode: r.mode.into(),
            median_us: r.s.median_us,
            weight_bytes: r.weight_bytes,
        };
        let copy: Vec<(String, f64)> = rows
            .iter()
            .filter(|r| r.variant == "copy")
            .map(|r| (args.backend.clone(), gbs(r)))
            .collect();
        let points: Vec<plot::Point> = rows
            .iter()
            .filter(|r| r.variant != "copy")
            .map(point)
            .collect();
        std::fs::write(path, plot::plot(&points, &copy)).expect("write the plot");
        println!("wrote {}", path.display());
    }
}
