//! The kernels compile for Metal too: their Metal Shading Language text is generated here without
//! a device, through the same `define()` and cubecl-cpp `MslCompiler::compile` a Metal launch runs
//! (there is no Mac in CI or on the GPU machine, so Metal itself never runs). Every block format
//! of the generic matrix-vector kernel, with and without plane reductions, with float and with
//! int8 activations (whose `dp4a` Metal has not: CubeCL's polyfill).

use std::sync::Arc;

use cubecl::Compiler as _;
use cubecl::features::{Plane, TypeUsage};
use cubecl::ir::{
    DeviceIdentity, FloatKind, HardwareProperties, IntKind, MemoryDeviceProperties, UIntKind,
};
use cubecl::prelude::*;
use cubecl::profile::TimingMethod;
use cubecl_cpp::{MslCompiler, shared::CompilationOptions};

use super::formats::{GgufWords, InterleavedWords, WordLayout, with_format};
use super::gemv::quant_gemv_kernel;
use super::gemv_q8::quant_gemv_q8_kernel;
use super::reduce::CubeShape;
use crate::quant::{FUSED_TYPES, GgmlType};

/// A Metal device's properties as cubecl-metal 0.11.3 reports an Apple GPU's (SIMD groups of
/// 32, plane operations, the types Metal has), made up without a device.
fn metal_properties() -> DeviceProperties {
    let hardware = HardwareProperties {
        load_width: 128,
        vector_register_count: None,
        plane_size_min: 32,
        plane_size_max: 32,
        max_bindings: 30,
        max_shared_memory_size: 32 * 1024,
        max_cube_count: (u32::MAX, u32::MAX, u32::MAX),
        max_units_per_cube: 1024,
        max_cube_dim: (1024, 1024, 1024),
        num_streaming_multiprocessors: None,
        num_cpu_cores: None,
        last_level_cache_size: None,
        num_tensor_cores: None,
        min_tensor_cores_dim: None,
        max_vector_size: 4,
        cube_mma_reserved_shared_memory: 0,
    };
    let mut props = DeviceProperties::new(
        Default::default(),
        MemoryDeviceProperties::new(1 << 30, 256),
        hardware,
        TimingMethod::Device,
        DeviceIdentity {
            name: "Metal (offline)".into(),
            fingerprint: "msl_offline".into(),
            physical: None,
        },
    );
    props.register_address_type(AddressType::U32);
    for ty in [
        ElemType::UInt(UIntKind::U8),
        ElemType::UInt(UIntKind::U16),
        ElemType::UInt(UIntKind::U32),
        ElemType::UInt(UIntKind::U64),
        ElemType::Int(IntKind::I8),
        ElemType::Int(IntKind::I16),
        ElemType::Int(IntKind::I32),
        ElemType::Int(IntKind::I64),
        ElemType::Float(FloatKind::F16),
        ElemType::Float(FloatKind::BF16),
        ElemType::Float(FloatKind::F32),
        ElemType::Bool,
    ] {
        props.register_type_usage(ty, TypeUsage::all());
    }
    props.features.plane.insert(Plane::Ops);
    props.features.plane.insert(Plane::Sync);
    props
}

/// The MSL source of the matrix-vector kernel of `t` for `m` activation rows (`int8`: the
/// int8-activation product) over the words laid out as `L` says.
fn gemv_msl<L: WordLayout>(
    t: GgmlType,
    m: usize,
    use_plane: bool,
    int8: bool,
) -> Result<String, String> {
    const LANES: usize = 32;
    const WARPS: usize = 2;
    const ROWS: usize = 4;
    let settings = KernelSettings::new(
        CubeDim::new_2d(LANES as u32, WARPS as u32).into(),
        ExecutionMode::Checked,
        AddressType::U32,
    );
    let buffer = || BufferCompilationArg { inplace: None };
    let props = Arc::new(metal_properties());
    let target = Arc::new(TargetProperties::default());
    let shape = CubeShape {
        rows: ROWS,
        warps: WARPS,
        lanes: LANES,
        groups: 2,
        per_iter: 2,
        use_plane,
    };
    let f32 = ElemType::Float(FloatKind::F32);
    // Runtime arguments (buffers, then k and n) as compilation arguments, the activations'
    // vector size (the kernels' `V`), then the comptime ones.
    let definition = with_format!(t, Q => if int8 {
        let (xq, xs, w, y) = (buffer(), buffer(), buffer(), buffer());
        cubecl::define_kernel(&quant_gemv_q8_kernel::QuantGemvQ8Kernel::<Q, L>::new(
            settings, props, target, xq, xs, w, y, (), (), 4, shape, m, f32,
        ))
    } else {
        let (x, w, y) = (buffer(), buffer(), buffer());
        cubecl::define_kernel(&quant_gemv_kernel::QuantGemvKernel::<Q, L>::new(
            settings, props, target, x, w, y, (), (), 4, shape, m, f32,
        ))
    })
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("{e:?}"))?;
    let mut compiler = MslCompiler::default();
    let compiled = compiler
        .compile(definition, &CompilationOptions::default())
        .map_err(|e| format!("{e:?}"))?;
    Ok(compiled.to_string())
}

#[test]
fn gemv_compiles_to_metal_shading_language_for_every_format() {
    for &t in FUSED_TYPES {
        for (m, use_plane, int8, interleaved) in [
            (1, true, false, false),
            (8, true, false, true),
            (3, false, false, false),
            (1, true, true, true),
            (2, false, true, false),
        ] {
            let msl = match interleaved {
                false => gemv_msl::<GgufWords>(t, m, use_plane, int8),
                true => gemv_msl::<InterleavedWords>(t, m, use_plane, int8),
            }
            .unwrap_or_else(|e| panic!("{t} m={m} int8 {int8} interleaved {interleaved}: {e}"));
            assert!(msl.contains("#include <metal_stdlib>"), "{t}: {msl}");
            let (name, activations) = match int8 {
                false => ("quant_gemv_kernel", "device float_4"),
                true => ("quant_gemv_q8_kernel", "device uint32_t_4"),
            };
            assert!(msl.contains(name), "{t}: {msl}");
            assert!(
                msl.contains(activations),
                "{t}: activations read four at a time: {msl}"
            );
            assert!(
                msl.contains("device"),
                "{t}: buffers are device memory: {msl}"
            );
            if use_plane {
                assert!(
                    msl.contains("simd_shuffle_xor"),
                    "{t}: reduces each row group with simd_shuffle_xor: {msl}"
                );
            } else {
                assert!(msl.contains("threadgroup_barrier"), "{t}: syncs: {msl}");
            }
            // no 8- or 16-bit storage types among the buffers
            assert!(
                !msl.contains("device uchar") && !msl.contains("device ushort"),
                "{t}: {msl}"
            );
        }
    }
}
