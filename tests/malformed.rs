//! Hostile input: every malformed-file class gives its typed error, naming the key or tensor and
//! the byte offset; random mutations of valid files never panic.

mod common;

use burn_gguf::gguf::{GgufError, GgufFile, GgufWriter, ParseOptions};
use burn_gguf::quant::{self, GgmlType};
use common::{Raw, Rng, fixture};

fn parse(bytes: &[u8]) -> Result<GgufFile, GgufError> {
    GgufFile::from_bytes(bytes)
}

fn parse_strict(bytes: &[u8]) -> Result<GgufFile, GgufError> {
    GgufFile::from_bytes_with(bytes, ParseOptions { strict: true })
}

fn err(bytes: &[u8]) -> GgufError {
    match parse(bytes) {
        Ok(f) => panic!("expected an error, parsed {f:?}"),
        Err(e) => e,
    }
}

/// One valid F32 tensor `t` of `n` elements at offset 0, with an optional extra KV section.
fn one_tensor(n: u64, kv: impl FnOnce(&mut Raw) -> u64) -> Raw {
    let mut body = Raw::default();
    let n_kv = kv(&mut body);
    let mut r = Raw::header(3, 1, n_kv);
    r.bytes(&body.0)
        .tensor("t", &[n], 0, 0)
        .pad(32)
        .zeros(4 * n as usize);
    r
}

#[test]
fn empty_and_truncated_headers() {
    assert!(matches!(err(b""), GgufError::Truncated { offset: 0, .. }));
    assert!(matches!(err(b"GGU"), GgufError::Truncated { .. }));
    assert!(matches!(
        err(b"GGUF\x03\0\0"),
        GgufError::Truncated { offset: 4, .. }
    ));
    // Every prefix of a valid file fails cleanly (the full file parses).
    let valid = std::fs::read(fixture("tensors.gguf")).unwrap();
    let file = parse(&valid).unwrap();
    let end_of_data = file
        .tensors()
        .iter()
        .map(|t| file.data_offset() + t.offset + t.n_bytes().unwrap())
        .max()
        .unwrap();
    // (the zero padding after the last tensor is optional)
    for cut in 0..end_of_data as usize {
        assert!(
            parse(&valid[..cut]).is_err(),
            "prefix of {cut} bytes parsed"
        );
    }
    parse(&valid).unwrap();
}

#[test]
fn bad_magic_version_and_byte_order() {
    assert!(matches!(err(b"GGML\x03\0\0\0"), GgufError::BadMagic { found } if &found == b"GGML"));
    for v in [0u32, 1, 4, 0xFFFF] {
        let r = Raw::header(v, 0, 0);
        assert!(
            matches!(err(&r.0), GgufError::UnsupportedVersion { version } if version == v),
            "{v}"
        );
    }
    let r = Raw::header(3u32.swap_bytes(), 0, 0);
    assert!(matches!(
        err(&r.0),
        GgufError::UnsupportedByteOrder { swapped: 3, .. }
    ));
    Raw::header(2, 0, 0);
    parse(&Raw::header(2, 0, 0).0).unwrap();
    parse(&Raw::header(3, 0, 0).0).unwrap();
}

#[test]
fn counts_beyond_the_file() {
    let e = err(&Raw::header(3, 0, u64::MAX).0);
    assert!(
        matches!(e, GgufError::CountTooLarge { ref what, .. } if what == "metadata_kv_count"),
        "{e}"
    );
    let e = err(&Raw::header(3, 1 << 40, 0).0);
    assert!(
        matches!(e, GgufError::CountTooLarge { ref what, .. } if what == "tensor_count"),
        "{e}"
    );
    // 2 KV pairs announced, 1 present.
    let mut r = Raw::header(3, 0, 2);
    r.kv_u32("a", 1).zeros(3);
    assert!(matches!(err(&r.0), GgufError::CountTooLarge { .. }));
    let mut r = Raw::header(3, 0, 2);
    r.kv_u32("a", 1).kv_u32("b", 2);
    r.0.truncate(r.0.len() - 1);
    assert!(matches!(err(&r.0), GgufError::Truncated { ref what, .. } if what.contains("\"b\"")));
}

