//! `Fusion<B>` (what `burn::backend::Wgpu` and `Cuda` are with Burn's default features): the ops
//! are registered in the fusion stream as custom operations and run on the inner backend.

use burn::tensor::Shape;
use burn::tensor::ops::{FloatTensor, IntTensor};
use burn::tensor::{DType, Element};
use burn_fusion::stream::{Operation, OperationStreams};
use burn_fusion::{Fusion, FusionBackend, FusionRuntime, FusionTensor};
use burn_ir::{CustomOpIr, HandleContainer, OperationIr, OperationOutput, TensorIr};

use crate::ops::{Q6kBackend, Q6kShape, with_last_dim};

#[derive(Clone, Copy, Debug)]
enum Kind {
    Matmul,
    MatmulT,
    Dequantize,
}

#[derive(Clone, Debug)]
struct Q6kOp<B> {
    desc: CustomOpIr,
    shape: Q6kShape,
    kind: Kind,
    _backend: core::marker::PhantomData<B>,
}

impl<B: FusionBackend + Q6kBackend> Operation<B::FusionRuntime> for Q6kOp<B> {
    fn execute(
        &self,
        handles: &mut HandleContainer<<B::FusionRuntime as FusionRuntime>::FusionHandle>,
    ) {
        match self.kind {
            Kind::Matmul | Kind::MatmulT => {
                let ([x, w], [y]) = self.desc.as_fixed();
                let (x, w) = (
                    handles.get_float_tensor::<B>(x),
                    handles.get_int_tensor::<B>(w),
                );
                let out = match self.kind {
                    Kind::Matmul => B::q6k_matmul(x, w, self.shape),
                    _ => B::q6k_matmul_t(x, w, self.shape),
                };
                handles.register_float_tensor::<B>(&y.id, out);
            }
            Kind::Dequantize => {
                let ([w], [y]) = self.desc.as_fixed();
                let out = B::q6k_dequantize(handles.get_int_tensor::<B>(w), self.shape);
                handles.register_float_tensor::<B>(&y.id, out);
            }
        }
    }
}

fn register<B: FusionBackend + Q6kBackend>(
    name: &'static str,
    kind: Kind,
    inputs: Vec<FusionTensor<B::FusionRuntime>>,
    out_shape: Shape,
    dtype: DType,
    shape: Q6kShape,
) -> FusionTensor<B::FusionRuntime> {
    let client = inputs[0].client.clone();
    let streams = OperationStreams::with_inputs(inputs.iter());
    let out = TensorIr::uninit(client.create_empty_handle(), out_shape, dtype);
    let irs: Vec<TensorIr> = inputs.into_iter().map(FusionTensor::into_ir).collect();
    let desc = CustomOpIr::new(name, &irs, &[out]);
    let op = Q6kOp::<B> {
        desc: desc.clone(),
        shape,
        kind,
        _backend: core::marker::PhantomData,
    };
    client
        .register(streams, OperationIr::Custom(desc), op)
        .output()
}

impl<B: FusionBackend + Q6kBackend> Q6kBackend for Fusion<B> {
    fn q6k_matmul(
        x: FloatTensor<Self>,
        packed: IntTensor<Self>,
        shape: Q6kShape,
    ) -> FloatTensor<Self> {
        let (out_shape, dtype) = (with_last_dim(&x.shape, shape.out_features), x.dtype);
        register::<B>(
            "burn_gguf::q6k_matmul",
            Kind::Matmul,
            vec![x, packed],
            out_shape,
            dtype,
            shape,
        )
    }

    fn q6k_matmul_t(
        grad_y: FloatTensor<Self>,
        packed: IntTensor<Self>,
        shape: Q6kShape,
    ) -> FloatTensor<Self> {
        let (out_shape, dtype) = (
            with_last_dim(&grad_y.shape, shape.in_features),
            grad_y.dtype,
        );
        register::<B>(
            "burn_gguf::q6k_matmul_t",
            Kind::MatmulT,
            vec![grad_y, packed],
            out_shape,
            dtype,
            shape,
        )
    }

    fn q6k_dequantize(packed: IntTensor<Self>, shape: Q6kShape) -> FloatTensor<Self> {
        let out_shape = Shape::from(vec![shape.out_features, shape.in_features]);
        register::<B>(
            "burn_gguf::q6k_dequantize",
            Kind::Dequantize,
            vec![packed],
            out_shape,
            B::FloatElem::dtype(),
            shape,
        )
    }
}
