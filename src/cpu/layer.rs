//! One Gemma-3-style decoder layer for one token (a decoding step) on the CPU, every op of it in
//! one parallel region ([`phases`]): the threads wake once per layer and wait for each other by
//! spinning between its nine phases (eleven with int8 activations), instead of sleeping and
//! waking around each of the ~25 ops of the op-by-op layer. Each value is computed by the same
//! functions, in the same order, as the ops compute it ([`super::rms_norm`], [`super::rope`],
//! [`super::attention`], [`super::gelu_mul`], the products over row ranges, float or int8 as
//! each projection reads its input), so the result is the same bit for bit.

use std::sync::OnceLock;

use super::attention::{AttentionShape, Scratch, attend};
use super::gelu::gelu_mul_one;
use super::int8::Int8Rows;
use super::norm::rms_norm_row;
use super::rope::rope_row;
use super::{Weight, check_input};
use crate::parallel::{SendPtr, phases};
use crate::quant::{Activations, PackError};

/// Weight rows per chunk of a product: small enough that two or more threads share even the
/// key/value projections, large enough that claiming a chunk costs nothing next to it.
const CHUNK_ROWS: usize = 64;

/// The weights of one layer (norm weights `[d_model]`, the q/k norms `[head_dim]`; projections
/// as [`super::matmul`] takes them: `d_model → heads · head_dim` for q, `→ kv_heads · head_dim`
/// for k and v, back to `d_model` for o; `d_model → d_ff` for gate and up, back for down).
pub(crate) struct LayerWeights<'a> {
    /// The norm before attention.
    pub(crate) attn_norm: &'a [f32],
    /// The query projection.
    pub(crate) q: Projection<'a>,
    /// The key projection.
    pub(crate) k: Projection<'a>,
    /// The value projection.
    pub(crate) v: Projection<'a>,
    /// The output projection.
    pub(crate) o: Projection<'a>,
    /// The norm of each query head.
    pub(crate) q_norm: &'a [f32],
    /// The norm of each key head.
    pub(crate) k_norm: &'a [f32],
    /// The norm of attention's output.
    pub(crate) post_attn_norm: &'a [f32],
    /// The norm before the MLP.
    pub(crate) ffn_norm: &'a [f32],
    /// The MLP's gate projection.
    pub(crate) gate: Projection<'a>,
    /// The MLP's up projection.
    pub(crate) up: Projection<'a>,
    /// The MLP's down projection.
    pub(crate) down: Projection<'a>,
    /// The norm of the MLP's output.
    pub(crate) post_ffn_norm: &'a [f32],
}

/// A projection of the layer: its weight, and how it reads its input (as it is, as
/// [`super::matmul`] does, or rounded to int8 in runs of the weight's block, as
/// [`super::matmul_int8`] does).
#[derive(Clone, Copy)]
pub(crate) struct Projection<'a> {
    /// The weight.
    pub(crate) weight: Weight<'a>,
    /// How it reads its input.
    pub(crate) activations: Activations,
}

/// An input of the layer rounded to int8 for the projections that read it so: one rounding for
/// each of their run shapes (a block's elements and a sub-block's, [`Weight::runs`]), made once
/// for all of their chunks. Empty where every reader takes float activations.
struct Rounded(Vec<((usize, usize), Int8Rows)>);

