//! The typed errors of the GGUF reader and writer.

use std::path::PathBuf;

use thiserror::Error;

use crate::quant::{GgmlType, QuantError};

/// Everything that can go wrong reading or writing a GGUF file.
///
/// Errors about the file's structure name the key or tensor involved and the byte offset in the
/// file where the offending field starts.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum GgufError {
    /// The file could not be opened, mapped, read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file ends inside a field.
    #[error("truncated file: {what} at byte {offset} needs {needed} bytes, {available} left")]
    Truncated {
        /// What was being read.
        what: String,
        /// Where it starts.
        offset: u64,
        /// Bytes it needs.
        needed: u64,
        /// Bytes left in the file.
        available: u64,
    },
    /// The first four bytes are not `GGUF`.
    #[error("not a GGUF file: magic is {found:02x?}, expected \"GGUF\" (47 47 55 46)")]
    BadMagic {
        /// The bytes found.
        found: [u8; 4],
    },
    /// A version other than 2 or 3.
    #[error("unsupported GGUF version {version} at byte 4 (this reader handles 2 and 3{})",
            if *version == 1 { "; v1 files predate 2023-08 and are no longer written" } else { "" })]
    UnsupportedVersion {
        /// The version found.
        version: u32,
    },
    /// A big-endian file (the version field reads byte-swapped).
    #[error(
        "big-endian GGUF (version field {raw:#010x} reads as {swapped} byte-swapped): \
             unsupported byte order; convert it with gguf-py's gguf-convert-endian"
    )]
    UnsupportedByteOrder {
        /// The version field as read little-endian.
        raw: u32,
        /// The version it holds, byte-swapped.
        swapped: u32,
    },
    /// A count or length that the rest of the file cannot possibly hold.
    #[error(
        "{what} at byte {offset} is {count}, but only {available} bytes remain (each needs at least {min_each})"
    )]
    CountTooLarge {
        /// What the count is of.
        what: String,
        /// Where it starts.
        offset: u64,
        /// The count read.
        count: u64,
        /// Bytes left after the count.
        available: u64,
        /// Minimum encoded size of one item.
        min_each: u64,
    },
    /// A string or array longer than ggml's caps (64 MiB strings, 64 Mi array elements).
    #[error("{what} at byte {offset} has length {len}, above the limit of {limit}")]
    LengthLimit {
        /// What the length is of.
        what: String,
        /// Where it starts.
        offset: u64,
        /// The length read.
        len: u64,
        /// The limit.
        limit: u64,
    },
    /// A metadata key that is not valid UTF-8.
    #[error("metadata key #{index} at byte {offset} is not valid UTF-8")]
    KeyNotUtf8 {
        /// Index of the key/value pair.
        index: u64,
        /// Where the key starts.
        offset: u64,
    },
    /// A tensor name that is not valid UTF-8.
    #[error("tensor #{index} name at byte {offset} is not valid UTF-8")]
    TensorNameNotUtf8 {
        /// Index of the tensor info.
        index: u64,
        /// Where the name starts.
        offset: u64,
    },
    /// The same key twice.
    #[error("duplicate metadata key {key:?} at byte {offset}")]
    DuplicateKey {
        /// The key.
        key: String,
        /// Where the second occurrence starts.
        offset: u64,
    },
    /// A value type id outside 0..=12.
    #[error("metadata key {key:?}: unknown value type {type_id} at byte {offset}")]
    UnknownValueType {
        /// The key.
        key: String,
        /// The id read.
        type_id: u32,
        /// Where the type id is.
        offset: u64,
    },
    /// An array whose elements are arrays (ggml rejects these).
    #[error("metadata key {key:?}: nested arrays are not supported (byte {offset})")]
    NestedArray {
        /// The key.
        key: String,
        /// Where the element type is.
        offset: u64,
    },
    /// A bool byte other than 0 or 1.
    #[error("metadata key {key:?}: bool byte {value} at byte {offset} is neither 0 nor 1")]
    InvalidBool {
        /// The key.
        key: String,
        /// The byte read.
        value: u8,
        /// Where it is.
        offset: u64,
    },
    /// `general.alignment` that is not a u32 power of two in 1..=1 MiB.
    #[error("general.alignment at byte {offset}: {reason}")]
    InvalidAlignment {
        /// Why it was rejected.
        reason: String,
        /// Where the value is.
        offset: u64,
    },
    /// Two tensors with one name.
    #[error("duplicate tensor name {name:?} at byte {offset}")]
    DuplicateTensor {
        /// The name.
        name: String,
        /// Where the second info starts.
        offset: u64,
    },
    /// A tensor info that breaks a shape rule.
    #[error("tensor {name:?} (info at byte {offset}): {reason}")]
    InvalidTensorInfo {
        /// The tensor.
        name: String,
        /// Where its info starts.
        offset: u64,
        /// The rule it broke.
        reason: String,
    },
    /// Tensor data outside the file, misaligned, or overlapping another tensor's.
    #[error("tensor {name:?} (info at byte {offset}): {reason}")]
    InvalidTensorData {
        /// The tensor.
        name: String,
        /// Where its info starts.
        offset: u64,
        /// The rule it broke.
        reason: String,
    },
    /// No tensor of that name.
    #[error("no tensor named {name:?} in this file")]
    TensorNotFound {
        /// The name asked for.
        name: String,
    },
    /// The tensor's type has no layout in this crate, or cannot be dequantized.
    #[error("tensor {name:?} has ggml type {ggml_type} (id {}), which this crate cannot {action}; supported: {supported}",
            ggml_type.id())]
    UnsupportedTensorType {
        /// The tensor.
        name: String,
        /// Its type.
        ggml_type: GgmlType,
        /// What was asked (`"read"`, `"dequantize"`).
        action: &'static str,
        /// The supported types.
        supported: String,
    },
    /// Dequantization failed (length mismatch).
    #[error("tensor {name:?}: {source}")]
    Quant {
        /// The tensor.
        name: String,
        /// What the dequantizer said.
        #[source]
        source: QuantError,
    },
    /// No metadata key of that name.
    #[error("missing metadata key {key:?}")]
    MissingKey {
        /// The key.
        key: String,
    },
    /// A metadata value of the wrong type, or out of range for the type asked for.
    #[error("metadata key {key:?}: expected {expected}, found {found}")]
    WrongValueType {
        /// The key.
        key: String,
        /// What the getter wanted.
        expected: String,
        /// What the file holds.
        found: String,
    },
    /// A tensor's rank does not fit the rank asked for.
    #[error("tensor {name:?} has dims {dims:?} (ne order), which do not fit rank {rank}")]
    RankMismatch {
        /// The tensor.
        name: String,
        /// Its dims.
        dims: Vec<u64>,
        /// The rank asked for.
        rank: usize,
    },
    /// The writer was given something a GGUF file cannot hold.
    #[error("cannot write {what}: {reason}")]
    Write {
        /// The key or tensor.
        what: String,
        /// Why.
        reason: String,
    },
}

/// Result alias for this module.
pub type Result<T, E = GgufError> = std::result::Result<T, E>;
