//! Burn modules over GGUF weights.

mod q6k_linear;

pub use q6k_linear::{Q6kLinear, Q6kLinearConfig, Q6kLinearError};
