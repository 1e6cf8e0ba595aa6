//! [`GgufWriter`]: writes GGUF v3 files that ggml's own reader accepts (strictly sequential,
//! aligned tensor data).

use std::borrow::Cow;
use std::collections::HashSet;
use std::io::Write;
use std::path::Path;

use super::error::{GgufError, Result};
use super::reader::{
    DEFAULT_ALIGNMENT, GGUF_MAGIC, MAX_ALIGNMENT, MAX_ARRAY_LEN, MAX_DIMS, MAX_NAME_LEN,
    MAX_STRING_LEN, align_up,
};
use super::value::{MetadataArray, MetadataValue, ValueType};
use crate::quant::GgmlType;

struct PendingTensor<'a> {
    name: String,
    dims: Vec<u64>,
    ggml_type: GgmlType,
    data: Cow<'a, [u8]>,
}

/// Builds a GGUF v3 file: metadata, then tensors of any type given as raw bytes.
///
/// Tensors are stored in the order they were added, each at the next multiple of the alignment,
/// as ggml requires; the result passes [`super::ParseOptions::strict`]. Tensor data may be
/// borrowed (`&[u8]`, e.g. from another file's map) or owned.
#[derive(Default)]
pub struct GgufWriter<'a> {
    alignment: u64,
    metadata: Vec<(String, MetadataValue)>,
    tensors: Vec<PendingTensor<'a>>,
    names: HashSet<String>,
}

fn write_err(what: impl Into<String>, reason: impl Into<String>) -> GgufError {
    GgufError::Write {
        what: what.into(),
        reason: reason.into(),
    }
}

impl<'a> GgufWriter<'a> {
    /// An empty writer (alignment 32).
    pub fn new() -> Self {
        GgufWriter {
            alignment: DEFAULT_ALIGNMENT,
            ..Default::default()
        }
    }

    /// The tensor-data alignment that will be used.
    pub fn alignment(&self) -> u64 {
        self.alignment.max(1)
    }

    fn check_value(key: &str, value: &MetadataValue) -> Result<()> {
        match value {
            MetadataValue::String(s) if s.0.len() as u64 > MAX_STRING_LEN => Err(write_err(
                format!("metadata {key:?}"),
                "string longer than 64 MiB",
            )),
            MetadataValue::Array(a) if a.len() as u64 > MAX_ARRAY_LEN => Err(write_err(
                format!("metadata {key:?}"),
                "array longer than 64 Mi elements",
            )),
            MetadataValue::Array(MetadataArray::String(v))
                if v.iter().any(|s| s.0.len() as u64 > MAX_STRING_LEN) =>
            {
                Err(write_err(
                    format!("metadata {key:?}"),
                    "string element longer than 64 MiB",
                ))
            }
            _ => Ok(()),
        }
    }

    /// Adds a key/value pair. Keys must be unique; `general.alignment` must be a u32 power of
    /// two up to 1 MiB and sets the alignment of the tensor data.
    pub fn add_metadata(
        &mut self,
        key: impl Into<String>,
        value: impl Into<MetadataValue>,
    ) -> Result<()> {
        let (key, value) = (key.into(), value.into());
        if self.metadata.iter().any(|(k, _)| *k == key) {
            return Err(write_err(format!("metadata {key:?}"), "duplicate key"));
        }
        self.check_key_value(&key, &value)?;
        self.metadata.push((key, value));
        Ok(())
    }

