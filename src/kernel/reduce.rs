//! The end of both matrix-vector kernels: every unit of a cube holds partial sums for the cube's
//! `rows` weight rows × `m` activation rows; they meet through `plane_sum` and, across warps,
//! shared memory (or through shared memory alone on a device without plane operations), and
//! the totals are written to `y[mi · n + row]`. Also the launch shape both kernels share.

use cubecl::client::Client;
use cubecl::device::RuntimeId;
use cubecl::prelude::*;

/// Adds up `acc[r · m + mi]` over the cube's units and writes the totals of rows `row0 + r < n`
/// to `y`. Every unit of the cube must call it (it synchronizes the cube).
#[cube]
#[allow(clippy::too_many_arguments)]
pub fn store_sums<F: Float>(
    acc: &Array<f32>,
    y: &mut [F],
    row0: usize,
    n: usize,
    #[comptime] rows: usize,
    #[comptime] m: usize,
    #[comptime] lanes: usize,
    #[comptime] warps: usize,
    #[comptime] use_plane: bool,
) {
    let lane = UNIT_POS_X as usize;
    let warp = UNIT_POS_Y as usize;
    let threads = comptime![lanes * warps];
    let tid = warp * lanes + lane;
    if use_plane {
        let mut partial = Shared::<[f32]>::new_slice(rows * m * warps);
        #[unroll]
        for i in 0..rows * m {
            let total = plane_sum(acc[i]);
            if lane == 0 {
                partial[i * warps + warp] = total;
            }
        }
        sync_cube();
        if tid < rows * m {
            let mut total = 0.0f32;
            #[unroll]
            for wi in 0..warps {
                total += partial[tid * warps + wi];
            }
            let r = tid / m;
            if row0 + r < n {
                y[(tid % m) * n + row0 + r] = F::cast_from(total);
            }
        }
    } else {
        let mut partial = Shared::<[f32]>::new_slice(rows * m * threads);
        #[unroll]
        for i in 0..rows * m {
            partial[i * threads + tid] = acc[i];
        }
        sync_cube();
        if tid < rows * m {
            let mut total = 0.0f32;
            for ti in 0..threads {
                total += partial[tid * threads + ti];
            }
            let r = tid / m;
            if row0 + r < n {
                y[(tid % m) * n + row0 + r] = F::cast_from(total);
            }
        }
    }
}

/// A matrix-vector launch's cube: `rows` weight rows, `warps × lanes` units striding together
/// over each row's work items.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CubeShape {
    /// Output rows per cube.
    pub rows: usize,
    /// Warps (planes) per cube.
    pub warps: usize,
    /// Units per warp: the plane size, or 32 without plane operations.
    pub lanes: usize,
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
            use_plane,
        }
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
