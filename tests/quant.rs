//! ggml block formats against the references: committed golden vectors (libgguf, gguf-py) and
//! fresh random data checked by the Python oracles at test time.

mod common;

use burn_gguf::gguf::GgufFile;
use burn_gguf::quant::{self, BlockQ6K, GgmlType, q6k};
use common::{
    Rng, assert_bits_eq, bytes_to_f32, f32_to_bytes, fixture, oracle, oracles_available, scratch,
};

#[test]
fn q6k_quantizer_matches_ggml_on_golden_edge_cases() {
    let file = GgufFile::open(fixture("q6k_cases.gguf")).unwrap();
    let cases: Vec<String> = file
        .tensors()
        .iter()
        .filter_map(|t| t.name.strip_suffix(".x").map(String::from))
        .collect();
    assert!(cases.len() >= 15, "{cases:?}");
    for case in &cases {
        let x = file.dequantize(&format!("{case}.x")).unwrap();
        let want = file.tensor_data(&format!("{case}.q")).unwrap();
        let got = q6k::quantize(&x, 0).unwrap();
        let got = BlockQ6K::slice_as_bytes(&got);
        if let Some(i) = (0..want.len()).find(|&i| got[i] != want[i]) {
            panic!(
                "{case}: byte {i} (block {}, offset {}) differs: got {}, want {}",
                i / 210,
                i % 210,
                got[i],
                want[i]
            );
        }
        let deq = file.dequantize(&format!("{case}.q")).unwrap();
        assert_bits_eq(
            case,
            &deq,
            &file.dequantize(&format!("{case}.deq")).unwrap(),
        );
    }
}

#[test]
fn q6k_edge_case_properties() {
    let file = GgufFile::open(fixture("q6k_cases.gguf")).unwrap();
    // d underflows f16 for |x| ~ 1e-6 rows: ggml stores zeros (a property of the format).
    let tiny = file.dequantize("tiny_1e6.deq").unwrap();
    assert!(tiny.iter().all(|&v| v == 0.0));
    // All-zero input: all 210 bytes zero, d = +0.0.
    assert!(file.tensor_data("zero.q").unwrap().iter().all(|&b| b == 0));
    assert!(
        file.tensor_data("below_eps.q")
            .unwrap()
            .iter()
            .all(|&b| b == 0)
    );
}

/// Random f32 rows of several distributions, `rows × k`.
fn random_rows(rng: &mut Rng, rows: usize, k: usize) -> Vec<f32> {
    let mut x = Vec::with_capacity(rows * k);
    for r in 0..rows {
        let scale = 10f64.powf(rng.unit() * 8.0 - 5.0);
        for i in 0..k {
            let v = match (r + i / 256) % 4 {
                0 => rng.normal(),
                1 => rng.normal() / (rng.unit() + 0.05), // heavy tails
                2 => (rng.normal() * 8.0).round() / 8.0, // ties on a 1/8 grid
                _ => {
                    if rng.below(16) == 0 {
                        0.0
                    } else {
                        rng.normal()
                    }
                }
            };
            x.push((v * scale) as f32);
        }
    }
    x
}

