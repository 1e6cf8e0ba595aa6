//! Building a [`Gemma3`] from a GGUF file, and the summary of where each tensor went.

use std::fmt;

use burn::module::Param;
use burn::tensor::Device;

use super::attention::Attention;
use super::mlp::Mlp;
use super::model::{Block, Gemma3};
use super::norm::RmsNorm;
use super::{Gemma3Config, Gemma3Error};
use crate::gguf::GgufFile;
use crate::nn::load_float_tensor;
use crate::nn::{GgufEmbedding, GgufLinear};
use crate::quant::GgmlType;

/// How a tensor of the file is held on the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TensorPlacement {
    /// Its GGUF blocks, run by the fused quantized product.
    Quantized,
    /// Dequantized once at load to the backend's float type.
    Dequantized,
    /// Stored as float in the file, loaded as is.
    Float,
}

/// One tensor's way onto the device.
#[derive(Clone, Debug)]
pub struct LoadedTensor {
    /// Its name in the file.
    pub name: String,
    /// Its type in the file.
    pub ggml_type: GgmlType,
    /// How it is held.
    pub placement: TensorPlacement,
    /// Elements.
    pub elements: u64,
    /// Bytes in the file.
    pub file_bytes: usize,
    /// Bytes on the device.
    pub device_bytes: usize,
}

/// Which tensors went where, and the model's memory (see its `Display`).
#[derive(Clone, Debug, Default)]
pub struct LoadSummary {
    /// Every tensor loaded, in load order.
    pub tensors: Vec<LoadedTensor>,
}

impl LoadSummary {
    /// Bytes the model holds on the device.
    pub fn device_bytes(&self) -> usize {
        self.tensors.iter().map(|t| t.device_bytes).sum()
    }

    /// What the weights would take dequantized to f32 throughout.
    pub fn f32_bytes(&self) -> usize {
        self.tensors
            .iter()
            .map(|t| match t.placement {
                TensorPlacement::Quantized => t.elements as usize * 4,
                _ => t.device_bytes,
            })
            .sum()
    }

    fn push(
        &mut self,
        file: &GgufFile,
        name: &str,
        placement: TensorPlacement,
        device_bytes: usize,
    ) {
        let info = file.tensor_info(name).expect("loaded tensors exist");
        self.tensors.push(LoadedTensor {
            name: name.to_string(),
            ggml_type: info.ggml_type,
            placement,
            elements: info.n_elements(),
            file_bytes: info.n_bytes().unwrap_or(0) as usize,
            device_bytes,
        });
    }
}

impl fmt::Display for LoadSummary {
    /// One line per (path, type): how many tensors, which (block-local names, `blk.*.` folded),
    /// bytes in the file and on the device; then the totals.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mib = |b: usize| b as f64 / (1024.0 * 1024.0);
        let mut groups: Vec<(TensorPlacement, GgmlType)> = self
            .tensors
            .iter()
            .map(|t| (t.placement, t.ggml_type))
            .collect();
        groups.sort_by_key(|&(p, t)| (p as u8, t.id()));
        groups.dedup();
        for (placement, ggml_type) in groups {
            let group: Vec<&LoadedTensor> = self
                .tensors
                .iter()
                .filter(|t| t.placement == placement && t.ggml_type == ggml_type)
                .collect();
            let mut names: Vec<String> = Vec::new();
            for t in &group {
                let name = match t.name.strip_prefix("blk.") {
                    Some(rest) => format!("blk.*.{}", rest.split_once('.').map_or(rest, |r| r.1)),
                    None => t.name.clone(),
                };
                if !names.contains(&name) {
                    names.push(name);
                }
            }
            let what = match placement {
                TensorPlacement::Quantized => "quantized, fused",
                TensorPlacement::Dequantized => "dequantized to f32 at load",
                TensorPlacement::Float => "float",
            };
            writeln!(
                f,
                "  {ggml_type:>5} {what}: {} tensors, {:.1} MiB in the file, {:.1} MiB on the device: {}",
                group.len(),
                mib(group.iter().map(|t| t.file_bytes).sum()),
                mib(group.iter().map(|t| t.device_bytes).sum()),
                names.join(", ")
            )?;
        }
        let file: usize = self.tensors.iter().map(|t| t.file_bytes).sum();
        write!(
            f,
            "  memory: {:.1} MiB on the device for {:.1} MiB of weights in the file ({:.2}x; {:.1} MiB if every weight were f32)",
            mib(self.device_bytes()),
            mib(file),
            self.device_bytes() as f64 / file.max(1) as f64,
            mib(self.f32_bytes())
        )
    }
}

/// Progress of [`Gemma3::from_gguf`].
#[derive(Clone, Copy, Debug)]
pub struct LoadEvent<'a> {
    /// Tensors loaded so far.
    pub done: usize,
    /// Tensors to load.
    pub total: usize,
    /// The tensor just loaded.
    pub name: &'a str,
}

struct Loader<'a, F: FnMut(LoadEvent)> {
    file: &'a GgufFile,
    device: &'a Device,
    config: &'a Gemma3Config,
    summary: LoadSummary,
    progress: F,
    done: usize,
    total: usize,
}

