//! Burn modules over GGUF weights, and loading GGUF tensors into Burn.

mod gguf_embedding;
mod gguf_linear;
mod load;
mod quant_linear;

pub use gguf_embedding::{GgufEmbedding, QuantEmbedding};
pub use gguf_linear::GgufLinear;
pub use load::{load_float_tensor, to_burn_shape};
pub use quant_linear::{Q6kLinear, Q6kLinearConfig, QuantLinear, QuantLinearError};
