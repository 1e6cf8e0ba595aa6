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

impl<B: Q6kBackend, C: CheckpointStrategy> Q6kBackend for Autodiff<B, C> {
    fn q6k_matmul(
        x: FloatTensor<Self>,
        packed: IntTensor<Self>,
        shape: Q6kShape,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct Q6kMatmulBackward;

        impl<B: Q6kBackend> Backward<B, 1> for Q6kMatmulBackward {
            type State = (IntTensor<B>, Q6kShape);

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let (packed, shape) = ops.state;
                unary::<B, _>(ops.parents, ops.node, grads, |grad_y| {
                    B::q6k_matmul_t(grad_y, packed, shape)
                });
            }
        }

        // x is not needed for the backward pass: nothing to checkpoint.
        match Q6kMatmulBackward
            .prepare::<C>([x.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let y = B::q6k_matmul(x.primitive, packed.clone(), shape);
                prep.finish((packed, shape), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::q6k_matmul(x.primitive, packed, shape)),
        }
    }

    fn q6k_matmul_t(
        grad_y: FloatTensor<Self>,
        packed: IntTensor<Self>,
        shape: Q6kShape,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct Q6kMatmulTBackward;

        impl<B: Q6kBackend> Backward<B, 1> for Q6kMatmulTBackward {
            type State = (IntTensor<B>, Q6kShape);

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                _: &mut Checkpointer,
            ) {
                let (packed, shape) = ops.state;
                // The adjoint of the transposed product is the forward product.
                unary::<B, _>(ops.parents, ops.node, grads, |g| {
                    B::q6k_matmul(g, packed, shape)
                });
            }
        }

        match Q6kMatmulTBackward
            .prepare::<C>([grad_y.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let gx = B::q6k_matmul_t(grad_y.primitive, packed.clone(), shape);
                prep.finish((packed, shape), gx)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(B::q6k_matmul_t(grad_y.primitive, packed, shape))
            }
        }
    }

    fn q6k_dequantize(packed: IntTensor<Self>, shape: Q6kShape) -> FloatTensor<Self> {
        // A constant of the graph: the weight is frozen.
        <Self as AutodiffBackend>::from_inner(B::q6k_dequantize(packed, shape))
    }
}
