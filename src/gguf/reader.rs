//! The GGUF header parser: magic, version, metadata, tensor infos and every validation rule of
//! ggml's `gguf_init_from_reader`, over an in-memory byte slice.
//!
//! Nothing is allocated from a header field before checking that the rest of the file can hold
//! what the field claims, so a hostile file costs at most a small multiple of its own size.

use std::collections::HashMap;

use super::error::{GgufError, Result};
use super::tensor_info::TensorInfo;
use super::value::{GgufString, MetadataArray, MetadataValue, ValueType};
use crate::quant::GgmlType;

/// The magic bytes every GGUF file starts with.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// The alignment of tensor data when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml's cap on `general.alignment` (`GGUF_MAX_ALIGNMENT`, a denial-of-service guard).
pub const MAX_ALIGNMENT: u64 = 1 << 20;
/// ggml's cap on a string's length (`GGUF_MAX_STRING_LENGTH`).
pub const MAX_STRING_LEN: u64 = 64 << 20;
/// ggml's cap on an array's element count (`GGUF_MAX_ARRAY_ELEMENTS`).
pub const MAX_ARRAY_LEN: u64 = 64 << 20;
/// ggml's maximum tensor rank (`GGML_MAX_DIMS`).
pub const MAX_DIMS: u32 = 4;
/// ggml's `GGML_MAX_NAME`: tensor names must be shorter (it counts the NUL).
pub const MAX_NAME_LEN: usize = 64;

/// How strictly to validate a file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ParseOptions {
    /// Also enforce the rules only ggml's own reader has: tensors stored in info order, packed,
    /// each padded to the alignment (`offset[i] == Σ align_up(nbytes[j])`), names shorter than
    /// 64 bytes, and no unknown tensor types. Files written by [`super::GgufWriter`] pass it.
    /// Off by default, because gguf-py and other readers accept such files.
    pub strict: bool,
}

/// The parsed header of a GGUF file.
#[derive(Clone, Debug)]
pub(crate) struct Header {
    pub version: u32,
    pub alignment: u64,
    pub metadata: Vec<(String, MetadataValue)>,
    pub metadata_index: HashMap<String, usize>,
    pub tensors: Vec<TensorInfo>,
    pub tensor_index: HashMap<String, usize>,
    pub data_start: u64,
}

pub(crate) fn align_up(x: u64, alignment: u64) -> Option<u64> {
    x.checked_add(alignment - 1)
        .map(|v| v / alignment * alignment)
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn offset(&self) -> u64 {
        self.pos as u64
    }

    fn remaining(&self) -> u64 {
        (self.buf.len() - self.pos) as u64
    }

    fn take(&mut self, n: u64, what: impl FnOnce() -> String) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(GgufError::Truncated {
                what: what(),
                offset: self.offset(),
                needed: n,
                available: self.remaining(),
            });
        }
        let s = &self.buf[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: impl FnOnce() -> String) -> Result<[u8; N]> {
        Ok(self.take(N as u64, what)?.try_into().expect("N bytes"))
    }

    fn u32(&mut self, what: impl FnOnce() -> String) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: impl FnOnce() -> String) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A gguf string: u64 length, then that many bytes (capped and checked before any copy).
    fn string(&mut self, what: impl Fn() -> String) -> Result<&'a [u8]> {
        let at = self.offset();
        let len = self.u64(|| format!("length of {}", what()))?;
        if len > MAX_STRING_LEN {
            return Err(GgufError::LengthLimit {
                what: what(),
                offset: at,
                len,
                limit: MAX_STRING_LEN,
            });
        }
        self.take(len, what)
    }

    /// Checks that `count` items of at least `min_each` bytes fit in what is left.
    fn check_count(
        &self,
        count: u64,
        min_each: u64,
        at: u64,
        what: impl FnOnce() -> String,
    ) -> Result<()> {
        if count
            .checked_mul(min_each)
            .is_none_or(|need| need > self.remaining())
        {
            return Err(GgufError::CountTooLarge {
                what: what(),
                offset: at,
                count,
                available: self.remaining(),
                min_each,
            });
        }
        Ok(())
    }
}

