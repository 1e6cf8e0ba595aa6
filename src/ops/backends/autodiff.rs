//! `Autodiff<B>`: the gradient flows to the activations only (`g_x = g_y · W`, computed from the
//! quantized weight; int8 activations' rounding passes the gradient straight through); the packed
//! weight is an `Int` tensor, never a graph node, so it is frozen by construction and no float
//! copy of it is kept.

use burn::backend::autodiff::checkpoint::{base::Checkpointer, strategy::CheckpointStrategy};
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{Autodiff, AutodiffBackend};
use burn::tensor::FloatDType;

use crate::ops::{QuantBackend, TransformerBackend};
use crate::quant::{Activations, QuantWeightDesc};

/// Which of the two products.
#[derive(Clone, Copy, Debug)]
enum Product {
    /// `x · Wᵀ`, the activations read as the [`Activations`] say.
    Forward(Activations),
    /// `g · W`.
    Transposed,
}

impl Product {
    /// The product whose result is this one's gradient with respect to its input.
    fn adjoint(self) -> Self {
        match self {
            Product::Forward(_) => Product::Transposed,
            Product::Transposed => Product::Forward(Activations::Float),
        }
    }
}

/// `product` of `input` and the weight on the inner backend.
fn product<B: QuantBackend>(
    input: FloatTensor<B>,
    weight: IntTensor<B>,
    desc: QuantWeightDesc,
    product: Product,
) -> FloatTensor<B> {
    match product {
        Product::Forward(activations) => B::quant_matmul(input, weight, desc, activations),
        Product::Transposed => B::quant_matmul_t(input, weight, desc),
    }
}

/// The backward step of either product: the adjoint of one is the other.
#[derive(Debug)]
struct QuantBackward {
    product: Product,
}

impl<B: QuantBackend> Backward<B, 1> for QuantBackward {
    type State = (IntTensor<B>, QuantWeightDesc);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (weight, desc) = ops.state;
        let adjoint = self.product.adjoint();
        unary::<B, _>(ops.parents, ops.node, grads, |g| {
            product::<B>(g, weight, desc, adjoint)
        });
    }
}

/// Records the product in the graph when the input is tracked. The input itself is not needed
/// for the backward pass: nothing to checkpoint.
fn tracked<B: QuantBackend, C: CheckpointStrategy>(
    input: FloatTensor<Autodiff<B, C>>,
    weight: IntTensor<B>,
    desc: QuantWeightDesc,
    product: Product,
) -> FloatTensor<Autodiff<B, C>> {
    let (input, node) = input.into_parts();
    match (QuantBackward { product })
        .prepare::<C>([node])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let out = self::product::<B>(input, weight.clone(), desc, product);
            prep.finish((weight, desc), out)
        }
        OpsKind::UnTracked(prep) => prep.finish(self::product::<B>(input, weight, desc, product)),
    }
}

impl<B: QuantBackend, C: CheckpointStrategy> QuantBackend for Autodiff<B, C> {
    fn quant_matmul(
        x: FloatTensor<Self>,
        weight: IntTensor<Self>,
        desc: QuantWeightDesc,
        activations: Activations,
    ) -> FloatTensor<Self> {
        tracked::<B, C>(x, weight, desc, Product::Forward(activations))
    }

    fn quant_matmul_t(
        grad_y: FloatTensor<Self>,
        weight: IntTensor<Self>,
        desc: QuantWeightDesc,
    ) -> FloatTensor<Self> {
        tracked::<B, C>(grad_y, weight, desc, Product::Transposed)
    }

    fn quant_dequantize(
        weight: IntTensor<Self>,
        desc: QuantWeightDesc,
        dtype: FloatDType,
    ) -> FloatTensor<Self> {
        // A constant of the graph: the weight is frozen.
        <Self as AutodiffBackend>::from_inner(B::quant_dequantize(weight, desc, dtype))
    }

    fn quant_rows(
        weight: IntTensor<Self>,
        desc: QuantWeightDesc,
        ids: IntTensor<Self>,
        dtype: FloatDType,
    ) -> FloatTensor<Self> {
        <Self as AutodiffBackend>::from_inner(B::quant_rows(weight, desc, ids, dtype))
    }
}

/// The transformer ops' default bodies: Burn's own ops, so Burn's own gradients.
impl<B: QuantBackend, C: CheckpointStrategy> TransformerBackend for Autodiff<B, C> {}
