//! The `gemma3` and `swap_linear` example binaries, run the way the README runs them.

#![cfg(feature = "flex")]

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{Rng, gemma_path, scratch};

/// An example binary cargo built next to this test (`cargo test` builds examples).
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(bin.exists(), "{} not built", bin.display());
    bin
}

#[test]
fn swap_linear_agrees_within_q6k_error() {
    let out = Command::new(example("swap_linear"))
        .args(["--backend", "flex", "--batch", "3"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("weights byte-identical"), "{stdout}");
    assert!(
        stdout.contains("ok: the quantized model agrees"),
        "{stdout}"
    );
}

/// The example's own SHA-256 (it checks the downloaded model with it) against Python's hashlib
/// on fresh random files, including the lengths around the 64-byte block and padding edges.
#[test]
fn gemma3_sha256_agrees_with_hashlib() {
    let mut rng = Rng::fresh("gemma3_sha256_agrees_with_hashlib");
    let dir = scratch("sha256");
    for len in [0usize, 1, 55, 56, 63, 64, 65, 119, 120, 1000, 1 << 20] {
        let path = dir.join(format!("f{len}"));
        let extra = rng.below(3) as usize;
        std::fs::write(&path, rng.bytes(len + extra)).unwrap();
        let ours = Command::new(example("gemma3"))
            .arg("--sha256")
            .arg(&path)
            .output()
            .unwrap();
        assert!(ours.status.success());
        let theirs = Command::new("python3")
            .args(["-c", "import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],'rb').read()).hexdigest())"])
            .arg(&path)
            .output()
            .expect("python3");
        assert_eq!(
            String::from_utf8_lossy(&ours.stdout),
            String::from_utf8_lossy(&theirs.stdout),
            "length {}",
            len + extra
        );
    }
}

#[test]
fn gemma3_generates_on_the_cpu() {
    let Some(model) = gemma_path("gemma3_generates_on_the_cpu") else {
        return;
    };
    let out = Command::new(example("gemma3"))
        .args([
            "--backend",
            "flex",
            "-n",
            "6",
            "--prompt",
            "The capital of France is",
            "--model",
        ])
        .arg(&model)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.starts_with("The capital of France is"), "{stdout}");
    assert!(
        stdout.trim().len() > "The capital of France is".len(),
        "{stdout}"
    );
    // every weight of the file stays in its type: four fused types, nothing dequantized at load
    for t in ["q8_0", "q5_0", "q4_K", "q6_K"] {
        assert!(
            stderr.contains(&format!("{t} quantized, fused")),
            "{t}: {stderr}"
        );
    }
    assert!(!stderr.contains("dequantized"), "{stderr}");
    assert!(stderr.contains("(1.00x;"), "{stderr}");
    assert!(stderr.contains("tokens/s"), "{stderr}");

    // A file that is not a Gemma 3 model: one error line, exit status 1.
    let out = Command::new(example("gemma3"))
        .args(["--backend", "flex", "--prompt", "x", "--model"])
        .arg(common::fixture("metadata.gguf"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("error: "), "{stderr}");
}
