//! [`GgufFile`]: a parsed, validated GGUF file over a memory map or an owned buffer, with typed
//! metadata getters and zero-copy tensor bytes.

use std::path::Path;

use memmap2::Mmap;

use super::error::{GgufError, Result};
use super::reader::{Header, ParseOptions, parse_header};
use super::tensor_info::TensorInfo;
use super::value::{MetadataArray, MetadataValue};
use crate::quant::{self, GgmlType};

enum Storage {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

impl Storage {
    fn bytes(&self) -> &[u8] {
        match self {
            Storage::Mapped(m) => m,
            Storage::Owned(v) => v,
        }
    }
}

/// A GGUF file: its header parsed and validated, its tensor data reachable as byte slices.
///
/// ```
/// use burn_gguf::gguf::{GgufFile, GgufWriter};
/// use burn_gguf::quant::GgmlType;
///
/// let mut w = GgufWriter::new();
/// w.add_metadata("general.architecture", "llama")?;
/// w.add_metadata("llama.block_count", 2u32)?;
/// w.add_tensor("output_norm.weight", &[4], GgmlType::F32, bytemuck::cast_slice(&[1f32, 2., 3., 4.]))?;
/// let file = GgufFile::from_bytes(w.to_bytes())?;
///
/// assert_eq!(file.get_str("general.architecture")?, "llama");
/// assert_eq!(file.get_u64("llama.block_count")?, 2); // any integer type that fits
/// assert_eq!(file.dequantize("output_norm.weight")?, vec![1., 2., 3., 4.]);
/// # Ok::<(), burn_gguf::gguf::GgufError>(())
/// ```
pub struct GgufFile {
    header: Header,
    storage: Storage,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("version", &self.header.version)
            .field("alignment", &self.header.alignment)
            .field("metadata", &self.header.metadata.len())
            .field("tensors", &self.header.tensors.len())
            .field("len", &self.len())
            .finish()
    }
}

