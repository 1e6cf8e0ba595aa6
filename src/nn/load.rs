//! Loading GGUF tensors into Burn float tensors, dequantizing as needed.

use burn::tensor::{Device, Tensor, TensorData};

use crate::gguf::{GgufError, GgufFile, Result, TensorInfo};

/// The Burn (row-major) shape of a tensor of rank `D`: its `ne` dims reversed, padded with
/// leading 1s when the file stores fewer dims. Errors if the tensor needs more than `D` dims
/// (trailing size-1 `ne` dims are allowed to drop).
pub fn to_burn_shape<const D: usize>(info: &TensorInfo) -> Result<[usize; D]> {
    let mut dims: Vec<u64> = info.dims.clone();
    while dims.len() > D && dims.last() == Some(&1) {
        dims.pop();
    }
    if dims.len() > D || dims.iter().any(|&d| d > usize::MAX as u64) {
        return Err(GgufError::RankMismatch {
            name: info.name.clone(),
            dims: info.dims.clone(),
            rank: D,
        });
    }
    let mut shape = [1usize; D];
    for (i, &d) in dims.iter().enumerate() {
        shape[D - 1 - i] = d as usize;
    }
    Ok(shape)
}

/// Loads tensor `name` as a Burn float tensor of rank `D`, dequantizing any supported type to f32
/// on the CPU first (bit-exact with gguf-py), then uploading it as f32.
///
/// The shape is Burn's row-major order, i.e. the GGUF `ne` dims reversed: a Linear weight with
/// `ne = [in, out]` loads as `[out, in]` (PyTorch's layout; transpose it for `burn::nn::Linear`,
/// whose weight is `[in, out]`). An embedding `[d_model, vocab]` loads as `[vocab, d_model]`.
///
/// ```
/// # #[cfg(feature = "flex")] {
/// use burn::tensor::Device;
/// use burn_gguf::{gguf::{GgufFile, GgufWriter}, nn::load_float_tensor, quant::GgmlType};
///
/// let mut w = GgufWriter::new();
/// let values: Vec<f32> = (0..6).map(|i| i as f32).collect();
/// w.add_tensor("t", &[3, 2], GgmlType::F32, bytemuck::cast_slice(&values))?;
/// let file = GgufFile::from_bytes(w.to_bytes())?;
/// let t = load_float_tensor::<2>(&file, "t", &Device::flex())?;
/// assert_eq!(t.dims(), [2, 3]);
/// # }
/// # Ok::<(), burn_gguf::gguf::GgufError>(())
/// ```
pub fn load_float_tensor<const D: usize>(
    file: &GgufFile,
    name: &str,
    device: &Device,
) -> Result<Tensor<D>> {
    let info = file.require_tensor(name)?;
    let shape = to_burn_shape::<D>(info)?;
    let values = file.dequantize(name)?;
    Ok(Tensor::from_data(TensorData::new(values, shape), device))
}
