//! The vocabulary read from `tokenizer.ggml.*`, and the [`Tokenizer`] built on it.

use std::collections::HashMap;

use super::{TokenizerError, partition, spm};
use crate::gguf::{GgufError, GgufFile, MetadataArray};

/// A token's type (`tokenizer.ggml.token_type`), as llama.cpp numbers them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TokenType {
    /// 0, or any id llama.cpp does not know.
    Undefined,
    /// 1: ordinary text, `▁` standing for a space.
    Normal,
    /// 2: the unknown token.
    Unknown,
    /// 3: control tokens (BOS, EOS, turn markers): matched in text only with `parse_special`,
    /// rendered only with `special`.
    Control,
    /// 4: user-defined tokens (Gemma's newline and tab runs, HTML tags): always matched as a
    /// whole in text, rendered verbatim.
    UserDefined,
    /// 5: reserved, never produced.
    Unused,
    /// 6: `<0xXX>` byte-fallback tokens.
    Byte,
}

impl TokenType {
    /// The type for a `token_type` value.
    pub fn from_id(id: i64) -> Self {
        match id {
            1 => TokenType::Normal,
            2 => TokenType::Unknown,
            3 => TokenType::Control,
            4 => TokenType::UserDefined,
            5 => TokenType::Unused,
            6 => TokenType::Byte,
            _ => TokenType::Undefined,
        }
    }

    /// Whether [`partition`](super::partition) splits text around tokens of this type:
    /// always for user-defined ones, with `parse_special` for control and unknown ones.
    pub fn is_special(self, parse_special: bool) -> bool {
        match self {
            TokenType::UserDefined => true,
            TokenType::Control | TokenType::Unknown => parse_special,
            _ => false,
        }
    }
}

/// A SentencePiece tokenizer (see the [module docs](super)).
#[derive(Clone, Debug)]
pub struct Tokenizer {
    pub(super) pieces: Vec<Vec<u8>>,
    pub(super) scores: Vec<f32>,
    pub(super) types: Vec<TokenType>,
    pub(super) by_text: HashMap<Vec<u8>, u32>,
    /// Control, user-defined and unknown tokens, longest text first.
    pub(super) specials: Vec<u32>,
    pub(super) bytes: [Option<u32>; 256],
    pub(super) bos: Option<u32>,
    pub(super) eos: Option<u32>,
    pub(super) eog: Vec<u32>,
    pub(super) add_bos: bool,
    pub(super) add_eos: bool,
    pub(super) add_space_prefix: bool,
}

/// Texts llama.cpp treats as end of generation wherever they occur in a vocabulary (its
/// `special_eog_ids` scan), besides the EOS/EOT/EOM ids the file names. llama.cpp also marks
/// them as control tokens, so they are not printed.
const EOG_TEXTS: [&str; 15] = [
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
    "</s>",
];

