//! The quantized Q6_K op and `Q6kLinear` on every device of this build, against f64 math on the
//! dequantized weight, with fresh random data (the seed is printed), poisoned output buffers and
//! tolerances from the f32 error analysis (see `bound`). Both on-device layouts (aligned planes,
//! the default, and the GGUF bytes as words) are tested wherever a weight is.
//!
//! Devices: Flex and Flex with autodiff (feature `flex`); wgpu (Fusion-wrapped, as Burn's
//! defaults make it), the unfused `CubeBackend` impl and the kernels themselves on hand-built
//! `CubeTensor`s, and wgpu with autodiff (feature `wgpu`, lavapipe in CI); CUDA (feature `cuda`,
//! only with `BURN_GGUF_CUDA=1`, on the GPU machine).
#![cfg(any(feature = "flex", feature = "wgpu", feature = "cuda"))]

mod common;

use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{DType, Device, Distribution, FloatDType, Int, Tensor, TensorData};
use burn_gguf::cpu;
use burn_gguf::gguf::{GgufError, GgufFile, GgufWriter};
use burn_gguf::nn::{Q6kLinear, Q6kLinearConfig, QuantLinear, QuantLinearError};
use burn_gguf::ops::{QuantWeight, quant_matmul, read_words, upload_words};
use burn_gguf::quant::Activations::Float;
use burn_gguf::quant::{
    Activations, BlockQ6K, GgmlType, PackError, PackedLayout, QuantWeightDesc, pack, q6k,
};
use common::Rng;
#[cfg(any(feature = "wgpu", feature = "cuda"))]
use common::cube::{Cube, cube_floats};

/// A random Q6_K weight `[n, k]`: its GGUF bytes and its exact dequantized values.
struct Weight {
    n: usize,
    k: usize,
    bytes: Vec<u8>,
    deq: Vec<f32>,
}

impl Weight {
    /// The weight described in `layout`.
    fn desc(&self, layout: PackedLayout) -> QuantWeightDesc {
        QuantWeightDesc::q6k(self.n, self.k)
            .unwrap()
            .with_layout(layout)
            .unwrap()
    }
}

fn random_weight(rng: &mut Rng, n: usize, k: usize) -> Weight {
    let w: Vec<f32> = (0..n * k).map(|_| (rng.normal() * 0.05) as f32).collect();
    let blocks = q6k::quantize(&w, 0).unwrap();
    let bytes = BlockQ6K::slice_as_bytes(&blocks).to_vec();
    let mut deq = vec![0f32; n * k];
    q6k::dequantize_into(&blocks, &mut deq);
    Weight { n, k, bytes, deq }
}

fn random_x(rng: &mut Rng, len: usize) -> Vec<f32> {
    (0..len).map(|_| (rng.normal() + 0.1) as f32).collect()
}

/// Both device layouts: the aligned planes (the default, the fast kernel) and the GGUF bytes as
/// words (the first kernel version, kept reachable).
const LAYOUTS: [PackedLayout; 2] = [PackedLayout::Q6kPlanes, PackedLayout::Gguf];

/// The packed words of `w` in `layout`, uploaded exactly (`U32`).
fn packed(w: &Weight, layout: PackedLayout, device: &Device) -> Tensor<1, Int> {
    let words = upload_words(pack(&w.bytes, w.desc(layout)).unwrap(), device);
    assert_eq!(words.dtype(), DType::U32, "the words are uploaded as U32");
    words
}

/// The values of an f32 tensor (an error if it is not f32).
fn floats<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_into_vec::<f32>().expect("f32 values")
}

/// Fills the device's memory pool with NaN buffers of `len` floats, so an output the kernel
/// forgets to write shows up as NaN instead of an old, correct-looking result.
fn poison(len: usize, device: &Device) {
    for _ in 0..2 {
        let t = Tensor::<1>::full([len], f32::NAN, device);
        let _ = floats(t);
    }
}

/// The unit roundoff of the inputs of the device's dense f32 matmul, which the op uses above
/// `FUSED_MAX_ROWS` rows: exact f32 (0) on Flex and wgpu; TF32 on CUDA, where Burn's matmul
/// (cubek) converts f32 operands to TF32 for the tensor cores — 10 mantissa bits, so at most
/// 2⁻¹⁰ relative whether it rounds or truncates. A dense `Linear` has the same precision there.
#[derive(Clone, Copy)]
struct Dense {
    u_in: f64,
}
#[cfg_attr(not(any(feature = "flex", feature = "wgpu")), allow(dead_code))]
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
    common::check_product(what, got, x, &w.deq, (w.n, w.k), m, f16_out, u_in);
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