impl Rounded {
    /// `x` (one row) rounded for the int8 readers among `readers`.
    fn new(x: &[f32], readers: &[&Projection<'_>]) -> Self {
        let mut rounded: Vec<((usize, usize), Int8Rows)> = Vec::new();
        for p in readers {
            let runs = p.weight.runs();
            if p.activations == Activations::Int8 && rounded.iter().all(|(r, _)| *r != runs) {
                rounded.push((runs, p.weight.int8_rows(x)));
            }
        }
        Self(rounded)
    }

    /// Rows `r0..r1` of `p`'s product with the input `x` this is the rounding of, into `out`.
    fn rows(&self, p: &Projection<'_>, x: &[f32], r0: usize, r1: usize, out: &mut [f32]) {
        match p.activations {
            Activations::Float => p.weight.rows(x, 1, r0, r1, out),
            Activations::Int8 => {
                let runs = p.weight.runs();
                let (_, xq) = (self.0.iter())
                    .find(|(r, _)| *r == runs)
                    .expect("rounded for each of its int8 readers");
                p.weight.each(xq, r0, r1, out)
            }
        }
    }
}

/// The layer's phases, in order; those in brackets only where a projection reads that input
/// as int8: the norm, q / k / v, the heads' norms and RoPE, attention, [attention's output
/// rounded], o, the residual and the next norm, the gated MLP's input, [its output rounded],
/// down, the last residual.
#[derive(Clone, Copy)]
enum Step {
    Norm,
    Qkv,
    Heads,
    Attend,
    RoundAttention,
    Output,
    Residual,
    Gated,
    RoundGated,
    Down,
    Last,
}

/// How a layer's heads are shaped and which keys its attention sees.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LayerShape {
    /// Query heads.
    pub(crate) heads: usize,
    /// Key/value heads (dividing `heads`).
    pub(crate) kv_heads: usize,
    /// Width of a head.
    pub(crate) head_dim: usize,
    /// The norms' epsilon.
    pub(crate) eps: f64,
    /// The sliding window, or `None` for global attention.
    pub(crate) window: Option<usize>,
    /// The factor the query is multiplied by.
    pub(crate) scale: f32,
}

/// The layer's key and value buffers, each `[kv_heads, capacity, head_dim]` (one sequence).
pub(crate) struct KvCache<'a> {
    /// The keys (after RoPE).
    pub(crate) k: &'a mut [f32],
    /// The values.
    pub(crate) v: &'a mut [f32],
    /// Key slots per head.
    pub(crate) capacity: usize,
}