impl Tokenizer {
    /// Builds the tokenizer from a GGUF file's `tokenizer.ggml.*` keys, with llama.cpp's
    /// defaults for SentencePiece vocabularies where a key is absent (BOS 1, EOS 2, add BOS, no
    /// EOS, space prefix on).
    pub fn from_gguf(file: &GgufFile) -> Result<Self, TokenizerError> {
        let model = file.get_str("tokenizer.ggml.model")?;
        if model != "llama" {
            return Err(TokenizerError::UnsupportedModel {
                model: model.to_string(),
            });
        }
        let pieces: Vec<Vec<u8>> = match file.get_array("tokenizer.ggml.tokens")? {
            MetadataArray::String(v) => v.iter().map(|s| s.as_bytes().to_vec()).collect(),
            other => return Err(wrong_type("tokenizer.ggml.tokens", "array<string>", other)),
        };
        let n = pieces.len();
        if n == 0 {
            return Err(TokenizerError::EmptyVocabulary);
        }
        let scores = match file.get("tokenizer.ggml.scores") {
            None => vec![0.0; n],
            Some(_) => match file.get_array("tokenizer.ggml.scores")? {
                MetadataArray::F32(v) => v.clone(),
                other => return Err(wrong_type("tokenizer.ggml.scores", "array<f32>", other)),
            },
        };
        let types: Vec<TokenType> = match file.get("tokenizer.ggml.token_type") {
            None => vec![TokenType::Normal; n],
            Some(_) => {
                let arr = file.get_array("tokenizer.ggml.token_type")?;
                if !matches!(arr, MetadataArray::I32(_) | MetadataArray::U32(_)) {
                    return Err(wrong_type("tokenizer.ggml.token_type", "array<i32>", arr));
                }
                arr.values()
                    .map(|v| TokenType::from_id(v.as_integer().unwrap_or(0) as i64))
                    .collect()
            }
        };
        for (key, len) in [
            ("tokenizer.ggml.scores", scores.len()),
            ("tokenizer.ggml.token_type", types.len()),
        ] {
            if len != n {
                return Err(TokenizerError::LengthMismatch {
                    key,
                    found: len,
                    expected: n,
                });
            }
        }
        if u32::try_from(n).is_err() {
            return Err(TokenizerError::IdOutOfRange {
                key: "tokenizer.ggml.tokens",
                id: n as u64,
                n_tokens: u32::MAX as usize,
            });
        }

        // llama.cpp's token_to_id map: a later duplicate wins.
        let mut by_text = HashMap::with_capacity(n);
        for (id, p) in pieces.iter().enumerate() {
            by_text.insert(p.clone(), id as u32);
        }
        let mut specials: Vec<u32> = (0..n as u32)
            .filter(|&id| {
                matches!(
                    types[id as usize],
                    TokenType::Control | TokenType::UserDefined | TokenType::Unknown
                ) && !pieces[id as usize].is_empty()
            })
            .collect();
        specials.sort_by_key(|&id| std::cmp::Reverse(pieces[id as usize].len()));
        let mut bytes = [None; 256];
        for (b, slot) in bytes.iter_mut().enumerate() {
            *slot = by_text
                .get(format!("<0x{b:02X}>").as_bytes())
                .or_else(|| by_text.get(&[b as u8][..]))
                .copied();
        }

        let id = |key: &'static str, default: Option<u32>| -> Result<Option<u32>, TokenizerError> {
            let raw = match file.get(key) {
                None => return Ok(default),
                Some(_) => file.get_i64(key)?,
            };
            // llama.cpp writes "none" as -1 (as u32: 0xFFFFFFFF).
            if raw < 0 || raw == u32::MAX as i64 {
                return Ok(None);
            }
            if raw as u64 >= n as u64 {
                return Err(TokenizerError::IdOutOfRange {
                    key,
                    id: raw as u64,
                    n_tokens: n,
                });
            }
            Ok(Some(raw as u32))
        };
        let bos = id(
            "tokenizer.ggml.bos_token_id",
            Some(1).filter(|&i| i < n as u32),
        )?;
        let eos = id(
            "tokenizer.ggml.eos_token_id",
            Some(2).filter(|&i| i < n as u32),
        )?;
        let eot = id("tokenizer.ggml.eot_token_id", None)?;
        let eom = id("tokenizer.ggml.eom_token_id", None)?;
        let by_name = EOG_TEXTS
            .iter()
            .filter_map(|t| by_text.get(t.as_bytes()).copied());
        let mut eog: Vec<u32> = [eos, eot, eom]
            .into_iter()
            .flatten()
            .chain(by_name)
            .collect();
        eog.sort_unstable();
        eog.dedup();

