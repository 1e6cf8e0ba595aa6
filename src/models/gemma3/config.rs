//! The model's hyperparameters, read from `gemma3.*` metadata.

use thiserror::Error;

use crate::gguf::{GgufError, GgufFile};
use crate::nn::QuantLinearError;

/// Why a Gemma 3 model could not be loaded or run.
#[derive(Debug, Error)]
pub enum Gemma3Error {
    /// The file is not a `gemma3` model.
    #[error("general.architecture is {found:?}, expected \"gemma3\"")]
    Architecture {
        /// What the file says.
        found: String,
    },
    /// A hyperparameter breaks a rule the model needs.
    #[error("metadata key {key:?} = {value}: {rule}")]
    Config {
        /// The key.
        key: &'static str,
        /// Its value.
        value: u64,
        /// The rule it breaks.
        rule: &'static str,
    },
    /// A tensor's dims do not fit the hyperparameters.
    #[error("tensor {name:?} has dims {dims:?} (ne order), expected {expected:?}")]
    TensorShape {
        /// The tensor.
        name: String,
        /// Its dims.
        dims: Vec<u64>,
        /// The dims the hyperparameters give.
        expected: Vec<u64>,
    },
    /// The prompt and generation would run past the model's context length.
    #[error("{needed} positions needed, the context holds {context_length}")]
    ContextFull {
        /// Positions the call needs.
        needed: usize,
        /// `gemma3.context_length`.
        context_length: usize,
    },
    /// A token id outside the vocabulary.
    #[error("token id {id} is outside the vocabulary of {vocab_size}")]
    TokenOutOfRange {
        /// The id.
        id: u32,
        /// The vocabulary size.
        vocab_size: usize,
    },
    /// An empty token sequence was given.
    #[error("no tokens to run")]
    EmptyInput,
    /// The device refused to replay a recorded decoding step.
    #[error("replaying the recorded decoding step failed: {0}")]
    Replay(String),
    /// Reading the file failed.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// Building a projection failed.
    #[error(transparent)]
    Linear(#[from] QuantLinearError),
}

/// Gemma 3 hyperparameters.
#[derive(Clone, Debug, PartialEq)]
pub struct Gemma3Config {
    /// Transformer blocks.
    pub n_layers: usize,
    /// Residual width.
    pub d_model: usize,
    /// MLP hidden width.
    pub d_ff: usize,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads (grouped-query attention: `n_heads` is a multiple).
    pub n_kv_heads: usize,
    /// Width of a query/key head (`attention.key_length`).
    pub head_dim: usize,
    /// RMS norm epsilon.
    pub eps: f64,
    /// RoPE base of the global layers (`rope.freq_base`).
    pub rope_base_global: f32,
    /// RoPE position scale of the global layers (1 / `rope.scaling.factor` for linear scaling).
    pub rope_scale_global: f32,
    /// RoPE base of the sliding-window layers: `rope.freq_base_swa` where the file has it, else
    /// 10 000 (every Gemma 3; llama.cpp's default).
    pub rope_base_local: f32,
    /// Sliding window: a local layer's query at position p sees keys at p − window + 1 ..= p.
    pub sliding_window: usize,
    /// Every `swa_pattern`-th layer is global: `attention.sliding_window_pattern` where the file
    /// has it, else 6 (Gemma 3: layers 5, 11, 17, …).
    pub swa_pattern: usize,
    /// Query scale (`1/√key_length`).
    pub attn_scale: f32,
    /// Longest sequence the model was trained on.
    pub context_length: usize,
    /// Vocabulary size (rows of `token_embd.weight`).
    pub vocab_size: usize,
}

impl Gemma3Config {
    /// Reads the hyperparameters of a `gemma3` GGUF, checking each against what the model needs.
    pub fn from_gguf(file: &GgufFile) -> Result<Self, Gemma3Error> {
        let arch = file.architecture()?;
        if arch != "gemma3" {
            return Err(Gemma3Error::Architecture {
                found: arch.to_string(),
            });
        }
        let positive = |key: &'static str| -> Result<usize, Gemma3Error> {
            let v = file.get_usize(key)?;
            if v == 0 {
                return Err(Gemma3Error::Config {
                    key,
                    value: 0,
                    rule: "must be positive",
                });
            }
            Ok(v)
        };
        let n_heads = positive("gemma3.attention.head_count")?;
        let n_kv_heads = match file.get("gemma3.attention.head_count_kv") {
            Some(_) => positive("gemma3.attention.head_count_kv")?,
            None => n_heads,
        };
        if n_heads % n_kv_heads != 0 {
            return Err(Gemma3Error::Config {
                key: "gemma3.attention.head_count_kv",
                value: n_kv_heads as u64,
                rule: "must divide attention.head_count",
            });
        }
        let d_model = positive("gemma3.embedding_length")?;
        let head_dim = match file.get("gemma3.attention.key_length") {
            Some(_) => positive("gemma3.attention.key_length")?,
            None => d_model / n_heads,
        };
        if head_dim % 2 != 0 {
            return Err(Gemma3Error::Config {
                key: "gemma3.attention.key_length",
                value: head_dim as u64,
                rule: "RoPE needs an even head width",
            });
        }
        if file.get("gemma3.attention.value_length").is_some() {
            let v = file.get_usize("gemma3.attention.value_length")?;
            if v != head_dim {
                return Err(Gemma3Error::Config {
                    key: "gemma3.attention.value_length",
                    value: v as u64,
                    rule: "must equal attention.key_length",
                });
            }
        }
        let rope_scale_global = match file.get("gemma3.rope.scaling.factor") {
            Some(_) => {
                let f = file.get_f32("gemma3.rope.scaling.factor")?;
                if f > 0.0 { 1.0 / f } else { 1.0 }
            }
            None => 1.0,
        };
        let vocab_size = file
            .require_tensor("token_embd.weight")?
            .dims
            .get(1)
            .copied()
            .unwrap_or(0) as usize;
        Ok(Gemma3Config {
            n_layers: positive("gemma3.block_count")?,
            d_model,
            d_ff: positive("gemma3.feed_forward_length")?,
            n_heads,
            n_kv_heads,
            head_dim,
            eps: f64::from(file.get_f32("gemma3.attention.layer_norm_rms_epsilon")?),
            rope_base_global: match file.get("gemma3.rope.freq_base") {
                Some(_) => file.get_f32("gemma3.rope.freq_base")?,
                None => 1_000_000.0,
            },
            rope_scale_global,
            rope_base_local: match file.get("gemma3.rope.freq_base_swa") {
                Some(_) => file.get_f32("gemma3.rope.freq_base_swa")?,
                None => 10_000.0,
            },
            sliding_window: positive("gemma3.attention.sliding_window")?,
            swa_pattern: match file.get("gemma3.attention.sliding_window_pattern") {
                Some(_) => positive("gemma3.attention.sliding_window_pattern")?,
                None => 6,
            },
            attn_scale: 1.0 / (head_dim as f32).sqrt(),
            context_length: positive("gemma3.context_length")?,
            vocab_size,
        })
    }

    /// Whether layer `layer` attends globally (else: sliding window).
    pub fn is_global(&self, layer: usize) -> bool {
        layer % self.swa_pattern == self.swa_pattern - 1
    }
}
