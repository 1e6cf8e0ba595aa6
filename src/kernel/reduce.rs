//! The end of both matrix-vector kernels: every unit of a cube holds partial sums for its
//! `rows` weight rows × `m` activation rows; they meet through plane operations and, across
//! warps, shared memory (or through shared memory alone on a device without plane operations),
//! and the totals are written to `y[mi · n + row]`. Also the launch shape both kernels share.
//!
//! A cube's lanes may be split into `groups` row groups: lane `l` of a warp works on group
//! `l % groups`, whose rows are `row0 + r · groups + l % groups` (r < rows), so one warp reads
//! the same activations for `groups` different weight rows at once. With one group every unit
//! works on rows `row0 + r`.

use cubecl::client::Client;
use cubecl::device::RuntimeId;
use cubecl::prelude::*;

use super::gelu::gelu_tanh_mul;

/// Adds up `acc[r · m + mi]` over the units of each row group and writes the totals of rows
/// `row0 + r · groups + g < n` to `y`, the cube's geometry `g` (`g.rows` the weight rows a unit
/// holds sums for). Every unit of the cube must call it (it synchronizes the cube). `groups`
/// divides `lanes`. `gated`: the sums are two weights' (rows `r < rows / 2` the gate's, the rest
/// the same rows of the up projection's) and `y` takes `gelu_tanh(gate) · up` of each row
/// ([`gelu_tanh_mul`], of the two totals rounded to `F`).
#[cube]
pub fn store_sums<F: Float>(
    acc: &Array<f32>,
    y: &mut [F],
    row0: usize,
    n: usize,
    sqrt_2_over_pi: f32,
    cubic: f32,
    #[comptime] g: CubeShape,
    #[comptime] m: usize,
    #[comptime] gated: bool,
) {
    let mut partial = Shared::<[f32]>::new_slice(comptime![partial_len(g, m)]);
    reduce_sums(acc, &mut partial, g, m);
    write_sums::<F>(&partial, y, row0, n, sqrt_2_over_pi, cubic, g, m, gated);
}

/// The shared memory [`reduce_sums`] fills for `g.rows · m` sums per unit.
fn partial_len(g: CubeShape, m: usize) -> usize {
    let sums = g.rows * m;
    if g.use_plane {
        g.groups * sums * g.warps
    } else {
        sums * g.lanes * g.warps
    }
}

/// [`store_sums`]' first half: each unit's sums into `partial` ([`partial_len`] long), added
/// across each warp's lanes with plane operations where the device has them; synchronizes the
/// cube, so every unit must call it.
#[cube]
fn reduce_sums(
    acc: &Array<f32>,
    partial: &mut [f32],
    #[comptime] g: CubeShape,
    #[comptime] m: usize,
) {
    let lanes = comptime![g.lanes];
    let warps = comptime![g.warps];
    let groups = comptime![g.groups];
    let rows = comptime![g.rows];
    let use_plane = comptime![g.use_plane];
    let lane = UNIT_POS_X as usize;
    let warp = UNIT_POS_Y as usize;
    let threads = comptime![lanes * warps];
    let tid = warp * lanes + lane;
    let sums = comptime![rows * m];
    if use_plane {
        #[unroll]
        for a in 0..sums {
            let mut total = acc[a];
            if comptime![groups == 1] {
                total = plane_sum(total);
            } else {
                // the lanes of one group differ in the bits above log2(groups)
                #[unroll]
                for b in 0..comptime![(lanes / groups).trailing_zeros() as usize] {
                    total += plane_shuffle_xor(total, (groups as u32) << (b as u32));
                }
            }
            if lane < groups {
                partial[(lane * sums + a) * warps + warp] = total;
            }
        }
    } else {
        #[unroll]
        for a in 0..sums {
            partial[a * threads + tid] = acc[a];
        }
    }
    sync_cube();
}

