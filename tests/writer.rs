//! The writer: round trips, ggml's layout rules, byte-identical output to gguf-py, and files that
//! gguf-py reads back as written.

mod common;

use burn_gguf::gguf::{
    GgufError, GgufFile, GgufWriter, MetadataArray, MetadataValue, ParseOptions,
};
use burn_gguf::quant::{self, BlockQ6K, GgmlType, q6k};
use common::{Rng, f32_to_bytes, fixture, oracle, oracles_available, scratch};

fn strict(bytes: Vec<u8>) -> GgufFile {
    GgufFile::from_bytes_with(bytes, ParseOptions { strict: true }).unwrap()
}

#[test]
fn rewriting_gguf_py_files_reproduces_their_bytes() {
    // Same metadata and tensors in the same order: our writer must produce gguf-py's exact bytes.
    for name in ["tensors.gguf", "align64.gguf", "q6k_cases.gguf"] {
        let original = std::fs::read(fixture(name)).unwrap();
        let file = GgufFile::from_bytes(original.clone()).unwrap();
        let mut w = GgufWriter::new();
        for (k, v) in file.metadata() {
            w.add_metadata(k.clone(), v.clone()).unwrap();
        }
        for t in file.tensors() {
            w.add_tensor(
                t.name.clone(),
                &t.dims,
                t.ggml_type,
                file.tensor_data(&t.name).unwrap(),
            )
            .unwrap();
        }
        assert!(w.to_bytes() == original, "{name}: rewritten bytes differ");
    }
}

#[test]
fn every_value_type_round_trips() {
    let mut rng = Rng::fresh("every_value_type_round_trips");
    let values: Vec<(&str, MetadataValue)> = vec![
        ("u8", (rng.next_u64() as u8).into()),
        ("i8", (rng.next_u64() as i8).into()),
        ("u16", (rng.next_u64() as u16).into()),
        ("i16", (rng.next_u64() as i16).into()),
        ("u32", (rng.next_u64() as u32).into()),
        ("i32", (rng.next_u64() as i32).into()),
        ("f32", (rng.normal() as f32).into()),
        ("bool", (rng.below(2) == 1).into()),
        ("string", format!("s{}✓", rng.next_u64()).into()),
        ("u64", rng.next_u64().into()),
        ("i64", (rng.next_u64() as i64).into()),
        ("f64", rng.normal().into()),
        ("empty", MetadataValue::Array(MetadataArray::U32(vec![]))),
        (
            "strings",
            vec![String::new(), "a".into(), "ü".repeat(5)].into(),
        ),
        (
            "floats",
            vec![rng.normal() as f32, -0.0, f32::INFINITY].into(),
        ),
        ("bools", vec![true, false].into()),
        ("i64s", vec![i64::MIN, i64::MAX].into()),
        ("nan", MetadataValue::F32(f32::from_bits(0x7FC0_0001))),
    ];
    let mut w = GgufWriter::new();
    for (k, v) in &values {
        w.add_metadata(*k, v.clone()).unwrap();
    }
    let file = strict(w.to_bytes());
    assert_eq!(file.metadata().len(), values.len());
    for ((k, v), (fk, fv)) in values.iter().zip(file.metadata()) {
        assert_eq!(k, fk);
        match (v, fv) {
            (MetadataValue::F32(a), MetadataValue::F32(b)) => assert_eq!(a.to_bits(), b.to_bits()),
            (
                MetadataValue::Array(MetadataArray::F32(a)),
                MetadataValue::Array(MetadataArray::F32(b)),
            ) => {
                assert_eq!(
                    a.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                    b.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
                )
            }
            _ => assert_eq!(v, fv, "{k}"),
        }
    }
    // No tensors: no padding after the infos.
    assert_eq!(file.data_offset(), file.len());
}

#[test]
fn tensors_of_every_type_round_trip_at_any_alignment() {
    let mut rng = Rng::fresh("tensors_of_every_type_round_trip_at_any_alignment");
    for align in [1u32, 8, 32, 64, 4096] {
        let mut w = GgufWriter::new();
        w.add_metadata("general.alignment", align).unwrap();
        let mut expect = vec![];
        for (i, t) in GgmlType::all_known().enumerate() {
            let n = t.block_size().unwrap() * (1 + rng.below(3));
            let rows = 1 + rng.below(3);
            let data = rng.bytes((t.bytes_for(n * rows).unwrap()) as usize);
            let name = format!("t{i}.{t}");
            w.add_tensor(name.clone(), &[n, rows], t, data.clone())
                .unwrap();
            expect.push((name, data));
        }
        let file = strict(w.to_bytes());
        assert_eq!(file.alignment(), u64::from(align));
        for (name, data) in &expect {
            assert_eq!(
                file.tensor_data(name).unwrap(),
                &data[..],
                "{name} at alignment {align}"
            );
        }
    }
}

