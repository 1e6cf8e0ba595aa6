//! Gemma 3 (text) as llama.cpp runs a `gemma3` GGUF: token embedding scaled by √d_model;
//! per layer pre- and post-norms around attention and the MLP; grouped-query attention with
//! per-head RMS norms on q and k, NEOX (rotate-half) RoPE and the query scale
//! `1/√key_length`; five sliding-window layers (RoPE base 10 000, window from
//! `gemma3.attention.sliding_window`) for every global layer (RoPE base `gemma3.rope.freq_base`);
//! a GELU(tanh)-gated MLP; final norm and the output projection tied to the embedding.
//!
//! Norm weights are used as stored: llama.cpp's converter has already added Gemma's `+1`.
//! Every projection of a type with a fused product (Q6_K) is a
//! [`GgufLinear::Quant`](crate::nn::GgufLinear); other quantized types are dequantized once at
//! load ([`LoadSummary`] says which went where).
//!
//! ```no_run
//! # #[cfg(feature = "flex")] {
//! use burn::tensor::Device;
//! use burn_gguf::gguf::GgufFile;
//! use burn_gguf::models::gemma3::{Gemma3, KvCache};
//! use burn_gguf::models::sampling::Sampler;
//! use burn_gguf::tokenizer::Tokenizer;
//!
//! let file = GgufFile::open("gemma-3-270m-q4_k_m.gguf")?;
//! let tokenizer = Tokenizer::from_gguf(&file)?;
//! let (model, summary) = Gemma3::from_gguf(&file, &Device::flex(), |_| {})?;
//! println!("{summary}");
//! let prompt = tokenizer.encode("The capital of France is", true, false)?;
//! let mut cache = KvCache::new(model.config());
//! let mut sampler = Sampler::greedy();
//! let out = model.generate(&prompt, 16, &mut cache, &mut sampler, |t| tokenizer.is_eog(t))?;
//! println!("{}", tokenizer.decode(&out.tokens, false));
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod attention;
mod cache;
mod config;
mod decode;
mod load;
mod mlp;
mod model;
mod norm;
mod rope;

pub use attention::Attention;
pub use cache::KvCache;
pub use config::{Gemma3Config, Gemma3Error};
pub use load::{LoadEvent, LoadSummary, LoadedTensor, TensorPlacement};
pub use mlp::Mlp;
pub use model::{Block, Gemma3, Generation};
pub use norm::RmsNorm;
pub use rope::RopeTables;
