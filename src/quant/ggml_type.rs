//! `ggml_type`: the tensor element types a GGUF file can name, with their block geometry.

use std::fmt;

/// A ggml tensor type (`ggml_type` in `ggml.h`), as stored in a GGUF tensor info.
///
/// Every id that ggml currently defines with a size is a variant. Ids that ggml removed
/// (4, 5, 31–33, 36–38), ids newer than this crate and ids whose layout is not yet published
/// (42, `Q2_0`) are kept as [`GgmlType::Unknown`], so that a file naming them still parses;
/// only asking for such a tensor's data fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types, missing_docs)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
    Q8_K,
    IQ2_XXS,
    IQ2_XS,
    IQ3_XXS,
    IQ1_S,
    IQ4_NL,
    IQ3_S,
    IQ2_S,
    IQ4_XS,
    I8,
    I16,
    I32,
    I64,
    F64,
    IQ1_M,
    BF16,
    TQ1_0,
    TQ2_0,
    MXFP4,
    NVFP4,
    Q1_0,
    /// An id this crate has no layout for (removed from ggml, or newer than this crate).
    Unknown(u32),
}

/// `(variant, id, ggml name, elements per block, bytes per block)` for every sized type.
const TABLE: &[(GgmlType, u32, &str, u64, u64)] = &[
    (GgmlType::F32, 0, "f32", 1, 4),
    (GgmlType::F16, 1, "f16", 1, 2),
    (GgmlType::Q4_0, 2, "q4_0", 32, 18),
    (GgmlType::Q4_1, 3, "q4_1", 32, 20),
    (GgmlType::Q5_0, 6, "q5_0", 32, 22),
    (GgmlType::Q5_1, 7, "q5_1", 32, 24),
    (GgmlType::Q8_0, 8, "q8_0", 32, 34),
    // ggml's block_q8_1 is { half d; half s; int8 qs[32] } = 36 bytes (gguf-py still says 40).
    (GgmlType::Q8_1, 9, "q8_1", 32, 36),
    (GgmlType::Q2_K, 10, "q2_K", 256, 84),
    (GgmlType::Q3_K, 11, "q3_K", 256, 110),
    (GgmlType::Q4_K, 12, "q4_K", 256, 144),
    (GgmlType::Q5_K, 13, "q5_K", 256, 176),
    (GgmlType::Q6_K, 14, "q6_K", 256, 210),
    (GgmlType::Q8_K, 15, "q8_K", 256, 292),
    (GgmlType::IQ2_XXS, 16, "iq2_xxs", 256, 66),
    (GgmlType::IQ2_XS, 17, "iq2_xs", 256, 74),
    (GgmlType::IQ3_XXS, 18, "iq3_xxs", 256, 98),
    (GgmlType::IQ1_S, 19, "iq1_s", 256, 50),
    (GgmlType::IQ4_NL, 20, "iq4_nl", 32, 18),
    (GgmlType::IQ3_S, 21, "iq3_s", 256, 110),
    (GgmlType::IQ2_S, 22, "iq2_s", 256, 82),
    (GgmlType::IQ4_XS, 23, "iq4_xs", 256, 136),
    (GgmlType::I8, 24, "i8", 1, 1),
    (GgmlType::I16, 25, "i16", 1, 2),
    (GgmlType::I32, 26, "i32", 1, 4),
    (GgmlType::I64, 27, "i64", 1, 8),
    (GgmlType::F64, 28, "f64", 1, 8),
    (GgmlType::IQ1_M, 29, "iq1_m", 256, 56),
    (GgmlType::BF16, 30, "bf16", 1, 2),
    (GgmlType::TQ1_0, 34, "tq1_0", 256, 54),
    (GgmlType::TQ2_0, 35, "tq2_0", 256, 66),
    (GgmlType::MXFP4, 39, "mxfp4", 32, 17),
    (GgmlType::NVFP4, 40, "nvfp4", 64, 36),
    (GgmlType::Q1_0, 41, "q1_0", 128, 18),
];

/// The types [`crate::quant::dequantize`] can turn into f32.
pub const DEQUANTIZABLE: &[GgmlType] = &[
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
    GgmlType::Q8_K,
];