    /// Adds a key/value pair, or replaces the value of an existing key in place.
    pub fn set_metadata(
        &mut self,
        key: impl Into<String>,
        value: impl Into<MetadataValue>,
    ) -> Result<()> {
        let (key, value) = (key.into(), value.into());
        self.check_key_value(&key, &value)?;
        match self.metadata.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.metadata.push((key, value)),
        }
        Ok(())
    }

    fn check_key_value(&mut self, key: &str, value: &MetadataValue) -> Result<()> {
        if key.len() as u64 > MAX_STRING_LEN {
            return Err(write_err("metadata key", "longer than 64 MiB"));
        }
        Self::check_value(key, value)?;
        if key == "general.alignment" {
            let MetadataValue::U32(a) = *value else {
                return Err(write_err("general.alignment", "must be a u32"));
            };
            let a = u64::from(a);
            if a == 0 || !a.is_power_of_two() || a > MAX_ALIGNMENT {
                return Err(write_err(
                    "general.alignment",
                    format!("{a} is not a power of two up to 1 MiB"),
                ));
            }
            self.alignment = a;
        }
        Ok(())
    }

    /// Adds a tensor: `dims` in ggml `ne` order (`[in_features, out_features]` for a Linear
    /// weight), `data` its bytes in `ggml_type`'s layout, exactly as many as the dims need.
    pub fn add_tensor(
        &mut self,
        name: impl Into<String>,
        dims: &[u64],
        ggml_type: GgmlType,
        data: impl Into<Cow<'a, [u8]>>,
    ) -> Result<()> {
        let (name, data) = (name.into(), data.into());
        let what = || format!("tensor {name:?}");
        if name.len() >= MAX_NAME_LEN {
            return Err(write_err(
                what(),
                format!("name is {} bytes; ggml allows at most 63", name.len()),
            ));
        }
        if self.names.contains(&name) {
            return Err(write_err(what(), "duplicate tensor name"));
        }
        if dims.len() > MAX_DIMS as usize {
            return Err(write_err(
                what(),
                format!("{} dims; ggml allows at most 4", dims.len()),
            ));
        }
        let block = ggml_type
            .block_size()
            .ok_or_else(|| write_err(what(), format!("type {ggml_type} has no known layout")))?;
        if !dims.first().copied().unwrap_or(1).is_multiple_of(block) {
            return Err(write_err(
                what(),
                format!(
                    "ne0 {:?} is not a multiple of the {ggml_type} block size {block}",
                    dims.first()
                ),
            ));
        }
        let n = dims
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d))
            .filter(|&n| n <= i64::MAX as u64);
        let expected = n.and_then(|n| ggml_type.bytes_for(n));
        if expected != Some(data.len() as u64) {
            return Err(write_err(
                what(),
                format!(
                    "dims {dims:?} of {ggml_type} need {expected:?} bytes, got {}",
                    data.len()
                ),
            ));
        }
        self.names.insert(name.clone());
        self.tensors.push(PendingTensor {
            name,
            dims: dims.to_vec(),
            ggml_type,
            data,
        });
        Ok(())
    }

    /// Writes the file to `w`.
    pub fn write_to(&self, w: &mut impl Write) -> std::io::Result<()> {
        let align = self.alignment();
        let mut head = Vec::new();
        head.extend_from_slice(&GGUF_MAGIC);
        head.extend_from_slice(&3u32.to_le_bytes());
        head.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        head.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (key, value) in &self.metadata {
            head.extend_from_slice(&encode_string(key.as_bytes()));
            head.extend_from_slice(&value.value_type().id().to_le_bytes());
            encode_into(value, &mut head);
        }
        // ggml's strict rule: tensor i sits at the sum of the aligned sizes of tensors 0..i.
        let mut offset = 0u64;
        for t in &self.tensors {
            head.extend_from_slice(&encode_string(t.name.as_bytes()));
            head.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                head.extend_from_slice(&d.to_le_bytes());
            }
            head.extend_from_slice(&t.ggml_type.id().to_le_bytes());
            head.extend_from_slice(&offset.to_le_bytes());
            offset = align_up(offset + t.data.len() as u64, align).expect("sizes fit u64");
        }
        w.write_all(&head)?;
        // No padding after the infos of a file without tensors (ggml's reader expects none).
        if !self.tensors.is_empty() {
            let pad =
                |len: u64| vec![0u8; (align_up(len, align).expect("sizes fit u64") - len) as usize];
            w.write_all(&pad(head.len() as u64))?;
            for t in &self.tensors {
                w.write_all(&t.data)?;
                w.write_all(&pad(t.data.len() as u64))?;
            }
        }
        Ok(())
    }

    /// The file as bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.write_to(&mut v).expect("writing to a Vec cannot fail");
        v
    }

    /// Writes the file to `path` (buffered; created or truncated).
    pub fn write_file(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let io = |source| GgufError::Io {
            path: path.to_path_buf(),
            source,
        };
        let f = std::fs::File::create(path).map_err(io)?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
        self.write_to(&mut w).map_err(io)?;
        w.flush().map_err(io)
    }
}

fn encode_string(s: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + s.len());
    v.extend_from_slice(&(s.len() as u64).to_le_bytes());
    v.extend_from_slice(s);
    v
}

fn encode_into(value: &MetadataValue, out: &mut Vec<u8>) {
    match value {
        MetadataValue::U8(v) => out.push(*v),
        MetadataValue::I8(v) => out.push(*v as u8),
        MetadataValue::U16(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetadataValue::I16(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetadataValue::U32(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetadataValue::I32(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetadataValue::F32(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetadataValue::Bool(v) => out.push(u8::from(*v)),
        MetadataValue::String(s) => out.extend_from_slice(&encode_string(&s.0)),
        MetadataValue::U64(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetadataValue::I64(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetadataValue::F64(v) => out.extend_from_slice(&v.to_le_bytes()),
        MetadataValue::Array(a) => {
            out.extend_from_slice(&a.element_type().id().to_le_bytes());
            out.extend_from_slice(&(a.len() as u64).to_le_bytes());
            debug_assert_ne!(a.element_type(), ValueType::Array);
            for v in a.values() {
                encode_into(&v, out);
            }
        }
    }
}
