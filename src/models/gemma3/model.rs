//! The Gemma 3 transformer: blocks, forward pass over a KV cache, generation.

use std::time::{Duration, Instant};

use burn::backend::Dispatch;
use burn::module::Module;
use burn::tensor::{Int, Tensor, TensorData};

use super::attention::Attention;
use super::cache::KvCache;
use super::decode::{DeviceDecoder, read_token};
use super::mlp::Mlp;
use super::norm::RmsNorm;
use super::rope::RopeTables;
use super::{Gemma3Config, Gemma3Error};
use crate::models::sampling::Sampler;
use crate::nn::{GgufEmbedding, GgufLinear};
use crate::ops::{DecoderLayerConfig, DecoderLayerWeights, Draw, Positions, sample_token};
use crate::quant::Activations;

/// One transformer block: norms before and after both attention and the MLP.
#[derive(Module, Debug)]
pub struct Block {
    /// `attn_norm`.
    pub attn_norm: RmsNorm,
    /// The attention.
    pub attn: Attention,
    /// `post_attention_norm`.
    pub post_attn_norm: RmsNorm,
    /// `ffn_norm`.
    pub ffn_norm: RmsNorm,
    /// The MLP.
    pub mlp: Mlp,
    /// `post_ffw_norm`.
    pub post_ffn_norm: RmsNorm,
    /// Whether the layer attends globally (else: sliding window).
    pub global: bool,
}

impl Block {
    /// The layer over `x` `[1, t, d_model]` at the `t` positions from `positions`' first, its
    /// keys and values written into its cache `buffers` (given back with the output): one
    /// [`ops::decoder_layer`](crate::ops::decoder_layer).
    pub(super) fn forward(
        &self,
        x: Tensor<3>,
        rope: &RopeTables,
        positions: Positions<Dispatch>,
        window: Option<usize>,
        buffers: (Tensor<4>, Tensor<4>),
    ) -> (Tensor<3>, (Tensor<4>, Tensor<4>)) {
        let a = &self.attn;
        let config = DecoderLayerConfig {
            n_heads: a.n_heads,
            n_kv_heads: a.n_kv_heads,
            head_dim: a.head_dim,
            eps: self.attn_norm.eps,
            window,
            scale: a.scale,
        };
        crate::ops::decoder_layer(x, self.weights(), buffers, rope.tables(), positions, config)
    }

    /// The layer's weights as [`ops::decoder_layer`](crate::ops::decoder_layer) takes them.
    fn weights(&self) -> DecoderLayerWeights<Dispatch> {
        let norm = |n: &RmsNorm| n.weight.val().into_dispatch();
        let (a, m) = (&self.attn, &self.mlp);
        DecoderLayerWeights {
            attn_norm: norm(&self.attn_norm),
            q: a.q.layer_linear(),
            k: a.k.layer_linear(),
            v: a.v.layer_linear(),
            o: a.o.layer_linear(),
            q_norm: norm(&a.q_norm),
            k_norm: norm(&a.k_norm),
            post_attn_norm: norm(&self.post_attn_norm),
            ffn_norm: norm(&self.ffn_norm),
            gate: m.gate.layer_linear(),
            up: m.up.layer_linear(),
            down: m.down.layer_linear(),
            post_ffn_norm: norm(&self.post_ffn_norm),
        }
    }
}

/// A Gemma 3 text model loaded from a GGUF file ([`Gemma3::from_gguf`]).
#[derive(Module, Debug)]
pub struct Gemma3 {
    /// `token_embd.weight`, `[vocab, d_model]`; also the output projection (tied: one copy).
    pub embed: GgufEmbedding,
    /// The blocks.
    pub layers: Vec<Block>,
    /// `output_norm`.
    pub output_norm: RmsNorm,
    #[module(skip)]
    pub(super) config: Gemma3Config,
}

