//! The CubeCL kernels, written once and compiled at run time to PTX (CUDA), WGSL or SPIR-V
//! (wgpu) and MSL (Metal), and their launches over `CubeTensor`s. Each kernel shares its file
//! with its launch function.
//!
//! The transformer layer's fused ops have their kernels here too ([`rms_norm`], [`rope`],
//! [`gelu_mul`], [`attention`], [`write_positions`]); those that take positions read them from a
//! [`Start`], a device buffer where a recorded step must replay unchanged. So does the token's
//! choice from the logits ([`sample_token`]), its uniform draw from a device table ([`Draw`]).
//!
//! The entries, [`quant_gemv`], [`quant_dequantize`] and [`quant_rows`], take a packed weight and
//! the [`QuantWeightDesc`] that says what it holds, check both, and pick the kernel of the
//! weight's type and layout; an input they cannot run on is a [`KernelError`], never a silent
//! fallback. The kernels are written once, generic over the block format and over how its bytes
//! sit in the words (module `formats`: the GGUF layout, or interleaved); Q6_K's aligned planes have a
//! specialised product of their own.

mod attention;
mod cache;
mod decode;
mod dequantize;
mod formats;
mod gelu;
mod gemv;
mod gemv_planes;
mod gemv_q8;
mod heads;
#[cfg(test)]
mod msl;
mod norm;
mod positions;
mod reduce;
mod rope;
mod sample;

pub use attention::attention;
pub use cache::write_positions;
pub use gelu::gelu_mul;
pub use gemv::gemv_shape;
pub use gemv_planes::{PlanesGeometry, PlanesTuning, planes_geometry};
pub use heads::attention_inputs;
pub use norm::{add_rms_norm, add_rms_norm_next, rms_norm};
pub use positions::Start;
pub use reduce::CubeShape;
pub use rope::rope;
pub use sample::{Draw, sample_token};

use burn::tensor::DType;
use burn_cubecl::{kernel::into_contiguous, tensor::CubeTensor};
use cubecl::client::Client;
use cubecl::features::Plane;
use thiserror::Error;

use crate::cpu::sampling::MAX_DEVICE_TOP_K;
use crate::dims::with_last_dim;
use crate::quant::{Activations, FUSED_TYPES, GgmlType, PackedLayout, QuantWeightDesc};

/// Most activation rows the fused kernels take.
pub const MAX_ROWS: usize = 8;

