//! The Burn-facing layer: every line that touches Burn's API lives under this module (and, later,
//! `nn`), so a port to a newer Burn stays contained.

mod load;

pub use load::{load_float_tensor, to_burn_shape};
