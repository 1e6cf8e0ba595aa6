//! The `gguf` example binary on files written by gguf-py that no other test has seen (fresh random
//! files, made at test time), checked against gguf-py's and libgguf's own answers.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use burn_gguf::gguf::{GgufFile, MetadataValue, ParseOptions};
use burn_gguf::quant::GgmlType;
use common::{
    Rng, assert_bits_eq, bytes_to_f32, f32_to_bytes, fixture, oracle, oracles_available, scratch,
};
use serde_json::Value;

/// The example binary cargo built next to this test (`cargo test` builds examples).
fn gguf_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().join("examples");
    let bin = dir.join(format!("gguf{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} not built: run the tests with plain `cargo test` (which builds examples)",
        bin.display()
    );
    bin
}

fn run(args: &[&str]) -> Output {
    Command::new(gguf_bin()).args(args).output().unwrap()
}

fn run_ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "gguf {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Compares our JSON value with the oracle's {type, value} (floats there are bit patterns).
fn same_value(ours: &Value, theirs: &Value) -> bool {
    let ty = theirs["type"].as_str().unwrap();
    let elem_ty = theirs["element_type"].as_str().unwrap_or("");
    let scalar = |ty: &str, o: &Value, t: &Value| match ty {
        "f32" => o.as_f64().map(|f| u64::from((f as f32).to_bits())) == t.as_u64(),
        "f64" => o.as_f64().map(f64::to_bits) == t.as_u64(),
        _ => o == t,
    };
    match ty {
        "array" => {
            let (o, t) = (
                ours.as_array().unwrap(),
                theirs["value"].as_array().unwrap(),
            );
            o.len() == t.len() && o.iter().zip(t).all(|(a, b)| scalar(elem_ty, a, b))
        }
        _ => scalar(ty, ours, &theirs["value"]),
    }
}