/// `quant_matmul` through Burn's dispatch (the device's backend, Fusion-wrapped on the GPU).
fn check_op(name: &str, device: &Device, f16: bool, dense: Dense) {
    let mut rng = Rng::fresh(name);
    for (&(k, n, m), layout) in CASES.iter().flat_map(|c| LAYOUTS.map(|l| (c, l))) {
        let w = random_weight(&mut rng, n, k);
        let x = random_x(&mut rng, m * k);
        let xt = Tensor::<2>::from_data(TensorData::new(x.clone(), [m, k]), device);
        let (xt, x_seen) = if f16 {
            let xh = xt.cast(FloatDType::F16);
            let seen: Vec<f32> = x.iter().map(|&v| half::f16::from_f32(v).to_f32()).collect();
            (xh, seen)
        } else {
            (xt, x)
        };
        poison(m * n, device);
        let y = quant_matmul(xt, packed(&w, layout, device), w.desc(layout), Float);
        assert_eq!(y.dims(), [m, n]);
        let want = if f16 { DType::F16 } else { DType::F32 };
        assert_eq!(y.dtype(), want, "the output keeps the activations' dtype");
        let got = y.into_data().try_into_vec_as::<f32>().unwrap();
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

/// Rank-3 activations through the `QuantWeight` handle, and its dequantization (bit-exact).
fn check_3d(name: &str, device: &Device, dense: Dense) {
    let mut rng = Rng::fresh(name);
    for ((b, t), layout) in [(2, 3), (3, 3), (2, 17)]
        .into_iter()
        .zip(LAYOUTS.iter().cycle())
    {
        let w = random_weight(&mut rng, 37, 512);
        let desc = w.desc(*layout);
        let qw = QuantWeight::from_gguf_bytes(&w.bytes, desc, device).unwrap();
        assert_eq!(qw.memory_bytes(), desc.n_words() * 4);
        let x = random_x(&mut rng, b * t * 512);
        poison(b * t * 37, device);
        let xt = Tensor::<3>::from_data(TensorData::new(x.clone(), [b, t, 512]), device);
        let y = qw.matmul(xt, Float);
        assert_eq!(y.dims(), [b, t, 37]);
        check(
            &format!("{name} {layout:?} [{b}, {t}, 512]"),
            &floats(y),
            &x,
            &w,
            b * t,
            false,
            u_in(dense, b * t),
        );
        let d = qw.dequantize();
        assert_eq!(d.dims(), [37, 512]);
        common::assert_bits_eq(
            &format!("{name} {layout:?}: dequantized weight"),
            &floats(d),
            &w.deq,
        );
        assert_eq!(qw.to_gguf_bytes().unwrap(), w.bytes, "{name} {layout:?}");
    }
}

/// The values of a layer's bias, which the layers under test always have.
fn bias_values(bias: &Option<Param<Tensor<1>>>) -> Vec<f32> {
    floats(bias.as_ref().expect("a bias").val())
}

/// `Q6kLinear` against `Linear` with the dequantized weight, and its constructors' contracts.
fn check_linear(name: &str, device: &Device, dense_mm: Dense) {
    let mut rng = Rng::fresh(name);
    let linear = LinearConfig::new(512, 96).init(device);
    let q = Q6kLinear::from_linear(&linear).unwrap();
    assert_eq!((q.d_input(), q.d_output()), (512, 96));
    assert_eq!(
        q.desc(),
        QuantWeightDesc::q6k(96, 512).unwrap(),
        "from_linear packs Q6_K in the default layout"
    );
    // 6.5625 bits per weight (+ at most 28 bytes of planes header and padding, + the f32 bias)
    let packed_bytes = q.desc().n_words() * 4;
    assert_eq!(q.memory_bytes(), packed_bytes + 96 * 4);
    assert!((512 * 96 * 210 / 256..=512 * 96 * 210 / 256 + 28).contains(&packed_bytes));
    let dense = Linear {
        weight: Param::from_tensor(q.dequantize_weight()),
        bias: linear.bias.clone(),
    };
    let xs = random_x(&mut rng, 2 * 5 * 512);
    let x = Tensor::<3>::from_data(TensorData::new(xs.clone(), [2, 5, 512]), device);
    let (a, b) = (q.forward(x.clone()), dense.forward(x));
    assert_eq!(a.dims(), [2, 5, 96]);
    let (a, b) = (floats(a), floats(b));
    // Both against f64 on the dequantized weight and the bias. Ten rows take the dense path,
    // whose precision is the device's matmul (TF32 on CUDA); the two products may run
    // different matmul kernels (autotuned), so they are not compared with each other.
    let w = floats(q.dequantize_weight()); // [512, 96]
    let bias = bias_values(&linear.bias);
    for (i, (p, r)) in a.iter().zip(&b).enumerate() {
        let (row, o) = (i / 96, i % 96);
        let (mut exact, mut abs) = (bias[o] as f64, bias[o].abs() as f64);
        for k in 0..512 {
            let t = xs[row * 512 + k] as f64 * w[k * 96 + o] as f64;
            exact += t;
            abs += t.abs();
        }
        let tol = common::bound(513, abs, exact, false, u_in(dense_mm, 10));
        assert!(
            (*p as f64 - exact).abs() <= tol && (*r as f64 - exact).abs() <= tol,
            "{name}: element {i}: Q6kLinear {p}, Linear {r}, f64 {exact} (tolerance {tol:e})"
        );
    }
    // from_linear is ggml's quantizer byte for byte, and dequantize_weight its bit-exact
    // dequantization
    let w_in_out = floats(linear.weight.val());
    let mut rows = vec![0f32; 512 * 96];
    for i in 0..512 {
        for o in 0..96 {
            rows[o * 512 + i] = w_in_out[i * 96 + o];
        }
    }
    let ggml_bytes = BlockQ6K::slice_as_bytes(&q6k::quantize(&rows, 0).unwrap()).to_vec();
    assert_eq!(
        q.gguf_bytes().unwrap(),
        ggml_bytes,
        "{name}: from_linear's bytes"
    );
    let want = cpu::dequantize(&pack(&ggml_bytes, q.desc()).unwrap(), q.desc()).unwrap();
    let got = floats(q.dequantize_weight().transpose());
    common::assert_bits_eq(name, &got, &want);
    // typed errors
    assert!(matches!(
        Q6kLinear::from_linear(&LinearConfig::new(100, 4).init(device)),
        Err(QuantLinearError::Pack(PackError::Columns {
            in_features: 100,
            ..
        }))
    ));
    assert!(matches!(
        Q6kLinearConfig::new(300, 4).init(device),
        Err(QuantLinearError::Pack(PackError::Columns {
            in_features: 300,
            ..
        }))
    ));
    assert!(matches!(
        Q6kLinear::from_gguf_bytes(
            &[0u8; 209],
            QuantWeightDesc::q6k(1, 256).unwrap(),
            None,
            device
        ),
        Err(QuantLinearError::Pack(PackError::ByteLength {
            expected: 210,
            found: 209,
            ..
        }))
    ));
    let c = Q6kLinearConfig::new(256, 4)
        .with_bias(false)
        .init(device)
        .unwrap();
    assert!(c.bias.is_none());
    assert_eq!(c.memory_bytes(), c.desc().n_words() * 4);
}

/// `Q6kLinear::from_gguf`: raw bytes and the bias by name, exactly; typed errors otherwise.
fn check_from_gguf(name: &str, device: &Device) {
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
    writer
        .add_tensor(
            "blk.3.cube.weight",
            &[256, 2, 3],
            GgmlType::Q6_K,
            vec![0u8; 6 * 210],
        )
        .unwrap();
    let file = GgufFile::from_bytes(writer.to_bytes()).unwrap();
    let q = Q6kLinear::from_gguf(&file, "blk.3.ffn_down.weight", device).unwrap();
    assert_eq!((q.d_input(), q.d_output()), (768, 5));
    assert_eq!(q.desc().layout, PackedLayout::Q6kPlanes);
    assert_eq!(q.gguf_bytes().unwrap(), w.bytes);
    assert_eq!(bias_values(&q.bias), bias);
    let x = random_x(&mut rng, 2 * 768);
    let y = q.forward(Tensor::<2>::from_data(
        TensorData::new(x.clone(), [2, 768]),
        device,
    ));
    let y = floats(y);
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
            let tol = common::bound(769, abs, exact, false, 0.0);
            assert!(
                (y[mi * 5 + ni] as f64 - exact).abs() <= tol,
                "{name}: y[{mi}, {ni}]"
            );
        }
    }
    assert!(matches!(
        Q6kLinear::from_gguf(&file, "blk.3.attn_v.weight", device),
        Err(QuantLinearError::Pack(PackError::Unsupported {
            ggml_type: GgmlType::F32
        }))
    ));
    assert!(matches!(
        Q6kLinear::from_gguf(&file, "blk.3.cube.weight", device),
        Err(QuantLinearError::NotMatrix { .. })
    ));
    assert!(matches!(
        Q6kLinear::from_gguf(&file, "blk.3.bad.weight", device),
        Err(QuantLinearError::BiasShape { d_output: 5, .. })
    ));
    assert!(matches!(
        Q6kLinear::from_gguf(&file, "missing.weight", device),
        Err(QuantLinearError::Gguf(GgufError::TensorNotFound { .. }))
    ));
}

