//! The kernels compile for Metal too: their Metal Shading Language text is generated here without
//! a device, through the same `define()` and cubecl-cpp `MslCompiler::compile` a Metal launch runs
//! (there is no Mac in CI or on the GPU machine, so Metal itself never runs). Every block format
//! of the generic matrix-vector kernel, with and without plane reductions.

use std::sync::Arc;

use cubecl::Compiler as _;
use cubecl::features::{Plane, TypeUsage};
use cubecl::ir::{
    DeviceIdentity, FloatKind, HardwareProperties, IntKind, MemoryDeviceProperties, UIntKind,
};
use cubecl::prelude::*;
use cubecl::profile::TimingMethod;
use cubecl_cpp::{MslCompiler, shared::CompilationOptions};

use super::formats::with_format;
use super::gemv::quant_gemv_kernel;
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

/// The MSL source of the matrix-vector kernel of `t` for `m` activation rows.
fn gemv_msl(t: GgmlType, m: usize, use_plane: bool) -> Result<String, String> {
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
    let definition = with_format!(t, Q => {
        // runtime arguments (x, w, y, k, n) as compilation arguments, then the comptime ones
        let kernel = quant_gemv_kernel::QuantGemvKernel::<Q>::new(
            settings,
            props,
            Arc::new(TargetProperties::default()),
            buffer(),
            buffer(),
            buffer(),
            (),
            (),
            // the activations' vector size (the kernel's `V`), then its comptime arguments
            4,
            CubeShape {
                rows: ROWS,
                warps: WARPS,
                lanes: LANES,
                groups: 2,
                per_iter: 2,
                use_plane,
            },
            m,
            ElemType::Float(FloatKind::F32),
        );
        cubecl::define_kernel(&kernel)
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
        for (m, use_plane) in [(1, true), (8, true), (3, false)] {
            let msl = gemv_msl(t, m, use_plane).unwrap_or_else(|e| panic!("{t} m={m}: {e}"));
            assert!(msl.contains("#include <metal_stdlib>"), "{t}: {msl}");
            assert!(msl.contains("quant_gemv_kernel"), "{t}: {msl}");
            assert!(
                msl.contains("device float_4"),
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