        let flag = |key: &str, default: bool| -> Result<bool, TokenizerError> {
            match file.get(key) {
                None => Ok(default),
                Some(_) => Ok(file.get_bool(key)?),
            }
        };
        Ok(Tokenizer {
            add_bos: flag("tokenizer.ggml.add_bos_token", true)?,
            add_eos: flag("tokenizer.ggml.add_eos_token", false)?,
            add_space_prefix: flag("tokenizer.ggml.add_space_prefix", true)?,
            pieces,
            scores,
            types,
            by_text,
            specials,
            bytes,
            bos,
            eos,
            eog,
        })
    }

    /// The number of tokens.
    pub fn len(&self) -> usize {
        self.pieces.len()
    }

    /// Whether the vocabulary is empty (never, for a built tokenizer).
    pub fn is_empty(&self) -> bool {
        self.pieces.is_empty()
    }

    /// The BOS token, if the vocabulary has one.
    pub fn bos(&self) -> Option<u32> {
        self.bos
    }

    /// The EOS token, if the vocabulary has one.
    pub fn eos(&self) -> Option<u32> {
        self.eos
    }

    /// Whether generation should stop at `id`: EOS, end-of-turn (e.g. Gemma's
    /// `<end_of_turn>`), end-of-message, or a token llama.cpp stops at by its text (`</s>`,
    /// `<|im_end|>`, …).
    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.binary_search(&id).is_ok()
    }

    /// The end-of-generation tokens.
    pub fn eog_tokens(&self) -> &[u32] {
        &self.eog
    }

    /// The id of a token whose text is exactly `text` (e.g. `"<start_of_turn>"`).
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.by_text.get(text.as_bytes()).copied()
    }

    /// A token's stored text (`▁` for spaces, `<0xXX>` for bytes), or `None` outside the
    /// vocabulary.
    pub fn piece(&self, id: u32) -> Option<&[u8]> {
        self.pieces.get(id as usize).map(Vec::as_slice)
    }

    /// A token's type.
    pub fn token_type(&self, id: u32) -> Option<TokenType> {
        self.types.get(id as usize).copied()
    }

    /// A token's score (its log-probability in the unigram model).
    pub fn score(&self, id: u32) -> Option<f32> {
        self.scores.get(id as usize).copied()
    }

    /// Whether the vocabulary adds BOS / EOS when encoding with `add_special`.
    pub fn adds_special(&self) -> (bool, bool) {
        (self.add_bos, self.add_eos)
    }

    /// Encodes `text` as llama.cpp's `llama_tokenize(text, add_special, parse_special)` does:
    /// BOS first when `add_special` and the vocabulary adds it (EOS last likewise), special
    /// tokens written in the text recognised when `parse_special` (user-defined ones always).
    pub fn encode(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
    ) -> Result<Vec<u32>, TokenizerError> {
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        let bos = if add_special && self.add_bos {
            self.bos
        } else {
            None
        };
        out.extend(bos);
        let mut prev_special = true;
        for fragment in partition::partition(self, text.as_bytes(), parse_special) {
            match fragment {
                partition::Fragment::Text(raw) => {
                    let mut escaped = Vec::with_capacity(raw.len() + 3);
                    if self.add_space_prefix && prev_special {
                        escaped.extend_from_slice(spm::SPACE);
                    }
                    for &b in raw {
                        if b == b' ' {
                            escaped.extend_from_slice(spm::SPACE);
                        } else {
                            escaped.push(b);
                        }
                    }
                    spm::encode(self, &escaped, &mut out)?;
                    prev_special = false;
                }
                partition::Fragment::Token(id) => {
                    out.push(id);
                    prev_special = true;
                }
            }
        }
        if add_special && self.add_eos {
            out.extend(self.eos);
        }
        Ok(out)
    }

    /// The token for one byte: `<0xXX>`, else the byte itself as a token.
    pub(super) fn byte_token(&self, byte: u8) -> Result<u32, TokenizerError> {
        self.bytes[byte as usize].ok_or(TokenizerError::NoByteToken { byte })
    }
}

fn wrong_type(key: &str, expected: &str, found: &MetadataArray) -> TokenizerError {
    TokenizerError::Metadata(GgufError::WrongValueType {
        key: key.to_string(),
        expected: expected.to_string(),
        found: format!("array<{}>", found.element_type().name()),
    })
}