/// Counts a module's float parameters that take gradients and its `Int` parameters (which never
/// do).
#[cfg(feature = "autodiff")]
#[derive(Debug, Default, PartialEq, Eq)]
struct Params {
    trainable_float: usize,
    int: usize,
}

#[cfg(feature = "autodiff")]
impl burn::module::ModuleVisitor for Params {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if param.val().is_require_grad() {
            self.trainable_float += 1;
        }
    }
    fn visit_int<const D: usize>(&mut self, _param: &Param<Tensor<D, Int>>) {
        self.int += 1;
    }
}

#[cfg(feature = "autodiff")]
fn params<M: Module>(module: &M) -> Params {
    let mut p = Params::default();
    module.visit(&mut p);
    p
}

/// Gradients: `dL/dx` through `Q6kLinear` equals the one through a `Linear` holding the
/// dequantized weight, and f64 math (`g · W`); the packed weight is an `Int` parameter, which
/// gets no gradient.
#[cfg(feature = "autodiff")]
fn check_autodiff(name: &str, device: &Device, dense: Dense) {
    use burn::module::ParamId;
    assert!(device.is_autodiff(), "{name}: an autodiff device");
    let mut rng = Rng::fresh(name);
    for (m, layout) in [1, 3, 12].into_iter().flat_map(|m| LAYOUTS.map(|l| (m, l))) {
        let what = format!("{name} {layout:?} m={m}");
        let (k, n) = (512, 48);
        let w = random_weight(&mut rng, n, k);
        let q = Q6kLinear::from_gguf_bytes(&w.bytes, w.desc(layout), None, device).unwrap();
        assert_eq!(
            params(&q),
            Params {
                trainable_float: 0,
                int: 1
            },
            "{what}: the packed weight is the layer's only parameter, and it is frozen"
        );
        let x = random_x(&mut rng, m * k);
        let r = random_x(&mut rng, m * n);
        let xt = Tensor::<2>::from_data(TensorData::new(x.clone(), [m, k]), device).require_grad();
        let rt = Tensor::<2>::from_data(TensorData::new(r.clone(), [m, n]), device);
        let loss = (q.forward(xt.clone()) * rt).sum();
        let grads = loss.backward();
        let gx = floats(xt.grad(&grads).expect("x has a gradient"));
        // f64: g_x[m, k] = Σ_n r[m, n] · W[n, k]; bound as for a product of n terms
        let mut reference = Vec::with_capacity(m * k);
        for mi in 0..m {
            for ki in 0..k {
                let (mut exact, mut abs) = (0f64, 0f64);
                for ni in 0..n {
                    let p = r[mi * n + ni] as f64 * w.deq[ni * k + ki] as f64;
                    exact += p;
                    abs += p.abs();
                }
                let g = gx[mi * k + ki] as f64;
                let tol = common::bound(n, abs, exact, false, dense.u_in);
                assert!(
                    (g - exact).abs() <= tol,
                    "{what}: dx[{mi}, {ki}] = {g}, f64 {exact} (tol {tol:e})"
                );
                reference.push((exact, tol));
            }
        }
        // the same through a dense Linear on the dequantized weight (a constant)
        let dense = Linear {
            weight: Param::initialized(ParamId::new(), q.dequantize_weight()),
            bias: None,
        };
        let xd = Tensor::<2>::from_data(TensorData::new(x, [m, k]), device).require_grad();
        let rt = Tensor::<2>::from_data(TensorData::new(r, [m, n]), device);
        let grads = (dense.forward(xd.clone()) * rt).sum().backward();
        let gd = floats(xd.grad(&grads).unwrap());
        // Both gradients are within `tol` of f64 (the dense one is checked here too), so they
        // differ by at most 2·tol: TF32 products on CUDA, f32 rounding elsewhere.
        for ((a, b), (exact, tol)) in gx.iter().zip(&gd).zip(&reference) {
            let (a, b) = (f64::from(*a), f64::from(*b));
            assert!(
                (b - exact).abs() <= *tol,
                "{what}: dense dx {b}, f64 {exact} (tol {tol:e})"
            );
            assert!(
                (a - b).abs() <= (1e-4 * (1.0 + b.abs())).max(2.0 * tol),
                "{what}: {a} vs dense {b}"
            );
        }
    }
    // valid(): the same layer without autodiff
    let w = random_weight(&mut rng, 8, 256);
    let q = Q6kLinear::from_gguf_bytes(&w.bytes, w.desc(PackedLayout::Q6kPlanes), None, device)
        .unwrap();
    let inner = q.valid();
    let plain = device.clone().inner();
    let x = Tensor::<2>::random([2, 256], Distribution::Normal(0.0, 1.0), &plain);
    let y = inner.forward(x);
    assert_eq!(y.dims(), [2, 8]);
    assert!(!y.is_autodiff(), "{name}: valid() leaves autodiff");
    assert_eq!(inner.gguf_bytes().unwrap(), w.bytes);
}

