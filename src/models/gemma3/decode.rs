//! Decoding with the token and its position kept on the device, the next token chosen there
//! (greedy, or sampled with draws from a device table), recorded once and replayed where the
//! device can ([`DeviceDecoder`]).

use burn::backend::{Backend, BackendGraph, Dispatch};
use burn::tensor::{DType, Device, Int, IntDType, Tensor, TensorData};

use super::Gemma3Error;
use super::cache::KvCache;
use super::model::Gemma3;
use super::rope::RopeTables;
use crate::models::sampling::{Sampler, TokenSampling};
use crate::ops::{Draw, Positions, sample_token};

/// Eager steps before one is recorded: they compile, autotune and allocate everything a step
/// uses (Burn's fusion settles on its steady-state kernels from the second run), so the recorded
/// step needs no fresh allocation, which a capture cannot make.
const WARM_UP: usize = 3;

/// Where the decoder is in its life.
enum Phase {
    /// Running eager steps, the capture prepared; this many so far.
    WarmingUp(usize),
    /// One step recorded: each later step replays it, then reads the token it wrote.
    Recorded(Box<Recording>),
    /// The device records nothing (Flex) or the recording failed: every step eager.
    Eager,
}

/// A recorded decoding step.
struct Recording {
    /// The recorded launches.
    graph: BackendGraph<Dispatch>,
    /// The buffer the recorded step writes its token to, `[1]`.
    token: Tensor<1, Int>,
}

/// Decoding whose steps read the token and the position from device buffers and write the next
/// ones there (the token chosen on the device, [`sample_token`]; the position's increment; both in
/// place): a step uploads nothing and reads back one token id. A sampling decoder uploads its
/// draws once, a table indexed by position. After [`WARM_UP`] eager steps one step is
/// recorded through Burn's graph API (CubeCL's graph capture: a CUDA graph on CUDA; on wgpu the
/// step's dispatches with their bindings prebuilt) and each later step replays it: on CUDA one
/// dispatch instead of ≈ 230 kernel launches. Devices without graph support run the same steps
/// eagerly.
///
/// The cache's capacity must hold every position the decoder will run (it is not grown: the
/// recorded step is bound to its buffers).
pub(super) struct DeviceDecoder {
    /// `[1, 1]`: the token the next step runs.
    ids: Tensor<2, Int>,
    /// `[1]`, `U32`: its position.
    offset: Tensor<1, Int>,
    /// The RoPE tables of the cache's capacity.
    rope: (RopeTables, RopeTables),
    /// How a step chooses its token.
    choice: StepChoice,
    phase: Phase,
    device: Device,
    /// The last token run or returned.
    last: u32,
}

impl DeviceDecoder {
    /// A decoder whose first step runs `token` at the position after those `cache` holds and
    /// whose steps choose as `sampler` would, one of its draws per step (from a table of the
    /// draws it would take next: the caller takes them from `sampler` after the steps). The
    /// settings must run on the device ([`TokenSampling::runs_on_device`]).
    pub(super) fn new(model: &Gemma3, token: u32, cache: &mut KvCache, sampler: &Sampler) -> Self {
        let device = model.embed.device();
        let (ids, offset) = state(token, cache.len(), &device);
        let sampling = sampler.token_sampling();
        let draws = (!sampling.is_greedy()).then(|| {
            // the draw of the step at position p is at p
            let start = cache.len();
            let mut table = vec![0.0; start];
            table.extend(sampler.upcoming_draws(cache.capacity().saturating_sub(start).max(1)));
            let n = table.len();
            Tensor::<1>::from_data(TensorData::new(table, [n]), &device)
        });
        let phase = match Dispatch::graph_prepare(device.as_dispatch()) {
            Ok(()) => Phase::WarmingUp(0),
            Err(_) => Phase::Eager,
        };
        DeviceDecoder {
            ids,
            offset,
            rope: cache.rope_tables(&device),
            choice: StepChoice { sampling, draws },
            phase,
            device,
            last: token,
        }
    }

    /// Runs the current token, returns the next one.
    pub(super) fn step(&mut self, model: &Gemma3, cache: &mut KvCache) -> Result<u32, Gemma3Error> {
        let needed = cache.len() + 1;
        if needed > cache.capacity() || needed > model.config.context_length {
            return Err(Gemma3Error::ContextFull {
                needed,
                context_length: model.config.context_length,
            });
        }
        if matches!(self.phase, Phase::WarmingUp(WARM_UP)) {
            self.phase = self.record(model, cache);
        }
        let token = match &mut self.phase {
            Phase::WarmingUp(n) => {
                *n += 1;
                self.run_step(model, cache)
            }
            Phase::Recorded(recording) => {
                // SAFETY: every buffer the recorded step touches outlives the replay: the model's
                // weights (borrowed for the generation), the RoPE tables, `ids`, `offset` and
                // the output token (held here), the cache's buffers (held by the cache, never
                // regrown while this decoder lives: capacity checked above). Reads and replays
                // go to the one stream the step was recorded on (this thread's).
                unsafe { Dispatch::graph_replay(self.device.as_dispatch(), &recording.graph) }
                    .map_err(|e| Gemma3Error::Replay(e.to_string()))?;
                recording.token.clone()
            }
            Phase::Eager => self.run_step(model, cache),
        };
        cache.advance(1);
        self.last = read_token(token);
        Ok(self.last)
    }

