//! The key/value cache of a generation.

use burn::tensor::{Device, Tensor};

use super::Gemma3Config;
use super::rope::RopeTables;

/// Smallest capacity the cache allocates (positions).
const MIN_CAPACITY: usize = 256;

/// Keys (after RoPE) and values of every position run so far, per layer, in buffers of
/// `[batch, kv_heads, capacity, head_dim]`: the capacity grows by doubling, so between growths
/// every decoding step has the same shapes (GPU runtimes compile and autotune kernels per shape;
/// a cache growing by one position a step would make them do so at every step). Positions at and
/// past [`len`](Self::len) are masked out of attention. Sliding-window layers keep every position
/// too and mask the old ones, so one position counter serves all layers.
///
/// It also keeps the RoPE tables (sliding-window and global layers') of every position it can
/// hold, on the device, rebuilt when it grows: a decoding step uploads nothing for RoPE.
#[derive(Clone, Debug)]
pub struct KvCache {
    layers: Vec<Option<(Tensor<4>, Tensor<4>)>>,
    len: usize,
    capacity: usize,
    rope: Option<(RopeTables, RopeTables)>,
    config: Gemma3Config,
}

impl KvCache {
    /// An empty cache for a model.
    pub fn new(config: &Gemma3Config) -> Self {
        KvCache {
            layers: vec![None; config.n_layers],
            len: 0,
            capacity: 0,
            rope: None,
            config: config.clone(),
        }
    }

    /// Positions held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no position has run yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Positions the buffers hold before they grow.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Forgets every position (to start a new sequence); keeps the buffers.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Makes room for `new` more positions: keeps the capacity, or grows it to the next power of
    /// two (at least 256, at most the context length).
    pub(super) fn reserve(&mut self, new: usize) {
        let needed = self.len + new;
        if needed > self.capacity {
            self.capacity = needed
                .next_power_of_two()
                .max(MIN_CAPACITY)
                .min(self.config.context_length.max(needed));
        }
    }

    /// The RoPE tables of sliding-window and global layers for every position of the current
    /// capacity (call [`reserve`](Self::reserve) first), built on `device` when the capacity
    /// changed.
    pub(super) fn rope_tables(&mut self, device: &Device) -> (RopeTables, RopeTables) {
        let c = &self.config;
        let cap = self.capacity;
        let tables = match self.rope.take() {
            Some(t) if t.0.positions() == cap => t,
            _ => (
                RopeTables::new(cap, c.head_dim, c.rope_base_local, 1.0, device),
                RopeTables::new(
                    cap,
                    c.head_dim,
                    c.rope_base_global,
                    c.rope_scale_global,
                    device,
                ),
            ),
        };
        self.rope = Some(tables.clone());
        tables
    }

    /// Writes a layer's keys and values for the `t` positions after [`len`](Self::len) (call
    /// [`reserve`](Self::reserve) first); returns the layer's whole buffers.
    pub(super) fn append(
        &mut self,
        layer: usize,
        k: Tensor<4>,
        v: Tensor<4>,
    ) -> (Tensor<4>, Tensor<4>) {
        let [b, h, t, d] = k.dims();
        let (start, cap) = (self.len, self.capacity);
        let grow = |old: Option<Tensor<4>>, like: &Tensor<4>| match old {
            Some(buf) if buf.dims()[2] == cap => buf,
            old => {
                let buf = Tensor::<4>::zeros([b, h, cap, d], &like.device());
                match old {
                    Some(o) => {
                        let n = o.dims()[2].min(start);
                        buf.slice_assign([0..b, 0..h, 0..n, 0..d], o.narrow(2, 0, n))
                    }
                    None => buf,
                }
            }
        };
        let (old_k, old_v) = match self.layers[layer].take() {
            Some((k, v)) => (Some(k), Some(v)),
            None => (None, None),
        };
        let range = [0..b, 0..h, start..start + t, 0..d];
        let k = grow(old_k, &k).slice_assign(range.clone(), k);
        let v = grow(old_v, &v).slice_assign(range, v);
        self.layers[layer] = Some((k.clone(), v.clone()));
        (k, v)
    }

    /// Records that `n` positions were added to every layer.
    pub(super) fn advance(&mut self, n: usize) {
        self.len += n;
    }
}