/// LoRA-style fine-tuning over a frozen Q6_K base: a rank-4 adapter learns a low-rank delta;
/// the loss falls and the base's bytes do not change.
///
/// The optimizer is Adam with Burn's defaults (β = (0.9, 0.999), ε = 1e-5), stepped on the host:
/// this crate builds Burn without its `optim` feature.
#[cfg(feature = "autodiff")]
fn check_lora(name: &str, device: &Device) {
    #[derive(Module, Debug)]
    struct Adapted {
        base: Q6kLinear,
        down: Linear,
        up: Linear,
    }
    impl Adapted {
        fn forward(&self, x: Tensor<2>) -> Tensor<2> {
            self.base.forward(x.clone()) + self.up.forward(self.down.forward(x))
        }
    }

    struct Adam {
        m: Vec<f32>,
        v: Vec<f32>,
        t: i32,
    }
    impl Adam {
        fn new(len: usize) -> Self {
            Adam {
                m: vec![0.0; len],
                v: vec![0.0; len],
                t: 0,
            }
        }
        /// The parameter after one step along `grad`, a new trainable leaf.
        fn step(
            &mut self,
            param: &Param<Tensor<2>>,
            grad: Tensor<2>,
            lr: f32,
            device: &Device,
        ) -> Param<Tensor<2>> {
            let value = param.val();
            let dims = value.dims();
            let mut w = floats(value);
            let g = floats(grad);
            self.t += 1;
            let (b1, b2, eps) = (0.9f32, 0.999f32, 1e-5f32);
            let (c1, c2) = (1.0 - b1.powi(self.t), 1.0 - b2.powi(self.t));
            for (((wi, &gi), mi), vi) in w.iter_mut().zip(&g).zip(&mut self.m).zip(&mut self.v) {
                *mi = b1 * *mi + (1.0 - b1) * gi;
                *vi = b2 * *vi + (1.0 - b2) * gi * gi;
                *wi -= lr * (*mi / c1) / ((*vi / c2).sqrt() + eps);
            }
            Param::from_data(TensorData::new(w, dims), device)
        }
    }

    let mut rng = Rng::fresh(name);
    let (k, n, r) = (256, 32, 4);
    let w = random_weight(&mut rng, n, k);
    let base = Q6kLinear::from_gguf_bytes(&w.bytes, w.desc(PackedLayout::Q6kPlanes), None, device)
        .unwrap();
    let bytes_before = base.gguf_bytes().unwrap();
    let mut model = Adapted {
        base,
        down: LinearConfig::new(k, r).with_bias(false).init(device),
        up: LinearConfig::new(r, n).with_bias(false).init(device),
    };
    assert_eq!(
        params(&model),
        Params {
            trainable_float: 2,
            int: 1
        },
        "{name}: the adapter trains, the quantized base does not"
    );
    // teacher: the base plus a fixed low-rank delta
    let a = Tensor::<2>::random([k, r], Distribution::Normal(0.0, 0.05), device);
    let b = Tensor::<2>::random([r, n], Distribution::Normal(0.0, 0.05), device);
    let (mut adam_down, mut adam_up) = (Adam::new(k * r), Adam::new(r * n));
    let mut losses = vec![];
    for _ in 0..60 {
        let x = Tensor::<2>::random([16, k], Distribution::Normal(0.0, 1.0), device);
        let target = model.base.forward(x.clone()).detach()
            + x.clone().matmul(a.clone()).matmul(b.clone()).detach();
        let loss = (model.forward(x) - target).powf_scalar(2.0).mean();
        losses.push(loss.clone().into_scalar::<f32>());
        let grads = loss.backward();
        let g_down = model
            .down
            .weight
            .val()
            .grad(&grads)
            .expect("down has a gradient");
        let g_up = model
            .up
            .weight
            .val()
            .grad(&grads)
            .expect("up has a gradient");
        model.down.weight = adam_down.step(&model.down.weight, g_down, 5e-3, device);
        model.up.weight = adam_up.step(&model.up.weight, g_up, 5e-3, device);
    }
    let (first, last) = (losses[0], losses[losses.len() - 1]);
    assert!(last < first * 0.2, "{name}: adapter loss {first} -> {last}");
    assert_eq!(
        model.base.gguf_bytes().unwrap(),
        bytes_before,
        "{name}: the frozen base changed"
    );
}

