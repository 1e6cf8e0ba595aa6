//! Writing a call's keys or values into a cache buffer at their positions, in place: one element
//! per unit, the position from [`Start`] (read on the device where a recorded step needs it).

use burn::backend::cubecl::dtype_to_storage_type;
use burn_cubecl::{kernel::into_contiguous, tensor::CubeTensor};
use cubecl::{calculate_cube_count_elemwise, prelude::*};

use super::KernelError;
use super::positions::{Start, first_position};

/// Element `i` of `value` (`[rows, t, d]` flattened) into `buffer` (`[rows, slots, d]`) at slot
/// `start (+ offset[0]) + (i / d) % t` of its row; a slot past the buffer's is not written.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
fn write_positions_kernel<F: Float>(
    buffer: &mut [F],
    value: &[F],
    n: usize,
    t: usize,
    slots: usize,
    d: usize,
    start: usize,
    offset: ComptimeOption<&[u32]>,
    #[define(F)] _dtype: ElemType,
) {
    let i = ABSOLUTE_POS;
    if i >= n {
        terminate!();
    }
    let e = i % d;
    let r = i / d;
    let p = first_position(start, offset) + r % t;
    if p < slots {
        buffer[((r / t) * slots + p) * d + e] = value[i];
    }
}

/// `buffer` (`[.., slots, d]`) with `value` (`[.., t, d]`, the same leading dims and dtype)
/// written at the `t` slots from `start`: in place where nothing else holds the buffer (else
/// into a copy), as Burn's `slice_assign`. Slots read on the device past the buffer's are not
/// written.
pub fn write_positions(
    buffer: CubeTensor,
    value: CubeTensor,
    start: Start,
) -> Result<CubeTensor, KernelError> {
    let (bs, vs) = (buffer.meta.shape().clone(), value.meta.shape().clone());
    let dims = bs.num_dims();
    let fits = dims >= 2
        && vs.num_dims() == dims
        && bs[..dims - 2] == vs[..dims - 2]
        && bs[dims - 1] == vs[dims - 1]
        && (start.is_on_device() || start.start + vs[dims - 2] <= bs[dims - 2]);
    if !fits {
        return Err(KernelError::Positions {
            buffer: bs.to_vec(),
            value: vs.to_vec(),
            start: start.start,
        });
    }
    if buffer.dtype != value.dtype {
        return Err(KernelError::Dtypes(buffer.dtype, value.dtype));
    }
    if buffer.device != value.device {
        return Err(KernelError::Device);
    }
    start.check(&buffer)?;
    let buffer = writable(buffer);
    let value = into_contiguous(value);
    let n = value.meta.num_elements();
    if n == 0 {
        return Ok(buffer);
    }
    let (t, slots, d) = (vs[dims - 2], bs[dims - 2], bs[dims - 1]);
    let client = buffer.client.clone();
    let cube_dim = CubeDim::new(&client, n);
    let cube_count = calculate_cube_count_elemwise(&client, n, cube_dim);
    let dtype = dtype_to_storage_type(buffer.dtype);
    // SAFETY: value is contiguous with n = rows · t · d elements, buffer contiguous rows · slots
    // · d (leading dims equal, checked); a unit past n returns and a slot past `slots` is not
    // written; the offset is one value (checked).
    unsafe {
        write_positions_kernel::launch_unchecked(
            &client,
            cube_count,
            cube_dim,
            buffer.clone().into_buffer_arg(),
            value.into_buffer_arg(),
            n,
            t,
            slots,
            d,
            start.start,
            start.offset_arg().into(),
            dtype,
        )
    };
    Ok(buffer)
}

/// `buffer` contiguous and ready to be written in place: itself where nothing else holds it,
/// else a copy (what Burn's `slice_assign` does).
pub(super) fn writable(buffer: CubeTensor) -> CubeTensor {
    if buffer.can_mut() && buffer.is_contiguous() {
        buffer
    } else if buffer.is_contiguous() {
        buffer.copy()
    } else {
        into_contiguous(buffer)
    }
}
