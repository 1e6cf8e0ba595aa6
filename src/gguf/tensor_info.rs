//! What a GGUF file says about one tensor.

use crate::quant::GgmlType;

/// One tensor info of a GGUF file, in the file's order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    /// The tensor's name (`"blk.0.ffn_down.weight"`).
    pub name: String,
    /// Dimensions in ggml's `ne` order: `dims[0]` is the contiguous (fastest) axis. A Linear
    /// weight is `[in_features, out_features]`.
    pub dims: Vec<u64>,
    /// The element type.
    pub ggml_type: GgmlType,
    /// Offset of the data from the start of the tensor-data section.
    pub offset: u64,
    /// Byte offset in the file where this tensor's info starts (for error messages).
    pub info_offset: u64,
    pub(crate) n_elements: u64,
    pub(crate) n_bytes: Option<u64>,
}

impl TensorInfo {
    /// Number of elements (the product of the dims; 1 for a 0-D tensor).
    pub fn n_elements(&self) -> u64 {
        self.n_elements
    }

    /// Bytes of data, or `None` for a type without a known layout.
    pub fn n_bytes(&self) -> Option<u64> {
        self.n_bytes
    }

    /// The shape in row-major (Burn, PyTorch, numpy) order: `dims` reversed.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }

    /// Rows of a matrix stored this way: the product of every dim but `ne0`.
    pub fn n_rows(&self) -> u64 {
        self.dims.iter().skip(1).product()
    }
}
