//! `bench`: times the Q6_K matmul the way a model calls it (through the Burn op), against
//! baselines measured in the same run: device copy bandwidth, dense f32 and f16 matmuls on the
//! same shape, and "dequantize to f16, then matmul" (what a user without this crate would do).
//!
//! ```text
//! cargo run --release --example bench --features ndarray -- --backend ndarray
//! cargo run --release --example bench --features cuda -- --backend cuda --csv bench.csv --plot bench.png
//! cargo run --release --example bench -- --plot all.png --plot-from bench-cuda.csv,bench-wgpu.csv
//! ```
//!
//! Per case it prints the median of `--iters` timed calls (after warm-up) and the 10th–90th
//! percentile spread, in two modes: `call` (one op then a device sync: what one decode step pays,
//! host overhead included) and `stream` (`--iters` ops back to back, one sync: the device-side
//! throughput, close to the kernel time when the host enqueues faster than the device runs).
//! With `--no-fusion`, a third mode, `kernel`, is the op's device time from the runtime's own
//! timers where it has them (wgpu with timestamp queries); CUDA kernel times come from Nsight
//! Compute around this binary (`scripts/gpu-perf.sh ncu`). Weight copies rotate so that their total exceeds the GPU's L2
//! (`--l2-mb`, 50 for an H100), unless `--same-buffer` (ggml's test-backend-ops way). GB/s counts
//! the Q6_K bytes; "% of copy" compares it with the copy bandwidth measured at the start.

use std::io::Write;
use std::time::Instant;

use burn::tensor::backend::Backend;
use burn::tensor::{DType, Distribution, FloatDType, Int, Tensor, TensorData};
use burn_gguf::ops::{Q6kBackend, Q6kLayout, Q6kShape, pack, q6k_dequantize, q6k_matmul};
use burn_gguf::quant::{BlockQ6K, q6k};
use clap::Parser;
use device_timer::DeviceTimer;

mod device_timer;
mod plot;
mod png;

#[derive(Parser)]
#[command(name = "bench", about = "Q6_K matmul benchmark (burn-gguf)")]
struct Args {
    /// Runtime: ndarray, wgpu or cuda (each needs its cargo feature).
    #[arg(long, default_value = "wgpu")]
    backend: String,
    /// Shapes as NxK (out x in features), comma-separated. K must be a multiple of 256 (Q6_K's
    /// block): Gemma-3 270M's vocabulary projection, 262144x640, cannot be Q6_K (llama.cpp stores
    /// it as Q8_0), so the default times the nearest Q6_K shape, 262144x768.
    #[arg(
        long,
        default_value = "4096x4096,4096x14336,14336x4096,640x2048,262144x768"
    )]
    shapes: String,
    /// Device layouts of the Q6_K weight to time: `planes` (aligned planes, the default layout
    /// and kernel) and/or `gguf` (the GGUF bytes as words: the first kernel version).
    #[arg(long, default_value = "planes")]
    layouts: String,
    /// Also time the planes kernel, on the backend without fusion, with these launch geometries,
    /// as `ROWSxWARPS[xUNITS][w][p]` (rows and warps per cube, units loaded per iteration; `w`
    /// takes the dequantized-weights path even at M = 1, `p` pipelines the loads), comma-separated
    /// (a tuning run: e.g. `2x4,4x4x2,4x4w,4x1p`).
    #[arg(long)]
    sweep: Option<String>,
    /// Activation rows, comma-separated.
    #[arg(long, default_value = "1,2,4,8,16,64,512")]
    m: String,
    /// Milliseconds of compute-bound device work at least before each case is timed (ten times
    /// as long after an idle stretch: start-up, a shape's setup on the CPU), continued until the
    /// work runs at full speed again, so that the GPU's clocks are up; then 5 warm-up calls. 0
    /// under a profiler; not used on the CPU (ndarray).
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
    /// Also time the op on the runtime's backend without Burn's fusion (`q6k_nofusion`): the
    /// difference is the fusion layer's share of the host overhead. Where the runtime has
    /// device timers (wgpu), also the op's kernel time (mode `kernel`).
    #[arg(long)]
    no_fusion: bool,
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

