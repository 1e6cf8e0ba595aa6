//! Swapping `Linear` for `Q6kLinear` in your own Burn model: quantize, save as GGUF, load back
//! by tensor name, compare.
//!
//! ```text
//! cargo run --release --example swap_linear                    # a GPU if any, else the CPU
//! cargo run --release --example swap_linear -- --backend flex  # the CPU
//! ```
//!
//! The change to a model is three lines per layer: the field's type, and how it is built
//! (`Q6kLinear::from_linear` from a trained `Linear`, or `Q6kLinear::from_gguf` from a file).
//! `forward` stays the same.

#[path = "common/backend.rs"]
mod backend;

use burn::module::Module;
use burn::nn::{Linear, LinearConfig, Relu};
use burn::tensor::{Device, Distribution, Tensor};
use burn_gguf::gguf::{GgufFile, GgufWriter};
use burn_gguf::nn::Q6kLinear;
use burn_gguf::quant::GgmlType;
use clap::Parser;

/// A user's model, as written today.
#[derive(Module, Debug)]
struct Mlp {
    fc1: Linear,
    fc2: Linear,
    fc3: Linear,
    act: Relu,
}

impl Mlp {
    fn new(device: &Device) -> Self {
        Mlp {
            fc1: LinearConfig::new(512, 1024).init(device),
            fc2: LinearConfig::new(1024, 768).init(device),
            fc3: LinearConfig::new(768, 256).init(device),
            act: Relu::new(),
        }
    }

    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let x = self.act.forward(self.fc1.forward(x));
        let x = self.act.forward(self.fc2.forward(x));
        self.fc3.forward(x)
    }
}

/// The same model with the three-line change: `Linear` → `Q6kLinear`.
#[derive(Module, Debug)]
struct QuantizedMlp {
    fc1: Q6kLinear,
    fc2: Q6kLinear,
    fc3: Q6kLinear,
    act: Relu,
}

impl QuantizedMlp {
    /// Quantizes a trained model (ggml's Q6_K quantizer, bit-exact).
    fn from_model(m: &Mlp) -> Result<Self, Box<dyn std::error::Error>> {
        Ok(QuantizedMlp {
            fc1: Q6kLinear::from_linear(&m.fc1)?,
            fc2: Q6kLinear::from_linear(&m.fc2)?,
            fc3: Q6kLinear::from_linear(&m.fc3)?,
            act: Relu::new(),
        })
    }

    /// Loads the layers by tensor name (`fc1.weight`, `fc1.bias`, …).
    fn from_gguf(file: &GgufFile, device: &Device) -> Result<Self, Box<dyn std::error::Error>> {
        Ok(QuantizedMlp {
            fc1: Q6kLinear::from_gguf(file, "fc1.weight", device)?,
            fc2: Q6kLinear::from_gguf(file, "fc2.weight", device)?,
            fc3: Q6kLinear::from_gguf(file, "fc3.weight", device)?,
            act: Relu::new(),
        })
    }

    /// Writes every layer as a Q6_K weight and an f32 bias.
    fn to_gguf(&self) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
        let mut w = GgufWriter::new();
        w.add_metadata("general.architecture", "swap-linear-demo")?;
        let layers = [("fc1", &self.fc1), ("fc2", &self.fc2), ("fc3", &self.fc3)];
        let mut biases = Vec::new();
        for (name, layer) in layers {
            // GGUF dims are `ne`: the input features first.
            let dims = [layer.d_input() as u64, layer.d_output() as u64];
            w.add_tensor(
                format!("{name}.weight"),
                &dims,
                GgmlType::Q6_K,
                layer.gguf_bytes()?,
            )?;
            if let Some(b) = &layer.bias {
                let values = host(b.val());
                biases.push((name, bytemuck::cast_slice(&values).to_vec()));
            }
        }
        for (name, bytes) in biases {
            w.add_tensor(
                format!("{name}.bias"),
                &[bytes.len() as u64 / 4],
                GgmlType::F32,
                bytes,
            )?;
        }
        Ok(w.to_bytes())
    }

    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let x = self.act.forward(self.fc1.forward(x));
        let x = self.act.forward(self.fc2.forward(x));
        self.fc3.forward(x)
    }

    fn memory_bytes(&self) -> usize {
        self.fc1.memory_bytes() + self.fc2.memory_bytes() + self.fc3.memory_bytes()
    }
}

#[derive(Parser)]
struct Args {
    /// Device: cuda, wgpu or flex (each needs its cargo feature); default: cuda where built,
    /// else a GPU through wgpu where the machine has one, else flex (the CPU).
    #[arg(long)]
    backend: Option<String>,
    /// Rows of the input batch.
    #[arg(long, default_value_t = 4)]
    batch: usize,
}

