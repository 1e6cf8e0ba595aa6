//! Loading GGUF tensors into Burn tensors on the CPU-capable devices (Flex, and wgpu over
//! lavapipe in CI). GPU-less machines without a Vulkan driver skip the wgpu part, saying so.
#![cfg(any(feature = "flex", feature = "wgpu"))]

mod common;

use burn::tensor::{Device, Tensor};
use burn_gguf::gguf::{GgufError, GgufFile, GgufWriter};
use burn_gguf::nn::load_float_tensor;
use burn_gguf::quant::GgmlType;
use common::fixture;

/// The values of an f32 tensor (an error if it is not f32).
fn floats<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_into_vec::<f32>().expect("f32 values")
}

fn check_device(device: &Device) {
    let file = GgufFile::open(fixture("tensors.gguf")).unwrap();
    for info in file.tensors() {
        let want = file.dequantize(&info.name).unwrap();
        match info.dims.len() {
            1 => {
                let t = load_float_tensor::<1>(&file, &info.name, device).unwrap();
                assert_eq!(t.dims(), [info.dims[0] as usize]);
                assert_eq!(floats(t), want, "{}", info.name);
            }
            2 => {
                let t = load_float_tensor::<2>(&file, &info.name, device).unwrap();
                // Burn's row-major shape is ne reversed: [rows, ne0].
                assert_eq!(
                    t.dims(),
                    [info.dims[1] as usize, info.dims[0] as usize],
                    "{}",
                    info.name
                );
                assert_eq!(floats(t), want, "{}", info.name);
            }
            3 => {
                let t = load_float_tensor::<3>(&file, &info.name, device).unwrap();
                assert_eq!(t.dims(), [2, 3, 4]);
                assert_eq!(floats(t), want, "{}", info.name);
                // a rank that cannot hold it is a typed error; a larger rank pads with 1s
                let e = load_float_tensor::<2>(&file, &info.name, device).unwrap_err();
                assert!(matches!(e, GgufError::RankMismatch { .. }), "{e}");
                let t4 = load_float_tensor::<4>(&file, &info.name, device).unwrap();
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
    let e = load_float_tensor::<1>(&f, "iq", device).unwrap_err();
    assert!(e.to_string().contains("\"iq\""), "{e}");
}

#[cfg(feature = "flex")]
#[test]
fn load_into_flex() {
    check_device(&Device::flex());
}

#[cfg(feature = "wgpu")]
#[test]
fn load_into_wgpu() {
    let Some(device) = common::wgpu_device("load_into_wgpu") else {
        return;
    };
    check_device(&device);
}
