//! A product that also sums op(A)'s rows: a linear layer's weight gradient `dYᵀ·X` and its
//! bias gradient `Σ_rows dY` from one pass over `dY`.
//!
//! On CPU adapters the texel `ta` entries add the sums to the product's own loop (they load every
//! element of op(A) anyway), which saves the bias gradient's reduction: one or two launches per
//! linear layer, ~90 of a demo training step's ~1,030 (docs/PERFORMANCE.md, "Session 11").
//! Everywhere else (GPU kernels, other layouts, split-K or chunked products) the product runs as
//! usual and a reduction after it writes the sums.

use super::{check_distinct, forward_rows_into, resolve, Epilogue, MatmulOptions};
use crate::error::{Error, Result};
use crate::ops::common::check;
use crate::ops::reduce::sum_to_shape_scratch_into;
use crate::runtime::{Dispatch, Runtime, Tensor};

/// [`matmul_epilogue_into`](super::matmul_epilogue_into) for a 2-D product that also writes
/// `row_sums[m] = Σ_k op(A)[m, k]` (`[M]`, f32; it may share a buffer with `out` without
/// overlapping it, as gradients in one arena do). The caller keeps the returned tensors alive as
/// long as the dispatches.
pub fn matmul_row_sums_into(
    rt: &Runtime,
    a: &Tensor,
    b: &Tensor,
    ep: &Epilogue<'_>,
    out: &Tensor,
    opts: &MatmulOptions,
    row_sums: &Tensor,
) -> Result<(Vec<Dispatch>, Vec<Tensor>)> {
    const OP: &str = "matmul_row_sums";
    let s = resolve(OP, a, b, opts)?;
    if a.rank() != 2 || b.rank() != 2 {
        return Err(crate::shape_err!(
            OP,
            "row sums of 2-D products only, got A {:?} and B {:?}",
            a.shape(),
            b.shape()
        ));
    }
    check::f32_shape(OP, "the row sums", row_sums, &[s.m as usize])?;
    let mut ins = vec![("A", a), ("B", b)];
    ins.extend(ep.bias.map(|t| ("bias", t)));
    ins.extend(ep.residual.map(|t| ("the residual", t)));
    check_distinct(OP, &[("the row sums", row_sums)], &ins)?;
    if row_sums.overlaps(out) {
        return Err(Error::Unsupported {
            op: OP,
            what: "the row sums overlapping the output".into(),
        });
    }
    let (mut ds, scratch, folded) =
        forward_rows_into(OP, rt, a, b, ep, out, opts, true, Some(row_sums))?;
    let mut keep: Vec<Tensor> = scratch.into_iter().collect();
    if !folded {
        // op(A) = Aᵀ sums A's columns; otherwise A's rows, into [M, 1].
        let (d, t) = if opts.trans_a {
            sum_to_shape_scratch_into(rt, a, row_sums)?
        } else {
            sum_to_shape_scratch_into(rt, a, &row_sums.reshape(&[s.m as usize, 1])?)?
        };
        ds.extend(d);
        keep.extend(t);
    }
    Ok((ds, keep))
}
