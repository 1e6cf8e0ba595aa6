//! SentencePiece's bigram merge over one text fragment (llama.cpp's `llm_tokenizer_spm`).

use std::collections::{BinaryHeap, HashMap};

use super::{Tokenizer, TokenizerError};

/// `▁` (U+2581), SentencePiece's stand-in for a space.
pub const SPACE: &[u8] = "\u{2581}".as_bytes();

/// One symbol of the linked list: a byte range of the text.
#[derive(Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

/// A candidate merge of two adjacent symbols.
#[derive(Clone, Copy)]
struct Bigram {
    left: usize,
    right: usize,
    score: f32,
    len: usize,
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}
impl Eq for Bigram {}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Bigram {
    /// Highest score first; on equal scores, the leftmost pair.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.left.cmp(&self.left))
    }
}

/// The byte length of the UTF-8 character that starts with `b` (1 for stray continuation bytes).
fn utf8_len(b: u8) -> usize {
    const LEN: [usize; 16] = [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4];
    LEN[(b >> 4) as usize]
}

/// Tokenizes `text` (spaces already written as `▁`) and appends the ids to `out`.
///
/// Starts from one symbol per UTF-8 character and merges, while it can, the adjacent pair whose
/// concatenation is the vocabulary token with the highest score (the leftmost pair on ties).
/// Symbols that end up not being tokens are written as byte tokens.
pub fn encode(tok: &Tokenizer, text: &[u8], out: &mut Vec<u32>) -> Result<(), TokenizerError> {
    if text.is_empty() {
        return Ok(());
    }
    let mut symbols = Vec::with_capacity(text.len());
    let mut offs = 0;
    while offs < text.len() {
        let len = utf8_len(text[offs]).min(text.len() - offs);
        let index = symbols.len();
        symbols.push(Symbol {
            start: offs,
            len,
            prev: index.checked_sub(1),
            next: (offs + len < text.len()).then_some(index + 1),
        });
        offs += len;
    }

    let mut queue = BinaryHeap::new();
    let mut rev_merge: HashMap<&[u8], (usize, usize)> = HashMap::new();
    for i in 1..symbols.len() {
        try_add(
            tok,
            text,
            &symbols,
            &mut queue,
            &mut rev_merge,
            Some(i - 1),
            Some(i),
        );
    }
    while let Some(bigram) = queue.pop() {
        let (l, r) = (symbols[bigram.left], symbols[bigram.right]);
        // Skip pairs that a merge has made stale.
        if l.len == 0 || r.len == 0 || l.len + r.len != bigram.len {
            continue;
        }
        symbols[bigram.left].len += r.len;
        symbols[bigram.right].len = 0;
        symbols[bigram.left].next = r.next;
        if let Some(n) = r.next {
            symbols[n].prev = Some(bigram.left);
        }
        let left = symbols[bigram.left];
        try_add(
            tok,
            text,
            &symbols,
            &mut queue,
            &mut rev_merge,
            left.prev,
            Some(bigram.left),
        );
        try_add(
            tok,
            text,
            &symbols,
            &mut queue,
            &mut rev_merge,
            Some(bigram.left),
            left.next,
        );
    }

    let mut i = Some(0);
    while let Some(s) = i {
        resegment(tok, text, &symbols, &rev_merge, symbols[s], out)?;
        i = symbols[s].next;
    }
    Ok(())
}

/// Queues the merge of `left` and `right` if their concatenation is a token.
fn try_add<'a>(
    tok: &Tokenizer,
    text: &'a [u8],
    symbols: &[Symbol],
    queue: &mut BinaryHeap<Bigram>,
    rev_merge: &mut HashMap<&'a [u8], (usize, usize)>,
    left: Option<usize>,
    right: Option<usize>,
) {
    let (Some(left), Some(right)) = (left, right) else {
        return;
    };
    let (l, r) = (symbols[left], symbols[right]);
    let merged = &text[l.start..l.start + l.len + r.len];
    let Some(&id) = tok.by_text.get(merged) else {
        return;
    };
    queue.push(Bigram {
        left,
        right,
        score: tok.scores[id as usize],
        len: merged.len(),
    });
    rev_merge.insert(merged, (left, right));
}

/// Writes one final symbol: its token if it is one, else the pair it was merged from, else its
/// bytes.
fn resegment(
    tok: &Tokenizer,
    text: &[u8],
    symbols: &[Symbol],
    rev_merge: &HashMap<&[u8], (usize, usize)>,
    symbol: Symbol,
    out: &mut Vec<u32>,
) -> Result<(), TokenizerError> {
    let piece = &text[symbol.start..symbol.start + symbol.len];
    if let Some(&id) = tok.by_text.get(piece) {
        out.push(id);
        return Ok(());
    }
    match rev_merge.get(piece) {
        Some(&(l, r)) => {
            resegment(tok, text, symbols, rev_merge, symbols[l], out)?;
            resegment(tok, text, symbols, rev_merge, symbols[r], out)
        }
        None => {
            for &b in piece {
                out.push(tok.byte_token(b)?);
            }
            Ok(())
        }
    }
}
