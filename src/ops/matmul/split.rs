//! Split-K: how many slices of the reduction a product with few output tiles runs side by side.
//!
//! A weight gradient (`Aᵀ·B` with M, N the layer's widths and K every pixel of the batch) or the
//! mask einsum's gradient has a handful of output tiles and a reduction of thousands to hundreds
//! of thousands: one workgroup per tile leaves most of a GPU idle (issue 12: 2–144 workgroups each
//! looping up to 8,192 k-steps) and, on a CPU adapter, most of its threads (a product with 2
//! workgroups uses 1 of lavapipe's 2 threads). Split-K gives each slice of k its own workgroups,
//! writing partial products to a scratch tensor; one extra pass (`splitk_sum`) sums the slices
//! and applies the epilogue (alpha, bias, beta·C, pre-activation, activation).

use crate::ops::policy::Policy;

/// A launch's split of its reduction: slices of `kslice` k-steps (the last one shorter).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct SplitK {
    pub(super) kslice: u64,
}

impl SplitK {
    /// Slices of a launch that reduces over `k`.
    pub(super) fn slices(&self, k: u64) -> u64 {
        k.div_ceil(self.kslice).max(1)
    }
}

/// Shortest slice the automatic policy makes: below it the partial stores and the extra pass
/// cost more than the parallelism buys (a 24×16 thread block stores 384 partials; at 256
/// k-steps that is 1/256 of its FMAs).
pub(super) const MIN_SLICE_K: u64 = 256;

/// The same on GPUs, where `gemm`'s 8×8 thread block stores 64 partials: at 64 k-steps that is
/// 1/64 of its FMAs, and the decoder's M = 100 products (K = 256–2048) get split.
pub(super) const GPU_MIN_SLICE_K: u64 = 64;

/// Workgroups a split launch aims for on a GPU: two per SM of a large GPU (an H100 has 132),
/// so the tail of the last wave is short.
const GPU_TARGET_WORKGROUPS: u64 = 256;

/// Workgroups per CPU thread a split launch aims for on a CPU adapter: lavapipe hands whole
/// workgroups to its threads; two per thread (a multiple of the thread count) keep them all busy
/// without many partials (measured: a product already at 4 workgroups on 2 threads gains nothing
/// from more, docs/PERFORMANCE.md).
const CPU_WORKGROUPS_PER_THREAD: u64 = 2;

/// Least work (2·M·N·K per launch) split on a CPU adapter: one lavapipe thread runs ~10–20
/// GFLOP/s, so this is about a millisecond, well above the cost of the extra summing dispatch.
const CPU_MIN_SPLIT_FLOP: u64 = 16_000_000;

/// Most bytes of partials one launch writes (the graph keeps each product's scratch for the
/// life of its plan; a split product's partials are about target workgroups × tile, 4 MiB on a GPU).
const MAX_PARTIAL_BYTES: u64 = 16 << 20;

/// Slice boundaries are multiples of this: the vec4 kernels need multiples of 4, and 16 (the
/// `tiled` kernel's BK) keeps every GPU slice on whole k-tiles.
const SLICE_ALIGN: u64 = 16;

/// What the chooser needs to know about one launch chunk.
#[derive(Clone, Copy, Debug)]
pub(super) struct Launch {
    /// Batches, rows, columns and reduction of the chunk.
    pub(super) b: u64,
    pub(super) m: u64,
    pub(super) n: u64,
    pub(super) k: u64,
    /// Output tile of the kernel the launch would run.
    pub(super) tile: (u64, u64),
    /// The adapter's grid limit per dimension (the split multiplies z).
    pub(super) max_wg: u64,
    /// Bytes one binding may cover (the partials are one binding).
    pub(super) binding_limit: u64,
}

/// The split of `l`, or `None` to run it whole. `forced`: `Some(s)` asks for `s` slices (`0`
/// or `1`: never split), within the grid and binding limits; `None` lets the policy decide.
pub(super) fn choose(policy: &Policy, l: &Launch, forced: Option<u32>) -> Option<SplitK> {
    let wgs = l.b * l.m.div_ceil(l.tile.0) * l.n.div_ceil(l.tile.1);
    if wgs == 0 {
        // An empty output: nothing launches.
        return None;
    }
    let want = match forced {
        Some(s) => s as u64,
        None => {
            let threads = std::thread::available_parallelism().map_or(2, |n| n.get() as u64);
            let target = if policy.cpu_shapes() {
                CPU_WORKGROUPS_PER_THREAD * threads
            } else {
                GPU_TARGET_WORKGROUPS
            };
            let flop = 2 * l.b * l.m * l.n * l.k;
            if wgs >= target || (policy.cpu_shapes() && flop < CPU_MIN_SPLIT_FLOP) {
                return None;
            }
            let mut s = target.div_ceil(wgs);
            // On a CPU adapter a last round with idle threads costs a whole workgroup's time.
            while policy.cpu_shapes() && !(wgs * s).is_multiple_of(threads) && s < 2 * target {
                s += 1;
            }
            let min_slice = if policy.cpu_shapes() {
                MIN_SLICE_K
            } else {
                GPU_MIN_SLICE_K
            };
            s.min(l.k / min_slice)
        }
    };
    // The grid's z holds batch × slices; the partials are one binding.
    let per_slice = l.b * l.m * l.n * 4;
    let bytes = l.binding_limit.min(MAX_PARTIAL_BYTES);
    let fit = (l.max_wg / l.b.max(1)).min(bytes / per_slice.max(1));
    let slices = want.min(fit).min(l.k.div_ceil(SLICE_ALIGN));
    if slices < 2 {
        return None;
    }
    let kslice = l.k.div_ceil(slices).div_ceil(SLICE_ALIGN) * SLICE_ALIGN;
    let split = SplitK { kslice };
    (split.slices(l.k) >= 2).then_some(split)
}