impl<F: FnMut(LoadEvent)> Loader<'_, F> {
    fn tick(&mut self, name: &str) {
        self.done += 1;
        (self.progress)(LoadEvent {
            done: self.done,
            total: self.total,
            name,
        });
    }

    fn expect_dims(&self, name: &str, expected: &[u64]) -> Result<(), Gemma3Error> {
        let info = self.file.require_tensor(name)?;
        if info.dims != expected {
            return Err(Gemma3Error::TensorShape {
                name: name.to_string(),
                dims: info.dims.clone(),
                expected: expected.to_vec(),
            });
        }
        Ok(())
    }

    fn norm(&mut self, name: &str, width: usize) -> Result<RmsNorm, Gemma3Error> {
        self.expect_dims(name, &[width as u64])?;
        let weight = load_float_tensor::<1>(self.file, name, self.device)?;
        let info = self.file.require_tensor(name)?;
        let placement = if info.ggml_type.is_quantized() {
            TensorPlacement::Dequantized
        } else {
            TensorPlacement::Float
        };
        self.summary
            .push(self.file, name, placement, width * weight.dtype().size());
        self.tick(name);
        Ok(RmsNorm {
            weight: Param::from_tensor(weight),
            eps: self.config.eps,
        })
    }

    /// How tensor `name` ended up held, given whether it stayed on the fused path.
    fn placement(&self, name: &str, fused: bool) -> Result<TensorPlacement, Gemma3Error> {
        Ok(if fused {
            TensorPlacement::Quantized
        } else if self.file.require_tensor(name)?.ggml_type.is_quantized() {
            TensorPlacement::Dequantized
        } else {
            TensorPlacement::Float
        })
    }

    fn linear(&mut self, name: &str, d_in: usize, d_out: usize) -> Result<GgufLinear, Gemma3Error> {
        self.expect_dims(name, &[d_in as u64, d_out as u64])?;
        let linear = GgufLinear::from_gguf_dequantized(self.file, name, self.device)?;
        let placement = self.placement(name, linear.is_fused())?;
        self.summary
            .push(self.file, name, placement, linear.memory_bytes());
        self.tick(name);
        Ok(linear)
    }
}

impl Gemma3 {
    /// Loads a `gemma3` GGUF onto `device`, checking every tensor's dims against the
    /// hyperparameters. `progress` is called after each tensor.
    pub fn from_gguf(
        file: &GgufFile,
        device: &Device,
        progress: impl FnMut(LoadEvent),
    ) -> Result<(Self, LoadSummary), Gemma3Error> {
        let config = Gemma3Config::from_gguf(file)?;
        let c = &config;
        let mut l = Loader::<_> {
            file,
            device,
            config: c,
            summary: LoadSummary::default(),
            progress,
            done: 0,
            total: 2 + 13 * c.n_layers,
        };

        l.expect_dims(
            "token_embd.weight",
            &[c.d_model as u64, c.vocab_size as u64],
        )?;
        let embed = GgufEmbedding::from_gguf_dequantized(file, "token_embd.weight", device)?;
        let placement = l.placement("token_embd.weight", embed.is_fused())?;
        l.summary
            .push(file, "token_embd.weight", placement, embed.memory_bytes());
        l.tick("token_embd.weight");

        let (q_out, kv_out) = (c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim);
        let mut layers = Vec::with_capacity(c.n_layers);
        for i in 0..c.n_layers {
            let n = |s: &str| format!("blk.{i}.{s}.weight");
            let attn = Attention {
                q: l.linear(&n("attn_q"), c.d_model, q_out)?,
                k: l.linear(&n("attn_k"), c.d_model, kv_out)?,
                v: l.linear(&n("attn_v"), c.d_model, kv_out)?,
                o: l.linear(&n("attn_output"), q_out, c.d_model)?,
                q_norm: l.norm(&n("attn_q_norm"), c.head_dim)?,
                k_norm: l.norm(&n("attn_k_norm"), c.head_dim)?,
                n_heads: c.n_heads,
                n_kv_heads: c.n_kv_heads,
                head_dim: c.head_dim,
                scale: f64::from(c.attn_scale),
            };
            let mlp = Mlp {
                gate: l.linear(&n("ffn_gate"), c.d_model, c.d_ff)?,
                up: l.linear(&n("ffn_up"), c.d_model, c.d_ff)?,
                down: l.linear(&n("ffn_down"), c.d_ff, c.d_model)?,
            };
            layers.push(Block {
                attn_norm: l.norm(&n("attn_norm"), c.d_model)?,
                attn,
                post_attn_norm: l.norm(&n("post_attention_norm"), c.d_model)?,
                ffn_norm: l.norm(&n("ffn_norm"), c.d_model)?,
                mlp,
                post_ffn_norm: l.norm(&n("post_ffw_norm"), c.d_model)?,
                global: c.is_global(i),
            });
        }
        let output_norm = l.norm("output_norm.weight", c.d_model)?;
        let summary = l.summary;
        let model = Gemma3 {
            embed,
            layers,
            output_norm,
            config,
        };
        Ok((model, summary))
    }
}