/// The real Q6_K tensors of the Gemma-3 270M file (the `ffn_down` of 9 layers, 640 × 2048),
/// loaded as raw bytes through `Q6kLinear::from_gguf`, against f64 math on gguf-py-exact values.
fn check_gemma(name: &str, device: &Device, dense: Dense) {
    let Some(path) = common::gemma_path(name) else {
        return;
    };
    let file = GgufFile::open(path).unwrap();
    let mut rng = Rng::fresh(name);
    for layer in [0, 1, 4, 7, 10, 13, 15, 16, 17] {
        let tensor = format!("blk.{layer}.ffn_down.weight");
        let q = Q6kLinear::from_gguf(&file, &tensor, device).unwrap();
        assert_eq!((q.d_input(), q.d_output()), (2048, 640));
        assert_eq!(q.desc().ggml_type, GgmlType::Q6_K);
        assert_eq!(
            q.gguf_bytes().unwrap(),
            file.tensor_data(&tensor).unwrap(),
            "{tensor}: GGUF -> device -> GGUF"
        );
        let w = Weight {
            n: 640,
            k: 2048,
            bytes: vec![],
            deq: file.dequantize(&tensor).unwrap(),
        };
        let m = [1, 3, 8, 9][layer % 4];
        let x = random_x(&mut rng, m * 2048);
        poison(m * 640, device);
        let y = q.forward(Tensor::<2>::from_data(
            TensorData::new(x.clone(), [m, 2048]),
            device,
        ));
        check(
            &format!("{name} {tensor} M={m}"),
            &floats(y),
            &x,
            &w,
            m,
            false,
            u_in(dense, m),
        );
    }
}

