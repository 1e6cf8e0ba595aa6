//! Token ids back to text (llama.cpp's `llama_token_to_piece` / `llama_detokenize`).

use super::spm::SPACE;
use super::{TokenType, Tokenizer};

impl Tokenizer {
    /// The bytes one token stands for, as llama.cpp's `llama_token_to_piece`: normal tokens with
    /// `▁` turned back into spaces, byte tokens as their byte, user-defined tokens verbatim,
    /// control and unknown tokens verbatim only when `special` (else nothing), unused tokens and
    /// ids outside the vocabulary as nothing. End-of-generation tokens count as control tokens
    /// (llama.cpp marks them so).
    pub fn token_bytes(&self, id: u32, special: bool) -> Vec<u8> {
        let (Some(piece), Some(ty)) = (self.piece(id), self.token_type(id)) else {
            return Vec::new();
        };
        if self.is_eog(id) {
            return if special { piece.to_vec() } else { Vec::new() };
        }
        match ty {
            TokenType::Control | TokenType::Unknown if special => piece.to_vec(),
            TokenType::UserDefined => piece.to_vec(),
            TokenType::Normal => unescape(piece),
            TokenType::Byte => parse_byte(piece)
                .map(|b| vec![b])
                .unwrap_or_else(|| piece.to_vec()),
            _ => Vec::new(),
        }
    }

    /// The bytes of a sequence of tokens: the pieces of [`token_bytes`](Self::token_bytes)
    /// concatenated. Where the vocabulary adds a space prefix when encoding, the space that
    /// prefix became is dropped from the first text token (after any leading BOS or other
    /// control tokens), so that `decode(encode(text))` gives `text` back, as SentencePiece's and
    /// llama-cpp-python's `detokenize` do.
    pub fn decode_bytes(&self, ids: &[u32], special: bool) -> Vec<u8> {
        let mut out = Vec::new();
        let mut at_start = true;
        for &id in ids {
            let piece = self.token_bytes(id, special);
            out.extend_from_slice(&piece[self.prefix_len(&mut at_start, id, &piece)..]);
        }
        out
    }

    /// How many bytes of `piece` to drop: the prefix space of the first text token.
    fn prefix_len(&self, at_start: &mut bool, id: u32, piece: &[u8]) -> usize {
        if !*at_start
            || self.is_eog(id)
            || matches!(
                self.token_type(id),
                Some(TokenType::Control | TokenType::Unknown)
            )
        {
            return 0;
        }
        *at_start = false;
        usize::from(self.add_space_prefix && piece.first() == Some(&b' '))
    }

    /// [`decode_bytes`](Self::decode_bytes) as text, invalid UTF-8 (a sequence cut inside a
    /// character) replaced by U+FFFD.
    pub fn decode(&self, ids: &[u32], special: bool) -> String {
        String::from_utf8_lossy(&self.decode_bytes(ids, special)).into_owned()
    }

    /// A decoder that turns tokens into text one at a time, as they are generated.
    pub fn stream_decoder(&self, special: bool) -> StreamDecoder<'_> {
        StreamDecoder {
            tok: self,
            special,
            pending: Vec::new(),
            first: true,
        }
    }
}

/// `▁` → space.
fn unescape(piece: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(piece.len());
    let mut i = 0;
    while i < piece.len() {
        if piece[i..].starts_with(SPACE) {
            out.push(b' ');
            i += SPACE.len();
        } else {
            out.push(piece[i]);
            i += 1;
        }
    }
    out
}

/// The byte of a `<0xXX>` token.
fn parse_byte(piece: &[u8]) -> Option<u8> {
    let hex = piece.strip_prefix(b"<0x")?.strip_suffix(b">")?;
    u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()
}

/// Turns generated tokens into text as they come, holding back the bytes of a UTF-8 character
/// that byte tokens have only partly produced. Made by [`Tokenizer::stream_decoder`].
#[derive(Debug)]
pub struct StreamDecoder<'a> {
    tok: &'a Tokenizer,
    special: bool,
    pending: Vec<u8>,
    first: bool,
}

impl StreamDecoder<'_> {
    /// Adds one token; returns the text that is now complete (possibly empty).
    pub fn push(&mut self, id: u32) -> String {
        let piece = self.tok.token_bytes(id, self.special);
        let skip = self.tok.prefix_len(&mut self.first, id, &piece);
        self.pending.extend_from_slice(&piece[skip..]);
        let valid = match std::str::from_utf8(&self.pending) {
            Ok(_) => self.pending.len(),
            // An incomplete character at the end: keep it for the next token.
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            // Invalid bytes: no later token can complete them.
            Err(_) => self.pending.len(),
        };
        let text = String::from_utf8_lossy(&self.pending[..valid]).into_owned();
        self.pending.drain(..valid);
        text
    }

    /// The text still held back (an unfinished character, written as U+FFFD).
    pub fn finish(&mut self) -> String {
        let text = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        text
    }
}