/// The layer's output for one token `x` (`[d_model]`) at `position`: its key and value written
/// into `cache` at that slot, attention over the slots `..= position` it sees, the MLP, each
/// between its norms and added to the residual. `rope` is the `(cos, sin)` tables, `head_dim / 2`
/// values per position.
pub(crate) fn decoder_step(
    x: &[f32],
    w: &LayerWeights<'_>,
    cache: KvCache<'_>,
    rope: (&[f32], &[f32]),
    position: usize,
    s: LayerShape,
) -> Result<Vec<f32>, PackError> {
    let (d, hd) = (x.len(), s.head_dim);
    let (nq, nkv) = (s.heads * hd, s.kv_heads * hd);
    let d_ff = w.gate.weight.desc().out_features;
    let half = hd / 2;
    // every shape against the one it meets: a mismatch is an error, never an out-of-bounds
    // index inside a chunk
    for (weight, input, output) in [
        (&w.q, d, nq),
        (&w.k, d, nkv),
        (&w.v, d, nkv),
        (&w.o, nq, d),
        (&w.gate, d, d_ff),
        (&w.up, d, d_ff),
        (&w.down, d_ff, d),
    ] {
        feeds(&weight.weight, input, output)?;
    }
    // the heads and the slot, checked (and reported) as [`super::attention`] and
    // [`super::rope`] check them
    if s.kv_heads == 0 || !s.heads.is_multiple_of(s.kv_heads) || position >= cache.capacity {
        return Err(PackError::InputLength {
            rows: position + 1,
            width: hd,
            found: cache.capacity * hd,
        });
    }
    if hd != 2 * half {
        return Err(PackError::InputLength {
            rows: s.heads,
            width: 2 * half,
            found: nq,
        });
    }
    for norm in [w.attn_norm, w.post_attn_norm, w.ffn_norm, w.post_ffn_norm] {
        check_input(norm, 1, d)?;
    }
    for norm in [w.q_norm, w.k_norm] {
        check_input(norm, 1, hd)?;
    }
    for buffer in [&*cache.k, &*cache.v] {
        check_input(buffer, s.kv_heads * cache.capacity, hd)?;
    }
    let (cos, sin) = rope;
    for table in [cos, sin] {
        if table.len() < (position + 1) * half {
            return Err(PackError::InputLength {
                rows: position + 1,
                width: half,
                found: table.len(),
            });
        }
    }
    let (cos, sin) = (
        &cos[position * half..][..half],
        &sin[position * half..][..half],
    );

    // Every part of the arena is written in one phase and read only in later ones (a phase
    // starts once the one before has finished), the writes of one phase to disjoint ranges.
    let mut size = 0;
    let mut part = |len: usize| {
        size += len;
        Part {
            at: size - len,
            len,
        }
    };
    let (h, q, k, v, qn, att) = (part(d), part(nq), part(nkv), part(nkv), part(nq), part(nq));
    let (a, x1, h2, g, m, y) = (part(d), part(d), part(d), part(d_ff), part(d), part(d));
    let mut memory = vec![0f32; size];
    let b = Arena(SendPtr(memory.as_mut_ptr()));
    let (kc, vc) = (SendPtr(cache.k.as_mut_ptr()), SendPtr(cache.v.as_mut_ptr()));
    let cache_len = cache.k.len();
    let slot = |head: usize| (head * cache.capacity + position) * hd;
    let chunks = |rows: usize| rows.div_ceil(CHUNK_ROWS);
    let (cq, ck, cv) = (chunks(nq), chunks(nkv), chunks(nkv));
    let group = s.heads / s.kv_heads;
    let keys = AttentionShape::visible(position, 0, s.window);
    let int8 = |p: &Projection<'_>| usize::from(p.activations == Activations::Int8);
    let plan = [
        (Step::Norm, 1),                         // h = norm(x)
        (Step::Qkv, cq + ck + cv),               // q, k, v = h · W
        (Step::Heads, s.heads + 2 * s.kv_heads), // head norms, RoPE, k and v into the cache
        (Step::Attend, s.heads),                 // attention, a head per chunk
        (Step::RoundAttention, int8(&w.o)),      // attention's output to int8
        (Step::Output, chunks(d)),               // a = attention · W_o
        (Step::Residual, 1),                     // x1 = x + norm(a), h2 = norm(x1)
        (Step::Gated, chunks(d_ff)),             // g = gelu(h2 · W_gate) · (h2 · W_up)
        (Step::RoundGated, int8(&w.down)),       // g to int8
        (Step::Down, chunks(d)),                 // m = g · W_down
        (Step::Last, 1),                         // y = x1 + norm(m)
    ];
    // no phase without chunks: a phase waits only for the one before it
    let plan: Vec<(Step, usize)> = plan.into_iter().filter(|&(_, n)| n > 0).collect();
    let counts: Vec<usize> = plan.iter().map(|&(_, n)| n).collect();
    // Each product's input as its projections read it, rounded once where one reads int8:
    // made in the single-chunk phase that writes the input (or in a phase of its own), and
    // found made by the product's chunks (for float readers, an empty rounding).
    let (rh, ratt, rh2, rg) = (
        OnceLock::new(),
        OnceLock::new(),
        OnceLock::new(),
        OnceLock::new(),
    );
    // SAFETY (the four): each is first called after its input is written (later in the one
    // chunk that writes it, or in a later phase).
    let h_in = || rh.get_or_init(|| unsafe { Rounded::new(b.get(h), &[&w.q, &w.k, &w.v]) });
    let att_in = || ratt.get_or_init(|| unsafe { Rounded::new(b.get(att), &[&w.o]) });
    let h2_in = || rh2.get_or_init(|| unsafe { Rounded::new(b.get(h2), &[&w.gate, &w.up]) });
    let g_in = || rg.get_or_init(|| unsafe { Rounded::new(b.get(g), &[&w.down]) });
    // SAFETY (every `unsafe` below): the buffers outlive `phases`; each chunk writes a range no
    // other chunk of its phase touches, and reads buffers only after the phase that wrote them.
    phases(&counts, |phase, c| unsafe {
        let rows = |c: usize, n: usize| (c * CHUNK_ROWS, ((c + 1) * CHUNK_ROWS).min(n));
        match plan[phase].0 {
            Step::Norm => {
                rms_norm_row(x, w.attn_norm, s.eps, b.get_mut(h, 0, d));
                h_in();
            }
            Step::Qkv => {
                let (p, out, c) = if c < cq {
                    (&w.q, q, c)
                } else if c < cq + ck {
                    (&w.k, k, c - cq)
                } else {
                    (&w.v, v, c - cq - ck)
                };
                let (r0, r1) = rows(c, out.len);
                h_in().rows(p, b.get(h), r0, r1, b.get_mut(out, r0, r1));
            }
            Step::Heads => {
                let mut normed = vec![0f32; hd];
                if c < s.heads {
                    rms_norm_row(&b.get(q)[c * hd..][..hd], w.q_norm, s.eps, &mut normed);
                    rope_row(&normed, cos, sin, b.get_mut(qn, c * hd, (c + 1) * hd));
                } else if c < s.heads + s.kv_heads {
                    let head = c - s.heads;
                    rms_norm_row(&b.get(k)[head * hd..][..hd], w.k_norm, s.eps, &mut normed);
                    let dst = std::slice::from_raw_parts_mut(kc.get().add(slot(head)), hd);
                    rope_row(&normed, cos, sin, dst);
                } else {
                    let head = c - s.heads - s.kv_heads;
                    let dst = std::slice::from_raw_parts_mut(vc.get().add(slot(head)), hd);
                    dst.copy_from_slice(&b.get(v)[head * hd..][..hd]);
                }
            }
            Step::Attend => {
                let kv = (c / group) * cache.capacity * hd;
                let all_k = std::slice::from_raw_parts(kc.get(), cache_len);
                let all_v = std::slice::from_raw_parts(vc.get(), cache_len);
                let (k, v) = (
                    &all_k[kv..][..cache.capacity * hd],
                    &all_v[kv..][..cache.capacity * hd],
                );
                let query = &b.get(qn)[c * hd..][..hd];
                let out = b.get_mut(att, c * hd, (c + 1) * hd);
                attend(
                    query,
                    k,
                    v,
                    keys.clone(),
                    s.scale,
                    &mut Scratch::new(hd),
                    out,
                );
            }
            Step::RoundAttention => {
                att_in();
            }
            Step::Output => {
                let (r0, r1) = rows(c, d);
                att_in().rows(&w.o, b.get(att), r0, r1, b.get_mut(a, r0, r1));
            }
            Step::Residual => {
                let mut normed = vec![0f32; d];
                rms_norm_row(b.get(a), w.post_attn_norm, s.eps, &mut normed);
                let sum = b.get_mut(x1, 0, d);
                for ((out, &r), &n) in sum.iter_mut().zip(x).zip(&normed) {
                    *out = r + n;
                }
                rms_norm_row(sum, w.ffn_norm, s.eps, b.get_mut(h2, 0, d));
                h2_in();
            }
            Step::Gated => {
                let (r0, r1) = rows(c, d_ff);
                let (mut gate, mut up) = (vec![0f32; r1 - r0], vec![0f32; r1 - r0]);
                let xr = h2_in();
                xr.rows(&w.gate, b.get(h2), r0, r1, &mut gate);
                xr.rows(&w.up, b.get(h2), r0, r1, &mut up);
                for ((out, &gv), &u) in b.get_mut(g, r0, r1).iter_mut().zip(&gate).zip(&up) {
                    *out = gelu_mul_one(gv, u);
                }
            }
            Step::RoundGated => {
                g_in();
            }
            Step::Down => {
                let (r0, r1) = rows(c, d);
                g_in().rows(&w.down, b.get(g), r0, r1, b.get_mut(m, r0, r1));
            }
            Step::Last => {
                let mut normed = vec![0f32; d];
                rms_norm_row(b.get(m), w.post_ffn_norm, s.eps, &mut normed);
                for ((out, &r), &n) in b.get_mut(y, 0, d).iter_mut().zip(b.get(x1)).zip(&normed) {
                    *out = r + n;
                }
            }
        }
    });
    Ok(memory[y.at..][..y.len].to_vec())
}

