//! Choosing the next token from logits: greedy, or sampled with temperature, top-k and top-p
//! from a seeded generator (runs repeat exactly for a seed), and the greedy pick on the device
//! ([`device_argmax`]).

use burn::tensor::{Int, Tensor};

/// Sampling settings; [`Sampler::greedy`] when `temperature` is 0.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SamplingConfig {
    /// Softmax temperature; 0 (or below) means greedy.
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens (0: all).
    pub top_k: usize,
    /// Keep the smallest set of most likely tokens whose probability reaches `top_p` (1: all).
    pub top_p: f32,
    /// Seed of the random generator.
    pub seed: u64,
}

impl Default for SamplingConfig {
    /// llama.cpp's defaults: temperature 0.8, top-k 40, top-p 0.95.
    fn default() -> Self {
        SamplingConfig {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            seed: 0,
        }
    }
}

/// Picks tokens from logits.
#[derive(Clone, Debug)]
pub struct Sampler {
    config: SamplingConfig,
    state: u64,
}

impl Sampler {
    /// Always the most likely token (the lowest id among equal logits), as llama.cpp's greedy
    /// sampler.
    pub fn greedy() -> Self {
        Self::new(SamplingConfig {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            seed: 0,
        })
    }

    /// A sampler with these settings.
    pub fn new(config: SamplingConfig) -> Self {
        Sampler {
            config,
            state: config.seed,
        }
    }

    /// The settings.
    pub fn config(&self) -> &SamplingConfig {
        &self.config
    }

    /// Whether this sampler always takes the most likely token ([`argmax`]): temperature 0 or
    /// top-k 1.
    pub fn is_greedy(&self) -> bool {
        self.config.temperature <= 0.0 || self.config.top_k == 1
    }

    /// Chooses a token. Panics on empty logits; NaN logits are never chosen when any other is
    /// finite.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        assert!(!logits.is_empty(), "no logits to sample from");
        let c = self.config;
        if self.is_greedy() {
            return argmax(logits);
        }
        // Candidates, most likely first; top-k cut before sorting everything.
        let mut ids: Vec<u32> = (0..logits.len() as u32)
            .filter(|&i| !logits[i as usize].is_nan())
            .collect();
        if ids.is_empty() {
            return 0;
        }
        let by_logit = |a: &u32, b: &u32| {
            logits[*b as usize]
                .total_cmp(&logits[*a as usize])
                .then(a.cmp(b))
        };
        if c.top_k > 0 && c.top_k < ids.len() {
            ids.select_nth_unstable_by(c.top_k - 1, by_logit);
            ids.truncate(c.top_k);
        }
        ids.sort_unstable_by(by_logit);
        let max = logits[ids[0] as usize];
        let mut probs: Vec<f64> = ids
            .iter()
            .map(|&i| (f64::from(logits[i as usize] - max) / f64::from(c.temperature)).exp())
            .collect();
        let total: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= total);
        if c.top_p < 1.0 {
            let mut cumulative = 0.0;
            let keep = probs
                .iter()
                .position(|&p| {
                    cumulative += p;
                    cumulative >= f64::from(c.top_p)
                })
                .map_or(probs.len(), |i| i + 1);
            probs.truncate(keep);
            let total: f64 = probs.iter().sum();
            probs.iter_mut().for_each(|p| *p /= total);
        }
        let mut r = self.next_unit();
        for (i, &p) in probs.iter().enumerate() {
            if r < p {
                return ids[i];
            }
            r -= p;
        }
        ids[probs.len() - 1]
    }

    /// A uniform number in [0, 1) (SplitMix64).
    fn next_unit(&mut self) -> f64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The index of the largest logit (the first of equals; NaN never wins over a number).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] || logits[best].is_nan() && !v.is_nan() {
            best = i;
        }
    }
    best as u32
}