/// Burn's records (burnpack files and in-memory records) round-trip the packed words bit for
/// bit, in both layouts; the layout and shape are constants of the layer, not in the record, so
/// a record of another layout or shape is refused (Burn checks the words' length on load; the
/// planes header catches a same-length record of another shape).
fn check_record(name: &str, device: &Device) {
    use burn::store::RecordError;
    let mut rng = Rng::fresh(name);
    let w = random_weight(&mut rng, 20, 768);
    let dir = common::scratch(name);
    let xs = random_x(&mut rng, 3 * 768);
    let x = || Tensor::<2>::from_data(TensorData::new(xs.clone(), [3, 768]), device);
    let path_of = |layout: PackedLayout| dir.join(format!("layer-{layout:?}"));
    for layout in LAYOUTS {
        let what = format!("{name} {layout:?}");
        let desc = w.desc(layout);
        let bias = Tensor::<1>::random([20], Distribution::Normal(0.0, 1.0), device);
        let q = QuantLinear::from_gguf_bytes(&w.bytes, desc, Some(bias), device).unwrap();
        assert_eq!(
            q.gguf_bytes().unwrap(),
            w.bytes,
            "{what}: device -> GGUF bytes"
        );
        let words = read_words(q.weight.val());
        assert_eq!(
            words,
            pack(&w.bytes, desc).unwrap(),
            "{what}: words on the device"
        );
        q.clone().save_file(path_of(layout)).unwrap();
        let fresh = || {
            let zeros = vec![0u8; w.bytes.len()];
            let bias = Some(Tensor::zeros([20], device));
            QuantLinear::from_gguf_bytes(&zeros, desc, bias, device).unwrap()
        };
        let loaded = fresh()
            .try_load_file(path_of(layout))
            .unwrap_or_else(|e| panic!("{what}: load: {e}"));
        assert_eq!(loaded.weight.val().dtype(), DType::U32, "{what}: dtype");
        assert_eq!(
            read_words(loaded.weight.val()),
            words,
            "{what}: words after save/load"
        );
        assert_eq!(
            loaded.gguf_bytes().unwrap(),
            w.bytes,
            "{what}: bytes after save/load"
        );
        assert_eq!(
            bias_values(&loaded.bias),
            bias_values(&q.bias),
            "{what}: bias"
        );
        let (a, b) = (floats(q.forward(x())), floats(loaded.forward(x())));
        assert_eq!(a, b, "{what}: saved and loaded layers differ");
        let from_record = fresh()
            .try_load_record(q.clone().into_record())
            .unwrap_or_else(|e| panic!("{what}: load_record: {e}"));
        assert_eq!(
            read_words(from_record.weight.val()),
            words,
            "{what}: in-memory record"
        );

        // The loaded layer's product, against f64 (the bias taken off again: one rounding more)
        let bias = bias_values(&q.bias);
        let unbiased: Vec<f32> = b
            .iter()
            .enumerate()
            .map(|(i, v)| v - bias[i % 20])
            .collect();
        check(
            &format!("{what} record"),
            &unbiased,
            &xs,
            &w,
            3,
            false,
            1e-6,
        );
    }

    // A record of one layout does not load into a layer of the other: the word counts differ.
    let (gguf, planes) = (w.desc(PackedLayout::Gguf), w.desc(PackedLayout::Q6kPlanes));
    assert_ne!(gguf.n_words(), planes.n_words());
    for (from, to) in [(gguf, planes), (planes, gguf)] {
        let bias = Some(Tensor::zeros([20], device));
        let target = QuantLinear::from_gguf_bytes(&w.bytes, to, bias, device).unwrap();
        match target.try_load_file(path_of(from.layout)) {
            Err(RecordError::Validation(_)) => {}
            other => panic!(
                "{name}: a {:?} record into a {:?} layer: {:?}",
                from.layout,
                to.layout,
                other.map(|q| q.desc())
            ),
        }
    }
    // A planes record of another shape with as many blocks (10 × 1536 against 20 × 768) has the
    // same length: it loads, but its header says what it holds and the layer refuses to read it.
    let other = QuantWeightDesc::q6k(10, 1536).unwrap();
    assert_eq!(other.n_words(), planes.n_words());
    let other_path = dir.join("layer-10x1536");
    QuantLinear::from_gguf_bytes(&w.bytes, other, None, device)
        .unwrap()
        .save_file(&other_path)
        .unwrap();
    let target = QuantLinear::from_gguf_bytes(&w.bytes, planes, None, device).unwrap();
    let loaded = target
        .try_load_file(&other_path)
        .unwrap_or_else(|e| panic!("{name}: a same-length record: {e}"));
    assert!(
        matches!(loaded.gguf_bytes(), Err(PackError::Planes(_))),
        "{name}: a 10x1536 planes record read as 20x768: {:?}",
        loaded.gguf_bytes().map(|b| b.len())
    );
}

