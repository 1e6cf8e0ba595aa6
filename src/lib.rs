//! # burn-gguf
//!
//! Run GGUF (llama.cpp) weights in [Burn](https://burn.dev) models without blowing them up to f32.
//!
//! - [`gguf`]: a hardened GGUF v2/v3 reader over a memory map ([`gguf::GgufFile`]) and a writer
//!   ([`gguf::GgufWriter`]) whose files ggml accepts.
//! - [`quant`]: ggml's block formats in pure Rust — dequantizers bit-exact with gguf-py for F32,
//!   F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K…Q6_K and Q8_K, and ggml's reference Q6_K
//!   quantizer, byte-exact.
//! - [`tokenizer`]: the SentencePiece tokenizer of a GGUF file's vocabulary, token for token
//!   llama.cpp's.
//! - [`cpu`]: the quantized products in pure Rust over packed words (threaded, reading the
//!   blocks in place; SIMD builds picked at run time).
//! - `ops`, `nn`, `kernel`, `models` (with a backend feature, Burn 0.22): the `QuantBackend`
//!   extension trait — one op for every GGUF block format, a weight handle that says what it
//!   holds (one CubeCL kernel for CUDA, wgpu and Metal; Flex on the CPU; Fusion and Autodiff) —,
//!   the `QuantLinear` / `Q6kLinear` module, loading GGUF tensors into Burn, and Gemma 3.
//!
//! The core (`gguf`, `quant`, `cpu`, `tokenizer`) needs neither a GPU nor Burn: build with
//! `default-features = false` to get only it.
//!
//! ```
//! use burn_gguf::gguf::{GgufFile, GgufWriter};
//! use burn_gguf::quant::{BlockQ6K, GgmlType, q6k};
//!
//! // Quantize a 2 x 256 weight to Q6_K (bit-exact with ggml), store it, read it back.
//! let w: Vec<f32> = (0..512).map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0).collect();
//! let blocks = q6k::quantize(&w, 0).expect("a multiple of 256 values");
//! let mut writer = GgufWriter::new();
//! writer.add_metadata("general.architecture", "demo")?;
//! writer.add_tensor("w", &[256, 2], GgmlType::Q6_K, BlockQ6K::slice_as_bytes(&blocks))?;
//! let file = GgufFile::from_bytes(writer.to_bytes())?;
//!
//! let info = file.tensor_info("w").unwrap();
//! assert_eq!(info.shape(), vec![2, 256]); // row-major: [out_features, in_features]
//! let back = file.dequantize("w")?;
//! assert!(w.iter().zip(&back).all(|(a, b)| (a - b).abs() < 0.05));
//! # Ok::<(), burn_gguf::gguf::GgufError>(())
//! ```
#![warn(missing_docs)]

pub mod cpu;
pub mod gguf;
mod parallel;
pub mod quant;
pub mod tokenizer;

#[cfg(feature = "backend")]
mod dims;
#[cfg(feature = "cube")]
pub mod kernel;
#[cfg(feature = "backend")]
pub mod models;
#[cfg(feature = "backend")]
pub mod nn;
#[cfg(feature = "backend")]
pub mod ops;

/// The README's examples, compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