/// Keeps the device busy with compute-bound work (1024² f32 matmuls, whose speed follows the SM
/// clock) for at least `ms` milliseconds and then until the clock is back up: until the fastest
/// rounds of the last two 200 ms windows agree within 5 % and are within 10 % of the fastest
/// round this backend type has run in this process (at most 15 s, with a note; Burn's fusion
/// runs its own matmul, so each backend type keeps its own best). An idle GPU drops its SM clock
/// within seconds; an H100 under Vulkan fell to 345 MHz during a shape's CPU-side setup and,
/// under load, stayed there about 1.5 s before taking another 5 s to climb back to 1,980 MHz in
/// steps of 6–50 % (`nvidia-smi` sampled every 100 ms), so a fixed warm-up timed kernels
/// mid-climb. CUDA kept its clock up in the same runs.
fn heat<B: Backend>(device: &B::Device, ms: u128) {
    static BEST: std::sync::Mutex<Vec<(&'static str, f64)>> = std::sync::Mutex::new(Vec::new());
    if ms == 0 {
        return;
    }
    let a = Tensor::<B, 2>::ones([1024, 1024], device).mul_scalar(0.001);
    let t0 = Instant::now();
    let (mut last, mut window_min, mut window_start) =
        (f64::INFINITY, f64::INFINITY, Instant::now());
    loop {
        let round = Instant::now();
        let outs: Vec<_> = (0..8).map(|_| a.clone().matmul(a.clone())).collect();
        B::sync(device).expect("sync");
        drop(outs);
        window_min = window_min.min(round.elapsed().as_secs_f64());
        if window_start.elapsed().as_millis() < 200 {
            continue;
        }
        let best = {
            let mut bests = BEST.lock().expect("best");
            let name = std::any::type_name::<B>();
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

/// Times `f` (`call` mode: each run synced; `stream` mode: `iters` runs, one sync, 5 repeats).
/// The outputs are kept until after the sync: with Burn's fusion, an output dropped unused may
/// never be computed.
fn time<B: Backend, T>(
    device: &B::Device,
    iters: usize,
    warm_up_ms: u128,
    mut f: impl FnMut(usize) -> T,
) -> (Stat, Stat) {
    let mut keep = Vec::with_capacity(iters);
    heat::<B>(device, warm_up_ms);
    for i in 0..5 {
        keep.push(f(i));
    }
    B::sync(device).expect("sync");
    keep.clear();
    let mut calls = Vec::with_capacity(iters);
    for i in 0..iters {
        let t0 = Instant::now();
        let out = f(i);
        B::sync(device).expect("sync");
        calls.push(t0.elapsed().as_secs_f64());
        drop(out);
    }
    let mut streams = Vec::new();
    for _ in 0..5 {
        let t0 = Instant::now();
        for i in 0..iters {
            keep.push(f(i));
        }
        B::sync(device).expect("sync");
        streams.push(t0.elapsed().as_secs_f64() / iters as f64);
        keep.clear();
    }
    (stat(calls), stat(streams))
}

/// The op's kernel time from the device's timers, one call at a time (`None` where the runtime
/// has no device timers).
fn kernel_time<C: Q6kBackend + DeviceTimer>(
    device: &C::Device,
    iters: usize,
    x: &Tensor<C, 2>,
    w: &[Tensor<C, 1, Int>],
    shape: Q6kShape,
) -> Option<Stat> {
    let mut ts = Vec::new();
    for i in 0..iters {
        let mut operands = Some((x.clone(), w[i % w.len()].clone()));
        let mut call = || {
            if let Some((x, w)) = operands.take() {
                let _ = q6k_matmul(x, w, shape);
            }
        };
        ts.push(C::device_time(device, &mut call)?);
    }
    (!ts.is_empty()).then(|| stat(ts))
}

struct Row {
    shape: String,
    m: usize,
    variant: String,
    mode: &'static str,
    s: Stat,
    q6k_bytes: usize,
}

/// Device copy bandwidth, read + write, in GB/s: `y = x · 1.0001` over a 128 MiB f32 tensor on
/// `C`, the runtime's backend *without* Burn's fusion (which merges the elementwise ops of a
/// stream that share an input into one kernel: one read for many writes, a rate above the
/// hardware's). Every op reads all of `x` and writes a new output, kept alive until the sync.
fn copy_bandwidth<C: Backend>(device: &C::Device, warm_up_ms: u128) -> Row {
    // 128 MiB in and out: 2.5× an H100's L2, and within the 128 MiB storage binding that WebGPU
    // guarantees (256 MiB failed on lavapipe).
    let n_copy = 32 << 20;
    let src = Tensor::<C, 1>::random([n_copy], Distribution::Normal(0.0, 1.0), device);
    let (_, copy) = time::<C, _>(device, 10, warm_up_ms * AFTER_IDLE, |_| {
        src.clone().mul_scalar(1.0001)
    });
    Row {
        shape: "-".into(),
        m: 0,
        variant: "copy".into(),
        mode: "stream",
        s: copy,
        q6k_bytes: 2 * 4 * n_copy,
    }
}

/// GB/s of a row's bytes.
fn gbs(r: &Row) -> f64 {
    r.q6k_bytes as f64 / (r.s.median_us * 1e-6) / 1e9
}

fn run<B: Q6kBackend, C: Q6kBackend<Device = B::Device> + DeviceTimer>(
    args: &Args,
    device: &B::Device,
    runtime: &str,
) -> Vec<Row> {
    let copy = copy_bandwidth::<C>(device, args.warm_up_ms);
    let copy_gbs = gbs(&copy);
    println!("{runtime}: copy bandwidth (read + write, no fusion) {copy_gbs:.0} GB/s");
    let mut rows = vec![copy];
    let layouts: Vec<(Q6kLayout, &'static str)> = args
        .layouts
        .split(',')
        .map(|l| match l.trim() {
            "planes" => (Q6kLayout::Planes, "q6k"),
            "gguf" => (Q6kLayout::Gguf, "q6k_gguf_layout"),
            other => panic!("--layouts: {other:?} is neither planes nor gguf"),
        })
        .collect();

    // f16 baselines only where the backend has f16 (NdArray has none): probe once, quietly.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let f16_ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let t = Tensor::<B, 2>::ones([2, 2], device).cast(FloatDType::F16);
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
    for spec in args.shapes.split(',') {
        let (n, k) = spec.split_once('x').expect("NxK");
        let (n, k): (usize, usize) = (n.trim().parse().unwrap(), k.trim().parse().unwrap());
        if !k.is_multiple_of(256) {
            println!("{runtime}: {n}x{k} skipped: Q6_K needs K to be a multiple of 256");
            continue;
        }
        let shape = Q6kShape {
            out_features: n,
            in_features: k,
        };
        let shape_start = Instant::now();
        let bytes = shape.n_bytes();
        let copies = if args.same_buffer {
            1
        } else {
            (args.l2_mb * 2_000_000 / bytes + 2).clamp(2, 8)
        };
        // One random weight, quantized once, uploaded `copies` times (distinct device buffers).
        let w: Vec<f32> = {
            let t = Tensor::<B, 1>::random([n * k], Distribution::Normal(0.0, 0.02), device);
            t.into_data().convert::<f32>().to_vec().unwrap()
        };
        let qbytes = BlockQ6K::slice_as_bytes(&q6k::quantize(&w, 0).unwrap()).to_vec();
        let packed: Vec<Vec<Tensor<B, 1, Int>>> = layouts
            .iter()
            .map(|&(layout, _)| {
                let words = pack(&qbytes, shape, layout);
                (0..copies)
                    .map(|_| {
                        Tensor::from_data(
                            TensorData::new(words.clone(), [words.len()]),
                            (device, DType::I32),
                        )
                    })
                    .collect()
            })
            .collect();
        let dense32: Vec<Tensor<B, 2>> = if args.no_baselines {
            vec![]
        } else {
            let d =
                Tensor::<B, 2>::from_data(TensorData::new(w.clone(), [n, k]), device).transpose();
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
        let dense16: Vec<Tensor<B, 2>> = if f16_ok {
            dense32
                .iter()
                .map(|d| d.clone().cast(FloatDType::F16))
                .collect()
        } else {
            vec![]
        };
        let label = format!("{n}x{k}");
        println!(
            "{runtime} {label}: weights made, quantized and uploaded in {:.1} s",
            shape_start.elapsed().as_secs_f64()
        );
        heat::<B>(device, args.warm_up_ms * AFTER_IDLE);
        for &m in &ms {
            let x = Tensor::<B, 2>::random([m, k], Distribution::Normal(0.0, 1.0), device);
            let mut kernels: Vec<(String, Stat)> = Vec::new();
            let mut record = |variant: &str, (call, stream): (Stat, Stat)| {
                rows.push(Row {
                    shape: label.clone(),
                    m,
                    variant: variant.to_string(),
                    mode: "call",
                    s: call,
                    q6k_bytes: bytes,
                });
                rows.push(Row {
                    shape: label.clone(),
                    m,
                    variant: variant.to_string(),
                    mode: "stream",
                    s: stream,
                    q6k_bytes: bytes,
                });
            };
            for (&(_, variant), packed) in layouts.iter().zip(&packed) {
                record(
                    variant,
                    time::<B, _>(device, args.iters, args.warm_up_ms, |i| {
                        q6k_matmul(x.clone(), packed[i % copies].clone(), shape)
                    }),
                );
            }
            // The op on the runtime's backend without fusion, for --no-fusion and the sweep.
            let (raw, xr): (Vec<Tensor<C, 1, Int>>, Tensor<C, 2>) =
                if args.no_fusion || args.sweep.is_some() {
                    let words = pack(&qbytes, shape, Q6kLayout::Planes);
                    let raw = (0..copies)
                        .map(|_| {
                            Tensor::from_data(
                                TensorData::new(words.clone(), [words.len()]),
                                (device, DType::I32),
                            )
                        })
                        .collect();
                    (raw, Tensor::<C, 2>::from_data(x.to_data(), device))
                } else {
                    (vec![], Tensor::<C, 2>::zeros([1, 1], device))
                };
            if args.no_fusion {
                record(
                    "q6k_nofusion",
                    time::<C, _>(device, args.iters, args.warm_up_ms, |i| {
                        q6k_matmul(xr.clone(), raw[i % copies].clone(), shape)
                    }),
                );
                if let Some(s) = kernel_time(device, args.iters, &xr, &raw, shape) {
                    kernels.push(("q6k_nofusion".into(), s));
                }
            }
            #[cfg(any(feature = "wgpu", feature = "cuda"))]
            if let Some(sweep) = &args.sweep {
                for geometry in sweep.split(',') {
                    // `w`: the dequantized-weights path even for one row; `p`: pipelined loads.
                    let dims = geometry.trim_end_matches(['w', 'p']);
                    let (weights_path, pipeline) = (
                        geometry[dims.len()..].contains('w'),
                        geometry[dims.len()..].contains('p'),
                    );
                    let v: Vec<usize> = dims
                        .split('x')
                        .map(|v| v.parse().expect("--sweep ROWSxWARPS[xUNITS][w][p]"))
                        .collect();
                    let (r, w, u) = (v[0], v[1], v.get(2).copied().unwrap_or(1));
                    burn_gguf::kernel::override_planes_geometry(Some(
                        burn_gguf::kernel::PlanesTuning {
                            rows: r,
                            warps: w,
                            per_iter: u,
                            weights_path,
                            pipeline,
                        },
                    ));
                    // Timed without fusion (the fusion layer's host cost varies from run to
                    // run on wgpu), with the kernel time where the runtime has device timers.
                    let name = format!(
                        "q6k_r{r}w{w}u{u}{}{}",
                        if weights_path { "_wt" } else { "" },
                        if pipeline { "_p" } else { "" }
                    );
                    record(
                        &name,
                        time::<C, _>(device, args.iters, args.warm_up_ms, |i| {
                            q6k_matmul(xr.clone(), raw[i % copies].clone(), shape)
                        }),
                    );
                    if let Some(s) = kernel_time(device, args.iters, &xr, &raw, shape) {
                        kernels.push((name, s));
                    }
                    burn_gguf::kernel::override_planes_geometry(None);
                }
            }
            if !args.no_baselines {
                record(
                    "dense_f32",
                    time::<B, _>(device, args.iters, args.warm_up_ms, |i| {
                        x.clone().matmul(dense32[i % copies].clone())
                    }),
                );
                if f16_ok {
                    let x16 = x.clone().cast(FloatDType::F16);
                    record(
                        "dense_f16",
                        time::<B, _>(device, args.iters, args.warm_up_ms, |i| {
                            x16.clone().matmul(dense16[i % copies].clone())
                        }),
                    );
                    record(
                        "dequant_f16_matmul",
                        time::<B, _>(device, args.iters, args.warm_up_ms, |i| {
                            let wd = q6k_dequantize(packed[0][i % copies].clone(), shape)
                                .cast(FloatDType::F16);
                            x16.clone().matmul(wd.transpose())
                        }),
                    );
                }
            }
            for (variant, s) in kernels {
                rows.push(Row {
                    shape: label.clone(),
                    m,
                    variant,
                    mode: "kernel",
                    s,
                    q6k_bytes: bytes,
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

fn print_case(runtime: &str, rows: &[Row], shape: &str, m: usize, copy_gbs: f64) {
    let case: Vec<&Row> = rows
        .iter()
        .filter(|r| r.shape == shape && r.m == m)
        .collect();
    let q6k_stream = case
        .iter()
        .find(|r| r.variant == "q6k" && r.mode == "stream")
        .map(|r| r.s.median_us);
    for r in &case {
        let gbs = r.q6k_bytes as f64 / (r.s.median_us * 1e-6) / 1e9;
        let speedup = match (r.variant.as_str(), q6k_stream) {
            ("q6k", _) | (_, None) => String::new(),
            (_, Some(q)) if r.mode == "stream" => {
                format!("  q6k is {:.2}x faster", r.s.median_us / q)
            }
            _ => String::new(),
        };
        println!(
            "{runtime} {shape:>11} M={m:<4} {:<19} {:<6} {:>10.1} us [{:.1}..{:.1}]  {:>8.1} GB/s of q6k bytes ({:>5.1}% of copy){speedup}",
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
        "runtime,shape,m,variant,mode,median_us,p10_us,p90_us,q6k_bytes"
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
            r.q6k_bytes
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
                q6k_bytes: f[8].parse().unwrap_or(0),
            };
            if p.variant == "copy" {
                copy.push((p.runtime, p.q6k_bytes as f64 / (p.median_us * 1e-6) / 1e9));
            } else {
                points.push(p);
            }
        }
    }
    (points, copy)
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
    if args.backend == "ndarray" {
        args.warm_up_ms = 0;
    }
    let rows = match args.backend.as_str() {
        #[cfg(feature = "ndarray")]
        "ndarray" => run::<burn::backend::NdArray, burn::backend::NdArray>(
            &args,
            &Default::default(),
            "ndarray",
        ),
        #[cfg(feature = "wgpu")]
        "wgpu" => run::<
            burn::backend::Wgpu,
            burn_cubecl::CubeBackend<burn::backend::wgpu::WgpuRuntime, f32, i32, u32>,
        >(&args, &Default::default(), "wgpu"),
        #[cfg(feature = "cuda")]
        "cuda" => run::<
            burn::backend::Cuda,
            burn_cubecl::CubeBackend<cubecl::cuda::CudaRuntime, f32, i32, u8>,
        >(&args, &Default::default(), "cuda"),
        other => {
            eprintln!("error: backend {other:?} is not built in (features: ndarray, wgpu, cuda)");
            std::process::exit(1);
        }
    };
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
            q6k_bytes: r.q6k_bytes,
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