/// The op of the unfused `CubeBackend` (what the Fusion impl runs, without Fusion around it):
/// the fused kernel up to 8 rows, the device dequantization and Burn's matmul above.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
fn check_op_cube(name: &str, cube: &Cube, dense: Dense) {
    use burn_cubecl::CubeBackend;
    use burn_gguf::ops::QuantBackend;
    let mut rng = Rng::fresh(name);
    for (&(k, n, m), layout) in CASES.iter().flat_map(|c| LAYOUTS.map(|l| (c, l))) {
        let w = random_weight(&mut rng, n, k);
        let desc = w.desc(layout);
        let x = random_x(&mut rng, m * k);
        let xt = cube.floats(&x, [m, k]);
        let p = cube.words(&pack(&w.bytes, desc).unwrap());
        cube.poison(m * n);
        let y = <CubeBackend as QuantBackend>::quant_matmul(xt, p, desc, Float);
        assert_eq!(y.meta.shape().to_vec(), vec![m, n]);
        assert_eq!(y.dtype, DType::F32);
        check(
            &format!("{name} {layout:?} K={k} N={n} M={m}"),
            &cube_floats(y),
            &x,
            &w,
            m,
            false,
            u_in(dense, m),
        );
    }
}

/// The kernels themselves, called directly so that no other path can hide a failure: the fused
/// kernel and the dequantize kernel, both layouts, odd row counts, 1..=8 activation rows, the
/// default launch geometry and forced ones; then the typed errors of inputs they cannot take.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
fn check_kernels(name: &str, cube: &Cube) {
    use burn_gguf::kernel::{
        KernelError, PlanesTuning, planes_geometry, quant_dequantize, quant_gemv,
    };
    let mut rng = Rng::fresh(name);
    // The default launch geometry, then forced ones (rows and warps per cube, units per
    // iteration): the tuning runs may pick any of them.
    let tuning = |rows, warps, per_iter, weights_path, pipeline| {
        Some(PlanesTuning {
            rows,
            warps,
            per_iter,
            weights_path,
            pipeline,
            groups: 0,
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
            let tuning = geometries[ci % geometries.len()];
            let w = random_weight(&mut rng, n, k);
            let desc = w.desc(layout);
            let geometry = planes_geometry(&cube.client, cube.device.runtime(), desc, m, tuning);
            let what = format!(
                "{name} {layout:?} K={k} N={n} M={m} tuning {tuning:?} (planes geometry {geometry:?})"
            );
            let x = random_x(&mut rng, m * k);
            let xt = cube.floats(&x, [m, k]);
            let p = cube.words(&pack(&w.bytes, desc).unwrap());
            cube.poison(m * n);
            let y = quant_gemv(xt, p.clone(), desc, Activations::Float, tuning)
                .unwrap_or_else(|e| panic!("{what}: the fused kernel did not run: {e}"));
            check(&what, &cube_floats(y), &x, &w, m, false, 0.0);
            cube.poison(n * k);
            let d = quant_dequantize(p, desc, DType::F32)
                .unwrap_or_else(|e| panic!("{what}: the dequantize kernel did not run: {e}"));
            common::assert_bits_eq(
                &format!("{what}: dequantized weight against ggml's"),
                &cube_floats(d),
                &w.deq,
            );
        }
    }
    // A buffer of the wrong length is refused with the reason, not read out of bounds.
    let w = random_weight(&mut rng, 4, 256);
    let x = || cube.floats(&[1.0; 256], [1, 256]);
    for layout in LAYOUTS {
        let desc = w.desc(layout);
        let mut words = pack(&w.bytes, desc).unwrap();
        words.push(0);
        let long = KernelError::WordsLength {
            desc,
            expected: desc.n_words(),
            found: desc.n_words() + 1,
        };
        assert_eq!(
            quant_gemv(x(), cube.words(&words), desc, Activations::Float, None).err(),
            Some(long.clone()),
            "{name} {layout:?}: a packed weight of the wrong length"
        );
        assert_eq!(
            quant_dequantize(cube.words(&words), desc, DType::F32).err(),
            Some(long),
            "{name} {layout:?}: dequantizing a packed weight of the wrong length"
        );
        words.pop();
        // words that are not 32-bit integers
        let as_floats = cube.floats(&vec![0.0; words.len()], [words.len()]);
        assert_eq!(
            quant_gemv(x(), as_floats, desc, Activations::Float, None).err(),
            Some(KernelError::WordsDtype(DType::F32)),
            "{name} {layout:?}: f32 words"
        );
        // more activation rows than the fused kernel takes
        let nine = cube.floats(&[1.0; 9 * 256], [9, 256]);
        assert!(
            matches!(
                quant_gemv(nine, cube.words(&words), desc, Activations::Float, None),
                Err(KernelError::Activations {
                    in_features: 256,
                    ..
                })
            ),
            "{name} {layout:?}: 9 activation rows"
        );
    }
}

#[cfg(feature = "flex")]
mod flex {
    use super::*;

    #[test]
    fn matmul_flex() {
        let d = Device::flex();
        check_op("matmul_flex", &d, false, EXACT);
        check_3d("matmul_3d_flex", &d, EXACT);
    }
    #[test]
    fn matmul_flex_f16() {
        check_op("matmul_flex_f16", &Device::flex(), true, EXACT);
    }
    #[test]
    fn linear_flex() {
        let d = Device::flex();
        check_linear("linear_flex", &d, EXACT);
        check_from_gguf("from_gguf_flex", &d);
        check_record("record_flex", &d);
        check_gemma("gemma_flex", &d, EXACT);
    }
    #[cfg(feature = "autodiff")]
    #[test]
    fn autodiff_flex() {
        let d = Device::flex().autodiff();
        check_autodiff("autodiff_flex", &d, EXACT);
        check_lora("lora_flex", &d);
    }
}

#[cfg(feature = "wgpu")]
mod wgpu {
    use super::*;

    /// The default wgpu device if it runs a tensor op, with a line on its plane support; else a
    /// SKIP line (a failure with `BURN_GGUF_REQUIRE_WGPU=1`).
    fn device(test: &str) -> Option<Device> {
        use cubecl::features::Plane;
        let device = common::wgpu_device(test)?;
        let client = Cube::wgpu().client;
        let props = client.properties();
        let hw = &props.hardware;
        let ops = props.features.plane.contains(Plane::Ops);
        // as the kernels decide (`kernel::lanes_for`): plane operations of one fixed size
        let planes =
            ops && hw.plane_size_min == hw.plane_size_max && (8..=64).contains(&hw.plane_size_max);
        eprintln!(
            "{test}: wgpu device {:?} ({}): plane ops {ops}, plane size {}..{} (the kernels' {} reduction runs)",
            Cube::wgpu().device,
            client.name(),
            hw.plane_size_min,
            hw.plane_size_max,
            if planes { "plane" } else { "shared-memory" }
        );
        Some(device)
    }

    #[test]
    fn matmul_wgpu() {
        let Some(d) = device("matmul_wgpu") else {
            return;
        };
        check_op("matmul_wgpu", &d, false, EXACT);
        check_3d("matmul_3d_wgpu", &d, EXACT);
        let c = Cube::wgpu();
        check_op_cube("matmul_wgpu_cube", &c, EXACT);
        check_kernels("kernels_wgpu", &c);
    }
    #[test]
    fn matmul_wgpu_f16() {
        let Some(d) = device("matmul_wgpu_f16") else {
            return;
        };
        check_op("matmul_wgpu_f16", &d, true, EXACT);
    }
    #[test]
    fn linear_wgpu() {
        let Some(d) = device("linear_wgpu") else {
            return;
        };
        check_linear("linear_wgpu", &d, EXACT);
        check_from_gguf("from_gguf_wgpu", &d);
        check_record("record_wgpu", &d);
        check_gemma("gemma_wgpu", &d, EXACT);
    }
    #[cfg(feature = "autodiff")]
    #[test]
    fn autodiff_wgpu() {
        let Some(d) = device("autodiff_wgpu") else {
            return;
        };
        let d = d.autodiff();
        check_autodiff("autodiff_wgpu", &d, EXACT);
        check_lora("lora_wgpu", &d);
    }
}

#[cfg(feature = "cuda")]
mod cuda {
    use super::*;

    const TF32: Dense = Dense { u_in: 1.0 / 1024.0 };

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
        let c = Cube::cuda();
        check_kernels("kernels_cuda", &c);
        check_op_cube("matmul_cuda_cube", &c, TF32);
        let d = Device::cuda(0usize);
        check_op("matmul_cuda", &d, false, TF32);
        check_op("matmul_cuda_f16", &d, true, TF32);
        check_3d("matmul_3d_cuda", &d, TF32);
        check_linear("linear_cuda", &d, TF32);
        check_from_gguf("from_gguf_cuda", &d);
        check_record("record_cuda", &d);
        check_gemma("gemma_cuda", &d, TF32);
    }
    #[cfg(feature = "autodiff")]
    #[test]
    fn autodiff_cuda() {
        if !enabled() {
            return;
        }
        let d = Device::cuda(0usize).autodiff();
        check_autodiff("autodiff_cuda", &d, TF32);
        check_lora("lora_cuda", &d);
    }
}