#[test]
fn q6k_quantizer_matches_libgguf_on_fresh_random_rows() {
    if !oracles_available("q6k_quantizer_matches_libgguf_on_fresh_random_rows") {
        return;
    }
    let mut rng = Rng::fresh("q6k_quantizer_matches_libgguf_on_fresh_random_rows");
    let dir = scratch("q6k-random");
    let (rows, k) = (64, 1024); // 256 blocks
    let x = random_rows(&mut rng, rows, k);
    std::fs::write(dir.join("x.f32"), f32_to_bytes(&x)).unwrap();
    oracle(&[
        "q6k-quantize",
        dir.join("x.f32").to_str().unwrap(),
        &k.to_string(),
        dir.join("q.bin").to_str().unwrap(),
    ]);
    let want = std::fs::read(dir.join("q.bin")).unwrap();
    let got = q6k::quantize(&x, 2).unwrap();
    let got = BlockQ6K::slice_as_bytes(&got);
    assert_eq!(got.len(), want.len());
    let bad: Vec<usize> = (0..got.len() / 210)
        .filter(|&b| got[b * 210..][..210] != want[b * 210..][..210])
        .collect();
    assert!(
        bad.is_empty(),
        "{} of {} blocks differ from libgguf, first {:?}",
        bad.len(),
        got.len() / 210,
        &bad[..bad.len().min(5)]
    );
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn dequantizers_match_gguf_py_on_fresh_random_blocks() {
    if !oracles_available("dequantizers_match_gguf_py_on_fresh_random_blocks") {
        return;
    }
    let mut rng = Rng::fresh("dequantizers_match_gguf_py_on_fresh_random_blocks");
    let dir = scratch("dequant-random");
    for &t in quant::DEQUANTIZABLE {
        let (block, size) = (
            t.block_size().unwrap() as usize,
            t.type_size().unwrap() as usize,
        );
        let n_blocks = 40 + rng.below(60) as usize;
        let mut bytes = rng.bytes(n_blocks * size);
        // Random bytes are valid codes and scales; keep the float scale fields finite, so NaN
        // payloads (which numpy and Rust may propagate differently) stay out of the comparison.
        for b in bytes.chunks_exact_mut(size) {
            let scale_fields: &[usize] = match t {
                GgmlType::F16 | GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 => &[0],
                GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q4_K | GgmlType::Q5_K => &[0, 2],
                GgmlType::Q2_K => &[80, 82],
                GgmlType::Q3_K => &[108],
                GgmlType::Q6_K => &[208],
                _ => &[],
            };
            for &at in scale_fields {
                let h = half::f16::from_f32((rng.normal() * 0.05) as f32);
                b[at..at + 2].copy_from_slice(&h.to_le_bytes());
            }
            match t {
                GgmlType::F32 | GgmlType::Q8_K => {
                    b[..4].copy_from_slice(&((rng.normal() * 0.05) as f32).to_le_bytes())
                }
                GgmlType::BF16 => {
                    b[..2].copy_from_slice(&half::bf16::from_f32(rng.normal() as f32).to_le_bytes())
                }
                _ => {}
            }
        }
        let n = n_blocks * block;
        let (src, dst) = (dir.join(format!("{t}.bin")), dir.join(format!("{t}.f32")));
        std::fs::write(&src, &bytes).unwrap();
        oracle(&[
            "dequantize",
            &t.name(),
            src.to_str().unwrap(),
            &n.to_string(),
            dst.to_str().unwrap(),
        ]);
        let want = bytes_to_f32(&std::fs::read(&dst).unwrap());
        let got = quant::dequantize(t, &bytes, n).unwrap();
        assert_bits_eq(&t.name(), &got, &want);
    }
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn q6k_codes_are_the_nearest_under_the_stored_scales() {
    // Independent of ggml's search: once d and the sub-block scales are chosen, every code must
    // be round-half-even(x / (d·sc)) clamped to [-32, 31], so the error is at most half a step
    // wherever the value is inside the code range.
    let mut rng = Rng::fresh("q6k_codes_are_the_nearest_under_the_stored_scales");
    let x = random_rows(&mut rng, 16, 512);
    let blocks = q6k::quantize(&x, 0).unwrap();
    let mut y = vec![f32::NAN; x.len()];
    q6k::dequantize_into(&blocks, &mut y);
    let mut checked = 0;
    for (bi, (b, (xb, yb))) in blocks
        .iter()
        .zip(x.chunks(256).zip(y.chunks(256)))
        .enumerate()
    {
        for e in 0..256 {
            let dj = b.d().to_f32() * b.scales[e / 16] as f32;
            if dj == 0.0 {
                assert_eq!(yb[e], 0.0);
                continue;
            }
            let want = ((xb[e] / dj).round_ties_even() as i32).clamp(-32, 31);
            assert_eq!(
                b.code(e) as i32 - 32,
                want,
                "block {bi} element {e}: x = {}, step {dj}",
                xb[e]
            );
            if (xb[e] / dj).abs() <= 31.5 {
                assert!(
                    (xb[e] - yb[e]).abs() <= 0.5 * dj.abs() * (1.0 + 1e-6),
                    "block {bi} element {e}"
                );
            }
            checked += 1;
        }
    }
    assert!(
        checked > x.len() / 2,
        "too few elements with a non-zero step: {checked}"
    );
}

#[test]
fn dequantize_rejects_bad_lengths_and_types() {
    assert!(matches!(
        quant::dequantize(GgmlType::Q6_K, &[0; 209], 256),
        Err(quant::QuantError::Length { .. })
    ));
    assert!(matches!(
        quant::dequantize(GgmlType::Q6_K, &[0; 210], 255),
        Err(quant::QuantError::Length { .. })
    ));
    assert!(matches!(
        quant::dequantize(GgmlType::IQ2_XXS, &[0; 66], 256),
        Err(quant::QuantError::Unsupported { .. })
    ));
    assert!(q6k::quantize(&[0.0; 300], 1).is_none());
    // a huge element count with a small buffer fails before allocating
    assert!(quant::dequantize(GgmlType::F32, &[0; 4], usize::MAX / 8).is_err());
}