#[test]
fn string_and_array_lengths() {
    // key length past the end
    let mut r = Raw::header(3, 0, 1);
    r.u64(1000).bytes(b"abcdefgh");
    assert!(matches!(
        err(&r.0),
        GgufError::Truncated {
            offset: 32,
            needed: 1000,
            ..
        }
    ));
    // string value above ggml's 64 MiB cap
    let mut r = Raw::header(3, 0, 1);
    r.str(b"k").u32(8).u64(1 << 40);
    let e = err(&r.0);
    assert!(
        matches!(e, GgufError::LengthLimit { offset: 37, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("\"k\""), "{e}");
    // array count beyond the file
    let mut r = Raw::header(3, 0, 1);
    r.str(b"arr").u32(9).u32(4).u64(1_000_000).u32(7);
    let e = err(&r.0);
    assert!(
        matches!(e, GgufError::CountTooLarge { ref what, .. } if what.contains("arr")),
        "{e}"
    );
    // array count above the cap
    let mut r = Raw::header(3, 0, 1);
    r.str(b"arr").u32(9).u32(0).u64(u64::MAX);
    assert!(matches!(err(&r.0), GgufError::LengthLimit { .. }));
    // array of strings whose count fits but whose strings do not
    let mut r = Raw::header(3, 0, 1);
    r.str(b"toks")
        .u32(9)
        .u32(8)
        .u64(2)
        .u64(3)
        .bytes(b"abc")
        .u64(99);
    assert!(matches!(err(&r.0), GgufError::Truncated { .. }));
}

#[test]
fn value_types_bools_keys() {
    let mut r = Raw::header(3, 0, 1);
    r.str(b"weird").u32(13).u32(0);
    let e = err(&r.0);
    assert!(
        matches!(e, GgufError::UnknownValueType { type_id: 13, offset: 37, ref key } if key == "weird"),
        "{e}"
    );
    let mut r = Raw::header(3, 0, 1);
    r.str(b"nest").u32(9).u32(9).u64(1);
    assert!(matches!(err(&r.0), GgufError::NestedArray { .. }));
    let mut r = Raw::header(3, 0, 1);
    r.str(b"arr").u32(9).u32(99).u64(0);
    assert!(matches!(
        err(&r.0),
        GgufError::UnknownValueType { type_id: 99, .. }
    ));
    let mut r = Raw::header(3, 0, 1);
    r.str(b"flag").u32(7).u8(2);
    assert!(matches!(
        err(&r.0),
        GgufError::InvalidBool {
            value: 2,
            offset: 40,
            ..
        }
    ));
    let mut r = Raw::header(3, 0, 1);
    r.str(b"flags").u32(9).u32(7).u64(2).u8(1).u8(7);
    assert!(matches!(err(&r.0), GgufError::InvalidBool { value: 7, .. }));
    let mut r = Raw::header(3, 0, 1);
    r.str(b"\xff\xfe").u32(4).u32(1);
    assert!(matches!(
        err(&r.0),
        GgufError::KeyNotUtf8 {
            index: 0,
            offset: 24
        }
    ));
    let mut r = Raw::header(3, 0, 2);
    r.kv_u32("dup", 1).kv_u32("dup", 2);
    let e = err(&r.0);
    assert!(
        matches!(e, GgufError::DuplicateKey { ref key, offset: 43 } if key == "dup"),
        "{e}"
    );
}

#[test]
fn alignment_rules() {
    for (bad, ty) in [(0u32, 4u32), (48, 4), (1 << 21, 4), (32, 5)] {
        let r = one_tensor(8, |r| {
            r.str(b"general.alignment").u32(ty).u32(bad);
            1
        });
        let e = err(&r.0);
        assert!(
            matches!(e, GgufError::InvalidAlignment { offset: 53, .. }),
            "{bad}/{ty}: {e}"
        );
    }
    let r = one_tensor(8, |r| {
        r.kv_u32("general.alignment", 16);
        1
    });
    assert_eq!(parse(&r.0).unwrap().alignment(), 16);
}

#[test]
fn tensor_info_rules() {
    let info = |dims: &[u64], ty: u32| {
        let mut r = Raw::header(3, 1, 0);
        r.tensor("w", dims, ty, 0).pad(32).zeros(64);
        err(&r.0)
    };
    let e = info(&[1, 1, 1, 1, 1], 0);
    assert!(
        matches!(e, GgufError::InvalidTensorInfo { ref name, offset: 24, ref reason } if name == "w" && reason.contains("n_dims")),
        "{e}"
    );
    let e = info(&[1 << 32, 1 << 32], 0);
    assert!(
        matches!(e, GgufError::InvalidTensorInfo { ref reason, .. } if reason.contains("overflows")),
        "{e}"
    );
    let e = info(&[1 << 62], 0);
    assert!(
        matches!(e, GgufError::InvalidTensorInfo { ref reason, .. } if reason.contains("byte size")),
        "{e}"
    );
    let e = info(&[u64::MAX], 0);
    assert!(
        matches!(e, GgufError::InvalidTensorInfo { ref reason, .. } if reason.contains("negative")),
        "{e}"
    );
    let e = info(&[100, 2], 14);
    assert!(
        matches!(e, GgufError::InvalidTensorInfo { ref reason, .. } if reason.contains("multiple of the q6_K block size 256")),
        "{e}"
    );
    let e = info(&[16], 8);
    assert!(matches!(e, GgufError::InvalidTensorInfo { .. }), "{e}");
    // non-UTF-8 and duplicate names
    let mut r = Raw::header(3, 1, 0);
    r.str(b"\xc3\x28")
        .u32(1)
        .u64(4)
        .u32(0)
        .u64(0)
        .pad(32)
        .zeros(16);
    assert!(matches!(
        err(&r.0),
        GgufError::TensorNameNotUtf8 {
            index: 0,
            offset: 24
        }
    ));
    let mut r = Raw::header(3, 2, 0);
    r.tensor("a", &[4], 0, 0)
        .tensor("a", &[4], 0, 32)
        .pad(32)
        .zeros(64);
    assert!(matches!(err(&r.0), GgufError::DuplicateTensor { ref name, .. } if name == "a"));
}

#[test]
fn tensor_data_rules() {
    // offset outside the data
    let mut r = Raw::header(3, 1, 0);
    r.tensor("far", &[8], 0, 1 << 20).pad(32).zeros(32);
    let e = err(&r.0);
    assert!(
        matches!(e, GgufError::InvalidTensorData { ref name, ref reason, .. } if name == "far" && reason.contains("past the end")),
        "{e}"
    );
    // offset + size overflows u64
    let mut r = Raw::header(3, 1, 0);
    r.tensor("wrap", &[8], 0, u64::MAX - 31).pad(32).zeros(32);
    assert!(matches!(err(&r.0), GgufError::InvalidTensorData { .. }));
    // misaligned offset
    let mut r = Raw::header(3, 1, 0);
    r.tensor("odd", &[2], 0, 4).pad(32).zeros(64);
    let e = err(&r.0);
    assert!(
        matches!(e, GgufError::InvalidTensorData { ref reason, .. } if reason.contains("alignment")),
        "{e}"
    );
    // the data runs past the end by one byte
    let mut r = Raw::header(3, 1, 0);
    r.tensor("short", &[8], 0, 0).pad(32).zeros(31);
    assert!(matches!(err(&r.0), GgufError::InvalidTensorData { .. }));
    // tensors but no padding/data at all
    let mut r = Raw::header(3, 1, 0);
    r.tensor("t", &[0], 0, 0);
    if r.0.len().is_multiple_of(32) {
        r.u8(0);
    }
    assert!(matches!(err(&r.0), GgufError::Truncated { ref what, .. } if what.contains("padding")));
    // three tensors at offset 0 (gguf-rs-lib's test_model.gguf): overlap, even when lenient
    let mut r = Raw::header(3, 3, 0);
    r.tensor("x", &[8], 0, 0)
        .tensor("y", &[8], 0, 0)
        .tensor("z", &[8], 0, 0)
        .pad(32)
        .zeros(32);
    let e = err(&r.0);
    assert!(
        matches!(e, GgufError::InvalidTensorData { ref reason, .. } if reason.contains("overlaps")),
        "{e}"
    );
}

#[test]
fn strict_mode_enforces_ggml_layout() {
    // a gap between tensors: fine for gguf-py, rejected by ggml
    let mut r = Raw::header(3, 2, 0);
    r.tensor("a", &[8], 0, 0)
        .tensor("b", &[8], 0, 64)
        .pad(32)
        .zeros(96);
    parse(&r.0).unwrap();
    let e = parse_strict(&r.0).unwrap_err();
    assert!(
        matches!(e, GgufError::InvalidTensorData { ref name, ref reason, .. } if name == "b" && reason.contains("expects 32")),
        "{e}"
    );
    // long names
    let long = "x".repeat(64);
    let mut r = Raw::header(3, 1, 0);
    r.tensor(&long, &[8], 0, 0).pad(32).zeros(32);
    parse(&r.0).unwrap();
    assert!(matches!(
        parse_strict(&r.0),
        Err(GgufError::InvalidTensorInfo { .. })
    ));
}

#[test]
fn unknown_types_fail_only_when_used() {
    let mut r = Raw::header(3, 2, 0);
    r.tensor("known", &[8], 0, 0)
        .tensor("removed", &[32], 4, 32)
        .pad(32)
        .zeros(32 + 18);
    let file = parse(&r.0).unwrap();
    assert_eq!(
        file.tensor_info("removed").unwrap().ggml_type,
        GgmlType::Unknown(4)
    );
    assert_eq!(file.dequantize("known").unwrap(), vec![0.0; 8]);
    let e = file.tensor_data("removed").unwrap_err();
    assert!(
        matches!(e, GgufError::UnsupportedTensorType { ref name, ggml_type: GgmlType::Unknown(4), .. } if name == "removed")
    );
    assert!(
        e.to_string().contains("q6_K"),
        "the error lists the supported types: {e}"
    );
    // a known type without a dequantizer
    let mut w = GgufWriter::new();
    w.add_tensor("iq", &[256], GgmlType::IQ2_XXS, vec![0u8; 66])
        .unwrap();
    let file = parse(&w.to_bytes()).unwrap();
    let e = file.dequantize("iq").unwrap_err();
    assert!(e.to_string().contains(&quant::dequantizable_list()), "{e}");
    assert!(matches!(
        parse_strict(&r.0),
        Err(GgufError::InvalidTensorInfo { .. })
    ));
    assert!(matches!(
        file.tensor_data("nope"),
        Err(GgufError::TensorNotFound { .. })
    ));
}

/// Visits everything a parsed file offers, as a user would.
fn exercise(file: &GgufFile) {
    for (k, v) in file.metadata() {
        let _ = (
            k.len(),
            v.to_string().len(),
            file.get_u64(k).is_ok(),
            file.get_str(k).is_ok(),
        );
    }
    for t in file.tensors() {
        let _ = (t.shape(), file.tensor_data(&t.name).map(|d| d.len()));
        if t.n_elements() < 1 << 22 {
            let _ = file.dequantize(&t.name);
        }
    }
}

fn mutate(rng: &mut Rng, base: &[u8]) -> Vec<u8> {
    let mut b = base.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(b.len() as u64 + 1) as usize;
        match rng.below(7) {
            0 if !b.is_empty() => {
                let i = at.min(b.len() - 1);
                b[i] ^= 1 << rng.below(8);
            }
            1 if !b.is_empty() => {
                let i = at.min(b.len() - 1);
                b[i] = rng.next_u64() as u8;
            }
            2 => b.truncate(at),
            3 => {
                let n = 1 + rng.below(16) as usize;
                let extra = rng.bytes(n);
                b.splice(at..at, extra);
            }
            4 if at + 8 <= b.len() => {
                // an extreme u64 where a count, length, dim or offset may be
                let v = [
                    0,
                    1,
                    u64::MAX,
                    i64::MAX as u64,
                    1 << 32,
                    1 << 62,
                    rng.next_u64(),
                ][rng.below(7) as usize];
                b[at..at + 8].copy_from_slice(&v.to_le_bytes());
            }
            5 if at + 4 <= b.len() => {
                let v = [0u32, 1, 9, 13, u32::MAX, 64, 255][rng.below(7) as usize];
                b[at..at + 4].copy_from_slice(&v.to_le_bytes());
            }
            _ => {
                let end = (at + 1 + rng.below(64) as usize).min(b.len());
                if at < end {
                    b.drain(at..end);
                }
            }
        }
    }
    b
}

#[test]
fn random_mutations_never_panic() {
    let mut rng = Rng::fresh("random_mutations_never_panic");
    let bases: Vec<Vec<u8>> = ["tensors.gguf", "metadata.gguf", "align64.gguf"]
        .iter()
        .map(|n| std::fs::read(fixture(n)).unwrap())
        .collect();
    let (mut ok, mut failed) = (0, 0);
    for i in 0..6000 {
        let base = &bases[i % bases.len()];
        let bytes = mutate(&mut rng, base);
        for strict in [false, true] {
            match GgufFile::from_bytes_with(bytes.clone(), ParseOptions { strict }) {
                Ok(f) => {
                    exercise(&f);
                    ok += 1;
                }
                Err(e) => {
                    assert!(!e.to_string().is_empty());
                    failed += 1;
                }
            }
        }
    }
    eprintln!("mutations: {ok} parsed, {failed} rejected");
    assert!(
        failed > 1000 && ok > 100,
        "the mutations should hit both outcomes: {ok} ok, {failed} failed"
    );
}