/// [`store_sums`]' second half: the totals from `partial` (filled by [`reduce_sums`] with the
/// same geometry) written to `y`, as many per unit as it takes; no synchronization.
#[cube]
#[allow(clippy::too_many_arguments)]
fn write_sums<F: Float>(
    partial: &[f32],
    y: &mut [F],
    row0: usize,
    n: usize,
    sqrt_2_over_pi: f32,
    cubic: f32,
    #[comptime] g: CubeShape,
    #[comptime] m: usize,
    #[comptime] gated: bool,
) {
    let lanes = comptime![g.lanes];
    let warps = comptime![g.warps];
    let groups = comptime![g.groups];
    let rows = comptime![g.rows];
    let use_plane = comptime![g.use_plane];
    let threads = comptime![lanes * warps];
    let tid = UNIT_POS_Y as usize * lanes + UNIT_POS_X as usize;
    let sums = comptime![rows * m];
    // Sums per group that are outputs (gated: the gate's; each has its up sum `half` later).
    let half = comptime![if gated { sums / 2 } else { sums }];
    let outputs = comptime![groups * half];
    // Output `o` of the cube (group-major), as many per unit as it takes.
    let mut o = tid;
    while o < outputs {
        let group = o / half;
        let i = o % half;
        let mut total = 0.0f32;
        let mut second = 0.0f32;
        if use_plane {
            #[unroll]
            for wi in 0..warps {
                total += partial[(group * sums + i) * warps + wi];
                if comptime![gated] {
                    second += partial[(group * sums + i + half) * warps + wi];
                }
            }
        } else {
            for t in 0..comptime![threads / groups] {
                total += partial[i * threads + t * groups + group];
                if comptime![gated] {
                    second += partial[(i + half) * threads + t * groups + group];
                }
            }
        }
        let row = row0 + (i / m) * groups + group;
        if row < n {
            y[(i % m) * n + row] = finish::<F>(total, second, sqrt_2_over_pi, cubic, gated);
        }
        o += threads;
    }
}

/// An output from its total (gated: from the gate's and the up projection's totals, each first
/// rounded to `F` as a stored product would be).
#[cube]
fn finish<F: Float>(
    total: f32,
    second: f32,
    sqrt_2_over_pi: f32,
    cubic: f32,
    #[comptime] gated: bool,
) -> F {
    let mut out = F::cast_from(total);
    if comptime![gated] {
        let gate = f32::cast_from(F::cast_from(total));
        let up = f32::cast_from(F::cast_from(second));
        out = F::cast_from(gelu_tanh_mul(gate, up, sqrt_2_over_pi, cubic));
    }
    out
}

/// A matrix-vector launch's cube: `rows` weight rows, `warps × lanes` units striding together
/// over each row's work items.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CubeShape {
    /// Output rows per cube.
    pub rows: usize,
    /// Warps (planes) per cube.
    pub warps: usize,
    /// Units per warp: the plane size, or 32 without plane operations.
    pub lanes: usize,
    /// Row groups per warp (see the module doc; a power of two dividing `lanes`).
    pub groups: usize,
    /// Work items a unit takes per loop iteration (their loads in flight together).
    pub per_iter: usize,
    /// Whether partial sums meet through plane operations.
    pub use_plane: bool,
}

impl CubeShape {
    /// The measured default for rows of `items` work items and `m` activation rows on
    /// `client`'s device (H100/H200, PERF.md): 4 rows per cube; 4 warps up to 2 activation rows
    /// and 1 above on CUDA (fewer registers per cube, more cubes in flight), 4 at every M on wgpu
    /// (Vulkan kernel times at 4096×14336: M = 4 70 µs against 81, M = 8 116 against 401).
    pub fn default_for(client: &Client, runtime: RuntimeId, items: usize, m: usize) -> Self {
        let (lanes, use_plane) = super::lanes_for(client);
        let max_warps = if m <= 2 || runtime == RuntimeId::Wgpu {
            4
        } else {
            1
        };
        Self {
            rows: 4,
            warps: items.div_ceil(lanes).clamp(1, max_warps),
            lanes,
            groups: 1,
            per_iter: 1,
            use_plane,
        }
    }

    /// The same shape with the number of warps, of `warps / 2 + 1 ..= warps`, that leaves the
    /// fewest of a row group's units idle in its last pass over `items` work items (the most
    /// warps among equals): 7 warps, not 8, for the 448 runs of a row of 14336 (8 warps of one
    /// row group take two passes over 256 units, the second with 192 of them).
    pub fn balanced(mut self, items: usize) -> Self {
        let per_pass = (self.lanes / self.groups) * self.per_iter;
        let idle = |w: usize| items.div_ceil(per_pass * w) * per_pass * w - items;
        self.warps = (self.warps / 2 + 1..=self.warps)
            .rev()
            .min_by_key(|&w| idle(w))
            .unwrap_or(self.warps);
        self
    }

    /// Without plane operations every unit's sums go through shared memory: fewer warps, then
    /// fewer rows, until `m` activation rows' sums fit the 16 KiB WebGPU guarantees.
    pub fn fit_shared_memory(mut self, m: usize) -> Self {
        let bytes = |s: &Self| s.rows * m * s.lanes * s.warps * 4;
        while !self.use_plane && bytes(&self) > 16 * 1024 && self.warps > 1 {
            self.warps /= 2;
        }
        while !self.use_plane && bytes(&self) > 16 * 1024 && self.rows > 1 {
            self.rows /= 2;
        }
        self
    }
}

