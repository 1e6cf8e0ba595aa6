//! [`GgufEmbedding`]: a token embedding loaded from a GGUF table — kept as its GGUF blocks where
//! the type has a fused product (lookups decode only the rows asked for, and the same bytes serve
//! as a tied output projection on the fused path: one copy of the table), a dense f32 table
//! otherwise.

use burn::module::{Module, Param, ParamId};
use burn::tensor::{Device, Int, Tensor};

use super::QuantLinearError;
use super::load::load_float_tensor;
use super::quant_linear::{matrix_dims, require_fused_or_float};
use crate::gguf::GgufFile;
use crate::ops::{QuantWeight, quant_matmul, quant_rows};
use crate::quant::{Activations, FUSED_TYPES, PackError, PackedLayout, QuantWeightDesc};

/// A quantized embedding table `[vocab, d_model]` (GGUF `ne = [d_model, vocab]`) held as its
/// GGUF blocks in the GGUF layout: [`QuantEmbedding::forward`] decodes the looked-up rows on the
/// device, [`QuantEmbedding::project`] multiplies by the table's transpose on the fused path
/// (a tied output head).
#[derive(Module, Debug)]
pub struct QuantEmbedding {
    /// The packed table (see [`crate::quant::pack`]), `U32` words.
    pub weight: Param<Tensor<1, Int>>,
    #[module(skip)]
    desc: QuantWeightDesc,
    #[module(skip)]
    activations: Activations,
}

impl QuantEmbedding {
    /// Builds the table from its GGUF bytes: `vocab` rows of `d_model` values of `desc`'s type
    /// (`desc.layout` must be [`PackedLayout::Gguf`]).
    pub fn from_gguf_bytes(
        bytes: &[u8],
        desc: QuantWeightDesc,
        device: &Device,
    ) -> Result<Self, PackError> {
        if desc.layout != PackedLayout::Gguf {
            return Err(PackError::Layout {
                ggml_type: desc.ggml_type,
                layout: desc.layout,
            });
        }
        let weight = QuantWeight::from_gguf_bytes(bytes, desc, device)?;
        Ok(QuantEmbedding {
            weight: Param::initialized(ParamId::new(), weight.words),
            desc,
            activations: Activations::Float,
        })
    }

    /// What the packed table holds: `out_features` = vocabulary, `in_features` = width.
    pub fn desc(&self) -> QuantWeightDesc {
        self.desc
    }

    /// The table as a [`QuantWeight`] handle.
    pub fn quant_weight(&self) -> QuantWeight {
        QuantWeight {
            words: self.weight.val(),
            desc: self.desc,
        }
    }

    /// Rows `ids` (`D` dims) of the table as f32, `[.., d_model]` (`D2 = D + 1` dims).
    pub fn forward<const D: usize, const D2: usize>(&self, ids: Tensor<D, Int>) -> Tensor<D2> {
        quant_rows(self.weight.val(), self.desc, ids)
    }

    /// `x · tableᵀ` for `x` `[.., d_model]`: `[.., vocab]`, the tied output projection, reading
    /// `x` as [`QuantEmbedding::with_activations`] says.
    pub fn project<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        quant_matmul(x, self.weight.val(), self.desc, self.activations)
    }

    /// The table's output projection reading its input as `activations` says
    /// ([`Activations::Float`] when built; [`Activations::Int8`] as
    /// [`crate::nn::QuantLinear::with_activations`] describes). The lookup is unchanged.
    pub fn with_activations(mut self, activations: Activations) -> Self {
        // the table is in the GGUF layout, which every product reads int8 activations from
        self.activations = activations;
        self
    }

    /// How the output projection reads its input.
    pub fn activations(&self) -> Activations {
        self.activations
    }
}

/// A token embedding from a GGUF table: its blocks on the fused path when the type has one, else
/// a dense f32 `[vocab, d_model]` table.
#[derive(Module, Debug)]
pub enum GgufEmbedding {
    /// A quantized table.
    Quant(QuantEmbedding),
    /// A float table (from a float type, or dequantized at load).
    Dense(Param<Tensor<2>>),
}

