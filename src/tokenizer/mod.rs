//! A SentencePiece tokenizer built from a GGUF file's `tokenizer.ggml.*` metadata, token for
//! token what llama.cpp's `llama_tokenize` / `llama_detokenize` produce for SPM vocabularies
//! (`tokenizer.ggml.model = "llama"`: Llama 1/2, Mistral, Gemma).
//!
//! Pure Rust, no Burn needed. Encoding follows llama.cpp's steps:
//! 1. split the text around special tokens ([`partition`]): user-defined tokens always,
//!    control tokens only when `parse_special` is on, longest first;
//! 2. for each plain-text fragment: prefix a space where the vocabulary asks for it
//!    (`tokenizer.ggml.add_space_prefix`), write spaces as `▁` (U+2581);
//! 3. SentencePiece's bigram merge ([`spm`]): start from UTF-8 characters, repeatedly merge the
//!    adjacent pair whose merged text is the highest-scoring token (leftmost on ties); what is
//!    not a token at the end falls back to `<0xXX>` byte tokens.
//!
//! ```
//! use burn_gguf::gguf::{GgufFile, GgufWriter};
//! use burn_gguf::tokenizer::Tokenizer;
//!
//! // A toy vocabulary: the file format is the point here; real ones come with the model.
//! let tokens = ["<unk>", "<s>", "</s>", "▁", "h", "i", "▁h", "hi", "▁hi"];
//! let scores = [0.0f32, 0.0, 0.0, -1.0, -2.0, -2.0, -1.5, -1.0, -0.5];
//! let types = [2i32, 3, 3, 1, 1, 1, 1, 1, 1]; // unknown, control, control, normal...
//! let mut w = GgufWriter::new();
//! w.add_metadata("tokenizer.ggml.model", "llama")?;
//! w.add_metadata("tokenizer.ggml.tokens", tokens.map(String::from).to_vec())?;
//! w.add_metadata("tokenizer.ggml.scores", scores.to_vec())?;
//! w.add_metadata("tokenizer.ggml.token_type", types.to_vec())?;
//! w.add_metadata("tokenizer.ggml.bos_token_id", 1u32)?;
//! w.add_metadata("tokenizer.ggml.eos_token_id", 2u32)?;
//! let tok = Tokenizer::from_gguf(&GgufFile::from_bytes(w.to_bytes())?)?;
//!
//! let ids = tok.encode("hi", true, false)?; // BOS, then " hi" (the space prefix is on by default)
//! assert_eq!(ids, [1, 8]);
//! assert_eq!(tok.decode(&ids, false), "hi");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod decode;
pub mod partition;
pub mod spm;
mod vocab;

pub use decode::StreamDecoder;
pub use vocab::{TokenType, Tokenizer};

use thiserror::Error;

use crate::gguf::GgufError;

/// Why a tokenizer could not be built, or a text not encoded.
#[derive(Debug, Error)]
pub enum TokenizerError {
    /// A `tokenizer.ggml.*` key is missing or has the wrong type.
    #[error("tokenizer metadata: {0}")]
    Metadata(#[from] GgufError),
    /// Only SentencePiece vocabularies (`tokenizer.ggml.model = "llama"`) are implemented.
    #[error(
        "tokenizer.ggml.model is {model:?}; only SentencePiece vocabularies (\"llama\") are supported"
    )]
    UnsupportedModel {
        /// The model name in the file.
        model: String,
    },
    /// The vocabulary arrays disagree, or are empty.
    #[error("tokenizer metadata: {key} has {found} entries, expected {expected} (one per token)")]
    LengthMismatch {
        /// The array key.
        key: &'static str,
        /// Its length.
        found: usize,
        /// The number of tokens.
        expected: usize,
    },
    /// A special token id is outside the vocabulary.
    #[error("tokenizer metadata: {key} = {id} is outside the vocabulary of {n_tokens} tokens")]
    IdOutOfRange {
        /// The key.
        key: &'static str,
        /// The id.
        id: u64,
        /// The vocabulary size.
        n_tokens: usize,
    },
    /// The vocabulary is empty.
    #[error("tokenizer metadata: tokenizer.ggml.tokens is empty")]
    EmptyVocabulary,
    /// A byte could not be encoded: the vocabulary has neither `<0xXX>` nor the byte itself.
    #[error("byte 0x{byte:02X} has no token (neither <0x{byte:02X}> nor the raw byte)")]
    NoByteToken {
        /// The byte.
        byte: u8,
    },
}