/// What [`Gemma3::generate`] produced.
#[derive(Clone, Debug)]
pub struct Generation {
    /// The generated tokens (not the prompt, not the token that stopped generation).
    pub tokens: Vec<u32>,
    /// Whether the stop callback ended it (else it ran to `max_new_tokens`).
    pub stopped: bool,
    /// Prompt processing: from the call to the first sampled token.
    pub prompt_time: Duration,
    /// Everything after the first sampled token.
    pub generation_time: Duration,
    /// Tokens run through the model in `generation_time`.
    pub generated_steps: usize,
}

impl Gemma3 {
    /// The hyperparameters.
    pub fn config(&self) -> &Gemma3Config {
        &self.config
    }

    /// The model with every projection, and the tied output head, reading its activations as
    /// `activations` says where its weight can ([`GgufLinear::with_activations`]: Q6_K's planes
    /// read float ones). [`Activations::Int8`] rounds each run of activations to int8 before the
    /// fused product, as llama.cpp does, and multiplies integers: Gemma-3 270M generates
    /// 1.2–1.4× faster so on the CPU, but 0.8× on CUDA, where each projection's rounding is a
    /// launch of its own (PERF.md, session 28); the text may part from the float model's at a
    /// near tie. The model loads with [`Activations::Float`].
    pub fn with_activations(mut self, activations: Activations) -> Self {
        let set = |l: GgufLinear| l.with_activations(activations);
        self.embed = self.embed.with_activations(activations);
        self.layers = (self.layers.into_iter())
            .map(|mut b| {
                let (a, m) = (b.attn, b.mlp);
                b.attn = Attention {
                    q: set(a.q),
                    k: set(a.k),
                    v: set(a.v),
                    o: set(a.o),
                    ..a
                };
                b.mlp = Mlp {
                    gate: set(m.gate),
                    up: set(m.up),
                    down: set(m.down),
                };
                b
            })
            .collect();
        self
    }

    /// Runs `tokens` (the positions after those in `cache`, which it extends) and returns the
    /// final hidden states after `output_norm`, `[1, tokens, d_model]`.
    pub fn hidden(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Tensor<3>, Gemma3Error> {
        let c = &self.config;
        if tokens.is_empty() {
            return Err(Gemma3Error::EmptyInput);
        }
        if let Some(&id) = tokens.iter().find(|&&id| id as usize >= c.vocab_size) {
            return Err(Gemma3Error::TokenOutOfRange {
                id,
                vocab_size: c.vocab_size,
            });
        }
        let (start, t) = (cache.len(), tokens.len());
        if start + t > c.context_length {
            return Err(Gemma3Error::ContextFull {
                needed: start + t,
                context_length: c.context_length,
            });
        }
        let device = self.embed.device();
        let ids: Vec<i32> = tokens.iter().map(|&id| id as i32).collect();
        let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [1, t]), &device);
        let mut x = self
            .embed
            .forward::<2, 3>(ids)
            .mul_scalar((c.d_model as f32).sqrt());

