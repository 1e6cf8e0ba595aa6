//! The fused Q6_K op and `Q6kLinear` on every backend of this build, against f64 math on the
//! dequantized weight, with fresh random data (the seed is printed), poisoned output buffers and
//! tolerances from the f32 error analysis (see `bound`).
//!
//! Backends: NdArray and Autodiff<NdArray> (feature `ndarray`); Wgpu (Fusion-wrapped, as Burn's
//! defaults make it), the raw CubeBackend and Autodiff<Wgpu> (feature `wgpu`, lavapipe in CI);
//! Cuda (feature `cuda`, only with `BURN_GGUF_CUDA=1`, on the GPU machine).
#![cfg(any(feature = "ndarray", feature = "wgpu", feature = "cuda"))]

mod common;

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Distribution, ElementConversion, Int, Tensor, TensorData};
use burn_gguf::nn::{Q6kLinear, Q6kLinearConfig, Q6kLinearError};
use burn_gguf::ops::{
    Q6kAutodiffBackend, Q6kBackend, Q6kLayout, Q6kShape, cpu, pack, packed_words, q6k_matmul,
};
use burn_gguf::quant::{BlockQ6K, q6k};
use common::Rng;

/// A random Q6_K weight `[n, k]`: its packed words and its exact dequantized values.
struct Weight {
    shape: Q6kShape,
    bytes: Vec<u8>,
    deq: Vec<f32>,
}

fn random_weight(rng: &mut Rng, n: usize, k: usize) -> Weight {
    let w: Vec<f32> = (0..n * k).map(|_| (rng.normal() * 0.05) as f32).collect();
    let blocks = q6k::quantize(&w, 0).unwrap();
    let bytes = BlockQ6K::slice_as_bytes(&blocks).to_vec();
    let mut deq = vec![0f32; n * k];
    q6k::dequantize_into(&blocks, &mut deq);
    Weight {
        shape: Q6kShape {
            out_features: n,
            in_features: k,
        },
        bytes,
        deq,
    }
}

fn random_x(rng: &mut Rng, len: usize) -> Vec<f32> {
    (0..len).map(|_| (rng.normal() + 0.1) as f32).collect()
}

/// Both device layouts: the aligned planes (the default, the fast kernel) and the GGUF bytes as
/// words (the first kernel version, kept reachable).
const LAYOUTS: [Q6kLayout; 2] = [Q6kLayout::Planes, Q6kLayout::Gguf];

fn packed<B: Backend>(w: &Weight, layout: Q6kLayout, device: &B::Device) -> Tensor<B, 1, Int> {
    let words = pack(&w.bytes, w.shape, layout);
    let n = words.len();
    Tensor::from_data(TensorData::new(words, [n]), (device, DType::I32))
}

/// Fills the device's memory pool with NaN buffers of `len` floats, so an output the kernel
/// forgets to write shows up as NaN instead of an old, correct-looking result.
fn poison<B: Backend>(len: usize, device: &B::Device) {
    for _ in 0..2 {
        let t = Tensor::<B, 1>::full([len], f32::NAN, device);
        let _ = t.into_data();
    }
}

/// The f32 error bound of a k-term dot product, in any summation order (with or without FMA):
/// |fl(Σ x·w) − Σ x·w| ≤ γ_k · Σ|x·w| with γ_k = k·u / (1 − k·u), u = 2⁻²⁴ (Higham, Thm 3.1).
/// The weights are exact (every Q6_K value is an f32), so this is the whole error of the fused
/// kernel and of an f32 matmul. A matmul that first rounds both inputs to a shorter format with
/// unit roundoff `u_in` (TF32 on CUDA tensor cores) adds at most 2·u_in (+ its square) per
/// product. An f16 output adds its rounding, half an f16 ulp: 2⁻¹¹·|y|.
fn bound(k: usize, abs_sum: f64, y: f64, f16_out: bool, u_in: f64) -> f64 {
    let u = 2f64.powi(-24);
    let gamma = k as f64 * u / (1.0 - k as f64 * u);
    let b = (gamma + 2.0 * u_in + u_in * u_in) * abs_sum;
    if f16_out {
        b + 2f64.powi(-11) * (y.abs() + b) + 6e-8
    } else {
        b + 1e-30
    }
}

/// The unit roundoff of the inputs of the backend's dense f32 matmul, which the op uses above
/// `FUSED_MAX_ROWS` rows: exact f32 (0) on NdArray and wgpu; TF32 on CUDA, where Burn's matmul
/// (cubek) converts f32 operands to TF32 for the tensor cores — 10 mantissa bits, so at most
/// 2⁻¹⁰ relative whether it rounds or truncates. A dense `Linear` has the same precision there.
#[derive(Clone, Copy)]
struct Dense {
    u_in: f64,
}
const EXACT: Dense = Dense { u_in: 0.0 };

