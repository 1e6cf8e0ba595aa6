//! Metadata values: the 13 GGUF value types, arrays of any of them, and lossless conversions.

use std::fmt;

/// The GGUF metadata value type ids (`gguf_metadata_value_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum ValueType {
    U8 = 0,
    I8 = 1,
    U16 = 2,
    I16 = 3,
    U32 = 4,
    I32 = 5,
    F32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    U64 = 10,
    I64 = 11,
    F64 = 12,
}

impl ValueType {
    /// The type for an id, if it is one of the 13.
    pub fn from_id(id: u32) -> Option<Self> {
        use ValueType::*;
        Some(match id {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => String,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }

    /// The id stored in files.
    pub fn id(self) -> u32 {
        self as u32
    }

    /// Encoded size of one value; for strings and arrays the minimum (an empty one).
    pub fn min_encoded_size(self) -> u64 {
        use ValueType::*;
        match self {
            U8 | I8 | Bool => 1,
            U16 | I16 => 2,
            U32 | I32 | F32 => 4,
            U64 | I64 | F64 | String => 8,
            Array => 12,
        }
    }

    /// The lower-case name used in listings (`"u32"`, `"string"`, …).
    pub fn name(self) -> &'static str {
        use ValueType::*;
        match self {
            U8 => "u8",
            I8 => "i8",
            U16 => "u16",
            I16 => "i16",
            U32 => "u32",
            I32 => "i32",
            F32 => "f32",
            Bool => "bool",
            String => "string",
            Array => "array",
            U64 => "u64",
            I64 => "i64",
            F64 => "f64",
        }
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A GGUF string: raw bytes, which the format says are UTF-8.
///
/// Kept as bytes so one odd token in a vocabulary does not make a whole file unreadable; UTF-8 is
/// checked when the string is asked for as `&str`.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct GgufString(pub Vec<u8>);

impl GgufString {
    /// The string, if it is valid UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The string with invalid sequences replaced by U+FFFD.
    pub fn to_string_lossy(&self) -> String {
        String::from_utf8_lossy(&self.0).into_owned()
    }
}

impl fmt::Debug for GgufString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.as_str() {
            Some(s) => fmt::Debug::fmt(s, f),
            None => write!(f, "b{:?}", String::from_utf8_lossy(&self.0)),
        }
    }
}

impl From<&str> for GgufString {
    fn from(s: &str) -> Self {
        GgufString(s.as_bytes().to_vec())
    }
}

impl From<String> for GgufString {
    fn from(s: String) -> Self {
        GgufString(s.into_bytes())
    }
}

/// A metadata array: elements of one type. Arrays of arrays are not representable (ggml rejects
/// them).
#[derive(Clone, Debug, PartialEq)]
#[allow(missing_docs)]
pub enum MetadataArray {
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    F32(Vec<f32>),
    Bool(Vec<bool>),
    String(Vec<GgufString>),
    U64(Vec<u64>),
    I64(Vec<i64>),
    F64(Vec<f64>),
}

macro_rules! for_each_array {
    ($arr:expr, $v:ident => $body:expr) => {
        match $arr {
            MetadataArray::U8($v) => $body,
            MetadataArray::I8($v) => $body,
            MetadataArray::U16($v) => $body,
            MetadataArray::I16($v) => $body,
            MetadataArray::U32($v) => $body,
            MetadataArray::I32($v) => $body,
            MetadataArray::F32($v) => $body,
            MetadataArray::Bool($v) => $body,
            MetadataArray::String($v) => $body,
            MetadataArray::U64($v) => $body,
            MetadataArray::I64($v) => $body,
            MetadataArray::F64($v) => $body,
        }
    };
}

impl MetadataArray {
    /// Number of elements.
    pub fn len(&self) -> usize {
        for_each_array!(self, v => v.len())
    }

    /// Whether it has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The element type.
    pub fn element_type(&self) -> ValueType {
        match self {
            MetadataArray::U8(_) => ValueType::U8,
            MetadataArray::I8(_) => ValueType::I8,
            MetadataArray::U16(_) => ValueType::U16,
            MetadataArray::I16(_) => ValueType::I16,
            MetadataArray::U32(_) => ValueType::U32,
            MetadataArray::I32(_) => ValueType::I32,
            MetadataArray::F32(_) => ValueType::F32,
            MetadataArray::Bool(_) => ValueType::Bool,
            MetadataArray::String(_) => ValueType::String,
            MetadataArray::U64(_) => ValueType::U64,
            MetadataArray::I64(_) => ValueType::I64,
            MetadataArray::F64(_) => ValueType::F64,
        }
    }

    /// Element `i` as a scalar value.
    pub fn get(&self, i: usize) -> Option<MetadataValue> {
        Some(match self {
            MetadataArray::U8(v) => MetadataValue::U8(*v.get(i)?),
            MetadataArray::I8(v) => MetadataValue::I8(*v.get(i)?),
            MetadataArray::U16(v) => MetadataValue::U16(*v.get(i)?),
            MetadataArray::I16(v) => MetadataValue::I16(*v.get(i)?),
            MetadataArray::U32(v) => MetadataValue::U32(*v.get(i)?),
            MetadataArray::I32(v) => MetadataValue::I32(*v.get(i)?),
            MetadataArray::F32(v) => MetadataValue::F32(*v.get(i)?),
            MetadataArray::Bool(v) => MetadataValue::Bool(*v.get(i)?),
            MetadataArray::String(v) => MetadataValue::String(v.get(i)?.clone()),
            MetadataArray::U64(v) => MetadataValue::U64(*v.get(i)?),
            MetadataArray::I64(v) => MetadataValue::I64(*v.get(i)?),
            MetadataArray::F64(v) => MetadataValue::F64(*v.get(i)?),
        })
    }