/// A tensor's values, read back to the host as f32.
fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_into_vec_as::<f32>().unwrap()
}

fn run(args: &Args, device: &Device) -> Result<(), Box<dyn std::error::Error>> {
    let model = Mlp::new(device);
    let x = Tensor::<2>::random([args.batch, 512], Distribution::Normal(0.0, 1.0), device);
    let y = host(model.forward(x.clone()));
    let f32_bytes = model.num_params() * 4;

    // Quantize, save, load back by name.
    let quantized = QuantizedMlp::from_model(&model)?;
    let bytes = quantized.to_gguf()?;
    let path = std::env::temp_dir().join(format!("swap_linear.{}.gguf", std::process::id()));
    std::fs::write(&path, &bytes)?;
    let file = GgufFile::open(&path)?;
    let loaded = QuantizedMlp::from_gguf(&file, device)?;
    drop(file);
    std::fs::remove_file(&path)?;
    for (a, b) in [
        (&loaded.fc1, &quantized.fc1),
        (&loaded.fc2, &quantized.fc2),
        (&loaded.fc3, &quantized.fc3),
    ] {
        assert_eq!(a.gguf_bytes()?, b.gguf_bytes()?, "exact round trip");
    }
    let yq = host(loaded.forward(x.clone()));

    // How far apart. End to end: the relative RMS error, next to Q6_K's relative weight error.
    // Layer by layer: each output within Σ_k |x_k| · |w_k − ŵ_k|, the bound Q6_K's weight error
    // allows (plus f32 rounding), given the same input.
    let rms =
        |v: &[f32]| (v.iter().map(|a| f64::from(*a).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
    let diff: Vec<f32> = y.iter().zip(&yq).map(|(a, b)| a - b).collect();
    let rel = rms(&diff) / rms(&y);
    let mut worst = 0.0f64;
    let (mut w_err, mut w_norm) = (0.0f64, 0.0f64);
    let mut input = x;
    for (dense, q) in [
        (&model.fc1, &loaded.fc1),
        (&model.fc2, &loaded.fc2),
        (&model.fc3, &loaded.fc3),
    ] {
        let (d_in, d_out) = (q.d_input(), q.d_output());
        let w = host(dense.weight.val());
        let wq = host(q.dequantize_weight());
        let xs = host(input.clone());
        let h = host(dense.forward(input.clone()));
        let hq = host(q.forward(input.clone()));
        for (a, b) in w.iter().zip(&wq) {
            w_err += f64::from(a - b).powi(2);
            w_norm += f64::from(*a).powi(2);
        }
        for r in 0..args.batch {
            for o in 0..d_out {
                let bound: f64 = (0..d_in)
                    .map(|k| {
                        f64::from(xs[r * d_in + k].abs())
                            * f64::from((w[k * d_out + o] - wq[k * d_out + o]).abs())
                    })
                    .sum();
                let abs: f64 = (0..d_in)
                    .map(|k| f64::from(xs[r * d_in + k].abs() * wq[k * d_out + o].abs()))
                    .sum();
                // f32 rounding of both products: a few ulps of Σ|x·w| (Higham's γ_K).
                let slack = 2.0 * d_in as f64 * f64::from(f32::EPSILON) * abs;
                let err = f64::from((h[r * d_out + o] - hq[r * d_out + o]).abs());
                worst = worst.max(err / (bound + slack));
            }
        }
        input = loaded.act.forward(q.forward(input));
    }

    println!("model: 512 → 1024 → 768 → 256 MLP, batch {}", args.batch);
    println!(
        "memory: {:.2} MiB as f32, {:.2} MiB with Q6kLinear ({:.2}x smaller)",
        f32_bytes as f64 / 1048576.0,
        quantized.memory_bytes() as f64 / 1048576.0,
        f32_bytes as f64 / quantized.memory_bytes() as f64
    );
    println!(
        "GGUF written and read back: {} bytes, weights byte-identical",
        bytes.len()
    );
    println!(
        "Q6_K weight error: {:.3}% (relative RMS); output vs the f32 model: {:.3}%",
        100.0 * (w_err / w_norm).sqrt(),
        100.0 * rel
    );
    println!("every layer: largest |error| / Q6_K bound = {worst:.3} (must be ≤ 1)");
    if worst > 1.0 {
        return Err("a layer's output differs by more than its Q6_K weight error allows".into());
    }
    println!("ok: the quantized model agrees with the original within Q6_K error");
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    #[cfg(feature = "cuda")]
    backend::cache_compiled_kernels();
    let picked = backend::device(args.backend.as_deref())?;
    eprintln!("device: {picked}");
    run(&args, &picked.device)
}