impl GgufEmbedding {
    /// Loads table `name` (`ne = [d_model, vocab]`): a type with a fused product stays its GGUF
    /// blocks, F32/F16/BF16 load as f32, and any other type is
    /// [`PackError::Unsupported`] (see [`GgufEmbedding::from_gguf_dequantized`]).
    pub fn from_gguf(
        file: &GgufFile,
        name: &str,
        device: &Device,
    ) -> Result<Self, QuantLinearError> {
        require_fused_or_float(file, name)?;
        Self::from_gguf_dequantized(file, name, device)
    }

    /// As [`GgufEmbedding::from_gguf`], but a quantized type without a fused product is
    /// dequantized to a dense f32 table at load instead of refused.
    pub fn from_gguf_dequantized(
        file: &GgufFile,
        name: &str,
        device: &Device,
    ) -> Result<Self, QuantLinearError> {
        let info = file.require_tensor(name)?;
        let (d_model, vocab) = matrix_dims(info)?;
        if FUSED_TYPES.contains(&info.ggml_type) {
            let desc = QuantWeightDesc::new(info.ggml_type, PackedLayout::Gguf, vocab, d_model)?;
            let table = QuantEmbedding::from_gguf_bytes(file.tensor_data(name)?, desc, device)?;
            return Ok(GgufEmbedding::Quant(table));
        }
        let table = load_float_tensor::<2>(file, name, device)?;
        Ok(GgufEmbedding::Dense(Param::from_tensor(table)))
    }

    /// Whether the table stays quantized.
    pub fn is_fused(&self) -> bool {
        matches!(self, GgufEmbedding::Quant(_))
    }

    /// `(vocab, d_model)`.
    pub fn dims(&self) -> (usize, usize) {
        match self {
            GgufEmbedding::Quant(q) => (q.desc.out_features, q.desc.in_features),
            GgufEmbedding::Dense(t) => {
                let [v, d] = t.val().dims();
                (v, d)
            }
        }
    }

    /// Bytes the table holds on its device.
    pub fn memory_bytes(&self) -> usize {
        match self {
            GgufEmbedding::Quant(q) => q.weight.val().dims()[0] * 4,
            GgufEmbedding::Dense(t) => {
                let t = t.val();
                t.shape().num_elements() * t.dtype().size()
            }
        }
    }

    /// The device the table lives on.
    pub fn device(&self) -> Device {
        match self {
            GgufEmbedding::Quant(q) => q.weight.val().device(),
            GgufEmbedding::Dense(t) => t.val().device(),
        }
    }

    /// Rows `ids` (`D` dims) of the table as f32, `[.., d_model]` (`D2 = D + 1` dims).
    pub fn forward<const D: usize, const D2: usize>(&self, ids: Tensor<D, Int>) -> Tensor<D2> {
        match self {
            GgufEmbedding::Quant(q) => q.forward(ids),
            GgufEmbedding::Dense(t) => {
                let mut shape = ids.dims().to_vec();
                let (_, d) = self.dims();
                shape.push(d);
                let shape: [usize; D2] = shape.try_into().expect("D2 = D + 1");
                t.val().select(0, ids.flatten::<1>(0, D - 1)).reshape(shape)
            }
        }
    }

    /// A quantized table's output projection reading its input as `activations` says
    /// ([`QuantEmbedding::with_activations`]); a float table's multiplies floats whatever it is
    /// told.
    pub fn with_activations(self, activations: Activations) -> Self {
        match self {
            GgufEmbedding::Quant(q) => GgufEmbedding::Quant(q.with_activations(activations)),
            dense => dense,
        }
    }

    /// `x · tableᵀ` for `x` `[n, d_model]`: `[n, vocab]` logits (the tied output projection).
    pub fn project(&self, x: Tensor<2>) -> Tensor<2> {
        match self {
            GgufEmbedding::Quant(q) => q.project(x),
            // [vocab, d] · [d, n], transposed back: the large table stays the contiguous left
            // operand.
            GgufEmbedding::Dense(t) => t.val().matmul(x.transpose()).transpose(),
        }
    }
}
