//! Plumbing shared by the kernel families, kept in one place so that every family validates its
//! operands and splits launches over the storage-binding limit the same way:
//! - [`check`]: launch-time validation (dtype, exact shape, rank, one storage binding, u32 index
//!   range); every error names the op and the operand.
//! - [`layout`]: index spaces, broadcasting and strides, and the binding-limit chunker of the
//!   elementwise, reduce, softmax and copy launchers (any chunk of a strided index space).
//! - [`chunk`]: the binding-limit chunker over a leading "item" dimension used by the sampling
//!   families (resample, deform_attn), and their scatter-add variants.
//!
//! - [`texel`]: texel forms of buffer kernels for CPU adapters.
//!
//! Why two chunkers: `layout::plan` cuts ONE index space shared by all operands into runs of
//! flat indices (multiples of the workgroup size, one thread per index) and must search each
//! run's element window through strided, broadcast or clamped maps, so it sizes runs by
//! halving; `chunk::plan` cuts whole items of a leading dim where every tensor has its own
//! contiguous per-item size, so the largest run is one division, and the item count may be
//! capped by a grid dimension; an index-space run there would split items, which the sampling
//! kernels cannot. What both do alike is one function each here: the usable limit
//! ([`binding_limit`]) and the aligned binding of an element range ([`aligned_start`]).
//!
//! Matmul and conv2d split their launches themselves (over batches, rows, columns or K): their
//! pieces are matrix tiles, not index ranges.

pub(crate) mod check;
pub(crate) mod chunk;
pub(crate) mod layout;
pub(crate) mod texel;

use crate::runtime::Runtime;

/// The binding limit in bytes kernels may use: the adapter's, capped so element indices fit in
/// u32.
pub(crate) fn binding_limit(rt: &Runtime) -> u64 {
    rt.caps().max_storage_binding.min(u32::MAX as u64 & !3)
}

/// Where to bind a range starting at `start` (in any unit): `start` rounded down to a multiple
/// of `align` (the storage-offset alignment in that unit); the kernel skips `start − offset`.
pub(crate) fn aligned_start(start: u64, align: u64) -> u64 {
    start - start % align.max(1)
}
