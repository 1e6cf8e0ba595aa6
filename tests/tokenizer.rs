//! The SentencePiece tokenizer against llama.cpp: the Gemma vocabulary's cases recorded by
//! llama.cpp (tests/fixtures/gemma3-reference.json), llama.cpp's own test vectors for the SPM
//! vocabularies shipped in the llama-cpp-python sdist, round trips on fresh random text, and
//! hostile metadata.

mod common;

use burn_gguf::gguf::{GgufFile, GgufWriter, MetadataValue};
use burn_gguf::tokenizer::{TokenType, Tokenizer, TokenizerError};
use common::{Rng, gemma_path};

/// A small SPM vocabulary: bytes, a few merges, a user-defined and a control token.
fn toy(extra: &[(&str, MetadataValue)]) -> Result<Tokenizer, TokenizerError> {
    let mut tokens: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
    let mut types = vec![2i32, 3, 3];
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(6);
    }
    for (t, ty) in [
        ("▁", 1),
        ("a", 1),
        ("b", 1),
        ("ab", 1),
        ("▁a", 1),
        ("▁ab", 1),
        ("<tag>", 4),
        ("<ctl>", 3),
    ] {
        tokens.push(t.into());
        types.push(ty);
    }
    let scores: Vec<f32> = (0..tokens.len()).map(|i| -(i as f32) / 10.0).collect();
    let mut w = GgufWriter::new();
    w.add_metadata("tokenizer.ggml.model", "llama").unwrap();
    w.add_metadata("tokenizer.ggml.tokens", tokens).unwrap();
    w.add_metadata("tokenizer.ggml.scores", scores).unwrap();
    w.add_metadata("tokenizer.ggml.token_type", types).unwrap();
    for (k, v) in extra {
        w.set_metadata(*k, v.clone()).unwrap();
    }
    Tokenizer::from_gguf(&GgufFile::from_bytes(w.to_bytes()).unwrap())
}

#[test]
fn toy_vocabulary_merges_bytes_and_specials() {
    let tok = toy(&[]).unwrap();
    let id = |t: &str| tok.token_id(t).unwrap();
    // Space prefix on by default; "▁ab" is one token.
    assert_eq!(tok.encode("ab", true, false).unwrap(), [1, id("▁ab")]);
    // 'c' is not a token: byte fallback.
    assert_eq!(
        tok.encode("abc", false, false).unwrap(),
        [id("▁ab"), id("<0x63>")]
    );
    // User-defined tokens are always split out; control ones only with parse_special.
    assert_eq!(
        tok.encode("a<tag>b", false, false).unwrap(),
        // After a special token the space prefix applies again: "▁b" is no token, so ▁ + b.
        [id("▁a"), id("<tag>"), id("▁"), id("b")]
    );
    let plain = tok.encode("<ctl>", false, false).unwrap();
    assert!(!plain.contains(&id("<ctl>")));
    assert_eq!(
        tok.encode("<ctl>a", false, true).unwrap(),
        [id("<ctl>"), id("▁a")]
    );
    // Decoding: control tokens only with `special`, the prefix space dropped.
    let ids = tok.encode("ab<ctl>", true, true).unwrap();
    assert_eq!(tok.decode(&ids, false), "ab");
    assert_eq!(tok.decode(&ids, true), "<s>ab<ctl>");
    assert_eq!(tok.token_type(id("<tag>")), Some(TokenType::UserDefined));
    assert!(tok.is_eog(2) && !tok.is_eog(1));
}

