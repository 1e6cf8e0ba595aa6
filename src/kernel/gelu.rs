//! Gemma's gated activation, `gelu_tanh(gate) · up`, one element per unit.

use burn::backend::cubecl::dtype_to_storage_type;
use burn_cubecl::{kernel::into_contiguous, tensor::CubeTensor};
use cubecl::{calculate_cube_count_elemwise, prelude::*};

use super::KernelError;
use super::dequantize::empty_like;

/// `y = g/2 · (1 + tanh(√(2/π) · (g + 0.044715 g³))) · up`. The tanh argument is clamped to
/// ±10, where tanh already rounds to ±1 in f32 (some runtimes' tanh is NaN for large inputs).
#[cube(launch_unchecked)]
fn gelu_mul_kernel<F: Float>(
    gate: &[F],
    up: &[F],
    y: &mut [F],
    n: usize,
    sqrt_2_over_pi: f32,
    cubic: f32,
    #[define(F)] _dtype: ElemType,
) {
    let i = ABSOLUTE_POS;
    if i >= n {
        terminate!();
    }
    let g = f32::cast_from(gate[i]);
    y[i] = F::cast_from(gelu_tanh_mul(
        g,
        f32::cast_from(up[i]),
        sqrt_2_over_pi,
        cubic,
    ));
}

/// `gelu_tanh(g) · u` in f32 (see [`gelu_mul_kernel`]), also the gated product's epilogue
/// ([`super::reduce::store_sums`]), so both round alike.
#[cube]
pub(super) fn gelu_tanh_mul(g: f32, u: f32, sqrt_2_over_pi: f32, cubic: f32) -> f32 {
    let inner = clamp(
        (g + (g * g * g) * cubic) * sqrt_2_over_pi,
        -10.0f32,
        10.0f32,
    );
    let gelu = (g * 0.5f32) * (f32::tanh(inner) + 1.0f32);
    gelu * u
}

/// `gelu_tanh(gate) · up` for two tensors of one shape and dtype.
pub fn gelu_mul(gate: CubeTensor, up: CubeTensor) -> Result<CubeTensor, KernelError> {
    if gate.meta.shape() != up.meta.shape() {
        return Err(KernelError::Shapes(
            gate.meta.shape().to_vec(),
            up.meta.shape().to_vec(),
        ));
    }
    if gate.dtype != up.dtype {
        return Err(KernelError::Dtypes(gate.dtype, up.dtype));
    }
    if gate.device != up.device {
        return Err(KernelError::Device);
    }
    let (gate, up) = (into_contiguous(gate), into_contiguous(up));
    let y = empty_like(&gate, gate.meta.shape().clone());
    let n = y.meta.num_elements();
    if n == 0 {
        return Ok(y);
    }
    let client = gate.client.clone();
    let cube_dim = CubeDim::new(&client, n);
    let cube_count = calculate_cube_count_elemwise(&client, n, cube_dim);
    let dtype = dtype_to_storage_type(gate.dtype);
    // SAFETY: the three tensors are contiguous with n values each; units past n return.
    unsafe {
        gelu_mul_kernel::launch_unchecked(
            &client,
            cube_count,
            cube_dim,
            gate.into_buffer_arg(),
            up.into_buffer_arg(),
            y.clone().into_buffer_arg(),
            n,
            crate::cpu::SQRT_2_OVER_PI as f32,
            crate::cpu::GELU_CUBIC as f32,
            dtype,
        )
    };
    Ok(y)
}