        cache.reserve(t);
        let (rope_local, rope_global) = cache.rope_tables(&device);
        for (i, layer) in self.layers.iter().enumerate() {
            let (rope, window) = if layer.global {
                (&rope_global, None)
            } else {
                (&rope_local, Some(c.sliding_window))
            };
            let buffers = cache.take(i, 1, &device);
            let at = Positions::Host { start };
            let (y, buffers) = layer.forward(x, rope, at, window, buffers);
            cache.put(i, buffers);
            x = y;
        }
        cache.advance(t);
        Ok(self.output_norm.forward(x))
    }

    /// Logits of hidden states `[n, d_model]`: `[n, vocab]` (the embedding as output projection).
    pub fn logits(&self, hidden: Tensor<2>) -> Tensor<2> {
        self.embed.project(hidden)
    }

    /// Runs `tokens` after `cache` and returns the logits of every position, `[tokens, vocab]`.
    pub fn forward(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Tensor<2>, Gemma3Error> {
        let hidden = self.hidden(tokens, cache)?;
        Ok(self.logits(hidden.reshape([tokens.len(), self.config.d_model])))
    }

    /// Runs `tokens` after `cache` and returns the logits of the last position, `[vocab]`.
    pub fn forward_last(
        &self,
        tokens: &[u32],
        cache: &mut KvCache,
    ) -> Result<Tensor<1>, Gemma3Error> {
        let hidden = self.hidden(tokens, cache)?;
        let last = hidden
            .narrow(1, tokens.len() - 1, 1)
            .reshape([1, self.config.d_model]);
        Ok(self.logits(last).reshape([self.config.vocab_size]))
    }

    /// Generates up to `max_new_tokens` after `prompt` (run after whatever `cache` holds).
    /// `on_token` sees each sampled token and returns `true` to stop there (the stopping token,
    /// e.g. an end-of-turn, is left out of the result).
    ///
    /// Greedy settings and a top-k of 1..=[`MAX_DEVICE_TOP_K`] choose each token on the
    /// model's device, reading back only its id (on the GPU the step is recorded once and
    /// replayed), with `sampler`'s draws: the same tokens as [`Sampler::sample`] on the logits,
    /// but for a draw within f32 rounding of a boundary between two candidates. A top-k of 0
    /// (every token) or above the limit reads the logits back each step.
    ///
    /// [`MAX_DEVICE_TOP_K`]: crate::cpu::sampling::MAX_DEVICE_TOP_K
    pub fn generate(
        &self,
        prompt: &[u32],
        max_new_tokens: usize,
        cache: &mut KvCache,
        sampler: &mut Sampler,
        mut on_token: impl FnMut(u32) -> bool,
    ) -> Result<Generation, Gemma3Error> {
        let started = Instant::now();
        let mut out = Generation {
            tokens: Vec::new(),
            stopped: false,
            prompt_time: Duration::ZERO,
            generation_time: Duration::ZERO,
            generated_steps: 0,
        };
        if max_new_tokens == 0 {
            return Ok(out);
        }
        // every position of the generation, so that the buffers keep their shape throughout
        let c = &self.config;
        let total = (cache.len() + prompt.len() + max_new_tokens - 1).min(c.context_length);
        cache.reserve(total.saturating_sub(cache.len()));
        let mut token = next_token(self.forward_last(prompt, cache)?, sampler);
        out.prompt_time = started.elapsed();
        let first_token_at = Instant::now();
        let sampling = sampler.token_sampling();
        let mut on_device = sampling
            .runs_on_device()
            .then(|| DeviceDecoder::new(self, token, cache, sampler));
        loop {
            if on_token(token) {
                out.stopped = true;
                break;
            }
            out.tokens.push(token);
            if out.tokens.len() == max_new_tokens {
                break;
            }
            token = match &mut on_device {
                Some(decoder) => decoder.step(self, cache)?,
                None => next_token(self.forward_last(&[token], cache)?, sampler),
            };
            out.generated_steps += 1;
        }
        out.generation_time = first_token_at.elapsed();
        if on_device.is_some() && !sampling.is_greedy() {
            // the steps picked with the sampler's next draws, from a table
            sampler.skip_draws(out.generated_steps);
        }
        Ok(out)
    }
}

/// The token `sampler` picks from `logits` `[vocab]`, on their device where the settings allow
/// ([`sample_token`]: greedy or a top-k of 1..=[`MAX_DEVICE_TOP_K`]): only the token id is read
/// back, not the logits (1 MiB for Gemma 3's vocabulary). Other settings (top-k 0: every token)
/// read the logits back and pick on the host.
///
/// [`MAX_DEVICE_TOP_K`]: crate::cpu::sampling::MAX_DEVICE_TOP_K
fn next_token(logits: Tensor<1>, sampler: &mut Sampler) -> u32 {
    let sampling = sampler.token_sampling();
    if sampling.runs_on_device() {
        let value = sampler.next_draw() as f32;
        return read_token(sample_token(logits, sampling, Draw::Host { value }));
    }
    let values = logits
        .into_data()
        .try_into_vec_as::<f32>()
        .unwrap_or_default();
    sampler.sample(&values)
}