/// Parses and validates everything but the tensor bytes themselves.
pub(crate) fn parse_header(buf: &[u8], opts: ParseOptions) -> Result<Header> {
    let mut c = Cursor { buf, pos: 0 };
    let magic: [u8; 4] = c.array(|| "magic".into())?;
    if magic != GGUF_MAGIC {
        return Err(GgufError::BadMagic { found: magic });
    }
    let version = c.u32(|| "version".into())?;
    if version & 0xFFFF == 0 && (1..=3).contains(&version.swap_bytes()) {
        return Err(GgufError::UnsupportedByteOrder {
            raw: version,
            swapped: version.swap_bytes(),
        });
    }
    if !(2..=3).contains(&version) {
        return Err(GgufError::UnsupportedVersion { version });
    }
    let at = c.offset();
    let n_tensors = c.u64(|| "tensor_count".into())?;
    let n_kv = c.u64(|| "metadata_kv_count".into())?;
    // A KV pair takes at least 8 (key length) + 4 (type) + 1 (value) bytes; a tensor info
    // 8 (name length) + 4 (n_dims) + 4 (type) + 8 (offset).
    c.check_count(n_kv, 13, at + 8, || "metadata_kv_count".into())?;
    c.check_count(n_tensors, 24, at, || "tensor_count".into())?;

    let mut metadata = Vec::with_capacity(n_kv as usize);
    let mut metadata_index = HashMap::with_capacity(n_kv as usize);
    let mut alignment = DEFAULT_ALIGNMENT;
    for index in 0..n_kv {
        let key_at = c.offset();
        let key_bytes = c.string(|| format!("metadata key #{index}"))?;
        let key = std::str::from_utf8(key_bytes)
            .map_err(|_| GgufError::KeyNotUtf8 {
                index,
                offset: key_at,
            })?
            .to_string();
        if metadata_index.contains_key(&key) {
            return Err(GgufError::DuplicateKey {
                key,
                offset: key_at,
            });
        }
        let type_at = c.offset();
        let type_id = c.u32(|| format!("value type of {key:?}"))?;
        let ty = ValueType::from_id(type_id).ok_or_else(|| GgufError::UnknownValueType {
            key: key.clone(),
            type_id,
            offset: type_at,
        })?;
        let value_at = c.offset();
        let value = read_value(&mut c, ty, &key)?;
        if key == "general.alignment" {
            alignment = check_alignment(&value, value_at)?;
        }
        metadata_index.insert(key.clone(), metadata.len());
        metadata.push((key, value));
    }

    let mut tensors: Vec<TensorInfo> = Vec::with_capacity(n_tensors as usize);
    let mut tensor_index = HashMap::with_capacity(n_tensors as usize);
    for index in 0..n_tensors {
        let info = read_tensor_info(&mut c, index, opts)?;
        if tensor_index.contains_key(&info.name) {
            return Err(GgufError::DuplicateTensor {
                name: info.name,
                offset: info.info_offset,
            });
        }
        tensor_index.insert(info.name.clone(), tensors.len());
        tensors.push(info);
    }

    // Tensor data starts at the next multiple of the alignment, but only when there are tensors:
    // a file without tensors may end right after its infos (ggml; gguf-py gets this wrong).
    let end_of_infos = c.offset();
    let data_start = if n_tensors > 0 {
        let start = align_up(end_of_infos, alignment).expect("file offsets fit u64");
        if start > buf.len() as u64 {
            return Err(GgufError::Truncated {
                what: "padding before tensor data".into(),
                offset: end_of_infos,
                needed: start - end_of_infos,
                available: buf.len() as u64 - end_of_infos,
            });
        }
        start
    } else {
        end_of_infos
    };
    check_tensor_data(&tensors, data_start, alignment, buf.len() as u64, opts)?;

    Ok(Header {
        version,
        alignment,
        metadata,
        metadata_index,
        tensors,
        tensor_index,
        data_start,
    })
}

fn check_alignment(value: &MetadataValue, offset: u64) -> Result<u64> {
    let MetadataValue::U32(a) = *value else {
        return Err(GgufError::InvalidAlignment {
            reason: format!("must be a u32, found {}", value.type_description()),
            offset,
        });
    };
    let a = u64::from(a);
    if a == 0 || !a.is_power_of_two() || a > MAX_ALIGNMENT {
        return Err(GgufError::InvalidAlignment {
            reason: format!("{a} is not a power of two between 1 and {MAX_ALIGNMENT}"),
            offset,
        });
    }
    Ok(a)
}