/// Whether `w` takes an input of `input` values and gives `output`: else the error naming the
/// vector that does not fit.
fn feeds(w: &Weight<'_>, input: usize, output: usize) -> Result<(), PackError> {
    let desc = w.desc();
    let (rows, width, found) = if desc.in_features != input {
        (1, desc.in_features, input)
    } else {
        (1, output, desc.out_features)
    };
    if width == found {
        Ok(())
    } else {
        Err(PackError::InputLength { rows, width, found })
    }
}

/// One intermediate value of the layer: a range of its scratch memory.
#[derive(Clone, Copy)]
struct Part {
    at: usize,
    len: usize,
}

/// The layer's scratch memory, shared by the chunks of every phase.
#[derive(Clone, Copy)]
struct Arena(SendPtr);

impl Arena {
    /// All of `p`.
    ///
    /// # Safety
    /// The arena is alive and no chunk writes `p` meanwhile.
    unsafe fn get<'a>(self, p: Part) -> &'a [f32] {
        // SAFETY: as the caller promises.
        unsafe { std::slice::from_raw_parts(self.0.get().add(p.at), p.len) }
    }

    /// Values `r0..r1` of `p`.
    ///
    /// # Safety
    /// The arena is alive and no other chunk reads or writes them meanwhile.
    #[allow(clippy::mut_from_ref)]
    unsafe fn get_mut<'a>(self, p: Part, r0: usize, r1: usize) -> &'a mut [f32] {
        assert!(r0 <= r1 && r1 <= p.len);
        // SAFETY: as the caller promises; the range lies inside `p`.
        unsafe { std::slice::from_raw_parts_mut(self.0.get().add(p.at + r0), r1 - r0) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::{GgmlType, PackedLayout, QuantWeightDesc, pack};

    /// Shapes that do not fit together (a projection of the wrong width, a slot past the
    /// buffers, heads the key/value heads do not divide) are errors naming the lengths, never a
    /// panic or an index out of bounds inside a chunk; the same call with fitting shapes runs.
    #[test]
    fn shapes_that_do_not_fit_are_errors() {
        let (d, heads, hd, d_ff, capacity) = (64, 2, 32, 96, 5);
        let packed = |out: usize, inp: usize| {
            let desc =
                QuantWeightDesc::new(GgmlType::Q8_0, PackedLayout::Gguf, out, inp).expect("shape");
            (pack(&vec![0u8; desc.n_bytes()], desc).expect("pack"), desc)
        };
        let (q, k, v, o) = (
            packed(heads * hd, d),
            packed(hd, d),
            packed(hd, d),
            packed(d, heads * hd),
        );
        let (gate, up, down) = (packed(d_ff, d), packed(d_ff, d), packed(d, d_ff));
        let wrong = packed(heads * hd, d + 32);
        fn weight((words, desc): &(Vec<u32>, QuantWeightDesc)) -> Projection<'_> {
            Projection {
                weight: Weight::new(words, *desc).expect("weight"),
                activations: Activations::Int8,
            }
        }
        let (ones_d, ones_hd) = (vec![1f32; d], vec![1f32; hd]);
        let fitting = LayerWeights {
            attn_norm: &ones_d,
            q: weight(&q),
            k: weight(&k),
            v: weight(&v),
            o: weight(&o),
            q_norm: &ones_hd,
            k_norm: &ones_hd,
            post_attn_norm: &ones_d,
            ffn_norm: &ones_d,
            gate: weight(&gate),
            up: weight(&up),
            down: weight(&down),
            post_ffn_norm: &ones_d,
        };
        let misfit = LayerWeights {
            q: weight(&wrong),
            ..fitting
        };
        let shape = LayerShape {
            heads,
            kv_heads: 1,
            head_dim: hd,
            eps: 1e-6,
            window: None,
            scale: 1.0,
        };
        let (tables, x) = (vec![0.5f32; capacity * hd / 2], vec![0.25f32; d]);
        let run = |w: &LayerWeights<'_>, position: usize, s: LayerShape| {
            let (mut kb, mut vb) = (vec![0f32; capacity * hd], vec![0f32; capacity * hd]);
            let cache = KvCache {
                k: &mut kb,
                v: &mut vb,
                capacity,
            };
            decoder_step(&x, w, cache, (&tables, &tables), position, s)
        };
        let y = run(&fitting, capacity - 1, shape).expect("fitting shapes run");
        assert_eq!(y.len(), d);
        assert!(y.iter().all(|v| v.is_finite()));
        for (what, got) in [
            (
                "a query projection of the wrong width",
                run(&misfit, 0, shape),
            ),
            ("a slot past the buffers", run(&fitting, capacity, shape)),
            (
                "no key/value heads",
                run(
                    &fitting,
                    0,
                    LayerShape {
                        kv_heads: 0,
                        ..shape
                    },
                ),
            ),
        ] {
            assert!(
                matches!(got, Err(PackError::InputLength { .. })),
                "{what}: {got:?}"
            );
        }
    }
}
