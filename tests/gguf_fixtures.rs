//! The reader against files written by gguf-py (tests/fixtures/generate.py), bit for bit.

mod common;

use burn_gguf::gguf::{GgufError, GgufFile, MetadataArray, MetadataValue, ParseOptions};
use burn_gguf::quant::GgmlType;
use common::{assert_bits_eq, fixture};
use serde_json::Value;

fn open(name: &str) -> GgufFile {
    GgufFile::open(fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Compares one parsed value with its JSON expectation `{type, value | bits | elements}`.
fn check_value(key: &str, got: &MetadataValue, want: &Value) {
    let ty = want["type"].as_str().unwrap();
    assert_eq!(got.value_type().name(), ty, "{key}: type");
    match got {
        MetadataValue::F32(v) => assert_eq!(
            u64::from(v.to_bits()),
            want["bits"].as_u64().unwrap(),
            "{key}"
        ),
        MetadataValue::F64(v) => assert_eq!(v.to_bits(), want["bits"].as_u64().unwrap(), "{key}"),
        MetadataValue::Bool(v) => assert_eq!(*v, want["value"].as_bool().unwrap(), "{key}"),
        MetadataValue::String(s) => assert_eq!(
            s.as_str().unwrap(),
            want["value"].as_str().unwrap(),
            "{key}"
        ),
        MetadataValue::Array(a) => {
            let elems = want["elements"].as_array().unwrap();
            assert_eq!(a.len(), elems.len(), "{key}: length");
            assert_eq!(
                a.element_type().name(),
                want["element_type"].as_str().unwrap(),
                "{key}: element type"
            );
            for (i, (g, w)) in a.values().zip(elems).enumerate() {
                check_value(&format!("{key}[{i}]"), &g, w);
            }
        }
        v => {
            let i = v.as_integer().unwrap();
            let w = want["value"]
                .as_i64()
                .map(i128::from)
                .or_else(|| want["value"].as_u64().map(i128::from));
            assert_eq!(Some(i), w, "{key}");
        }
    }
}

#[test]
fn every_metadata_type_matches_gguf_py() {
    let file = open("metadata.gguf");
    let want: serde_json::Map<String, Value> =
        serde_json::from_str(&std::fs::read_to_string(fixture("metadata.json")).unwrap()).unwrap();
    assert_eq!(file.version(), 3);
    assert_eq!(file.metadata().len(), want.len());
    for (key, w) in &want {
        let got = file.get(key).unwrap_or_else(|| panic!("missing {key}"));
        check_value(key, got, w);
    }
    // Keys keep file order (gguf-py writes them in insertion order, architecture first).
    assert_eq!(file.metadata()[0].0, "general.architecture");
}

#[test]
fn zero_tensor_file_needs_no_trailing_padding() {
    let file = open("metadata.gguf");
    assert!(file.tensors().is_empty());
    // ggml's rule: with no tensors, "data" starts right after the infos, not at the next multiple
    // of the alignment. gguf-py pads the file anyway (1088 bytes); real vocab-only files such as
    // ggml-vocab-llama-spm.gguf do not, so the same file cut right after its infos must parse.
    let end_of_infos = file.data_offset();
    assert_eq!(file.len(), end_of_infos.next_multiple_of(32));
    assert!(
        end_of_infos < file.len(),
        "this fixture is expected to carry padding"
    );
    let cut = GgufFile::from_bytes(&file.as_bytes()[..end_of_infos as usize]).unwrap();
    assert_eq!(cut.metadata(), file.metadata());
    assert_eq!(cut.data_offset(), cut.len());
}

#[test]
fn typed_getters_widen_integers_with_range_checks() {
    let file = open("metadata.gguf");
    assert_eq!(file.get_u64("test.u8").unwrap(), 200);
    assert_eq!(file.get_i64("test.i8").unwrap(), -100);
    assert_eq!(file.get_u32("test.u16").unwrap(), 60000);
    assert_eq!(file.get_usize("test.u32").unwrap(), 4_000_000_000);
    assert_eq!(
        file.get_u64("test.u64").unwrap(),
        18_000_000_000_000_000_000
    );
    assert!(matches!(
        file.get_u32("test.u64"),
        Err(GgufError::WrongValueType { .. })
    ));
    assert!(matches!(
        file.get_u32("test.i8"),
        Err(GgufError::WrongValueType { .. })
    ));
    assert!(matches!(
        file.get_u32("test.string"),
        Err(GgufError::WrongValueType { .. })
    ));
    assert!(matches!(
        file.get_u32("no.such.key"),
        Err(GgufError::MissingKey { .. })
    ));
    assert_eq!(file.get_f32("test.f32").unwrap(), 0.1);
    assert_eq!(file.get_f64("test.u16").unwrap(), 60000.0);
    assert!(file.get_bool("test.bool_true").unwrap());
    assert_eq!(
        file.get_str("test.string").unwrap(),
        "hello, GGUF ✓ ünïcode"
    );
    assert_eq!(file.architecture().unwrap(), "testarch");
    match file.get_array("test.arr_string").unwrap() {
        MetadataArray::String(v) => assert_eq!(v[2].as_str(), Some("▁the")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn every_supported_tensor_type_dequantizes_bit_exact() {
    let file = open("tensors.gguf");
    let expected = open("tensors.expected.gguf");
    assert_eq!(file.tensors().len(), expected.tensors().len());
    let mut seen = std::collections::HashSet::new();
    for info in file.tensors() {
        seen.insert(info.ggml_type);
        let want = expected.dequantize(&info.name).unwrap();
        let got = file.dequantize(&info.name).unwrap();
        assert_bits_eq(&info.name, &got, &want);
        let e = expected.tensor_info(&info.name).unwrap();
        assert_eq!(info.dims, e.dims, "{}: dims", info.name);
    }
    for t in burn_gguf::quant::DEQUANTIZABLE {
        assert!(seen.contains(t), "no fixture for {t}");
    }
}

#[test]
fn dims_are_in_ne_order_and_shape_is_reversed() {
    let file = open("tensors.gguf");
    let t = file.tensor_info("t.f32_3d").unwrap();
    assert_eq!(t.dims, vec![4, 3, 2]);
    assert_eq!(t.shape(), vec![2, 3, 4]);
    let q = file.tensor_info("t.q6_k").unwrap();
    assert_eq!(
        (q.dims.clone(), q.ggml_type, q.n_bytes()),
        (vec![512, 3], GgmlType::Q6_K, Some(3 * 2 * 210))
    );
    assert_eq!(q.n_rows(), 3);
}

#[test]
fn gguf_py_files_pass_strict_validation() {
    for name in [
        "tensors.gguf",
        "tensors.expected.gguf",
        "align64.gguf",
        "q6k_cases.gguf",
        "metadata.gguf",
    ] {
        GgufFile::open_with(fixture(name), ParseOptions { strict: true })
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn custom_alignment_is_honoured() {
    let file = open("align64.gguf");
    assert_eq!(file.alignment(), 64);
    assert_eq!(file.data_offset() % 64, 0);
    for t in file.tensors() {
        assert_eq!(t.offset % 64, 0, "{}", t.name);
    }
    assert_eq!(file.dequantize("a.3").unwrap().len(), 1);
}

#[test]
fn big_endian_file_is_a_typed_error() {
    let err = GgufFile::open(fixture("big_endian.gguf")).unwrap_err();
    assert!(
        matches!(err, GgufError::UnsupportedByteOrder { swapped: 3, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("big-endian"), "{err}");
}

#[test]
fn missing_file_is_an_io_error_naming_the_path() {
    let err = GgufFile::open("/nonexistent/model.gguf").unwrap_err();
    assert!(matches!(err, GgufError::Io { .. }));
    assert!(err.to_string().contains("/nonexistent/model.gguf"));
}