/// Why a kernel cannot run on the inputs it was given.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KernelError {
    /// The weight's type has no kernel.
    #[error("no kernel for ggml type {0}")]
    Unsupported(GgmlType),
    /// The kernel does not read the weight's layout.
    #[error("{desc:?}: this kernel does not read the weight's layout")]
    Layout {
        /// The weight.
        desc: QuantWeightDesc,
    },
    /// Row indices that are not an integer tensor.
    #[error("row indices must be an integer tensor, found {0:?}")]
    IdsDtype(DType),
    /// The packed words are not 32-bit.
    #[error("a packed weight must be U32 words, found {0:?}")]
    WordsDtype(DType),
    /// The packed words are not the weight's length in its layout.
    #[error("{desc:?} packs into {expected} words, the tensor has {found}")]
    WordsLength {
        /// The weight.
        desc: QuantWeightDesc,
        /// Words it takes.
        expected: usize,
        /// Words found.
        found: usize,
    },
    /// The activations are not a float type the kernel reads.
    #[error("activation dtype {0:?} is not f32, f16, bf16 or flex32")]
    ActivationDtype(DType),
    /// The activations' last dim or row count does not fit.
    #[error(
        "activations of shape {shape:?}: the fused kernel takes 1..={MAX_ROWS} rows of {in_features}"
    )]
    Activations {
        /// Their shape.
        shape: Vec<usize>,
        /// The weight's input width.
        in_features: usize,
    },
    /// Activations and weight live on different devices.
    #[error("activations and weight are on different devices")]
    Device,
    /// A norm's weight is not as long as the rows it scales.
    #[error("a norm of rows of shape {shape:?} takes a weight of their last dim, found {weight:?}")]
    NormWeight {
        /// The input's shape.
        shape: Vec<usize>,
        /// The weight's shape.
        weight: Vec<usize>,
    },
    /// RoPE inputs that do not fit together.
    #[error(
        "rope of x {shape:?} (.., positions, heads, even head width) at position {start} needs \
         tables [positions ≥ {start} + x's positions, head width / 2], found {table:?}"
    )]
    Rope {
        /// x's shape.
        shape: Vec<usize>,
        /// The cosine table's shape.
        table: Vec<usize>,
        /// The first position.
        start: usize,
    },
    /// Attention inputs that do not fit together.
    #[error(
        "attention of queries {q:?} ([batch, positions, heads, head_dim]) at position {start} \
         needs keys and values [batch, kv heads dividing heads, slots ≥ {start} + positions, \
         head_dim] and a window of at least 1, found {kv:?}"
    )]
    Attention {
        /// The queries' shape.
        q: Vec<usize>,
        /// The keys' shape.
        kv: Vec<usize>,
        /// The first query's position.
        start: usize,
    },
    /// A cache write whose buffer and value do not fit together.
    #[error(
        "writing values {value:?} ([.., positions, d]) at position {start} needs a buffer [.., \
         slots ≥ {start} + positions, d] with the same leading dims, found {buffer:?}"
    )]
    Positions {
        /// The buffer's shape.
        buffer: Vec<usize>,
        /// The values' shape.
        value: Vec<usize>,
        /// The first position.
        start: usize,
    },
    /// A device position offset that is not one `U32` value.
    #[error("a position offset is one U32 value, found {dtype:?} of shape {shape:?}")]
    Offset {
        /// Its shape.
        shape: Vec<usize>,
        /// Its dtype.
        dtype: DType,
    },
    /// Logits to sample from that are empty or longer than `u32` ids reach.
    #[error("sampling takes 1..=2^32 − 1 logits, found {n}")]
    Logits {
        /// How many.
        n: usize,
    },
    /// Sampling settings the device op does not take.
    #[error(
        "top-k {top_k}: sampling on the device takes top-k 1..={MAX_DEVICE_TOP_K} (or greedy \
         settings); top-k 0 (every token) or more samples on the host"
    )]
    Sampling {
        /// The settings' top-k.
        top_k: usize,
    },
    /// A table of uniform draws that is not `F32` values.
    #[error("a table of draws is F32 values, found {dtype:?} of shape {shape:?}")]
    Uniforms {
        /// Its shape.
        shape: Vec<usize>,
        /// Its dtype.
        dtype: DType,
    },
    /// Two inputs of an element-wise op with different shapes.
    #[error("the op's inputs must share a shape, found {0:?} and {1:?}")]
    Shapes(Vec<usize>, Vec<usize>),
    /// Two float inputs of one op with different dtypes.
    #[error("the op's float inputs must share a dtype, found {0:?} and {1:?}")]
    Dtypes(DType, DType),
}

/// Checks a packed weight against `desc`; returns it contiguous.
fn check_packed(packed: CubeTensor, desc: QuantWeightDesc) -> Result<CubeTensor, KernelError> {
    if !FUSED_TYPES.contains(&desc.ggml_type) {
        return Err(KernelError::Unsupported(desc.ggml_type));
    }
    if !matches!(packed.dtype, DType::U32 | DType::I32) {
        return Err(KernelError::WordsDtype(packed.dtype));
    }
    let found = packed.meta.num_elements();
    if found != desc.n_words() {
        return Err(KernelError::WordsLength {
            desc,
            expected: desc.n_words(),
            found,
        });
    }
    Ok(into_contiguous(packed))
}

/// The fused product `y = x · Wᵀ` for `x` `[.., in_features]` with 1..=[`MAX_ROWS`] rows, W the
/// packed weight `desc`; `y` has x's dtype. `activations` says whether x is read as floats or
/// rounded to int8 first ([`Activations::Int8`]: the generic kernel's layouts, GGUF and
/// interleaved, not Q6_K's planes). `tuning` forces the launch configuration (`None`: the
/// measured default; the generic kernels take its rows,
/// warps, row groups and items per iteration).
pub fn quant_gemv(
    x: CubeTensor,
    packed: CubeTensor,
    desc: QuantWeightDesc,
    activations: Activations,
    tuning: Option<PlanesTuning>,
) -> Result<CubeTensor, KernelError> {
    let packed = check_packed(packed, desc)?;
    let (x, rows) = check_activations(x, &packed, desc)?;
    if desc.out_features == 0 {
        return Ok(dequantize::empty_like(&x, with_last_dim(x.meta.shape(), 0)));
    }
    Ok(match (desc.layout, activations) {
        (PackedLayout::Q6kPlanes, Activations::Float) => {
            gemv_planes::launch(x, packed, desc, rows, tuning)
        }
        (PackedLayout::Q6kPlanes, Activations::Int8) => return Err(KernelError::Layout { desc }),
        (_, Activations::Float) => gemv::launch(x, packed, desc, rows, tuning)?,
        (_, Activations::Int8) => gemv_q8::launch(x, packed, desc, rows, tuning)?,
    })
}

