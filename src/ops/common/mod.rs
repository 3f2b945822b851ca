//! Plumbing shared by the kernel families, kept in one place so that every family validates its
//! operands and splits launches over the storage-binding limit the same way:
//! - [`check`]: launch-time validation (dtype, exact shape, rank, one storage binding, u32 index
//!   range); every error names the op and the operand.
//! - [`layout`]: index spaces, broadcasting and strides, and the binding-limit chunker of the
//!   elementwise, reduce, softmax and copy launchers (any chunk of a strided index space).
//! - [`chunk`]: the binding-limit chunker over a leading "item" dimension used by the sampling
//!   families (resample, deform_attn), and their scatter-add variants.
//!
//! Matmul and conv2d split their launches themselves (over batches, rows, columns or K): their
//! pieces are matrix tiles, not index ranges.

pub(crate) mod check;
pub(crate) mod chunk;
pub(crate) mod layout;
