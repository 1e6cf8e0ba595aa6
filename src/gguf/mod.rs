//! The GGUF container: a hardened reader ([`GgufFile`]) and a writer ([`GgufWriter`]).
//!
//! The reader follows ggml's `gguf_init_from_reader` rules (versions 2 and 3, alignment, the
//! zero-tensor no-padding case, offsets, caps) and turns every malformed input into a typed
//! [`GgufError`] that names the key or tensor and the byte offset; it never panics and never
//! allocates more than the file's remaining bytes can justify.

mod error;
mod file;
mod reader;
mod tensor_info;
mod value;
mod writer;

pub use error::{GgufError, Result};
pub use file::GgufFile;
pub use reader::{
    DEFAULT_ALIGNMENT, GGUF_MAGIC, MAX_ALIGNMENT, MAX_ARRAY_LEN, MAX_DIMS, MAX_NAME_LEN,
    MAX_STRING_LEN, ParseOptions,
};
pub use tensor_info::TensorInfo;
pub use value::{GgufString, MetadataArray, MetadataValue, ValueType};
pub use writer::GgufWriter;
