//! Whole models that run GGUF files in Burn, and text generation on top of them.
//!
//! - [`gemma3`]: Google's Gemma 3 (text), as llama.cpp's `gemma3` architecture; its Q6_K
//!   projections run the fused kernel.
//! - [`sampling`]: greedy and sampled decoding (temperature, top-k, top-p, seeded).

pub mod gemma3;
pub mod sampling;
