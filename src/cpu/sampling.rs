//! Choosing a token from logits ([`pick`]): the `top_k` most likely, their softmax at a
//! temperature, the top-p nucleus of those, and one uniform draw; greedy (the first maximum) when
//! `top_k` is 1 or the temperature is not above 0. The reference for the device kernel of the
//! same choice (`kernel::sample_token`), which computes in f32 where this computes in f64.

/// How a token is chosen from logits: the settings of [`pick`] and of the device op
/// ([`TransformerBackend::sample_token`](crate::ops::TransformerBackend::sample_token)).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TokenSampling {
    /// Keep the `top_k` most likely tokens; 0 keeps all of them (the host only: the device op
    /// takes 1..=[`MAX_DEVICE_TOP_K`]).
    pub top_k: usize,
    /// Softmax temperature; 0 or below is greedy.
    pub temperature: f32,
    /// Keep the smallest set of most likely tokens whose probability reaches `top_p` (1 or
    /// above: all of them).
    pub top_p: f32,
}

/// The largest `top_k` the device op takes: its candidates are sorted in a cube's shared memory.
pub const MAX_DEVICE_TOP_K: usize = 256;

impl TokenSampling {
    /// The most likely token, always.
    pub const GREEDY: TokenSampling = TokenSampling {
        top_k: 1,
        temperature: 0.0,
        top_p: 1.0,
    };

    /// Whether this picks the most likely token, whatever the draw: `top_k` 1 or temperature 0.
    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0 || self.top_k == 1
    }

    /// Whether the device op takes these settings: greedy, or `top_k` within
    /// 1..=[`MAX_DEVICE_TOP_K`] (it keeps at most that many candidates).
    pub fn runs_on_device(&self) -> bool {
        self.is_greedy() || (1..=MAX_DEVICE_TOP_K).contains(&self.top_k)
    }
}

/// The token chosen from `logits` with `sampling` and the uniform draw `r` in `[0, 1)`: the
/// candidates sorted most likely first (equal logits: the lower id first; NaN never a
/// candidate), cut to `top_k`; probabilities `exp((l − max) / temperature)` normalized over them
/// (f64); then the shortest prefix whose probability reaches `top_p`, renormalized; the token
/// where the running sum of those first exceeds `r` (rounding past the last: the last of
/// probability above 0). Greedy settings take the first maximum and ignore `r`. Empty or all-NaN
/// logits give 0; logits without a finite maximum, the first candidate.
pub fn pick(logits: &[f32], sampling: TokenSampling, r: f64) -> u32 {
    if sampling.is_greedy() {
        return argmax(logits);
    }
    // Candidates, most likely first.
    let mut ids = top_ids(logits, sampling.top_k);
    if ids.is_empty() {
        return 0;
    }
    ids.sort_unstable_by(|a, b| by_logit(logits, *a, *b));
    let max = logits[ids[0] as usize];
    if !max.is_finite() {
        return ids[0];
    }
    let t = f64::from(sampling.temperature);
    let mut probs: Vec<f64> = ids
        .iter()
        .map(|&i| (f64::from(logits[i as usize] - max) / t).exp())
        .collect();
    normalize(&mut probs);
    if sampling.top_p < 1.0 {
        let mut cumulative = 0.0;
        let keep = probs
            .iter()
            .position(|&p| {
                cumulative += p;
                cumulative >= f64::from(sampling.top_p)
            })
            .map_or(probs.len(), |i| i + 1);
        probs.truncate(keep);
        normalize(&mut probs);
    }
    let (mut r, mut chosen) = (r, ids[0]);
    for (&id, &p) in ids.iter().zip(&probs) {
        if p > 0.0 {
            chosen = id;
            if r < p {
                break;
            }
            r -= p;
        }
    }
    chosen
}

/// `pick`'s order: the larger logit first, the lower id first among equals.
fn by_logit(logits: &[f32], a: u32, b: u32) -> std::cmp::Ordering {
    logits[b as usize]
        .total_cmp(&logits[a as usize])
        .then(a.cmp(&b))
}

/// The ids of the `k` first logits in [`by_logit`]'s order (all of them when `k` is 0 or covers
/// them), NaN left out, in no particular order. One pass that holds at most `2k` ids, cut to
/// the best `k` whenever it fills; after a cut a logit not above the `k`-th best is skipped (ids
/// come in rising order, so one equal to it ranks after it).
fn top_ids(logits: &[f32], k: usize) -> Vec<u32> {
    let all = k == 0 || k >= logits.len();
    let mut ids = Vec::with_capacity(if all { logits.len() } else { 2 * k });
    let mut floor: Option<f32> = None;
    let cut = |ids: &mut Vec<u32>| {
        ids.select_nth_unstable_by(k - 1, |a, b| by_logit(logits, *a, *b));
        ids.truncate(k);
    };
    for (i, &v) in logits.iter().enumerate() {
        if v.is_nan() || floor.is_some_and(|f| v.total_cmp(&f).is_le()) {
            continue;
        }
        ids.push(i as u32);
        if !all && ids.len() == 2 * k {
            cut(&mut ids);
            floor = Some(logits[ids[k - 1] as usize]);
        }
    }
    if !all && ids.len() > k {
        cut(&mut ids);
    }
    ids
}

/// Scales `probs` to sum to 1.
fn normalize(probs: &mut [f64]) {
    let total: f64 = probs.iter().sum();
    probs.iter_mut().for_each(|p| *p /= total);
}

/// The index of the largest logit (the first of equals; NaN never wins over a number; empty
/// logits give 0).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] || logits[best].is_nan() && !v.is_nan() {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`top_ids`] against a sort of every logit: ties (few distinct values), NaN, ±0, −inf, `k`
    /// from 1 past the length, fresh values each run.
    #[test]
    fn top_ids_are_the_first_k() {
        let mut state = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        let mut next = move || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) as u32
        };
        for n in [1usize, 7, 100, 5000] {
            let values = [0.0, -0.0, 1.5, -2.0, f32::NAN, f32::NEG_INFINITY, 3.25];
            let logits: Vec<f32> = (0..n)
                .map(|_| match next() % 3 {
                    0 => values[next() as usize % values.len()],
                    _ => (next() % 64) as f32 / 8.0 - 4.0,
                })
                .collect();
            let mut want: Vec<u32> = (0..n as u32)
                .filter(|&i| !logits[i as usize].is_nan())
                .collect();
            want.sort_unstable_by(|a, b| by_logit(&logits, *a, *b));
            for k in [0, 1, 2, 3, 40, n.saturating_sub(1), n, n + 1] {
                let mut got = top_ids(&logits, k);
                got.sort_unstable_by(|a, b| by_logit(&logits, *a, *b));
                let len = if k == 0 {
                    want.len()
                } else {
                    k.min(want.len())
                };
                assert_eq!(got, want[..len], "n {n}, k {k}, logits {logits:?}");
            }
        }
    }
}
