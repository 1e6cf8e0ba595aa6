//! Choosing the next token from logits: greedy, or sampled with temperature, top-k and top-p
//! from a seeded generator (runs repeat exactly for a seed). The choice itself is
//! [`pick`]; [`crate::ops::sample_token`] makes it on the device.

pub use crate::cpu::sampling::{TokenSampling, argmax, pick};

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
        self.token_sampling().is_greedy()
    }

    /// The settings as the token choice takes them ([`pick`], [`ops::sample_token`]).
    ///
    /// [`ops::sample_token`]: crate::ops::sample_token
    pub fn token_sampling(&self) -> TokenSampling {
        let c = self.config;
        TokenSampling {
            top_k: c.top_k,
            temperature: c.temperature,
            top_p: c.top_p,
        }
    }

    /// Chooses a token ([`pick`] with this sampler's next draw; greedy takes none). Panics on
    /// empty logits; NaN logits are never chosen when any other is finite.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        assert!(!logits.is_empty(), "no logits to sample from");
        let r = self.next_draw();
        pick(logits, self.token_sampling(), r)
    }

    /// The next `n` draws as f32, without taking them (a clone draws them): the table a device
    /// step picks from, one draw per step, as [`Sampler::sample`] would take them.
    pub(crate) fn upcoming_draws(&self, n: usize) -> Vec<f32> {
        let mut ahead = self.clone();
        (0..n).map(|_| ahead.next_unit() as f32).collect()
    }

    /// Takes `n` draws (those a device step used).
    pub(crate) fn skip_draws(&mut self, n: usize) {
        for _ in 0..n {
            self.next_unit();
        }
    }

    /// The draw the next token is picked with, taken; greedy settings take none (0).
    pub(crate) fn next_draw(&mut self) -> f64 {
        if self.is_greedy() {
            0.0
        } else {
            self.next_unit()
        }
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

#[cfg(test)]
mod tests {
    use super::*;

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