/// The index of the first maximum of `logits` `[n]`, as a `[1]` tensor on their device (the
/// same pick as [`argmax`] for logits without NaN). Burn's `argmax` reduces a row in one cube;
/// a long row (Gemma 3's 262,144 logits: 64 µs on an H200) goes in two passes instead when `n`
/// has a divisor `g` near √n: the first maximum of each of `g` runs of `n / g` logits, then the
/// first run holding the largest of those.
pub fn device_argmax(logits: Tensor<1>) -> Tensor<1, Int> {
    let n = logits.dims()[0];
    let runs = runs_of(n);
    if runs == 1 {
        return logits.argmax(0);
    }
    let len = n / runs;
    let (maxima, within) = logits.reshape([runs, len]).max_dim_with_indices(1);
    let run = maxima.reshape([runs]).argmax(0);
    let at = within.reshape([runs]).select(0, run.clone());
    run.mul_scalar(len as i64).add(at)
}

/// The largest divisor of `n` at most √n when it is at least 16 (two passes pay), else 1.
fn runs_of(n: usize) -> usize {
    let root = n.isqrt();
    (16..=root)
        .rev()
        .find(|g| n.is_multiple_of(*g))
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The device pick against the host's, on Flex: runs of a square, an oblong and a prime
    /// length, the maximum repeated in one run and across runs, fresh values each run.
    #[test]
    fn device_argmax_is_the_first_maximum() {
        use burn::tensor::{Device, TensorData};
        assert_eq!(
            (runs_of(262_144), runs_of(1000), runs_of(997)),
            (512, 25, 1)
        );
        let device = Device::flex();
        let mut s = Sampler::new(SamplingConfig {
            seed: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64,
            ..SamplingConfig::default()
        });
        for n in [262_144usize, 1000, 997, 256] {
            for twice in [None, Some(1), Some(n / 2)] {
                let mut logits: Vec<f32> = (0..n).map(|_| s.next_unit() as f32 * 10.0).collect();
                let at = (s.next_unit() * (n - 2) as f64) as usize;
                logits[at] = 20.0;
                if let Some(d) = twice {
                    logits[(at + d).min(n - 1)] = 20.0;
                    logits[at.saturating_sub(d)] = 20.0;
                }
                let want = argmax(&logits);
                let t = Tensor::<1>::from_data(TensorData::new(logits, [n]), &device);
                let got = device_argmax(t).into_data().iter::<i64>().next();
                assert_eq!(
                    got,
                    Some(i64::from(want)),
                    "n {n}, maximum at {at}, {twice:?}"
                );
            }
        }
    }

    #[test]
    fn greedy_takes_the_first_maximum() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, -1.0]), 1);
        assert_eq!(argmax(&[f32::NAN, 0.5, 2.0]), 2);
        assert_eq!(Sampler::greedy().sample(&[0.1, 0.2, 0.15]), 1);
    }

    #[test]
    fn sampling_follows_the_distribution_and_the_seed() {
        // Logits of probabilities 0.5, 0.3, 0.2, 0 (−inf): frequencies within 3 sigma.
        let logits = [0.5f32.ln(), 0.3f32.ln(), 0.2f32.ln(), f32::NEG_INFINITY];
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        let config = SamplingConfig {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            seed,
        };
        let mut s = Sampler::new(config);
        let n = 20_000;
        let mut counts = [0usize; 4];
        for _ in 0..n {
            counts[s.sample(&logits) as usize] += 1;
        }
        for (i, p) in [0.5, 0.3, 0.2, 0.0].into_iter().enumerate() {
            let sigma = (n as f64 * p * (1.0 - p)).sqrt();
            let diff = (counts[i] as f64 - n as f64 * p).abs();
            assert!(
                diff <= 3.0 * sigma + 1e-9,
                "seed {seed}: token {i}: {counts:?}"
            );
        }
        // Same seed, same tokens.
        let (mut a, mut b) = (Sampler::new(config), Sampler::new(config));
        assert!((0..100).all(|_| a.sample(&logits) == b.sample(&logits)));
        // top-k 2 never picks the third; top-p 0.6 keeps the first two (0.5 + 0.3 ≥ 0.6).
        let mut k2 = Sampler::new(SamplingConfig { top_k: 2, ..config });
        assert!((0..1000).all(|_| k2.sample(&logits) < 2));
        let mut p6 = Sampler::new(SamplingConfig {
            top_p: 0.6,
            ..config
        });
        assert!((0..1000).all(|_| p6.sample(&logits) < 2));
    }
}
