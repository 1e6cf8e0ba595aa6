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

    /// A layer's key and value buffers, `[batch, kv_heads, capacity, head_dim]`, taken out of
    /// the cache (give them back with [`put`](Self::put)): allocated on `device` at the current
    /// capacity (call [`reserve`](Self::reserve) first), the positions held copied over when it
    /// grew.
    pub(super) fn take(
        &mut self,
        layer: usize,
        batch: usize,
        device: &Device,
    ) -> (Tensor<4>, Tensor<4>) {
        let (n, cap, hd) = (self.config.n_kv_heads, self.capacity, self.config.head_dim);
        let held = self.len;
        let grow = |old: Option<Tensor<4>>| match old {
            Some(buf) if buf.dims() == [batch, n, cap, hd] => buf,
            old => {
                let buf = Tensor::<4>::zeros([batch, n, cap, hd], device);
                match old {
                    Some(o) if o.dims()[0] == batch => {
                        let held = o.dims()[2].min(held);
                        buf.slice_assign([0..batch, 0..n, 0..held, 0..hd], o.narrow(2, 0, held))
                    }
                    _ => buf,
                }
            }
        };
        match self.layers[layer].take() {
            Some((k, v)) => (grow(Some(k)), grow(Some(v))),
            None => (grow(None), grow(None)),
        }
    }

    /// Gives a layer's buffers back after [`take`](Self::take).
    pub(super) fn put(&mut self, layer: usize, buffers: (Tensor<4>, Tensor<4>)) {
        self.layers[layer] = Some(buffers);
    }

    /// Records that `n` positions were added to every layer.
    pub(super) fn advance(&mut self, n: usize) {
        self.len += n;
    }
}
