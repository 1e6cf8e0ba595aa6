//! Splitting text around special tokens before SentencePiece sees it (llama.cpp's
//! `tokenizer_st_partition`).

use super::Tokenizer;

/// A piece of the text: plain bytes for SentencePiece, or a special token matched whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fragment<'a> {
    /// Text still to be tokenized.
    Text(&'a [u8]),
    /// A special token found in the text.
    Token(u32),
}

/// Splits `text` around every occurrence of the tokenizer's special tokens, longest token
/// first: each token in turn splits every remaining text fragment at its non-overlapping
/// occurrences, left to right. User-defined tokens always take part; control and unknown tokens
/// only with `parse_special`.
pub fn partition<'a>(tok: &Tokenizer, text: &'a [u8], parse_special: bool) -> Vec<Fragment<'a>> {
    let mut fragments = Vec::new();
    if text.is_empty() {
        return fragments;
    }
    fragments.push(Fragment::Text(text));
    for &id in &tok.specials {
        if !tok.types[id as usize].is_special(parse_special) {
            continue;
        }
        let needle = tok.pieces[id as usize].as_slice();
        // Cheap skip: most special tokens occur in no fragment.
        if !fragments
            .iter()
            .any(|f| matches!(f, Fragment::Text(t) if find(t, needle).is_some()))
        {
            continue;
        }
        let mut next = Vec::with_capacity(fragments.len() + 2);
        for fragment in fragments {
            let Fragment::Text(mut rest) = fragment else {
                next.push(fragment);
                continue;
            };
            while let Some(at) = find(rest, needle) {
                if at > 0 {
                    next.push(Fragment::Text(&rest[..at]));
                }
                next.push(Fragment::Token(id));
                rest = &rest[at + needle.len()..];
            }
            if !rest.is_empty() {
                next.push(Fragment::Text(rest));
            }
        }
        fragments = next;
    }
    fragments
}

/// The first occurrence of `needle` (non-empty) in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.len() > hay.len() {
        return None;
    }
    let first = needle[0];
    let last_start = hay.len() - needle.len();
    let mut i = 0;
    while i <= last_start {
        let at = hay[i..=last_start].iter().position(|&b| b == first)? + i;
        if hay[at..at + needle.len()] == *needle {
            return Some(at);
        }
        i = at + 1;
    }
    None
}