#[test]
fn hostile_metadata_gives_typed_errors() {
    let e = toy(&[("tokenizer.ggml.model", "gpt2".into())]).unwrap_err();
    assert!(matches!(e, TokenizerError::UnsupportedModel { .. }), "{e}");
    let e = toy(&[("tokenizer.ggml.scores", vec![0.0f32; 3].into())]).unwrap_err();
    assert!(
        matches!(
            e,
            TokenizerError::LengthMismatch {
                key: "tokenizer.ggml.scores",
                ..
            }
        ),
        "{e}"
    );
    let e = toy(&[("tokenizer.ggml.bos_token_id", 1_000_000u32.into())]).unwrap_err();
    assert!(matches!(e, TokenizerError::IdOutOfRange { .. }), "{e}");
    assert!(e.to_string().contains("tokenizer.ggml.bos_token_id"), "{e}");
    let e = toy(&[("tokenizer.ggml.token_type", vec![1.0f32; 3].into())]).unwrap_err();
    assert!(e.to_string().contains("tokenizer.ggml.token_type"), "{e}");
    let e = toy(&[("tokenizer.ggml.add_bos_token", 3u32.into())]).unwrap_err();
    assert!(e.to_string().contains("add_bos_token"), "{e}");

    // A vocabulary without byte tokens cannot encode an unknown byte: an error, not a panic.
    let mut w = GgufWriter::new();
    w.add_metadata("tokenizer.ggml.model", "llama").unwrap();
    w.add_metadata("tokenizer.ggml.tokens", vec!["a".to_string()])
        .unwrap();
    let tok = Tokenizer::from_gguf(&GgufFile::from_bytes(w.to_bytes()).unwrap()).unwrap();
    let e = tok.encode("z", false, false).unwrap_err();
    assert!(
        matches!(
            e,
            TokenizerError::NoByteToken { byte: b'z' } | TokenizerError::NoByteToken { .. }
        ),
        "{e}"
    );
}

/// Random text (never a literal `▁`, which SentencePiece cannot tell from a space): ASCII, whitespace runs, accented Latin, CJK, emoji, rare code points.
fn random_text(rng: &mut Rng) -> String {
    const POOL: &[&str] = &[
        " ",
        "  ",
        "\n",
        "\n\n",
        "\t",
        "the",
        "The",
        "ing",
        "é",
        "ß",
        "中",
        "文",
        "😀",
        "👩‍💻",
        "\u{10FFFD}",
        "<",
        ">",
        "</p>",
        "0",
        "42",
        ".",
        ",",
        "a",
        "z",
        "Q",
    ];
    let n = rng.below(40) as usize + 1;
    (0..n)
        .map(|_| match rng.below(4) {
            0 => char::from_u32(rng.below(0x3000) as u32 + 0x20)
                .filter(|&c| c != '\u{2581}')
                .unwrap_or('x')
                .to_string(),
            _ => POOL[rng.below(POOL.len() as u64) as usize].to_string(),
        })
        .collect()
}

#[test]
fn gemma_vocabulary_round_trips_fresh_random_text() {
    let Some(path) = gemma_path("gemma_vocabulary_round_trips_fresh_random_text") else {
        return;
    };
    let tok = Tokenizer::from_gguf(&GgufFile::open(&path).unwrap()).unwrap();
    assert_eq!(tok.len(), 262_144);
    assert_eq!((tok.bos(), tok.eos()), (Some(2), Some(1)));
    let eot = tok.token_id("<end_of_turn>").unwrap();
    assert!(tok.is_eog(eot) && tok.is_eog(1));
    let mut rng = Rng::fresh("gemma_vocabulary_round_trips_fresh_random_text");
    for _ in 0..300 {
        let text = random_text(&mut rng);
        let ids = tok.encode(&text, false, false).unwrap();
        // Gemma adds no space prefix, has byte fallback: decoding gives the text back.
        assert_eq!(tok.decode(&ids, false), text, "{ids:?}");
        let mut stream = tok.stream_decoder(false);
        let streamed: String =
            ids.iter().map(|&id| stream.push(id)).collect::<String>() + &stream.finish();
        assert_eq!(streamed, text);
    }
}