/// Gemma's gated MLP input `gelu_tanh(x · Gᵀ) · (x · Uᵀ)` in one launch, for `x` `[..,
/// in_features]` with 1..=[`MAX_ROWS`] rows and two packed weights `gate` and `up` of one
/// `desc` (GGUF or interleaved layout): the values of [`quant_gemv`] of each then [`gelu_mul`], from one kernel
/// that writes neither product.
pub fn quant_gemv_gated(
    x: CubeTensor,
    gate: CubeTensor,
    up: CubeTensor,
    desc: QuantWeightDesc,
) -> Result<CubeTensor, KernelError> {
    if desc.layout == PackedLayout::Q6kPlanes {
        return Err(KernelError::Layout { desc });
    }
    let (gate, up) = (check_packed(gate, desc)?, check_packed(up, desc)?);
    if gate.device != up.device {
        return Err(KernelError::Device);
    }
    let (x, rows) = check_activations(x, &gate, desc)?;
    if desc.out_features == 0 {
        return Ok(dequantize::empty_like(&x, with_last_dim(x.meta.shape(), 0)));
    }
    gemv::launch_gated(x, gate, up, desc, rows)
}

/// Checks the activations of a product with the packed weight `desc` on `packed`'s device;
/// returns them contiguous, with their row count.
fn check_activations(
    x: CubeTensor,
    packed: &CubeTensor,
    desc: QuantWeightDesc,
) -> Result<(CubeTensor, usize), KernelError> {
    if !matches!(
        x.dtype,
        DType::F32 | DType::F16 | DType::BF16 | DType::Flex32
    ) {
        return Err(KernelError::ActivationDtype(x.dtype));
    }
    if x.device != packed.device {
        return Err(KernelError::Device);
    }
    let shape = x.meta.shape();
    let rows = x.meta.num_elements() / desc.in_features;
    if shape[shape.num_dims() - 1] != desc.in_features || rows == 0 || rows > MAX_ROWS {
        return Err(KernelError::Activations {
            shape: shape.to_vec(),
            in_features: desc.in_features,
        });
    }
    Ok((into_contiguous(x), rows))
}

/// The packed weight `desc` as a dense `[out_features, in_features]` tensor of `dtype`.
pub fn quant_dequantize(
    packed: CubeTensor,
    desc: QuantWeightDesc,
    dtype: DType,
) -> Result<CubeTensor, KernelError> {
    let packed = check_packed(packed, desc)?;
    dequantize::launch(packed, desc, dtype)
}

/// Rows `ids` of the packed weight `desc` (GGUF or interleaved layout), dequantized to `dtype`: an embedding
/// lookup, `ids.shape + [in_features]`, decoding only the rows asked for. `ids` may be any
/// integer dtype; an id past the last row gives a row of NaN.
pub fn quant_rows(
    packed: CubeTensor,
    desc: QuantWeightDesc,
    ids: CubeTensor,
    dtype: DType,
) -> Result<CubeTensor, KernelError> {
    let packed = check_packed(packed, desc)?;
    if desc.layout == PackedLayout::Q6kPlanes {
        return Err(KernelError::Layout { desc });
    }
    if packed.device != ids.device {
        return Err(KernelError::Device);
    }
    let ids = match ids.dtype {
        // 32-bit ids are read as they are (the kernel binds them as u32 words: a negative i32
        // is a huge u32, so it gives a row of NaN like any id out of range).
        DType::U32 | DType::I32 => into_contiguous(ids),
        DType::I64 | DType::I16 | DType::I8 | DType::U64 | DType::U16 | DType::U8 => {
            burn_cubecl::kernel::cast(into_contiguous(ids), DType::U32)
        }
        other => return Err(KernelError::IdsDtype(other)),
    };
    dequantize::launch_rows(packed, desc, ids, dtype)
}

/// Units per row, and whether to reduce with plane operations: the device's plane size when
/// plane operations exist and the size is fixed, else 32 with a shared-memory reduction.
fn lanes_for(client: &Client) -> (usize, bool) {
    let props = client.properties();
    let hw = &props.hardware;
    let fixed = hw.plane_size_min == hw.plane_size_max;
    if client.features().plane.contains(Plane::Ops)
        && fixed
        && (8..=64).contains(&hw.plane_size_max)
    {
        (hw.plane_size_max as usize, true)
    } else {
        (32, false)
    }
}