#[test]
fn writer_rejects_what_ggml_would() {
    let mut w = GgufWriter::new();
    w.add_metadata("k", 1u32).unwrap();
    assert!(matches!(
        w.add_metadata("k", 2u32),
        Err(GgufError::Write { .. })
    ));
    assert!(w.add_metadata("general.alignment", 0u32).is_err());
    assert!(w.add_metadata("general.alignment", 24u32).is_err());
    assert!(w.add_metadata("general.alignment", 32u64).is_err());
    w.add_tensor("a", &[4], GgmlType::F32, vec![0u8; 16])
        .unwrap();
    assert!(
        w.add_tensor("a", &[4], GgmlType::F32, vec![0u8; 16])
            .is_err(),
        "duplicate name"
    );
    assert!(
        w.add_tensor("b", &[4], GgmlType::F32, vec![0u8; 15])
            .is_err(),
        "wrong size"
    );
    assert!(
        w.add_tensor("c", &[100], GgmlType::Q6_K, vec![0u8; 210])
            .is_err(),
        "ne0 % 256"
    );
    assert!(
        w.add_tensor("d", &[1, 1, 1, 1, 1], GgmlType::F32, vec![0u8; 4])
            .is_err(),
        "5 dims"
    );
    assert!(
        w.add_tensor("x".repeat(64), &[1], GgmlType::F32, vec![0u8; 4])
            .is_err(),
        "name of 64 bytes"
    );
    assert!(
        w.add_tensor("u", &[32], GgmlType::Unknown(4), vec![0u8; 18])
            .is_err(),
        "unknown type"
    );
    assert!(
        w.add_tensor("big", &[u64::MAX, 2], GgmlType::F32, vec![])
            .is_err(),
        "overflow"
    );
    // set_metadata replaces in place
    w.set_metadata("k", 5u32).unwrap();
    assert_eq!(strict(w.to_bytes()).get_u32("k").unwrap(), 5);
}

#[test]
fn gguf_py_reads_our_files_as_written() {
    if !oracles_available("gguf_py_reads_our_files_as_written") {
        return;
    }
    let mut rng = Rng::fresh("gguf_py_reads_our_files_as_written");
    let dir = scratch("writer-gguf-py");
    let mut w = GgufWriter::new();
    w.add_metadata("general.architecture", "llama").unwrap();
    w.add_metadata("general.alignment", 64u32).unwrap();
    w.add_metadata("llama.block_count", 3u32).unwrap();
    w.add_metadata(
        "tokenizer.ggml.tokens",
        vec!["<s>".to_string(), "▁hi".into()],
    )
    .unwrap();
    let x: Vec<f32> = (0..3 * 512).map(|_| rng.normal() as f32).collect();
    let q = q6k::quantize(&x, 0).unwrap();
    w.add_tensor(
        "blk.0.ffn_down.weight",
        &[512, 3],
        GgmlType::Q6_K,
        BlockQ6K::slice_as_bytes(&q),
    )
    .unwrap();
    let norm: Vec<f32> = (0..7).map(|_| rng.normal() as f32).collect();
    w.add_tensor(
        "output_norm.weight",
        &[7],
        GgmlType::F32,
        f32_to_bytes(&norm),
    )
    .unwrap();
    let path = dir.join("ours.gguf");
    w.write_file(&path).unwrap();

    let desc: serde_json::Value =
        serde_json::from_str(&oracle(&["describe", path.to_str().unwrap()])).unwrap();
    assert_eq!(desc["metadata"]["llama.block_count"]["value"], 3);
    assert_eq!(desc["metadata"]["general.alignment"]["value"], 64);
    assert_eq!(desc["metadata"]["tokenizer.ggml.tokens"]["value"][1], "▁hi");
    let file = GgufFile::open(&path).unwrap();
    for (t, d) in file
        .tensors()
        .iter()
        .zip(desc["tensors"].as_array().unwrap())
    {
        assert_eq!(d["name"], t.name.as_str());
        assert_eq!(d["offset"], t.offset);
        assert_eq!(d["n_bytes"], t.n_bytes().unwrap());
        assert_eq!(d["dims"], serde_json::json!(t.dims));
        let out = dir.join("t.f32");
        oracle(&[
            "dequantize-tensor",
            path.to_str().unwrap(),
            &t.name,
            out.to_str().unwrap(),
        ]);
        let want = common::bytes_to_f32(&std::fs::read(&out).unwrap());
        common::assert_bits_eq(&t.name, &file.dequantize(&t.name).unwrap(), &want);
    }
    let deq = quant::dequantize(GgmlType::Q6_K, BlockQ6K::slice_as_bytes(&q), x.len()).unwrap();
    assert_eq!(deq, file.dequantize("blk.0.ffn_down.weight").unwrap());
    std::fs::remove_dir_all(dir).ok();
}
