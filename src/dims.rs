//! Shape arithmetic shared by the kernels' launches and the backends' impls.

use burn::tensor::Shape;

/// `shape` with its last dimension replaced by `last`.
pub(crate) fn with_last_dim(shape: &Shape, last: usize) -> Shape {
    let mut s = shape.clone();
    let i = s.num_dims() - 1;
    s[i] = last;
    s
}
