//! Burn modules over GGUF weights.

mod gguf_linear;
mod q6k_linear;

pub use gguf_linear::GgufLinear;
pub use q6k_linear::{Q6kLinear, Q6kLinearConfig, Q6kLinearError};
