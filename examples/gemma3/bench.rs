//! `--bench`: what llama-bench reports, on the same terms — prompt processing of `--pp` tokens
//! (one forward over the whole prompt) and generation of `--tg` tokens (one token per step), in
//! tokens/s as the mean ± standard deviation over `--reps` repetitions, each on an empty KV
//! cache, after a warm-up run of both that compiles and tunes every kernel — plus what a cold
//! process costs before its first token (loading, then compilation and autotuning).

use std::time::{Duration, Instant};

use burn_gguf::models::gemma3::{Gemma3, KvCache};
use burn_gguf::models::sampling::{Sampler, SamplingConfig};

/// The benchmark's settings.
pub struct Bench {
    /// Prompt tokens of the prompt-processing test.
    pub pp: usize,
    /// Generated tokens of the generation test.
    pub tg: usize,
    /// Timed repetitions of each test.
    pub reps: usize,
}

/// Runs the tests on `model` (loaded `loaded` after the process started) and prints their
/// table; `bos` starts every sequence, as llama-bench's do.
pub fn run(model: &Gemma3, bos: u32, bench: &Bench, loaded: Duration) -> Result<(), String> {
    let vocab = model.config().vocab_size as u64;
    // Prompt tokens: BOS, then ids from a fixed linear congruential sequence (llama-bench also
    // times random tokens; the values do not change the work).
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut prompt = vec![bos];
    prompt.extend((1..bench.pp.max(1)).map(|_| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((state >> 33) % vocab) as u32
    }));
    let greedy = || {
        Sampler::new(SamplingConfig {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            seed: 0,
        })
    };
    // One sequence from an empty cache; generation never stops early.
    let sequence = |tokens: &[u32], new: usize| {
        let mut cache = KvCache::new(model.config());
        model
            .generate(tokens, new, &mut cache, &mut greedy(), |_| false)
            .map_err(|e| e.to_string())
    };

    let cold = Instant::now();
    sequence(&prompt[..prompt.len().min(16)], 1)?;
    let first = cold.elapsed();
    eprintln!(
        "cold process: model loaded {:.2} s after start, then the first token of a {}-token \
         prompt {:.2} s later (compilation and autotuning included)",
        loaded.as_secs_f64(),
        prompt.len().min(16),
        first.as_secs_f64()
    );

    let warm_up = Instant::now();
    sequence(&prompt, 1)?;
    sequence(&[bos], bench.tg + 1)?;
    eprintln!(
        "warm-up (one run of each test): {:.2} s",
        warm_up.elapsed().as_secs_f64()
    );

    let mut pp = Vec::with_capacity(bench.reps);
    let mut tg = Vec::with_capacity(bench.reps);
    for _ in 0..bench.reps {
        let g = sequence(&prompt, 1)?;
        pp.push(prompt.len() as f64 / g.prompt_time.as_secs_f64().max(1e-9));
        // tg: `tg` decoding steps after the first token (the prompt is BOS alone).
        let g = sequence(&[bos], bench.tg + 1)?;
        tg.push(g.generated_steps as f64 / g.generation_time.as_secs_f64().max(1e-9));
    }
    println!("| test | tokens/s |");
    println!("|---|---:|");
    for (name, n, rates) in [("pp", prompt.len(), &pp), ("tg", bench.tg, &tg)] {
        let (mean, sd) = mean_sd(rates);
        println!("| {name}{n} | {mean:.2} ± {sd:.2} |");
    }
    Ok(())
}

/// Mean and sample standard deviation (0 for fewer than two values).
fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n.max(1.0);
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}