/// Reduces `red[0..threads]` into `red[0]` (maximum or sum); every unit must call it.
#[cube]
pub(super) fn reduce_shared(
    red: &mut [f32],
    tid: usize,
    #[comptime] threads: usize,
    #[comptime] max: bool,
) {
    #[unroll]
    for b in 0..comptime![threads.trailing_zeros() as usize] {
        let half = comptime![threads >> (b + 1)];
        if tid < half {
            if comptime![max] {
                red[tid] = f32::max(red[tid], red[tid + half]);
            } else {
                red[tid] += red[tid + half];
            }
        }
        sync_cube();
    }
}

/// How a cube of `threads` units (a power of two) adds up one value per unit ([`cube_sum`]):
/// within each plane of `lanes` units by plane operations and then across planes in shared
/// memory where the device has them (`use_plane`), else by a shared-memory tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct CubeSum {
    /// Units per cube.
    pub threads: usize,
    /// Units per plane (dividing `threads`).
    pub lanes: usize,
    /// Whether to use plane operations.
    pub use_plane: bool,
}

impl CubeSum {
    /// `threads` units per cube on `client`'s device.
    pub fn new(client: &Client, threads: usize) -> Self {
        let (lanes, use_plane) = super::lanes_for(client);
        Self {
            threads,
            lanes: lanes.min(threads),
            use_plane,
        }
    }
}

/// The sum of `v` over the cube's units, the same in every unit; every unit must call it.
#[cube]
pub(super) fn cube_sum(v: f32, #[comptime] how: CubeSum) -> f32 {
    let tid = UNIT_POS as usize;
    let mut total = 0.0f32;
    if comptime![how.use_plane] {
        let warps = comptime![how.threads / how.lanes];
        let mut red = Shared::<[f32]>::new_slice(warps);
        let s = plane_sum(v);
        let lane = tid % how.lanes;
        if lane == 0 {
            red[tid / how.lanes] = s;
        }
        sync_cube();
        #[unroll]
        for w in 0..warps {
            total += red[w];
        }
    } else {
        let mut red = Shared::<[f32]>::new_slice(how.threads);
        red[tid] = v;
        sync_cube();
        reduce_shared(&mut red, tid, how.threads, false);
        total = red[0];
    }
    total
}

#[cfg(test)]
mod tests {
    use super::CubeShape;

    fn shape(warps: usize, groups: usize, per_iter: usize) -> CubeShape {
        CubeShape {
            rows: 2,
            warps,
            lanes: 32,
            groups,
            per_iter,
            use_plane: true,
        }
    }

    /// Units of a row group idle in the last pass, counted from scratch: `items` dealt out one
    /// per unit and pass.
    fn idle(items: usize, units: usize) -> usize {
        let mut left = items;
        while left > units {
            left -= units;
        }
        units - left
    }

    /// `balanced` picks, among `warps / 2 + 1 ..= warps`, the warps that idle the fewest
    /// units in the last pass, the most warps among equals; and only the warp count changes.
    #[test]
    fn balanced_warps_idle_fewest_units() {
        // a row of 14336 (448 runs): 8 warps of one group make two passes, the second of 192
        // units out of 256; 7 warps make two full passes
        assert_eq!(shape(8, 1, 1).balanced(448).warps, 7);
        assert_eq!(shape(8, 2, 1).balanced(448).warps, 7);
        // already even: 4096 (128 runs), and 2048 (64) with the warps the launch caps it at
        assert_eq!(shape(8, 2, 1).balanced(128).warps, 8);
        assert_eq!(shape(2, 1, 1).balanced(64).warps, 2);
        for groups in [1, 2, 4, 32] {
            for per_iter in [1, 2, 3] {
                for warps in 1..=8 {
                    for items in 1..=2000 {
                        let s = shape(warps, groups, per_iter);
                        let b = s.balanced(items);
                        let per_warp = 32 / groups * per_iter;
                        let best = (warps / 2 + 1..=warps)
                            .map(|w| idle(items, per_warp * w))
                            .min()
                            .unwrap();
                        let got = idle(items, per_warp * b.warps);
                        assert!((warps / 2 + 1..=warps).contains(&b.warps));
                        assert_eq!(got, best, "{warps} warps, g{groups}, {items} items");
                        assert!(
                            (b.warps + 1..=warps).all(|w| idle(items, per_warp * w) > best),
                            "{warps} warps, g{groups}, {items} items: not the most warps"
                        );
                        assert_eq!(
                            (b.rows, b.lanes, b.groups, b.per_iter),
                            (2, 32, groups, per_iter)
                        );
                    }
                }
            }
        }
    }
}
