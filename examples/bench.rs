//! `bench`: times the Q6_K matmul the way a model calls it (through the Burn op), against
//! baselines measured in the same run: device copy bandwidth, dense f32 and f16 matmuls on the
//! same shape, and "dequantize to f16, then matmul" (what a user without this crate would do).
//!
//! ```text
//! cargo run --release --example bench --features ndarray -- --backend ndarray
//! cargo run --release --example bench --features cuda -- --backend cuda --csv bench.csv
//! ```
//!
//! Per case it prints the median of `--iters` timed calls (after warm-up) and the 10th–90th
//! percentile spread, in two modes: `call` (one op then a device sync: what one decode step pays,
//! host overhead included) and `stream` (`--iters` ops back to back, one sync: the device-side
//! throughput, close to the kernel time when launches are queued asynchronously). Weight copies
//! rotate so that their total exceeds the GPU's L2 (`--l2-mb`, 50 for an H100), unless
//! `--same-buffer` (ggml's test-backend-ops way). GB/s counts the Q6_K bytes.

use std::io::Write;
use std::time::Instant;

use burn::tensor::backend::Backend;
use burn::tensor::{DType, Distribution, FloatDType, Int, Tensor, TensorData};
use burn_gguf::ops::{Q6kBackend, Q6kShape, packed_words, q6k_dequantize, q6k_matmul};
use burn_gguf::quant::{BlockQ6K, q6k};
use clap::Parser;

#[derive(Parser)]
#[command(name = "bench", about = "Q6_K matmul benchmark (burn-gguf)")]
struct Args {
    /// Runtime: ndarray, wgpu or cuda (each needs its cargo feature).
    #[arg(long, default_value = "wgpu")]
    backend: String,
    /// Shapes as NxK (out x in features), comma-separated.
    #[arg(
        long,
        default_value = "4096x4096,4096x14336,14336x4096,640x2048,262144x640"
    )]
    shapes: String,
    /// Activation rows, comma-separated.
    #[arg(long, default_value = "1,2,4,8,16,64,512")]
    m: String,
    /// Timed iterations per case.
    #[arg(long, default_value_t = 50)]
    iters: usize,
    /// Rotate weight copies until their total exceeds this many MB (the L2 cache).
    #[arg(long, default_value_t = 50)]
    l2_mb: usize,
    /// Time one weight buffer only (cache-resident where it fits).
    #[arg(long)]
    same_buffer: bool,
    /// Skip the dense and dequantize baselines.
    #[arg(long)]
    no_baselines: bool,
    /// Write every measurement as CSV here.
    #[arg(long)]
    csv: Option<std::path::PathBuf>,
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

/// Times `f` (`call` mode: each run synced; `stream` mode: `iters` runs, one sync, 5 repeats).
/// The outputs are kept until after the sync: with Burn's fusion, an output dropped unused may
/// never be computed.
fn time<B: Backend, T>(
    device: &B::Device,
    iters: usize,
    mut f: impl FnMut(usize) -> T,
) -> (Stat, Stat) {
    let mut keep = Vec::with_capacity(iters);
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

struct Row {
    shape: String,
    m: usize,
    variant: &'static str,
    mode: &'static str,
    s: Stat,
    q6k_bytes: usize,
}

fn run<B: Q6kBackend>(args: &Args, device: &B::Device, runtime: &str) -> Vec<Row> {
    let mut rows = Vec::new();
    // Copy bandwidth: read + write of a 256 MiB f32 tensor.
    let n_copy = 64 << 20;
    let src = Tensor::<B, 1>::random([n_copy], Distribution::Normal(0.0, 1.0), device);
    let (_, copy) = time::<B, _>(device, 20, |_| src.clone().mul_scalar(1.0001));
    let copy_gbs = 2.0 * 4.0 * n_copy as f64 / (copy.median_us * 1e-6) / 1e9;
    println!("{runtime}: copy bandwidth (read + write) {copy_gbs:.0} GB/s");
    drop(src);

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
        let shape = Q6kShape {
            out_features: n,
            in_features: k,
        };
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
        let words = packed_words(&qbytes);
        let packed: Vec<Tensor<B, 1, Int>> = (0..copies)
            .map(|_| {
                Tensor::from_data(
                    TensorData::new(words.clone(), [words.len()]),
                    (device, DType::I32),
                )
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
        for &m in &ms {
            let x = Tensor::<B, 2>::random([m, k], Distribution::Normal(0.0, 1.0), device);
            let mut record = |variant: &'static str, (call, stream): (Stat, Stat)| {
                rows.push(Row {
                    shape: label.clone(),
                    m,
                    variant,
                    mode: "call",
                    s: call,
                    q6k_bytes: bytes,
                });
                rows.push(Row {
                    shape: label.clone(),
                    m,
                    variant,
                    mode: "stream",
                    s: stream,
                    q6k_bytes: bytes,
                });
            };
            record(
                "q6k",
                time::<B, _>(device, args.iters, |i| {
                    q6k_matmul(x.clone(), packed[i % copies].clone(), shape)
                }),
            );
            if !args.no_baselines {
                record(
                    "dense_f32",
                    time::<B, _>(device, args.iters, |i| {
                        x.clone().matmul(dense32[i % copies].clone())
                    }),
                );
                if f16_ok {
                    let x16 = x.clone().cast(FloatDType::F16);
                    record(
                        "dense_f16",
                        time::<B, _>(device, args.iters, |i| {
                            x16.clone().matmul(dense16[i % copies].clone())
                        }),
                    );
                    record(
                        "dequant_f16_matmul",
                        time::<B, _>(device, args.iters, |i| {
                            let wd = q6k_dequantize(packed[i % copies].clone(), shape)
                                .cast(FloatDType::F16);
                            x16.clone().matmul(wd.transpose())
                        }),
                    );
                }
            }
            print_case(runtime, &rows, &label, m, copy_gbs);
        }
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
        let speedup = match (r.variant, q6k_stream) {
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

fn main() {
    let args = Args::parse();
    let rows = match args.backend.as_str() {
        #[cfg(feature = "ndarray")]
        "ndarray" => run::<burn::backend::NdArray>(&args, &Default::default(), "ndarray"),
        #[cfg(feature = "wgpu")]
        "wgpu" => run::<burn::backend::Wgpu>(&args, &Default::default(), "wgpu"),
        #[cfg(feature = "cuda")]
        "cuda" => run::<burn::backend::Cuda>(&args, &Default::default(), "cuda"),
        other => {
            eprintln!("error: backend {other:?} is not built in (features: ndarray, wgpu, cuda)");
            std::process::exit(1);
        }
    };
    if let Some(path) = &args.csv {
        let mut f = std::fs::File::create(path).expect("create csv");
        writeln!(
            f,
            "runtime,shape,m,variant,mode,median_us,p10_us,p90_us,q6k_bytes"
        )
        .unwrap();
        for r in &rows {
            writeln!(
                f,
                "{},{},{},{},{},{:.3},{:.3},{:.3},{}",
                args.backend,
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
}