impl GgmlType {
    fn entry(self) -> Option<&'static (GgmlType, u32, &'static str, u64, u64)> {
        TABLE.iter().find(|e| e.0 == self)
    }

    /// The type with this `ggml_type` id; ids without a known layout become `Unknown(id)`.
    pub fn from_id(id: u32) -> Self {
        TABLE
            .iter()
            .find(|e| e.1 == id)
            .map_or(GgmlType::Unknown(id), |e| e.0)
    }

    /// The `ggml_type` id stored in GGUF files.
    pub fn id(self) -> u32 {
        match self {
            GgmlType::Unknown(id) => id,
            known => known.entry().map(|e| e.1).unwrap_or(u32::MAX),
        }
    }

    /// The name as ggml spells it (`"q6_K"`, `"f32"`, `"bf16"`, …); `"unknown(ID)"` otherwise.
    pub fn name(self) -> String {
        match self.entry() {
            Some(e) => e.2.to_string(),
            None => format!("unknown({})", self.id()),
        }
    }

    /// Parses a ggml type name, case-insensitively (`"q6_k"`, `"Q6_K"`, `"F16"`).
    pub fn from_name(name: &str) -> Option<Self> {
        TABLE
            .iter()
            .find(|e| e.2.eq_ignore_ascii_case(name))
            .map(|e| e.0)
    }

    /// Elements per block (1 for plain types, 32 or 256 for quantized ones); `None` if unknown.
    pub fn block_size(self) -> Option<u64> {
        self.entry().map(|e| e.3)
    }

    /// Bytes per block; `None` if unknown.
    pub fn type_size(self) -> Option<u64> {
        self.entry().map(|e| e.4)
    }

    /// Whether this is a block-quantized type (block size above 1).
    pub fn is_quantized(self) -> bool {
        self.block_size().is_some_and(|b| b > 1)
    }

    /// Bytes taken by `n_elements` elements, or `None` if the type is unknown, `n_elements` is not
    /// a whole number of blocks, or the size overflows `u64`.
    pub fn bytes_for(self, n_elements: u64) -> Option<u64> {
        let (block, size) = (self.block_size()?, self.type_size()?);
        if !n_elements.is_multiple_of(block) {
            return None;
        }
        (n_elements / block).checked_mul(size)
    }

    /// Whether [`crate::quant::dequantize`] supports this type.
    pub fn can_dequantize(self) -> bool {
        DEQUANTIZABLE.contains(&self)
    }

    /// Every type with a known layout, in id order.
    pub fn all_known() -> impl Iterator<Item = GgmlType> {
        TABLE.iter().map(|e| e.0)
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// The names of [`DEQUANTIZABLE`], comma-separated, for error messages.
pub fn dequantizable_list() -> String {
    DEQUANTIZABLE
        .iter()
        .map(|t| t.name())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_are_unique() {
        for id in 0..64u32 {
            assert_eq!(GgmlType::from_id(id).id(), id);
        }
        let mut ids: Vec<u32> = TABLE.iter().map(|e| e.1).collect();
        ids.dedup();
        assert_eq!(ids.len(), TABLE.len());
    }

    #[test]
    fn removed_and_future_ids_are_unknown() {
        for id in [4, 5, 31, 32, 33, 36, 37, 38, 42, 1000] {
            assert_eq!(GgmlType::from_id(id), GgmlType::Unknown(id));
            assert_eq!(GgmlType::from_id(id).block_size(), None);
        }
    }

    #[test]
    fn names_parse_back() {
        for t in GgmlType::all_known() {
            assert_eq!(GgmlType::from_name(&t.name()), Some(t));
            assert_eq!(GgmlType::from_name(&t.name().to_uppercase()), Some(t));
        }
        assert_eq!(GgmlType::Q6_K.name(), "q6_K");
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(GgmlType::Q6_K.bytes_for(4096 * 14336), Some(48_168_960));
        assert_eq!(GgmlType::Q6_K.bytes_for(255), None);
        assert_eq!(GgmlType::Unknown(4).bytes_for(32), None);
        assert_eq!(GgmlType::F32.bytes_for(u64::MAX), None);
    }
}