impl GgufFile {
    /// Memory-maps and parses a file (lenient validation; see [`ParseOptions`]).
    ///
    /// The map is read-only; as with any memory map, the file must not be truncated or modified
    /// by another process while this value lives.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, ParseOptions::default())
    }

    /// Memory-maps and parses a file with the given options.
    pub fn open_with(path: impl AsRef<Path>, opts: ParseOptions) -> Result<Self> {
        let path = path.as_ref();
        let io = |source| GgufError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let storage = if len == 0 {
            Storage::Owned(Vec::new()) // an empty map is an error on some systems
        } else {
            // SAFETY: the map is read-only and private to this value; the documented contract is
            // that the file is not modified while mapped.
            Storage::Mapped(unsafe { Mmap::map(&file) }.map_err(io)?)
        };
        let header = parse_header(storage.bytes(), opts)?;
        Ok(GgufFile { header, storage })
    }

    /// Parses a file held in memory (lenient validation).
    pub fn from_bytes(bytes: impl Into<Vec<u8>>) -> Result<Self> {
        Self::from_bytes_with(bytes, ParseOptions::default())
    }

    /// Parses a file held in memory with the given options.
    pub fn from_bytes_with(bytes: impl Into<Vec<u8>>, opts: ParseOptions) -> Result<Self> {
        let storage = Storage::Owned(bytes.into());
        let header = parse_header(storage.bytes(), opts)?;
        Ok(GgufFile { header, storage })
    }

    /// The GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.header.version
    }

    /// The tensor-data alignment (`general.alignment`, default 32).
    pub fn alignment(&self) -> u64 {
        self.header.alignment
    }

    /// Byte offset in the file where tensor data starts.
    pub fn data_offset(&self) -> u64 {
        self.header.data_start
    }

    /// The file's length in bytes.
    pub fn len(&self) -> u64 {
        self.storage.bytes().len() as u64
    }

    /// Whether the file is empty (never true for a parsed file).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The whole file's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.storage.bytes()
    }

    /// Every metadata key/value pair, in file order.
    pub fn metadata(&self) -> &[(String, MetadataValue)] {
        &self.header.metadata
    }

    /// The value of a key, if present.
    pub fn get(&self, key: &str) -> Option<&MetadataValue> {
        self.header
            .metadata_index
            .get(key)
            .map(|&i| &self.header.metadata[i].1)
    }

    fn require(&self, key: &str) -> Result<&MetadataValue> {
        self.get(key)
            .ok_or_else(|| GgufError::MissingKey { key: key.into() })
    }

    fn wrong(key: &str, expected: &str, found: &MetadataValue) -> GgufError {
        let shown = match found {
            MetadataValue::Array(a) => {
                format!("{} of {} elements", found.type_description(), a.len())
            }
            MetadataValue::String(_) => "string".to_string(),
            v => format!("{} {v}", v.type_description()),
        };
        GgufError::WrongValueType {
            key: key.into(),
            expected: expected.into(),
            found: shown,
        }
    }

    /// An integer value converted to `T`, whatever integer type the file used, if it fits.
    /// Real files mix u32, u64 and i32 for counts.
    pub fn get_int<T: TryFrom<i128>>(&self, key: &str) -> Result<T> {
        let v = self.require(key)?;
        v.as_integer()
            .and_then(|i| T::try_from(i).ok())
            .ok_or_else(|| {
                Self::wrong(
                    key,
                    &format!("an integer that fits {}", std::any::type_name::<T>()),
                    v,
                )
            })
    }

    /// An integer value as `u32` (any integer type whose value fits).
    pub fn get_u32(&self, key: &str) -> Result<u32> {
        self.get_int(key)
    }

    /// An integer value as `u64` (any integer type whose value fits).
    pub fn get_u64(&self, key: &str) -> Result<u64> {
        self.get_int(key)
    }

    /// An integer value as `usize` (any integer type whose value fits).
    pub fn get_usize(&self, key: &str) -> Result<usize> {
        self.get_int(key)
    }

    /// An integer value as `i64` (any integer type whose value fits).
    pub fn get_i64(&self, key: &str) -> Result<i64> {
        self.get_int(key)
    }

    /// A float value (F32, F64, or an integer f64 holds exactly) as `f64`.
    pub fn get_f64(&self, key: &str) -> Result<f64> {
        let v = self.require(key)?;
        v.as_f64().ok_or_else(|| Self::wrong(key, "a number", v))
    }

    /// A float value as `f32` (an F64 is rounded to nearest).
    pub fn get_f32(&self, key: &str) -> Result<f32> {
        self.get_f64(key).map(|f| f as f32)
    }

    /// A bool value.
    pub fn get_bool(&self, key: &str) -> Result<bool> {
        let v = self.require(key)?;
        v.as_bool().ok_or_else(|| Self::wrong(key, "a bool", v))
    }

    /// A string value (must be UTF-8).
    pub fn get_str(&self, key: &str) -> Result<&str> {
        let v = self.require(key)?;
        v.as_str()
            .ok_or_else(|| Self::wrong(key, "a UTF-8 string", v))
    }

    /// An array value.
    pub fn get_array(&self, key: &str) -> Result<&MetadataArray> {
        let v = self.require(key)?;
        v.as_array().ok_or_else(|| Self::wrong(key, "an array", v))
    }

    /// `general.architecture` (`"llama"`, `"gemma3"`, …).
    pub fn architecture(&self) -> Result<&str> {
        self.get_str("general.architecture")
    }

    /// Every tensor info, in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.header.tensors
    }

    /// The info of a tensor, if present.
    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        self.header
            .tensor_index
            .get(name)
            .map(|&i| &self.header.tensors[i])
    }

    /// The info of a tensor, or [`GgufError::TensorNotFound`].
    pub fn require_tensor(&self, name: &str) -> Result<&TensorInfo> {
        self.tensor_info(name)
            .ok_or_else(|| GgufError::TensorNotFound { name: name.into() })
    }

    /// The raw bytes of a tensor, borrowed from the map (no copy). Fails for a type without a
    /// known layout, naming the tensor and its type id.
    pub fn tensor_data(&self, name: &str) -> Result<&[u8]> {
        let info = self.require_tensor(name)?;
        let Some(n) = info.n_bytes else {
            return Err(GgufError::UnsupportedTensorType {
                name: name.into(),
                ggml_type: info.ggml_type,
                action: "read",
                supported: GgmlType::all_known()
                    .map(|t| t.name())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        };
        // Bounds were checked at parse time.
        let start = (self.header.data_start + info.offset) as usize;
        Ok(&self.as_bytes()[start..start + n as usize])
    }

    /// A tensor dequantized to f32, in `ne` order (`ne0` fastest), bit-exact with gguf-py.
    pub fn dequantize(&self, name: &str) -> Result<Vec<f32>> {
        let info = self.require_tensor(name)?;
        if !info.ggml_type.can_dequantize() {
            return Err(GgufError::UnsupportedTensorType {
                name: name.into(),
                ggml_type: info.ggml_type,
                action: "dequantize",
                supported: quant::dequantizable_list(),
            });
        }
        let data = self.tensor_data(name)?;
        quant::dequantize(info.ggml_type, data, info.n_elements as usize).map_err(|source| {
            GgufError::Quant {
                name: name.into(),
                source,
            }
        })
    }
}
