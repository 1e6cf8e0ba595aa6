//! Loading GGUF tensors into Burn tensors on every CPU-capable backend (NdArray, and Wgpu over
//! lavapipe in CI). GPU-less machines without a Vulkan driver skip the Wgpu part, saying so.
#![cfg(any(feature = "ndarray", feature = "wgpu"))]

mod common;

use burn::tensor::{Tensor, backend::Backend};
use burn_gguf::gguf::{GgufError, GgufFile, GgufWriter};
use burn_gguf::ops::load_float_tensor;
use burn_gguf::quant::GgmlType;
use common::fixture;

fn check_backend<B: Backend>(device: &B::Device) {
    let file = GgufFile::open(fixture("tensors.gguf")).unwrap();
    for info in file.tensors() {
        let want = file.dequantize(&info.name).unwrap();
        match info.dims.len() {
            1 => {
                let t: Tensor<B, 1> = load_float_tensor(&file, &info.name, device).unwrap();
                assert_eq!(t.dims(), [info.dims[0] as usize]);
                assert_eq!(
                    t.into_data().to_vec::<f32>().unwrap(),
                    want,
                    "{}",
                    info.name
                );
            }
            2 => {
                let t: Tensor<B, 2> = load_float_tensor(&file, &info.name, device).unwrap();
                // Burn's row-major shape is ne reversed: [rows, ne0].
                assert_eq!(
                    t.dims(),
                    [info.dims[1] as usize, info.dims[0] as usize],
                    "{}",
                    info.name
                );
                assert_eq!(
                    t.into_data().to_vec::<f32>().unwrap(),
                    want,
                    "{}",
                    info.name
                );
            }
            3 => {
                let t: Tensor<B, 3> = load_float_tensor(&file, &info.name, device).unwrap();
                assert_eq!(t.dims(), [2, 3, 4]);
                assert_eq!(
                    t.into_data().to_vec::<f32>().unwrap(),
                    want,
                    "{}",
                    info.name
                );
                // a rank that cannot hold it is a typed error; a larger rank pads with 1s
                let e = load_float_tensor::<B, 2>(&file, &info.name, device).unwrap_err();
                assert!(matches!(e, GgufError::RankMismatch { .. }), "{e}");
                let t4: Tensor<B, 4> = load_float_tensor(&file, &info.name, device).unwrap();
                assert_eq!(t4.dims(), [1, 2, 3, 4]);
            }
            _ => unreachable!(),
        }
    }
    // unsupported types are typed errors naming the tensor
    let mut w = GgufWriter::new();
    w.add_tensor("iq", &[256], GgmlType::IQ2_XXS, vec![0u8; 66])
        .unwrap();
    let f = GgufFile::from_bytes(w.to_bytes()).unwrap();
    let e = load_float_tensor::<B, 1>(&f, "iq", device).unwrap_err();
    assert!(e.to_string().contains("\"iq\""), "{e}");
}

#[cfg(feature = "ndarray")]
#[test]
fn load_into_ndarray() {
    check_backend::<burn::backend::NdArray>(&Default::default());
}

#[cfg(feature = "wgpu")]
#[test]
fn load_into_wgpu() {
    use burn::backend::Wgpu;
    let device = Default::default();
    // Probe the adapter: without any Vulkan/Metal/DX12 driver (not even lavapipe), wgpu panics.
    let probe = std::panic::catch_unwind(|| Tensor::<Wgpu, 1>::zeros([1], &device).into_data());
    if probe.is_err() {
        assert!(
            std::env::var("BURN_GGUF_REQUIRE_WGPU").as_deref() != Ok("1"),
            "BURN_GGUF_REQUIRE_WGPU=1 but no wgpu adapter is available (install mesa-vulkan-drivers)"
        );
        eprintln!("SKIP load_into_wgpu: no wgpu adapter (no GPU and no lavapipe)");
        return;
    }
    check_backend::<Wgpu>(&device);
}