#[test]
fn cli_agrees_with_gguf_py_on_fresh_files() {
    if !oracles_available("cli_agrees_with_gguf_py_on_fresh_files") {
        return;
    }
    let mut rng = Rng::fresh("cli_agrees_with_gguf_py_on_fresh_files");
    let dir = scratch("cli");
    let src = dir.join("random.gguf");
    oracle(&["write-random", s(&src), &(rng.next_u64() >> 1).to_string()]);
    let truth: Value = serde_json::from_str(&oracle(&["describe", s(&src)])).unwrap();

    // inspect --json
    let ours: Value = serde_json::from_str(&run_ok(&["inspect", s(&src), "--json"])).unwrap();
    assert_eq!(ours["version"], 3);
    assert_eq!(ours["alignment"], 32);
    let (om, tm) = (
        ours["metadata"].as_object().unwrap(),
        truth["metadata"].as_object().unwrap(),
    );
    assert_eq!(om.len(), tm.len());
    for (k, t) in tm {
        assert!(same_value(&om[k], t), "{k}: ours {} vs gguf-py {t}", om[k]);
    }
    let (ot, tt) = (
        ours["tensors"].as_array().unwrap(),
        truth["tensors"].as_array().unwrap(),
    );
    assert_eq!(ot.len(), tt.len());
    for (o, t) in ot.iter().zip(tt) {
        assert_eq!(o["name"], t["name"]);
        assert_eq!(
            o["type"].as_str().unwrap().to_lowercase(),
            t["type"].as_str().unwrap().to_lowercase()
        );
        for f in ["dims", "offset", "n_bytes"] {
            assert_eq!(o[f], t[f], "{} {f}", t["name"]);
        }
    }

    // inspect (text)
    let text = run_ok(&["inspect", s(&src)]);
    assert!(
        text.contains("totals per type:") && text.contains("blk.6.q6_k.weight"),
        "{text}"
    );

    // dequantize every tensor
    let file = GgufFile::open(&src).unwrap();
    for t in file.tensors() {
        let (ours, theirs) = (dir.join("ours.f32"), dir.join("theirs.f32"));
        run_ok(&["dequantize", s(&src), &t.name, s(&ours)]);
        oracle(&["dequantize-tensor", s(&src), &t.name, s(&theirs)]);
        let got = bytes_to_f32(&std::fs::read(&ours).unwrap());
        assert_bits_eq(
            &t.name,
            &got,
            &bytes_to_f32(&std::fs::read(&theirs).unwrap()),
        );
    }

    // quantize: eligible tensors become libgguf's exact Q6_K bytes; everything else is copied.
    let dst = dir.join("q6k.gguf");
    run_ok(&["quantize", s(&src), s(&dst), "--type", "q6_k"]);
    let out = GgufFile::open_with(&dst, ParseOptions { strict: true }).unwrap();
    assert_eq!(
        out.metadata(),
        file.metadata(),
        "metadata kept (the source has quantization_version)"
    );
    let mut converted = 0;
    for t in file.tensors() {
        let o = out.tensor_info(&t.name).unwrap();
        assert_eq!(o.dims, t.dims);
        let eligible = t.dims.len() == 2
            && matches!(t.ggml_type, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16)
            && t.dims[0].is_multiple_of(256);
        if eligible {
            converted += 1;
            assert_eq!(o.ggml_type, GgmlType::Q6_K, "{}", t.name);
            let x = file.dequantize(&t.name).unwrap();
            let (xf, qf) = (dir.join("x.f32"), dir.join("q.bin"));
            std::fs::write(&xf, f32_to_bytes(&x)).unwrap();
            oracle(&["q6k-quantize", s(&xf), &t.dims[0].to_string(), s(&qf)]);
            assert!(
                out.tensor_data(&t.name).unwrap() == std::fs::read(&qf).unwrap(),
                "{}: not libgguf's bytes",
                t.name
            );
        } else {
            assert_eq!(o.ggml_type, t.ggml_type, "{}", t.name);
            assert_eq!(
                out.tensor_data(&t.name).unwrap(),
                file.tensor_data(&t.name).unwrap()
            );
        }
    }
    assert_eq!(
        converted, 3,
        "the random file has one 2-D F32, F16 and BF16 tensor each"
    );
    // gguf-py reads the result.
    let again: Value = serde_json::from_str(&oracle(&["describe", s(&dst)])).unwrap();
    assert_eq!(
        again["tensors"].as_array().unwrap().len(),
        file.tensors().len()
    );
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn quantize_adds_quantization_version_when_missing() {
    let dir = scratch("cli-qv");
    let mut w = burn_gguf::gguf::GgufWriter::new();
    w.add_metadata("general.architecture", "x").unwrap();
    let x: Vec<f32> = (0..512).map(|i| (i as f32 * 0.37).sin()).collect();
    w.add_tensor("w", &[256, 2], GgmlType::F32, f32_to_bytes(&x))
        .unwrap();
    let (src, dst) = (dir.join("in.gguf"), dir.join("out.gguf"));
    w.write_file(&src).unwrap();
    run_ok(&["quantize", s(&src), s(&dst), "--type", "Q6_K"]);
    let out = GgufFile::open(&dst).unwrap();
    assert_eq!(
        out.get("general.quantization_version"),
        Some(&MetadataValue::U32(2))
    );
    assert_eq!(out.tensor_info("w").unwrap().ggml_type, GgmlType::Q6_K);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn bad_input_gives_one_line_and_exit_code_1() {
    let dir = scratch("cli-bad");
    let good = std::fs::read(fixture("tensors.gguf")).unwrap();
    let truncated = dir.join("truncated.gguf");
    std::fs::write(&truncated, &good[..good.len() / 2]).unwrap();
    let garbage = dir.join("garbage.gguf");
    std::fs::write(&garbage, b"this is not a gguf file at all").unwrap();
    let cases: Vec<Vec<String>> = vec![
        vec!["inspect".into(), s(&truncated).into()],
        vec!["inspect".into(), s(&garbage).into(), "--json".into()],
        vec!["inspect".into(), "/nonexistent.gguf".into()],
        vec![
            "dequantize".into(),
            s(&fixture("tensors.gguf")).into(),
            "no.such.tensor".into(),
            s(&dir.join("o")).into(),
        ],
        vec![
            "dequantize".into(),
            s(&truncated).into(),
            "t.f32".into(),
            s(&dir.join("o")).into(),
        ],
        vec![
            "quantize".into(),
            s(&garbage).into(),
            s(&dir.join("o.gguf")).into(),
        ],
        vec![
            "quantize".into(),
            s(&fixture("tensors.gguf")).into(),
            s(&dir.join("o.gguf")).into(),
            "--type".into(),
            "q4_0".into(),
        ],
    ];
    for args in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.starts_with("error: ") && !err.contains("panicked"),
            "{args:?}: {err}"
        );
    }
    std::fs::remove_dir_all(dir).ok();
}
