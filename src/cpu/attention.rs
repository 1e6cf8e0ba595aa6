//! Causal grouped-query attention over a key/value cache, read in place: each query row's
//! scores, softmax and weighted sum of values in one pass per row, threaded over rows.

use crate::parallel::{SendPtr, for_each_range};
use crate::quant::PackError;

/// The shapes of one attention call: queries `[batch, queries, heads, head_dim]`, keys and
/// values `[batch, kv_heads, keys, head_dim]` (row-major, contiguous).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttentionShape {
    /// Sequences.
    pub batch: usize,
    /// Query positions per sequence.
    pub queries: usize,
    /// Query heads (a multiple of `kv_heads`).
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Key slots per sequence and kv head (the cache's capacity).
    pub keys: usize,
    /// Head width.
    pub head_dim: usize,
}

impl AttentionShape {
    /// Key positions query `i` sees (at position `start + i`): `..= start + i`, and with a
    /// window only the last `window` of them (llama.cpp's standard sliding window).
    pub fn visible(start: usize, i: usize, window: Option<usize>) -> std::ops::Range<usize> {
        let p = start + i;
        let lo = window.map_or(0, |w| (p + 1).saturating_sub(w));
        lo..p + 1
    }
}

/// `out[b, i, h] = Σ_j softmax_j(scale · q[b, i, h] · k[b, h / g, j]) · v[b, h / g, j]` over the
/// keys `j` query `i` sees ([`AttentionShape::visible`]; `g = heads / kv_heads`), as
/// `[batch, queries, heads, head_dim]`. Scores in f32 (the query scaled first, as ggml's Gemma
/// graph does), the softmax's sum in f64, values weighted in f32.
pub fn attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    s: AttentionShape,
    start: usize,
    window: Option<usize>,
    scale: f32,
) -> Result<Vec<f32>, PackError> {
    let d = s.head_dim;
    let rows = s.batch * s.queries * s.heads;
    super::check_input(q, rows, d)?;
    super::check_input(k, s.batch * s.kv_heads * s.keys, d)?;
    super::check_input(v, s.batch * s.kv_heads * s.keys, d)?;
    if s.kv_heads == 0 || !s.heads.is_multiple_of(s.kv_heads) || start + s.queries > s.keys {
        return Err(PackError::InputLength {
            rows: start + s.queries,
            width: d,
            found: s.keys * d,
        });
    }
    let group = s.heads / s.kv_heads;
    let mut out = vec![0f32; rows * d];
    let out_ptr = SendPtr(out.as_mut_ptr());
    for_each_range(rows, |r0, r1| {
        let mut scratch = Scratch::new(d);
        for row in r0..r1 {
            let (h, i, b) = (
                row % s.heads,
                row / s.heads % s.queries,
                row / (s.heads * s.queries),
            );
            let kv = (b * s.kv_heads + h / group) * s.keys * d;
            let keys = AttentionShape::visible(start, i, window);
            // SAFETY: rows [r0, r1) of `out` belong to this range alone; `out` outlives the scope.
            let o = unsafe { std::slice::from_raw_parts_mut(out_ptr.get().add(row * d), d) };
            let (k, v) = (&k[kv..][..s.keys * d], &v[kv..][..s.keys * d]);
            attend(&q[row * d..][..d], k, v, keys, scale, &mut scratch, o);
        }
    });
    Ok(out)
}

/// A query row's working memory: the scaled query and the scores of the keys it sees.
pub(crate) struct Scratch {
    query: Vec<f32>,
    scores: Vec<f32>,
}

impl Scratch {
    /// For heads of `head_dim` values.
    pub(crate) fn new(head_dim: usize) -> Self {
        Self {
            query: vec![0f32; head_dim],
            scores: Vec::new(),
        }
    }
}

/// One query row `q` (`d` values) against the keys `keys` of one key/value head (`k` and `v` its
/// `[slots, d]` rows), added into `o` (zeros on entry): the scores in f32 (the query scaled
/// first), the softmax's sum in f64, the values weighted in f32.
pub(crate) fn attend(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    keys: std::ops::Range<usize>,
    scale: f32,
    scratch: &mut Scratch,
    o: &mut [f32],
) {
    let d = q.len();
    let (qs, scores) = (&mut scratch.query, &mut scratch.scores);
    for (x, &y) in qs.iter_mut().zip(q) {
        *x = y * scale;
    }
    scores.clear();
    scores.extend(keys.clone().map(|j| dot(qs, &k[j * d..][..d])));
    let max = scores.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
    let mut sum = 0f64;
    for x in scores.iter_mut() {
        *x = (*x - max).exp();
        sum += f64::from(*x);
    }
    let inv = (1.0 / sum) as f32;
    for (&p, j) in scores.iter().zip(keys) {
        let w = p * inv;
        for (o, &x) in o.iter_mut().zip(&v[j * d..][..d]) {
            *o += w * x;
        }
    }
}

/// `Σ a_i b_i` in f32, eight partial sums (so that it vectorizes).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}
