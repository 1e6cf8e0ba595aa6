//! The first fused Q6_K matrix-vector kernel (v1), over the GGUF layout (raw 210-byte blocks as
//! u32 words; kept reachable with `BURN_GGUF_Q6K_LAYOUT=gguf` so that its numbers can be
//! reproduced): `y[m, n] = Σ_k x[m, k] · W[n, k]` for up to
//! [`crate::ops::FUSED_MAX_ROWS`] activation rows, reading every weight byte once for all rows.
//!
//! Mapping: a cube holds `ROWS_PER_CUBE` output rows (y dimension) of `lanes` units each (x
//! dimension). A row's work is 64 items per Q6_K block (2 halves × 32 positions, 4 weights
//! each); the row's units stride over them, accumulate in f32 registers, one per activation row,
//! and reduce with `plane_sum` where the device has plane operations, else through shared memory.

use burn::tensor::DType;
use burn_cubecl::{
    CubeRuntime, kernel::into_contiguous, ops::numeric::empty_device_contiguous_dtype,
    tensor::CubeTensor,
};
use cubecl::{features::Plane, prelude::*, server::CubeCountSelection};

use super::decode::decode_item;
use crate::ops::Q6kShape;
use crate::quant::Q6kLayout;

/// Output rows per cube.
pub const ROWS_PER_CUBE: usize = 4;

#[cube(launch)]
pub(crate) fn q6k_gemv_kernel<F: Float>(
    x: &Array<F>,
    w: &Array<u32>,
    y: &mut Array<F>,
    k: usize,
    n: usize,
    #[comptime] m: usize,
    #[comptime] lanes: usize,
    #[comptime] use_plane: bool,
    #[define(F)] _dtype: StorageType,
) {
    let lane = UNIT_POS_X as usize;
    let row = CUBE_POS * ROWS_PER_CUBE + UNIT_POS_Y as usize;
    let nb = k / 256;
    // Rows past the end still take part in the reduction (uniform control flow), with no work.
    let valid = row < n;
    let mut items = 0usize;
    if valid {
        items = nb * 64;
    }
    let mut acc = Array::<f32>::new(m);
    #[unroll]
    for mi in 0..m {
        acc[mi] = 0.0f32;
    }
    let row_byte = row * nb * 210;
    let mut item = lane;
    while item < items {
        let b = item / 64;
        let h = (item / 32) % 2;
        let l = item % 32;
        let wv = decode_item(w, row_byte + b * 210, h, l);
        let e = b * 256 + 128 * h + l;
        #[unroll]
        for mi in 0..m {
            let xb = mi * k + e;
            acc[mi] += wv[0] * f32::cast_from(x[xb])
                + wv[1] * f32::cast_from(x[xb + 32])
                + wv[2] * f32::cast_from(x[xb + 64])
                + wv[3] * f32::cast_from(x[xb + 96]);
        }
        item += lanes;
    }

    if use_plane {
        #[unroll]
        for mi in 0..m {
            let total = plane_sum(acc[mi]);
            if lane == 0 && valid {
                y[mi * n + row] = F::cast_from(total);
            }
        }
    } else {
        let mut partial = SharedMemory::<f32>::new(ROWS_PER_CUBE * lanes);
        let base = UNIT_POS_Y as usize * lanes;
        #[unroll]
        for mi in 0..m {
            partial[base + lane] = acc[mi];
            sync_cube();
            // A runtime value: the same for every unit, so the barriers stay uniform.
            let mut stride = (CUBE_DIM_X / 2) as usize;
            while stride > 0 {
                if lane < stride {
                    partial[base + lane] = partial[base + lane] + partial[base + lane + stride];
                }
                sync_cube();
                stride /= 2;
            }
            if lane == 0 && valid {
                y[mi * n + row] = F::cast_from(partial[base]);
            }
            sync_cube();
        }
    }
}

/// Units per row, and whether to reduce with plane operations: the device's plane size when
/// plane operations exist and the size is fixed, else 32 with a shared-memory reduction.
pub(crate) fn lanes_for<R: CubeRuntime>(client: &ComputeClient<R>) -> (usize, bool) {
    let props = client.properties();
    let hw = &props.hardware;
    let fixed = hw.plane_size_min == hw.plane_size_max;
    if props.features.plane.contains(Plane::Ops) && fixed && (8..=64).contains(&hw.plane_size_max) {
        (hw.plane_size_max as usize, true)
    } else {
        (32, false)
    }
}