fn read_scalar(c: &mut Cursor<'_>, ty: ValueType, key: &str) -> Result<MetadataValue> {
    let what = || format!("value of {key:?}");
    Ok(match ty {
        ValueType::U8 => MetadataValue::U8(c.array::<1>(what)?[0]),
        ValueType::I8 => MetadataValue::I8(c.array::<1>(what)?[0] as i8),
        ValueType::U16 => MetadataValue::U16(u16::from_le_bytes(c.array(what)?)),
        ValueType::I16 => MetadataValue::I16(i16::from_le_bytes(c.array(what)?)),
        ValueType::U32 => MetadataValue::U32(u32::from_le_bytes(c.array(what)?)),
        ValueType::I32 => MetadataValue::I32(i32::from_le_bytes(c.array(what)?)),
        ValueType::F32 => MetadataValue::F32(f32::from_le_bytes(c.array(what)?)),
        ValueType::U64 => MetadataValue::U64(u64::from_le_bytes(c.array(what)?)),
        ValueType::I64 => MetadataValue::I64(i64::from_le_bytes(c.array(what)?)),
        ValueType::F64 => MetadataValue::F64(f64::from_le_bytes(c.array(what)?)),
        ValueType::Bool => {
            let at = c.offset();
            match c.array::<1>(what)?[0] {
                0 => MetadataValue::Bool(false),
                1 => MetadataValue::Bool(true),
                value => {
                    return Err(GgufError::InvalidBool {
                        key: key.into(),
                        value,
                        offset: at,
                    });
                }
            }
        }
        ValueType::String => MetadataValue::String(GgufString(c.string(what)?.to_vec())),
        ValueType::Array => unreachable!("arrays are read by read_value"),
    })
}

fn read_value(c: &mut Cursor<'_>, ty: ValueType, key: &str) -> Result<MetadataValue> {
    if ty != ValueType::Array {
        return read_scalar(c, ty, key);
    }
    let type_at = c.offset();
    let type_id = c.u32(|| format!("array element type of {key:?}"))?;
    let elem = ValueType::from_id(type_id).ok_or_else(|| GgufError::UnknownValueType {
        key: key.into(),
        type_id,
        offset: type_at,
    })?;
    if elem == ValueType::Array {
        return Err(GgufError::NestedArray {
            key: key.into(),
            offset: type_at,
        });
    }
    let len_at = c.offset();
    let len = c.u64(|| format!("array length of {key:?}"))?;
    if len > MAX_ARRAY_LEN {
        return Err(GgufError::LengthLimit {
            what: format!("array {key:?}"),
            offset: len_at,
            len,
            limit: MAX_ARRAY_LEN,
        });
    }
    c.check_count(len, elem.min_encoded_size(), len_at, || {
        format!("array length of {key:?}")
    })?;
    let n = len as usize;
    macro_rules! collect {
        ($variant:ident) => {{
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                match read_scalar(c, elem, key)? {
                    MetadataValue::$variant(x) => v.push(x),
                    _ => unreachable!("read_scalar returns the type asked for"),
                }
            }
            MetadataArray::$variant(v)
        }};
    }
    let array = match elem {
        ValueType::U8 => collect!(U8),
        ValueType::I8 => collect!(I8),
        ValueType::U16 => collect!(U16),
        ValueType::I16 => collect!(I16),
        ValueType::U32 => collect!(U32),
        ValueType::I32 => collect!(I32),
        ValueType::F32 => collect!(F32),
        ValueType::Bool => collect!(Bool),
        ValueType::String => collect!(String),
        ValueType::U64 => collect!(U64),
        ValueType::I64 => collect!(I64),
        ValueType::F64 => collect!(F64),
        ValueType::Array => unreachable!("nested arrays rejected above"),
    };
    Ok(MetadataValue::Array(array))
}

