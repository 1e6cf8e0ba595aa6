//! `--bench`: what llama-bench reports, on the same terms — prompt processing of `--pp` tokens
//! (one forward over the whole prompt) and generation of `--tg` tokens (one token per step), in
//! tokens/s as the mean ± standard deviation over `--reps` repetitions, each on an empty KV
//! cache, after a warm-up run of both that compiles and tunes every kernel — plus what a cold
//! process costs before its first token (loading, then compilation and autotuning). With
//! `--llama-bench PATH` it then runs llama.cpp's `llama-bench` on the same file and tests and
//! prints both side by side.

use std::path::PathBuf;
use std::process::Command;
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
    /// How the generation test chooses its tokens (greedy by default, as llama-bench, which
    /// samples nothing; `--temperature` times a sampler, each repetition from its seed).
    pub sampling: SamplingConfig,
    /// llama.cpp's benchmark to run after ours, for the side-by-side table.
    pub llama: Option<LlamaBench>,
}

/// How to run llama.cpp's `llama-bench` on the same terms as ours.
pub struct LlamaBench {
    /// The `llama-bench` executable.
    pub exe: PathBuf,
    /// The GGUF file both run.
    pub model: PathBuf,
    /// Whether our backend is a GPU (llama.cpp then offloads every layer: `-ngl 99`), else
    /// the CPU (`-ngl 0`, as many threads as Flex's pool: `-t`).
    pub gpu: bool,
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
    // One sequence from an empty cache; generation never stops early.
    let sequence = |tokens: &[u32], new: usize| {
        let mut cache = KvCache::new(model.config());
        let mut sampler = Sampler::new(bench.sampling);
        model
            .generate(tokens, new, &mut cache, &mut sampler, |_| false)
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
    let s = &bench.sampling;
    let sampled = if Sampler::new(*s).is_greedy() {
        String::new()
    } else {
        format!(
            " (sampled: temperature {}, top-k {}, top-p {})",
            s.temperature, s.top_k, s.top_p
        )
    };
    let ours = [
        (format!("pp{}", prompt.len()), mean_sd(&pp)),
        (format!("tg{}{sampled}", bench.tg), mean_sd(&tg)),
    ];
    let Some(llama) = &bench.llama else {
        println!("| test | tokens/s |");
        println!("|---|---:|");
        for (name, (mean, sd)) in &ours {
            println!("| {name} | {mean:.2} ± {sd:.2} |");
        }
        return Ok(());
    };
    let theirs = llama_bench(llama, prompt.len(), bench.tg, bench.reps)?;
    println!("| test | burn-gguf tokens/s | llama.cpp tokens/s | ratio |");
    println!("|---|---:|---:|---:|");
    for ((name, (mean, sd)), (l_mean, l_sd)) in ours.iter().zip(theirs) {
        println!(
            "| {name} | {mean:.2} ± {sd:.2} | {l_mean:.2} ± {l_sd:.2} | {:.2} |",
            mean / l_mean
        );
    }
    Ok(())
}

/// Runs `llama-bench` for the same prompt-processing (`pp` tokens) and generation (`tg`
/// tokens) tests, `reps` repetitions each, and gives its mean ± standard deviation in tokens/s
/// for each, in that order.
fn llama_bench(
    llama: &LlamaBench,
    pp: usize,
    tg: usize,
    reps: usize,
) -> Result<[(f64, f64); 2], String> {
    let mut cmd = Command::new(&llama.exe);
    cmd.arg("-m").arg(&llama.model);
    for (flag, value) in [("-p", pp), ("-n", tg), ("-r", reps)] {
        cmd.arg(flag).arg(value.to_string());
    }
    cmd.args(["-o", "csv", "-ngl", if llama.gpu { "99" } else { "0" }]);
    if !llama.gpu {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        cmd.arg("-t").arg(threads.to_string());
    }
    eprintln!("running {cmd:?}");
    let out = cmd
        .output()
        .map_err(|e| format!("{}: {e}", llama.exe.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(format!("llama-bench failed ({}):\n{stderr}", out.status));
    }
    let mut lines = stdout.lines().filter(|l| !l.trim().is_empty());
    let header = csv_fields(lines.next().ok_or("llama-bench printed nothing")?);
    let column = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .ok_or(format!("llama-bench's CSV has no {name} column"))
    };
    let (n_prompt, n_gen) = (column("n_prompt")?, column("n_gen")?);
    let (avg, sd) = (column("avg_ts")?, column("stddev_ts")?);
    let rows: Vec<Vec<String>> = lines.map(csv_fields).collect();
    let find = |prompt: usize, generated: usize| {
        rows.iter()
            .find(|r| {
                r.get(n_prompt) == Some(&prompt.to_string())
                    && r.get(n_gen) == Some(&generated.to_string())
            })
            .and_then(|r| Some((r.get(avg)?.parse().ok()?, r.get(sd)?.parse().ok()?)))
            .ok_or(format!(
                "llama-bench gave no result for {prompt} prompt and {generated} generated tokens"
            ))
    };
    Ok([find(pp, 0)?, find(0, tg)?])
}

/// The fields of one line of llama-bench's CSV (each quoted, a quote inside doubled).
fn csv_fields(line: &str) -> Vec<String> {
    let (mut fields, mut field, mut quoted) = (Vec::new(), String::new(), false);
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(std::mem::take(&mut field)),
            c => field.push(c),
        }
    }
    fields.push(field);
    fields
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
