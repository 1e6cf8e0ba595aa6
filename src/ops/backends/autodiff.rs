//! `Autodiff<B>`: the gradient flows to the activations only (`g_x = g_y · W`, computed from the
//! quantized weight); the packed weight is an Int tensor, never a graph node, so it is frozen by
//! construction and no f32 copy of it is kept.

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::ops::{FloatTensor, IntTensor};

use crate::ops::{Q6kBackend, Q6kShape};

/// `x · Wᵀ` (`transposed: false`) or `g · W` (`transposed: true`) on the inner backend.
fn product<B: Q6kBackend>(
    input: FloatTensor<B>,
    packed: IntTensor<B>,
    shape: Q6kShape,
    transposed: bool,
) -> FloatTensor<B> {
    if transposed {
        B::q6k_matmul_t(input, packed, shape)
    } else {
        B::q6k_matmul(input, packed, shape)
    }
}

/// The backward step of either product: the adjoint of one is the other.
#[derive(Debug)]
struct Q6kBackward {
    transposed: bool,
}

impl<B: Q6kBackend> Backward<B, 1> for Q6kBackward {
    type State = (IntTensor<B>, Q6kShape);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (packed, shape) = ops.state;
        let adjoint = !self.transposed;
        unary::<B, _>(ops.parents, ops.node, grads, |g| {
            product::<B>(g, packed, shape, adjoint)
        });
    }
}

/// Records the product in the graph when the input is tracked. The input itself is not needed
/// for the backward pass: nothing to checkpoint.
fn tracked<B: Q6kBackend, C: CheckpointStrategy>(
    input: FloatTensor<Autodiff<B, C>>,
    packed: IntTensor<B>,
    shape: Q6kShape,
    transposed: bool,
) -> FloatTensor<Autodiff<B, C>> {
    match (Q6kBackward { transposed })
        .prepare::<C>([input.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let out = product::<B>(input.primitive, packed.clone(), shape, transposed);
            prep.finish((packed, shape), out)
        }
        OpsKind::UnTracked(prep) => {
            prep.finish(product::<B>(input.primitive, packed, shape, transposed))
        }
    }
}

impl<B: Q6kBackend, C: CheckpointStrategy> Q6kBackend for Autodiff<B, C> {
    fn q6k_matmul(
        x: FloatTensor<Self>,
        packed: IntTensor<Self>,
        shape: Q6kShape,
    ) -> FloatTensor<Self> {
        tracked::<B, C>(x, packed, shape, false)
    }

    fn q6k_matmul_t(
        grad_y: FloatTensor<Self>,
        packed: IntTensor<Self>,
        shape: Q6kShape,
    ) -> FloatTensor<Self> {
        tracked::<B, C>(grad_y, packed, shape, true)
    }

    fn q6k_dequantize(packed: IntTensor<Self>, shape: Q6kShape) -> FloatTensor<Self> {
        // A constant of the graph: the weight is frozen.
        <Self as AutodiffBackend>::from_inner(B::q6k_dequantize(packed, shape))
    }
}