    /// Every element as a scalar value (allocates; for display and conversion).
    pub fn values(&self) -> impl Iterator<Item = MetadataValue> + '_ {
        (0..self.len()).filter_map(|i| self.get(i))
    }
}

/// One metadata value.
#[derive(Clone, Debug, PartialEq)]
#[allow(missing_docs)]
pub enum MetadataValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(GgufString),
    Array(MetadataArray),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl MetadataValue {
    /// The value's type.
    pub fn value_type(&self) -> ValueType {
        match self {
            MetadataValue::U8(_) => ValueType::U8,
            MetadataValue::I8(_) => ValueType::I8,
            MetadataValue::U16(_) => ValueType::U16,
            MetadataValue::I16(_) => ValueType::I16,
            MetadataValue::U32(_) => ValueType::U32,
            MetadataValue::I32(_) => ValueType::I32,
            MetadataValue::F32(_) => ValueType::F32,
            MetadataValue::Bool(_) => ValueType::Bool,
            MetadataValue::String(_) => ValueType::String,
            MetadataValue::Array(_) => ValueType::Array,
            MetadataValue::U64(_) => ValueType::U64,
            MetadataValue::I64(_) => ValueType::I64,
            MetadataValue::F64(_) => ValueType::F64,
        }
    }

    /// A short description of the type, with the element type for arrays (`"array<u32>"`).
    pub fn type_description(&self) -> String {
        match self {
            MetadataValue::Array(a) => format!("array<{}>", a.element_type()),
            v => v.value_type().name().to_string(),
        }
    }

    /// The value as an integer, if it is one of the eight integer types (bools are not integers).
    pub fn as_integer(&self) -> Option<i128> {
        Some(match *self {
            MetadataValue::U8(v) => v.into(),
            MetadataValue::I8(v) => v.into(),
            MetadataValue::U16(v) => v.into(),
            MetadataValue::I16(v) => v.into(),
            MetadataValue::U32(v) => v.into(),
            MetadataValue::I32(v) => v.into(),
            MetadataValue::U64(v) => v.into(),
            MetadataValue::I64(v) => v.into(),
            _ => return None,
        })
    }

    /// The value as a float, if it is F32 or F64, or an integer that f64 holds exactly.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            MetadataValue::F32(v) => Some(v.into()),
            MetadataValue::F64(v) => Some(v),
            _ => {
                let i = self.as_integer()?;
                let f = i as f64;
                (f as i128 == i).then_some(f)
            }
        }
    }

    /// The value as a bool, if it is one.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            MetadataValue::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// The value as `&str`, if it is a UTF-8 string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetadataValue::String(s) => s.as_str(),
            _ => None,
        }
    }

    /// The value as an array, if it is one.
    pub fn as_array(&self) -> Option<&MetadataArray> {
        match self {
            MetadataValue::Array(a) => Some(a),
            _ => None,
        }
    }
}

impl fmt::Display for MetadataValue {
    /// Scalars as themselves, strings quoted, arrays in full (see the `gguf` example for a
    /// summarizing display).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetadataValue::U8(v) => write!(f, "{v}"),
            MetadataValue::I8(v) => write!(f, "{v}"),
            MetadataValue::U16(v) => write!(f, "{v}"),
            MetadataValue::I16(v) => write!(f, "{v}"),
            MetadataValue::U32(v) => write!(f, "{v}"),
            MetadataValue::I32(v) => write!(f, "{v}"),
            MetadataValue::F32(v) => write!(f, "{v}"),
            MetadataValue::Bool(v) => write!(f, "{v}"),
            MetadataValue::String(s) => write!(f, "{s:?}"),
            MetadataValue::U64(v) => write!(f, "{v}"),
            MetadataValue::I64(v) => write!(f, "{v}"),
            MetadataValue::F64(v) => write!(f, "{v}"),
            MetadataValue::Array(a) => {
                f.write_str("[")?;
                for (i, v) in a.values().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("]")
            }
        }
    }
}

macro_rules! from_scalar {
    ($($t:ty => $v:ident),*) => {$(
        impl From<$t> for MetadataValue {
            fn from(x: $t) -> Self { MetadataValue::$v(x) }
        }
        impl From<Vec<$t>> for MetadataValue {
            fn from(x: Vec<$t>) -> Self { MetadataValue::Array(MetadataArray::$v(x)) }
        }
    )*};
}
from_scalar!(u8 => U8, i8 => I8, u16 => U16, i16 => I16, u32 => U32, i32 => I32, f32 => F32,
             bool => Bool, u64 => U64, i64 => I64, f64 => F64, GgufString => String);

impl From<&str> for MetadataValue {
    fn from(s: &str) -> Self {
        MetadataValue::String(s.into())
    }
}

impl From<String> for MetadataValue {
    fn from(s: String) -> Self {
        MetadataValue::String(s.into())
    }
}

impl From<Vec<String>> for MetadataValue {
    fn from(v: Vec<String>) -> Self {
        MetadataValue::Array(MetadataArray::String(
            v.into_iter().map(Into::into).collect(),
        ))
    }
}

impl From<MetadataArray> for MetadataValue {
    fn from(a: MetadataArray) -> Self {
        MetadataValue::Array(a)
    }
}