/// llama.cpp's `tests/test-tokenizer-0` vectors: `.inp` holds the cases, each followed by
/// `\n__ggml_vocab_test__\n`; `.out` one line of ids per case. Tokenized with
/// `add_special = false, parse_special = false`, as that test does.
#[test]
fn llama_cpp_spm_test_vectors() {
    let Some(dir) = common::llama_vocab_dir("llama_cpp_spm_test_vectors") else {
        return;
    };
    let mut checked = 0;
    // (vectors, the vocabulary they are checked with)
    let mut sets = vec![
        ("llama-spm", dir.join("ggml-vocab-llama-spm.gguf")),
        ("phi-3", dir.join("ggml-vocab-phi-3.gguf")),
    ];
    // Gemma-4's vectors (its own vocabulary is BPE) hold for the Gemma-3 SPM vocabulary, as
    // llama.cpp tokenizes it.
    if let Some(gemma) = gemma_path("llama_cpp_spm_test_vectors (gemma-4 vectors)") {
        sets.push(("gemma-4", gemma));
    }
    for (vectors, vocab) in sets {
        let tok = Tokenizer::from_gguf(&GgufFile::open(&vocab).unwrap()).unwrap();
        let inp = std::fs::read(dir.join(format!("ggml-vocab-{vectors}.gguf.inp"))).unwrap();
        let out =
            std::fs::read_to_string(dir.join(format!("ggml-vocab-{vectors}.gguf.out"))).unwrap();
        let sep = b"\n__ggml_vocab_test__\n";
        let mut cases = Vec::new();
        let mut rest = &inp[..];
        while let Some(at) = rest.windows(sep.len()).position(|w| w == sep) {
            cases.push(String::from_utf8(rest[..at].to_vec()).unwrap());
            rest = &rest[at + sep.len()..];
        }
        // Some files end without a separator after the last case.
        if !rest.is_empty() {
            cases.push(String::from_utf8(rest.to_vec()).unwrap());
        }
        let expected: Vec<Vec<u32>> = out
            .lines()
            .map(|l| l.split_whitespace().map(|t| t.parse().unwrap()).collect())
            .collect();
        assert_eq!(cases.len(), expected.len(), "{vectors}: cases vs lines");
        assert!(cases.len() > 30, "{vectors}: {} cases", cases.len());
        for (text, want) in cases.iter().zip(&expected) {
            let got = tok.encode(text, false, false).unwrap();
            assert_eq!(&got, want, "{vectors}: {text:?}");
            checked += 1;
        }
    }
    // Baichuan's SPM vocabulary ships without vectors: it loads, and round-trips.
    let tok = Tokenizer::from_gguf(&GgufFile::open(dir.join("ggml-vocab-baichuan.gguf")).unwrap())
        .unwrap();
    let ids = tok.encode("Hello world, 你好世界", false, false).unwrap();
    assert_eq!(tok.decode(&ids, false), "Hello world, 你好世界");
    eprintln!("llama_cpp_spm_test_vectors: {checked} cases agree with llama.cpp");
}

/// The Gemma vocabulary's cases as llama.cpp tokenized and detokenized them
/// (tests/fixtures/gemma3-reference.json: whitespace runs, newlines, tabs, Unicode, emoji, byte
/// fallback, HTML, code, turn markers with and without `parse_special`, and llama.cpp's own SPM
/// test strings), and its special ids and end-of-generation set.
#[test]
fn gemma_vocabulary_matches_llama_cpp() {
    let Some(path) = gemma_path("gemma_vocabulary_matches_llama_cpp") else {
        return;
    };
    let tok = Tokenizer::from_gguf(&GgufFile::open(&path).unwrap()).unwrap();
    let text = std::fs::read_to_string(common::fixture("gemma3-reference.json")).unwrap();
    let r: serde_json::Value = serde_json::from_str(&text).unwrap();
    let info = &r["tokenizer"];
    assert_eq!(tok.len() as u64, info["n_tokens"].as_u64().unwrap());
    assert_eq!(
        tok.bos().map(u64::from),
        info["special_ids"]["bos"]["id"].as_u64()
    );
    assert_eq!(
        tok.eos().map(u64::from),
        info["special_ids"]["eos"]["id"].as_u64()
    );
    assert_eq!(tok.adds_special(), (true, false));
    let eog: Vec<u32> = info["eog_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_u64().unwrap() as u32)
        .collect();
    assert_eq!(tok.eog_tokens(), eog.as_slice());
    let cases = r["tokenizer_cases"].as_array().unwrap();
    assert!(cases.len() > 90);
    for c in cases {
        let text = c["text"].as_str().unwrap();
        let special = c["special"].as_bool().unwrap();
        let want: Vec<u32> = c["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect();
        let got = tok.encode(text, false, special).unwrap();
        assert_eq!(got, want, "{text:?} (special {special})");
        // llama.cpp detokenized with special tokens rendered when they were parsed.
        assert_eq!(
            tok.decode(&got, special),
            c["detokenized"].as_str().unwrap(),
            "{text:?}: detokenized"
        );
    }
    eprintln!(
        "gemma_vocabulary_matches_llama_cpp: {} cases agree",
        cases.len()
    );
}