/// Launches the fused kernel for the packed weight's layout (the planes kernel of
/// `gemv_planes.rs`, or this file's kernel for the GGUF layout); `x` is `[.., in_features]` with
/// at most [`crate::ops::FUSED_MAX_ROWS`] rows in all. Returns `Err(reason)` when the kernel
/// cannot run on these inputs or this device (the caller then takes the CPU path).
pub fn q6k_gemv<R: CubeRuntime>(
    x: CubeTensor<R>,
    packed: CubeTensor<R>,
    shape: Q6kShape,
) -> Result<CubeTensor<R>, String> {
    let layout = super::check_packed(&packed, shape)?;
    if !matches!(
        x.dtype,
        DType::F32 | DType::F16 | DType::BF16 | DType::Flex32
    ) {
        return Err(format!(
            "activation dtype {:?} is not a supported float",
            x.dtype
        ));
    }
    x.assert_is_on_same_device(&packed);
    let (x, packed) = (into_contiguous(x), into_contiguous(packed));
    let k = shape.in_features;
    let rows = x.meta.num_elements() / k;
    if rows == 0 || rows > crate::ops::FUSED_MAX_ROWS {
        return Err(format!(
            "{rows} activation rows: the fused kernel takes 1..={}",
            crate::ops::FUSED_MAX_ROWS
        ));
    }
    if shape.out_features == 0 {
        let out_shape = crate::ops::with_last_dim(x.meta.shape(), 0);
        return Ok(empty_device_contiguous_dtype(
            x.client.clone(),
            x.device.clone(),
            out_shape,
            x.dtype,
        ));
    }
    if layout == Q6kLayout::Planes {
        return Ok(super::gemv_planes::launch(x, packed, shape, rows));
    }
    let client = x.client.clone();
    let out_shape = crate::ops::with_last_dim(x.meta.shape(), shape.out_features);
    let y = empty_device_contiguous_dtype(client.clone(), x.device.clone(), out_shape, x.dtype);

    let (lanes, use_plane) = lanes_for(&client);
    let cubes = shape.out_features.div_ceil(ROWS_PER_CUBE) as u32;
    let cube_count = CubeCountSelection::new(&client, cubes).cube_count();
    let cube_dim = CubeDim::new_2d(lanes as u32, ROWS_PER_CUBE as u32);
    let dtype = x.dtype;
    q6k_gemv_kernel::launch::<R>(
        &client,
        cube_count,
        cube_dim,
        x.into_array_arg(),
        packed.into_array_arg(),
        y.clone().into_array_arg(),
        k,
        shape.out_features,
        rows,
        lanes,
        use_plane,
        dtype.into(),
    );
    Ok(y)
}

/// The kernel's Metal Shading Language source for `m` activation rows (1..=8), compiled by
/// cubecl's MSL compiler without any device (Metal cannot run off macOS; this shows that the
/// kernel compiles for it). `use_plane` picks the plane-reduction variant, which Metal devices
/// take (their SIMD groups are 32 wide).
pub fn q6k_gemv_msl_source(m: usize, use_plane: bool) -> Result<String, String> {
    use cubecl::Compiler;
    use cubecl::ir::FloatKind;
    use cubecl::prelude::{ArrayCompilationArg, KernelBuilder, KernelDefinition, KernelSettings};
    use cubecl_cpp::{MslCompiler, shared::CompilationOptions};

    let lanes = 32usize;
    let dtype: StorageType = FloatKind::F32.into();
    let settings = KernelSettings::default()
        .cube_dim(CubeDim::new_2d(lanes as u32, ROWS_PER_CUBE as u32))
        .address_type(AddressType::U32)
        .kernel_name(format!("q6k_gemv_kernel_f_{dtype}"));
    // What the launch macro's `define()` does, minus the device client it reads properties from.
    let mut builder = KernelBuilder::default();
    builder.scope.register_type::<q6k_gemv_kernel::F>(dtype);
    settings.address_type.register(&mut builder.scope);
    let arg = ArrayCompilationArg { inplace: None };
    let x = <Array<q6k_gemv_kernel::F> as LaunchArg>::expand(&arg, &mut builder);
    let w = <Array<u32> as LaunchArg>::expand(&arg, &mut builder);
    let y = <Array<q6k_gemv_kernel::F> as LaunchArg>::expand_output(&arg, &mut builder);
    let k = <usize as LaunchArg>::expand(&(), &mut builder);
    let n = <usize as LaunchArg>::expand(&(), &mut builder);
    q6k_gemv_kernel::expand::<q6k_gemv_kernel::F>(
        &mut builder.scope,
        x,
        w,
        y,
        k,
        n,
        m,
        lanes,
        use_plane,
        dtype,
    );
    let definition: KernelDefinition = builder.build(settings);
    let mut compiler = MslCompiler::default();
    let kernel = <MslCompiler as Compiler>::compile(
        &mut compiler,
        definition,
        &CompilationOptions::default(),
        ExecutionMode::Checked,
        AddressType::U32.unsigned_type(),
    )
    .map_err(|e| format!("{e:?}"))?;
    Ok(kernel.to_string())
}