/// The input roundoff for `m` activation rows: the fused kernel (m ≤ 8) reads f32 exactly.
fn u_in(dense: Dense, m: usize) -> f64 {
    if m <= burn_gguf::ops::FUSED_MAX_ROWS {
        0.0
    } else {
        dense.u_in
    }
}

/// Checks `got[m, n]` against f64 math on `x[m, k]` and the dequantized weight.
fn check(what: &str, got: &[f32], x: &[f32], w: &Weight, m: usize, f16_out: bool, u_in: f64) {
    let (n, k) = (w.shape.out_features, w.shape.in_features);
    assert_eq!(got.len(), m * n, "{what}: output length");
    for mi in 0..m {
        for ni in 0..n {
            let (mut exact, mut abs) = (0f64, 0f64);
            for ki in 0..k {
                let p = x[mi * k + ki] as f64 * w.deq[ni * k + ki] as f64;
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

/// (K, N, M) cases: every K, N and M of the issue, with the large ones combined sparingly.
const CASES: &[(usize, usize, usize)] = &[
    (256, 1, 1),
    (256, 3, 2),
    (256, 4099, 1),
    (256, 64, 64),
    (512, 64, 3),
    (512, 4099, 8),
    (512, 640, 17),
    (2048, 640, 8),
    (2048, 640, 9),
    (2048, 3, 64),
    (4096, 64, 17),
    (4096, 1, 9),
    (4096, 640, 1),
    (14336, 64, 1),
    (14336, 3, 64),
    (14336, 640, 2),
];

fn check_op<B: Q6kBackend>(name: &str, device: &B::Device, f16: bool, dense: Dense) {
    let mut rng = Rng::fresh(name);
    for (&(k, n, m), layout) in CASES.iter().flat_map(|c| LAYOUTS.map(|l| (c, l))) {
        let w = random_weight(&mut rng, n, k);
        let x = random_x(&mut rng, m * k);
        let xt = Tensor::<B, 2>::from_data(TensorData::new(x.clone(), [m, k]), device);
        let (xt, x_seen) = if f16 {
            let xh = xt.cast(burn::tensor::FloatDType::F16);
            let seen: Vec<f32> = x.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect();
            (xh, seen)
        } else {
            (xt, x)
        };
        poison::<B>(m * n, device);
        let y = q6k_matmul(xt, packed::<B>(&w, layout, device), w.shape);
        assert_eq!(y.dims(), [m, n]);
        if f16 {
            assert_eq!(
                y.dtype(),
                DType::F16,
                "the output keeps the activations' dtype"
            );
        }
        let got = y.into_data().convert::<f32>().to_vec::<f32>().unwrap();
        check(
            &format!("{name} {layout:?} K={k} N={n} M={m}"),
            &got,
            &x_seen,
            &w,
            m,
            f16,
            u_in(dense, m),
        );
    }
}

fn check_3d<B: Q6kBackend>(name: &str, device: &B::Device, dense: Dense) {
    let mut rng = Rng::fresh(name);
    for ((b, t), layout) in [(2, 3), (3, 3), (2, 17)]
        .into_iter()
        .zip(LAYOUTS.iter().cycle())
    {
        let w = random_weight(&mut rng, 37, 512);
        let x = random_x(&mut rng, b * t * 512);
        poison::<B>(b * t * 37, device);
        let xt = Tensor::<B, 3>::from_data(TensorData::new(x.clone(), [b, t, 512]), device);
        let y = q6k_matmul(xt, packed::<B>(&w, *layout, device), w.shape);
        assert_eq!(y.dims(), [b, t, 37]);
        check(
            &format!("{name} {layout:?} [{b}, {t}, 512]"),
            &y.into_data().to_vec::<f32>().unwrap(),
            &x,
            &w,
            b * t,
            false,
            u_in(dense, b * t),
        );
    }
}

/// The values of a layer's bias, which the layers under test always have.
fn bias_values<B: Backend>(bias: &Option<burn::module::Param<Tensor<B, 1>>>) -> Vec<f32> {
    let bias = bias.as_ref().expect("a bias");
    bias.val().into_data().to_vec::<f32>().unwrap()
}

/// `Q6kLinear` against `Linear` with the dequantized weight, and its constructors' contracts.
fn check_linear<B: Q6kBackend>(name: &str, device: &B::Device, dense_mm: Dense) {
    let mut rng = Rng::fresh(name);
    let linear: Linear<B> = LinearConfig::new(512, 96).init(device);
    let q = Q6kLinear::from_linear(&linear).unwrap();
    assert_eq!((q.d_input, q.d_output), (512, 96));
    // 6.5625 bits per weight (+ at most 28 bytes of planes header and padding, + the f32 bias)
    let packed_bytes = q.shape().words_in(Q6kLayout::preferred()) * 4;
    assert_eq!(q.memory_bytes(), packed_bytes + 96 * 4);
    assert!((512 * 96 * 210 / 256..=512 * 96 * 210 / 256 + 28).contains(&packed_bytes));
    let dense = LinearConfig::new(512, 96)
        .init::<B>(device)
        .load_record(linear.clone().into_record());
    let dense = Linear {
        weight: burn::module::Param::from_tensor(q.dequantize_weight()),
        ..dense
    };
    let xs = random_x(&mut rng, 2 * 5 * 512);
    let x = Tensor::<B, 3>::from_data(TensorData::new(xs.clone(), [2, 5, 512]), device);
    let (a, b) = (q.forward(x.clone()), dense.forward(x));
    let (a, b) = (
        a.into_data().to_vec::<f32>().unwrap(),
        b.into_data().to_vec::<f32>().unwrap(),
    );
    // Both against f64 on the dequantized weight and the bias. Ten rows take the dense path,
    // whose precision is the backend's matmul (TF32 on CUDA); the two products may run
    // different matmul kernels (autotuned), so they are not compared with each other.
    let w = q.dequantize_weight().into_data().to_vec::<f32>().unwrap(); // [512, 96]
    let bias = bias_values(&linear.bias);
    for (i, (p, r)) in a.iter().zip(&b).enumerate() {
        let (row, o) = (i / 96, i % 96);
        let (mut exact, mut abs) = (bias[o] as f64, bias[o].abs() as f64);
        for k in 0..512 {
            let t = xs[row * 512 + k] as f64 * w[k * 96 + o] as f64;
            exact += t;
            abs += t.abs();
        }
        let tol = bound(513, abs, exact, false, u_in(dense_mm, 10));
        assert!(
            (*p as f64 - exact).abs() <= tol && (*r as f64 - exact).abs() <= tol,
            "{name}: element {i}: Q6kLinear {p}, Linear {r}, f64 {exact} (tolerance {tol:e})"
        );
    }
    // dequantize_weight is the bit-exact ggml dequantization of from_linear's quantization
    let w_in_out = linear.weight.val().into_data().to_vec::<f32>().unwrap();
    let mut rows = vec![0f32; 512 * 96];
    for i in 0..512 {
        for o in 0..96 {
            rows[o * 512 + i] = w_in_out[i * 96 + o];
        }
    }
    let want = cpu::dequantize_slices(
        &bytemuck_words(&q6k::quantize(&rows, 0).unwrap()),
        q.shape(),
    );
    let got = q
        .dequantize_weight()
        .transpose()
        .into_data()
        .to_vec::<f32>()
        .unwrap();
    common::assert_bits_eq(name, &got, &want);
    assert!(matches!(
        Q6kLinear::from_linear(&LinearConfig::new(100, 4).init::<B>(device)),
        Err(Q6kLinearError::InputNotMultipleOf256 { d_input: 100 })
    ));
    assert!(Q6kLinearConfig::new(300, 4).init::<B>(device).is_err());
    assert!(matches!(
        Q6kLinear::<B>::from_q6k_bytes(&[0u8; 209], 256, 1, None, device),
        Err(Q6kLinearError::ByteLength {
            expected: 210,
            found: 209,
            ..
        })
    ));
    let c = Q6kLinearConfig::new(256, 4)
        .with_bias(false)
        .init::<B>(device)
        .unwrap();
    assert!(c.bias.is_none());
}

/// `Q6kLinear::from_gguf`: raw bytes and the bias by name, exactly; typed errors otherwise.
fn check_from_gguf<B: Q6kBackend>(name: &str, device: &B::Device) {
    use burn_gguf::gguf::{GgufFile, GgufWriter};
    use burn_gguf::quant::GgmlType;
    let mut rng = Rng::fresh(name);
    let w = random_weight(&mut rng, 5, 768);
    let bias: Vec<f32> = random_x(&mut rng, 5);
    let mut writer = GgufWriter::new();
    writer
        .add_tensor(
            "blk.3.ffn_down.weight",
            &[768, 5],
            GgmlType::Q6_K,
            w.bytes.clone(),
        )
        .unwrap();
    writer
        .add_tensor(
            "blk.3.ffn_down.bias",
            &[5],
            GgmlType::F32,
            common::f32_to_bytes(&bias),
        )
        .unwrap();
    writer
        .add_tensor(
            "blk.3.attn_v.weight",
            &[768, 5],
            GgmlType::F32,
            vec![0u8; 768 * 5 * 4],
        )
        .unwrap();
    writer
        .add_tensor(
            "blk.3.bad.weight",
            &[768, 5],
            GgmlType::Q6_K,
            w.bytes.clone(),
        )
        .unwrap();
    writer
        .add_tensor("blk.3.bad.bias", &[4], GgmlType::F32, vec![0u8; 16])
        .unwrap();
    let file = GgufFile::from_bytes(writer.to_bytes()).unwrap();
    let q = Q6kLinear::<B>::from_gguf(&file, "blk.3.ffn_down.weight", device).unwrap();
    assert_eq!((q.d_input, q.d_output), (768, 5));
    assert_eq!(q.q6k_bytes(), w.bytes);
    let got_bias = q
        .bias
        .as_ref()
        .expect("bias loaded")
        .val()
        .into_data()
        .to_vec::<f32>()
        .unwrap();
    assert_eq!(got_bias, bias);
    let x = random_x(&mut rng, 2 * 768);
    let y = q.forward(Tensor::<B, 2>::from_data(
        TensorData::new(x.clone(), [2, 768]),
        device,
    ));
    let y = y.into_data().to_vec::<f32>().unwrap();
    // The bias is one more summand: the γ bound of a (k+1)-term sum covers it.
    for mi in 0..2 {
        for ni in 0..5 {
            let mut exact = bias[ni] as f64;
            let mut abs = exact.abs();
            for ki in 0..768 {
                let p = x[mi * 768 + ki] as f64 * w.deq[ni * 768 + ki] as f64;
                exact += p;
                abs += p.abs();
            }
            let tol = bound(769, abs, exact, false, 0.0);
            assert!(
                (y[mi * 5 + ni] as f64 - exact).abs() <= tol,
                "{name}: y[{mi}, {ni}]"
            );
        }
    }
    assert!(matches!(
        Q6kLinear::<B>::from_gguf(&file, "blk.3.attn_v.weight", device),
        Err(Q6kLinearError::NotQ6kMatrix { .. })
    ));
    assert!(matches!(
        Q6kLinear::<B>::from_gguf(&file, "blk.3.bad.weight", device),
        Err(Q6kLinearError::BiasShape { .. })
    ));
    assert!(matches!(
        Q6kLinear::<B>::from_gguf(&file, "missing.weight", device),
        Err(Q6kLinearError::Gguf(
            burn_gguf::gguf::GgufError::TensorNotFound { .. }
        ))
    ));
}

fn bytemuck_words(blocks: &[BlockQ6K]) -> Vec<u32> {
    packed_words(BlockQ6K::slice_as_bytes(blocks))
        .into_iter()
        .map(|w| w as u32)
        .collect()
}

/// Gradients: `dL/dx` through `Q6kLinear` equals the one through a `Linear` holding the
/// dequantized weight, and f64 math (`g · W`); the packed weight gets no gradient.
fn check_autodiff<B: Q6kAutodiffBackend>(name: &str, device: &B::Device, dense: Dense) {
    let mut rng = Rng::fresh(name);
    for m in [1, 3, 12] {
        let (k, n) = (512, 48);
        let w = random_weight(&mut rng, n, k);
        let q = Q6kLinear::<B>::from_q6k_bytes(&w.bytes, k, n, None, device).unwrap();
        let x = random_x(&mut rng, m * k);
        let r = random_x(&mut rng, m * n);
        let xt =
            Tensor::<B, 2>::from_data(TensorData::new(x.clone(), [m, k]), device).require_grad();
        let rt = Tensor::<B, 2>::from_data(TensorData::new(r.clone(), [m, n]), device);
        let loss = (q.forward(xt.clone()) * rt).sum();
        let grads = loss.backward();
        let gx = xt
            .grad(&grads)
            .expect("x has a gradient")
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        // f64: g_x[m, k] = Σ_n r[m, n] · W[n, k]; bound as for a product of n terms
        for mi in 0..m {
            for ki in 0..k {
                let (mut exact, mut abs) = (0f64, 0f64);
                for ni in 0..n {
                    let p = r[mi * n + ni] as f64 * w.deq[ni * k + ki] as f64;
                    exact += p;
                    abs += p.abs();
                }
                let g = gx[mi * k + ki] as f64;
                let tol = bound(n, abs, exact, false, dense.u_in);
                assert!(
                    (g - exact).abs() <= tol,
                    "{name} m={m}: dx[{mi}, {ki}] = {g}, f64 {exact} (tol {tol:e})"
                );
            }
        }
        // the same through a dense Linear on the dequantized weight
        let dense = Linear {
            weight: burn::module::Param::from_tensor(q.dequantize_weight()),
            bias: None,
        };
        let xd = Tensor::<B, 2>::from_data(TensorData::new(x, [m, k]), device).require_grad();
        let rt = Tensor::<B, 2>::from_data(TensorData::new(r, [m, n]), device);
        let grads = (dense.forward(xd.clone()) * rt).sum().backward();
        let gd = xd
            .grad(&grads)
            .unwrap()
            .into_data()
            .to_vec::<f32>()
            .unwrap();
        for (a, b) in gx.iter().zip(&gd) {
            assert!(
                (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                "{name}: {a} vs dense {b}"
            );
        }
    }
    // valid(): the inner backend runs the same layer
    let w = random_weight(&mut rng, 8, 256);
    let q = Q6kLinear::<B>::from_q6k_bytes(&w.bytes, 256, 8, None, device).unwrap();
    let inner = burn::module::AutodiffModule::valid(&q);
    let x = Tensor::<B::InnerBackend, 2>::random([2, 256], Distribution::Normal(0.0, 1.0), device);
    assert_eq!(inner.forward(x).dims(), [2, 8]);
}

/// LoRA-style fine-tuning over a frozen Q6_K base: a rank-4 adapter learns a low-rank delta;
/// the loss falls and the base's bytes do not change.
fn check_lora<B: Q6kAutodiffBackend>(name: &str, device: &B::Device) {
    use burn::optim::{AdamConfig, GradientsParams, Optimizer};

    #[derive(Module, Debug)]
    struct Adapted<B: Backend> {
        base: Q6kLinear<B>,
        down: Linear<B>,
        up: Linear<B>,
    }
    impl<B: Q6kBackend> Adapted<B> {
        fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
            self.base.forward(x.clone()) + self.up.forward(self.down.forward(x))
        }
    }

    let mut rng = Rng::fresh(name);
    let (k, n, r) = (256, 32, 4);
    let w = random_weight(&mut rng, n, k);
    let base = Q6kLinear::<B>::from_q6k_bytes(&w.bytes, k, n, None, device).unwrap();
    let bytes_before = base.q6k_bytes();
    let mut model = Adapted {
        base,
        down: LinearConfig::new(k, r).with_bias(false).init(device),
        up: LinearConfig::new(r, n).with_bias(false).init(device),
    };
    // teacher: the base plus a fixed low-rank delta
    let a = Tensor::<B, 2>::random([k, r], Distribution::Normal(0.0, 0.05), device);
    let b = Tensor::<B, 2>::random([r, n], Distribution::Normal(0.0, 0.05), device);
    let mut opt = AdamConfig::new().init();
    let mut losses = vec![];
    for _ in 0..60 {
        let x = Tensor::<B, 2>::random([16, k], Distribution::Normal(0.0, 1.0), device);
        let target = model.base.forward(x.clone()).detach()
            + x.clone().matmul(a.clone()).matmul(b.clone()).detach();
        let loss = (model.forward(x) - target).powf_scalar(2.0).mean();
        losses.push(loss.clone().into_scalar().elem::<f32>());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = opt.step(5e-3, model, grads);
    }
    let (first, last) = (losses[0], losses[losses.len() - 1]);
    assert!(last < first * 0.2, "{name}: adapter loss {first} -> {last}");
    assert_eq!(
        model.base.q6k_bytes(),
        bytes_before,
        "{name}: the frozen base changed"
    );
}

/// The real Q6_K tensors of the Gemma-3 270M file (the `ffn_down` of 9 layers, 640 × 2048),
/// loaded as raw bytes through `Q6kLinear::from_gguf`, against f64 math on gguf-py-exact values.
fn check_gemma<B: Q6kBackend>(name: &str, device: &B::Device, dense: Dense) {
    let Some(path) = common::gemma_path(name) else {
        return;
    };
    let file = burn_gguf::gguf::GgufFile::open(path).unwrap();
    let mut rng = Rng::fresh(name);
    for layer in [0, 1, 4, 7, 10, 13, 15, 16, 17] {
        let tensor = format!("blk.{layer}.ffn_down.weight");
        let q = Q6kLinear::<B>::from_gguf(&file, &tensor, device).unwrap();
        assert_eq!((q.d_input, q.d_output), (2048, 640));
        assert_eq!(
            q.q6k_bytes(),
            file.tensor_data(&tensor).unwrap(),
            "{tensor}: GGUF -> device -> GGUF"
        );
        let w = Weight {
            shape: q.shape(),
            bytes: vec![],
            deq: file.dequantize(&tensor).unwrap(),
        };
        let m = [1, 3, 8, 9][layer % 4];
        let x = random_x(&mut rng, m * 2048);
        poison::<B>(m * 640, device);
        let y = q.forward(Tensor::<B, 2>::from_data(
            TensorData::new(x.clone(), [m, 2048]),
            device,
        ));
        check(
            &format!("{name} {tensor} M={m}"),
            &y.into_data().to_vec::<f32>().unwrap(),
            &x,
            &w,
            m,
            false,
            u_in(dense, m),
        );
    }
}

/// Burn's recorder round-trips the Q6_K bytes exactly.
fn check_record<B: Q6kBackend>(name: &str, device: &B::Device) {
    use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder};
    let mut rng = Rng::fresh(name);
    let w = random_weight(&mut rng, 20, 768);
    let bias = Tensor::<B, 1>::random([20], Distribution::Normal(0.0, 1.0), device);
    let q = Q6kLinear::<B>::from_q6k_bytes(&w.bytes, 768, 20, Some(bias), device).unwrap();
    assert_eq!(q.q6k_bytes(), w.bytes, "{name}: device -> GGUF bytes");
    let path = common::scratch(name).join("layer");
    let recorder = NamedMpkFileRecorder::<FullPrecisionSettings>::new();
    q.clone().save_file(&path, &recorder).unwrap();
    let fresh = Q6kLinear::<B>::from_q6k_bytes(
        &vec![0u8; w.bytes.len()],
        768,
        20,
        Some(Tensor::zeros([20], device)),
        device,
    )
    .unwrap();
    let loaded = fresh.load_file(&path, &recorder, device).unwrap();
    assert_eq!(loaded.q6k_bytes(), w.bytes, "{name}: bytes after save/load");
    let x = Tensor::<B, 2>::random([3, 768], Distribution::Normal(0.0, 1.0), device);
    let (a, b) = (
        q.forward(x.clone()).into_data(),
        loaded.forward(x.clone()).into_data(),
    );
    assert_eq!(a.to_vec::<f32>().unwrap(), b.to_vec::<f32>().unwrap());

    // A layer saved before the planes layout existed holds the GGUF bytes as words: it loads
    // into a new layer, gives the same bytes back and computes the same product.
    let old = Q6kLinear {
        weight: burn::module::Param::initialized(
            burn::module::ParamId::new(),
            packed::<B>(&w, Q6kLayout::Gguf, device),
        ),
        ..q.clone()
    };
    let old_path = common::scratch(name).join("gguf-layout-layer");
    old.save_file(&old_path, &recorder).unwrap();
    let zero_bias = Some(Tensor::zeros([20], device));
    let fresh = Q6kLinear::<B>::from_q6k_bytes(&w.bytes, 768, 20, zero_bias, device).unwrap();
    let from_old = fresh.load_file(&old_path, &recorder, device).unwrap();
    assert_eq!(from_old.q6k_bytes(), w.bytes, "{name}: GGUF-layout record");
    let xs = x.into_data().to_vec::<f32>().unwrap();
    let bias = bias_values(&q.bias);
    let got = from_old.forward(Tensor::<B, 2>::from_data(
        TensorData::new(xs.clone(), [3, 768]),
        device,
    ));
    let got: Vec<f32> = got.into_data().to_vec::<f32>().unwrap();
    let unbiased: Vec<f32> = got
        .iter()
        .enumerate()
        .map(|(i, v)| v - bias[i % 20])
        .collect();
    let mut deq = vec![0f32; 20 * 768];
    q6k::dequantize_into(BlockQ6K::slice_from_bytes(&w.bytes).unwrap(), &mut deq);
    let wt = Weight {
        shape: w.shape,
        bytes: vec![],
        deq,
    };
    check(
        &format!("{name} GGUF-layout record"),
        &unbiased,
        &xs,
        &wt,
        3,
        false,
        1e-6,
    );
}

/// The kernels themselves, called directly so that no CPU fallback can hide a failure: the fused
/// kernel and the dequantize kernel, both layouts, odd row counts, 1..=8 activation rows.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
fn check_kernels<R: burn_cubecl::CubeRuntime>(name: &str, device: &R::Device) {
    use burn::tensor::TensorPrimitive;
    type B<R> = burn_cubecl::CubeBackend<R, f32, i32, u32>;
    let mut rng = Rng::fresh(name);
    // The default launch geometry, then forced ones (rows and warps per cube, units per
    // iteration): the tuning runs may pick any of them.
    let tuning = |rows, warps, per_iter, weights_path, pipeline| {
        Some(burn_gguf::kernel::PlanesTuning {
            rows,
            warps,
            per_iter,
            weights_path,
            pipeline,
        })
    };
    let geometries = [
        None,
        tuning(1, 1, 2, false, false),
        tuning(3, 2, 1, false, false),
        tuning(4, 4, 2, false, false),
        tuning(8, 1, 1, false, false),
        // One activation row through the several-rows (dequantized weights) path.
        tuning(2, 3, 1, true, false),
        // Pipelined loads, with tails: 40 units a row on 32 threads, 48 on 2 × 2 × 32.
        tuning(4, 1, 1, false, true),
        tuning(3, 2, 2, false, true),
    ];
    let cases = [
        (512, 37, 1),
        (2048, 65, 8),
        (256, 3, 5),
        (14336, 9, 2),
        (768, 11, 3),
        (1280, 23, 1),
        (2560, 7, 1),
        (3072, 13, 4),
    ];
    for (ci, (k, n, m)) in cases.into_iter().enumerate() {
        for layout in LAYOUTS {
            let geometry = geometries[ci % geometries.len()];
            burn_gguf::kernel::override_planes_geometry(geometry);
            let what = format!("{name} {layout:?} K={k} N={n} M={m} geometry {geometry:?}");
            let w = random_weight(&mut rng, n, k);
            let x = random_x(&mut rng, m * k);
            let xt = Tensor::<B<R>, 2>::from_data(TensorData::new(x.clone(), [m, k]), device);
            let p = packed::<B<R>>(&w, layout, device);
            poison::<B<R>>(m * n, device);
            let y = burn_gguf::kernel::q6k_gemv(
                xt.into_primitive().tensor(),
                p.clone().into_primitive(),
                w.shape,
            )
            .unwrap_or_else(|e| panic!("{what}: the fused kernel did not run: {e}"));
            let y = Tensor::<B<R>, 2>::from_primitive(TensorPrimitive::Float(y));
            check(
                &what,
                &y.into_data().to_vec::<f32>().unwrap(),
                &x,
                &w,
                m,
                false,
                0.0,
            );
            poison::<B<R>>(n * k, device);
            let d = burn_gguf::kernel::q6k_dequantize(p.into_primitive(), w.shape, DType::F32)
                .unwrap_or_else(|e| panic!("{what}: the dequantize kernel did not run: {e}"));
            let d = Tensor::<B<R>, 2>::from_primitive(TensorPrimitive::Float(d));
            let got = d.into_data().to_vec::<f32>().unwrap();
            assert!(
                got.iter()
                    .zip(&w.deq)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{what}: dequantized weight differs from ggml's"
            );
        }
    }
    burn_gguf::kernel::override_planes_geometry(None);
    // A buffer of the wrong length is refused with the reason, not read out of bounds.
    let w = random_weight(&mut rng, 4, 256);
    let mut words = pack(&w.bytes, w.shape, Q6kLayout::Planes);
    words.push(0);
    let len = words.len();
    let p = Tensor::<B<R>, 1, Int>::from_data(TensorData::new(words, [len]), (device, DType::I32));
    let x = Tensor::<B<R>, 2>::ones([1, 256], device);
    let err =
        match burn_gguf::kernel::q6k_gemv(x.into_primitive().tensor(), p.into_primitive(), w.shape)
        {
            Ok(_) => panic!("{name}: a packed weight of the wrong length was accepted"),
            Err(e) => e,
        };
    assert!(err.contains("words"), "{err}");
}

#[cfg(feature = "ndarray")]
mod ndarray {
    use super::*;
    use burn::backend::{Autodiff, NdArray};

    #[test]
    fn matmul_ndarray() {
        check_op::<NdArray>("matmul_ndarray", &Default::default(), false, EXACT);
        check_3d::<NdArray>("matmul_3d_ndarray", &Default::default(), EXACT);
    }
    #[test]
    fn linear_ndarray() {
        check_linear::<NdArray>("linear_ndarray", &Default::default(), EXACT);
        check_from_gguf::<NdArray>("from_gguf_ndarray", &Default::default());
        check_record::<NdArray>("record_ndarray", &Default::default());
        check_gemma::<NdArray>("gemma_ndarray", &Default::default(), EXACT);
    }
    #[test]
    fn autodiff_ndarray() {
        check_autodiff::<Autodiff<NdArray>>("autodiff_ndarray", &Default::default(), EXACT);
        check_lora::<Autodiff<NdArray>>("lora_ndarray", &Default::default());
    }
}

#[cfg(feature = "wgpu")]
mod wgpu {
    use super::*;
    use burn::backend::wgpu::{CubeBackend, WgpuRuntime};
    use burn::backend::{Autodiff, Wgpu};

    fn device() -> Option<burn::backend::wgpu::WgpuDevice> {
        use burn_cubecl::cubecl::{Runtime, features::Plane};
        let device = Default::default();
        if std::panic::catch_unwind(|| Tensor::<Wgpu, 1>::zeros([1], &device).into_data()).is_ok() {
            let props = WgpuRuntime::client(&device).properties().clone();
            eprintln!(
                "wgpu device: plane ops {}, plane size {}..{} (the kernel's {} reduction runs)",
                props.features.plane.contains(Plane::Ops),
                props.hardware.plane_size_min,
                props.hardware.plane_size_max,
                if props.features.plane.contains(Plane::Ops) {
                    "plane"
                } else {
                    "shared-memory"
                }
            );
            return Some(device);
        }
        assert!(
            std::env::var("BURN_GGUF_REQUIRE_WGPU").as_deref() != Ok("1"),
            "no wgpu adapter"
        );
        eprintln!("SKIP wgpu tests: no wgpu adapter (no GPU and no lavapipe)");
        None
    }

    #[test]
    fn matmul_wgpu() {
        let Some(d) = device() else { return };
        check_op::<Wgpu>("matmul_wgpu", &d, false, EXACT);
        check_3d::<Wgpu>("matmul_3d_wgpu", &d, EXACT);
        check_op::<CubeBackend<WgpuRuntime, f32, i32, u32>>("matmul_wgpu_cube", &d, false, EXACT);
        check_kernels::<WgpuRuntime>("kernels_wgpu", &d);
    }
    #[test]
    fn matmul_wgpu_f16() {
        let Some(d) = device() else { return };
        check_op::<Wgpu>("matmul_wgpu_f16", &d, true, EXACT);
    }
    #[test]
    fn linear_wgpu() {
        let Some(d) = device() else { return };
        check_linear::<Wgpu>("linear_wgpu", &d, EXACT);
        check_from_gguf::<Wgpu>("from_gguf_wgpu", &d);
        check_record::<Wgpu>("record_wgpu", &d);
        check_gemma::<Wgpu>("gemma_wgpu", &d, EXACT);
    }
    #[test]
    fn autodiff_wgpu() {
        let Some(d) = device() else { return };
        check_autodiff::<Autodiff<Wgpu>>("autodiff_wgpu", &d, EXACT);
        check_lora::<Autodiff<Wgpu>>("lora_wgpu", &d);
    }
}

#[cfg(feature = "cuda")]
mod cuda {
    use super::*;

    const TF32: Dense = Dense { u_in: 1.0 / 1024.0 };
    use burn::backend::{Autodiff, Cuda};

    fn enabled() -> bool {
        if std::env::var("BURN_GGUF_CUDA").as_deref() == Ok("1") {
            return true;
        }
        eprintln!("SKIP cuda tests: set BURN_GGUF_CUDA=1 on a machine with an NVIDIA GPU");
        false
    }

    #[test]
    fn matmul_cuda() {
        if !enabled() {
            return;
        }
        let d = Default::default();
        check_kernels::<cubecl::cuda::CudaRuntime>("kernels_cuda", &d);
        check_op::<Cuda>("matmul_cuda", &d, false, TF32);
        check_op::<Cuda>("matmul_cuda_f16", &d, true, TF32);
        check_3d::<Cuda>("matmul_3d_cuda", &d, TF32);
        check_linear::<Cuda>("linear_cuda", &d, TF32);
        check_from_gguf::<Cuda>("from_gguf_cuda", &d);
        check_record::<Cuda>("record_cuda", &d);
        check_gemma::<Cuda>("gemma_cuda", &d, TF32);
    }
    #[test]
    fn autodiff_cuda() {
        if !enabled() {
            return;
        }
        check_autodiff::<Autodiff<Cuda>>("autodiff_cuda", &Default::default(), TF32);
        check_lora::<Autodiff<Cuda>>("lora_cuda", &Default::default());
    }
}