    /// Runs one step on the decoder's state ([`Gemma3::device_step`]): eagerly, or into the
    /// capture in progress.
    fn run_step(&mut self, model: &Gemma3, cache: &mut KvCache) -> Tensor<1, Int> {
        model.device_step(
            &mut self.ids,
            &mut self.offset,
            &self.rope,
            &self.choice,
            cache,
        )
    }

    /// Records one step. The recording runs nothing on a hardware graph: the buffers keep the
    /// state the last eager step left. A device that cannot record ends the prepared capture
    /// and decodes eagerly.
    fn record(&mut self, model: &Gemma3, cache: &mut KvCache) -> Phase {
        let dispatch = self.device.as_dispatch();
        if Dispatch::graph_start_capture(dispatch).is_err() {
            let _ = Dispatch::graph_stop_capture(dispatch);
            return Phase::Eager;
        }
        // nothing else may hold `ids` and `offset` here: the step writes them in place, and the
        // recording must write the buffers the next replay reads
        let token = self.run_step(model, cache);
        match Dispatch::graph_stop_capture(self.device.as_dispatch()) {
            Ok(graph) => Phase::Recorded(Box::new(Recording { graph, token })),
            Err(_) => {
                // what the failed recording left in the state is unknown: the state the host
                // knows again (the cache's write at this position is redone by the next step)
                (self.ids, self.offset) = state(self.last, cache.len(), &self.device);
                Phase::Eager
            }
        }
    }
}

/// How a decoding step chooses its token.
pub(super) struct StepChoice {
    /// The settings (greedy, or a top-k the device op takes).
    sampling: TokenSampling,
    /// Unless greedy, the draws by position, `[positions]`: the step at position `p` picks with
    /// the `p`-th.
    draws: Option<Tensor<1>>,
}

/// `ids` `[1, 1]` holding `token` and `offset` `[1]` (`U32`) holding `position`.
fn state(token: u32, position: usize, device: &Device) -> (Tensor<2, Int>, Tensor<1, Int>) {
    (
        Tensor::from_data(TensorData::new(vec![token as i32], [1, 1]), device),
        Tensor::from_data(
            TensorData::new(vec![position as u32], [1]),
            (device, DType::U32),
        ),
    )
}

impl Drop for DeviceDecoder {
    /// Ends a capture prepared but never recorded (generation stopped during the warm-up), which
    /// would otherwise keep the device's stream in its capture state.
    fn drop(&mut self) {
        if matches!(self.phase, Phase::WarmingUp(_)) {
            let _ = Dispatch::graph_stop_capture(self.device.as_dispatch());
        }
    }
}

/// The id in a `[1]` token tensor (read back: a sync).
pub(super) fn read_token(token: Tensor<1, Int>) -> u32 {
    let data = token.into_data();
    data.iter::<i64>().next().map_or(0, |id| id as u32)
}

impl Gemma3 {
    /// One decoding step over device state: runs token `ids` `[1, 1]` at position `offset`
    /// `[1]` (`U32`) after what `cache` holds (its capacity reserved, `rope` its tables), chooses
    /// the next token on the device as `choice` says (a sampling choice with the draw at
    /// `offset`), writes it into `ids` and the next position into `offset` (in place where
    /// nothing else holds them), and returns it `[1]`. Nothing is uploaded or read back, so a
    /// recording replays it.
    fn device_step(
        &self,
        ids: &mut Tensor<2, Int>,
        offset: &mut Tensor<1, Int>,
        rope: &(RopeTables, RopeTables),
        choice: &StepChoice,
        cache: &mut KvCache,
    ) -> Tensor<1, Int> {
        let c = &self.config;
        let device = self.embed.device();
        let mut x = self
            .embed
            .forward::<2, 3>(ids.clone())
            .mul_scalar((c.d_model as f32).sqrt());
        for (i, layer) in self.layers.iter().enumerate() {
            let (table, window) = if layer.global {
                (&rope.1, None)
            } else {
                (&rope.0, Some(c.sliding_window))
            };
            let at = Positions::on_device(offset.clone());
            let buffers = cache.take(i, 1, &device);
            let (y, buffers) = layer.forward(x, table, at, window, buffers);
            cache.put(i, buffers);
            x = y;
        }
        let hidden = self.output_norm.forward(x).reshape([1, c.d_model]);
        let draw = match &choice.draws {
            Some(table) => Draw::on_device(table.clone(), offset.clone()),
            None => Draw::Host { value: 0.0 },
        };
        let token = sample_token(self.logits(hidden).reshape([-1]), choice.sampling, draw);
        let id = token
            .clone()
            .reshape([1, 1])
            .cast(IntDType::from(ids.dtype()));
        ids.inplace(|ids| ids.slice_assign([0..1, 0..1], id));
        offset.inplace(|o| {
            let next = o.clone().add_scalar(1);
            o.slice_assign(0..1, next)
        });
        token
    }
}