fn read_tensor_info(c: &mut Cursor<'_>, index: u64, opts: ParseOptions) -> Result<TensorInfo> {
    let info_offset = c.offset();
    let name = c.string(|| format!("tensor #{index} name"))?;
    let name = std::str::from_utf8(name)
        .map_err(|_| GgufError::TensorNameNotUtf8 {
            index,
            offset: info_offset,
        })?
        .to_string();
    let invalid = |reason: String| GgufError::InvalidTensorInfo {
        name: name.clone(),
        offset: info_offset,
        reason,
    };
    if opts.strict && name.len() >= MAX_NAME_LEN {
        return Err(invalid(format!(
            "name is {} bytes; ggml allows at most {}",
            name.len(),
            MAX_NAME_LEN - 1
        )));
    }
    let n_dims = c.u32(|| format!("n_dims of tensor {name:?}"))?;
    if n_dims > MAX_DIMS {
        return Err(invalid(format!(
            "n_dims is {n_dims}, more than ggml's {MAX_DIMS}"
        )));
    }
    let mut dims = Vec::with_capacity(n_dims as usize);
    for d in 0..n_dims {
        let ne = c.u64(|| format!("dim {d} of tensor {name:?}"))?;
        if ne > i64::MAX as u64 {
            return Err(invalid(format!(
                "dim {d} is {ne}, negative as ggml's int64"
            )));
        }
        dims.push(ne);
    }
    let type_id = c.u32(|| format!("type of tensor {name:?}"))?;
    let ggml_type = GgmlType::from_id(type_id);
    let offset = c.u64(|| format!("offset of tensor {name:?}"))?;

    let n_elements = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= i64::MAX as u64)
        .ok_or_else(|| invalid(format!("element count of dims {dims:?} overflows int64")))?;
    let n_bytes = match (ggml_type.block_size(), ggml_type.type_size()) {
        (Some(block), Some(size)) => {
            let ne0 = dims.first().copied().unwrap_or(1);
            if !ne0.is_multiple_of(block) {
                return Err(invalid(format!(
                    "ne0 = {ne0} is not a multiple of the {ggml_type} block size {block}"
                )));
            }
            let bytes = (n_elements / block)
                .checked_mul(size)
                .filter(|&b| b <= i64::MAX as u64)
                .ok_or_else(|| {
                    invalid(format!(
                        "byte size of {n_elements} {ggml_type} elements overflows"
                    ))
                })?;
            Some(bytes)
        }
        _ if opts.strict => {
            return Err(invalid(format!(
                "type id {type_id} is not a ggml type with a known layout"
            )));
        }
        _ => None,
    };
    Ok(TensorInfo {
        name,
        dims,
        ggml_type,
        offset,
        info_offset,
        n_elements,
        n_bytes,
    })
}

fn check_tensor_data(
    tensors: &[TensorInfo],
    data_start: u64,
    alignment: u64,
    file_len: u64,
    opts: ParseOptions,
) -> Result<()> {
    let data_len = file_len - data_start;
    let mut expected = 0u64;
    for t in tensors {
        let bad = |reason: String| GgufError::InvalidTensorData {
            name: t.name.clone(),
            offset: t.info_offset,
            reason,
        };
        if !t.offset.is_multiple_of(alignment) {
            return Err(bad(format!(
                "data offset {} is not a multiple of the alignment {alignment}",
                t.offset
            )));
        }
        if opts.strict && t.offset != expected {
            return Err(bad(format!(
                "data offset {} breaks ggml's sequential layout, which expects {expected}",
                t.offset
            )));
        }
        if let Some(n) = t.n_bytes {
            if t.offset.checked_add(n).is_none_or(|end| end > data_len) {
                return Err(bad(format!(
                    "data [{}, +{n}) runs past the end of the {data_len} data bytes (file offset {})",
                    t.offset,
                    data_start.saturating_add(t.offset)
                )));
            }
            expected = align_up(t.offset + n, alignment).expect("bounded by the file length");
        }
    }
    // No two tensors may share bytes (a lenient reader would silently alias them).
    let mut spans: Vec<(u64, u64, &TensorInfo)> = tensors
        .iter()
        .filter_map(|t| {
            t.n_bytes
                .filter(|&n| n > 0)
                .map(|n| (t.offset, t.offset + n, t))
        })
        .collect();
    spans.sort_by_key(|s| (s.0, s.1));
    for w in spans.windows(2) {
        let ((_, end_a, a), (start_b, _, b)) = (w[0], w[1]);
        if start_b < end_a {
            return Err(GgufError::InvalidTensorData {
                name: b.name.clone(),
                offset: b.info_offset,
                reason: format!(
                    "its data at offset {start_b} overlaps tensor {:?}, which ends at {end_a}",
                    a.name
                ),
            });
        }
    }
    Ok(())
}
