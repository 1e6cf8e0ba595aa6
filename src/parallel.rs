//! Scoped-thread helpers shared by the quantizer and the CPU products.

/// How many threads to use for `items` independent pieces of work: `requested`, or every
/// available core if 0, never more than `items`, at least 1.
pub(crate) fn thread_count(requested: usize, items: usize) -> usize {
    let n = if requested == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        requested
    };
    n.min(items).max(1)
}

/// Splits `0..n` into at most one contiguous range per thread and runs `f` on each, the last
/// range on the calling thread.
///
/// With the `flex` feature the other ranges run on rayon's global pool, the one Burn's Flex
/// backend runs its own ops on: a product between two Flex ops finds its threads awake instead
/// of spawning them (two scoped spawns cost ~160 µs on a 2-core machine, more than the product
/// of a 1024 × 640 weight), and the process keeps one set of worker threads. Without it (the
/// pure core: the quantizer) they run on scoped threads.
pub(crate) fn for_each_range(n: usize, f: impl Fn(usize, usize) + Sync) {
    #[cfg(feature = "flex")]
    let threads = rayon::current_num_threads().min(n.div_ceil(8)).max(1);
    #[cfg(not(feature = "flex"))]
    let threads = thread_count(0, n.div_ceil(8));
    let per = n.div_ceil(threads).max(1);
    let last = (n.saturating_sub(1) / per) * per;
    #[cfg(feature = "flex")]
    rayon::in_place_scope(|s| {
        for start in (0..last).step_by(per) {
            let f = &f;
            s.spawn(move |_| f(start, start + per));
        }
        f(last, n);
    });
    #[cfg(not(feature = "flex"))]
    std::thread::scope(|s| {
        for start in (0..last).step_by(per) {
            let f = &f;
            s.spawn(move || f(start, start + per));
        }
        f(last, n);
    });
}

/// Runs phases of independent chunks of work in order: `work(phase, chunk)` once for every chunk
/// `0..chunks[phase]` of every phase, a phase's chunks starting only once every chunk of the
/// phase before has finished.
///
/// The calling thread and one helper per other thread of rayon's pool (Flex's) claim chunks from
/// one counter per phase and wait for a phase's last
/// chunk by spinning, not sleeping: a sequence of small ops costs one wake-up of the pool, not one
/// per op. No chunk waits for a helper to start: one that starts late only helps less (the
/// caller alone would run every chunk), so a busy pool slows the phases but cannot stall them;
/// the call returns when every chunk is done and every helper has left.
#[cfg(feature = "flex")]
pub(crate) fn phases(chunks: &[usize], work: impl Fn(usize, usize) + Sync) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let claimed: Vec<AtomicUsize> = chunks.iter().map(|_| AtomicUsize::new(0)).collect();
    let done: Vec<AtomicUsize> = chunks.iter().map(|_| AtomicUsize::new(0)).collect();
    let run = || {
        for (p, &n) in chunks.iter().enumerate() {
            // the phase before must be complete: its writes are this phase's inputs (the
            // Acquire load pairs with each chunk's Release increment)
            if p > 0 {
                let mut spins = 0u32;
                while done[p - 1].load(Ordering::Acquire) < chunks[p - 1] {
                    spins += 1;
                    if spins < 1 << 12 {
                        std::hint::spin_loop();
                    } else {
                        // more threads than cores: let the chunk's owner run
                        std::thread::yield_now();
                    }
                }
            }
            loop {
                let c = claimed[p].fetch_add(1, Ordering::Relaxed);
                if c >= n {
                    break;
                }
                work(p, c);
                done[p].fetch_add(1, Ordering::Release);
            }
        }
    };
    let widest = chunks.iter().copied().max().unwrap_or(0);
    let helpers = rayon::current_num_threads().min(widest).saturating_sub(1);
    rayon::in_place_scope(|s| {
        for _ in 0..helpers {
            s.spawn(|_| run());
        }
        run();
    });
}

/// A pointer into one output buffer, handed to scoped threads that write disjoint parts of it.
#[derive(Clone, Copy)]
pub(crate) struct SendPtr(pub(crate) *mut f32);
// SAFETY: only used to hand disjoint sub-slices of one buffer to scoped threads.
unsafe impl Send for SendPtr {}
// SAFETY: as above.
unsafe impl Sync for SendPtr {}
impl SendPtr {
    pub(crate) fn get(self) -> *mut f32 {
        self.0
    }
}
