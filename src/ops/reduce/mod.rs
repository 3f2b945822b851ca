//! Reductions along one axis of an f32 tensor: sum, mean, max, min, with backward passes; plus
//! [`sum_to_shape`] (module `sum_to`: sum over broadcast dims, for bias and broadcast
//! gradients), whose two-pass form sums its segment partials with [`reduce_into`]. Sum and mean
//! have a backward (a broadcast); max and min do not: nothing in the engine records which element
//! won, and no model path differentiates through them.
//!
//! Any axis of any rank: the input is viewed as `[outer, len, inner]` (len = the axis). The
//! output has the input's shape without the axis; an `out` tensor that keeps the axis as size 1
//! is accepted too (same memory layout).
//!
//! Two kernel variants ([`Variant`]): `Rows` runs one thread per output looping over the axis,
//! without workgroup memory (what CPU adapters such as lavapipe run fastest); `Groups` runs one
//! 64-thread workgroup per output with a tree in workgroup memory (GPUs, long axes).
//! [`Variant::Auto`] picks by the kernel policy (`crate::ops::policy`). Outputs are split into chunks so every
//! binding stays under the adapter's limit; an axis whose own extent (`len·inner` elements)
//! exceeds one binding is a `TooLarge` error.

pub mod reference;
mod sum_to;
#[cfg(test)]
mod sum_to_tests;
#[cfg(test)]
mod tests;

use crate::error::{Error, Result};
use crate::ops::common::layout::{self, expect_dtype, plan, u, Access};
use crate::runtime::{DType, Dispatch, Runtime, Tensor};

pub use sum_to::{sum_to_shape, sum_to_shape_into, sum_to_shape_scratch_into};

/// The reduction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reduce {
    Sum,
    Mean,
    Max,
    Min,
}

/// Which kernel runs a per-row reduction (also used by softmax).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Variant {
    /// `Rows` under CPU-shaped kernels, `Groups` under GPU-shaped ones.
    #[default]
    Auto,
    /// One thread per row, no workgroup memory.
    Rows,
    /// One workgroup per row, tree reduction in workgroup memory.
    Groups,
}

impl Variant {
    /// The entry point this variant runs on `rt`, and rows per workgroup, for rows whose
    /// one-thread loops (`rows`) run `iterations` times in all. Where the adapter caps an
    /// invocation's loops (llvmpipe, [`crate::ops::policy::Policy::loop_budget`]), longer rows
    /// take `groups` (64 threads per row, each looping over 1/64 of it) even where `Rows` was
    /// asked.
    pub fn entry(self, rt: &Runtime, iterations: usize) -> (&'static str, u32) {
        let policy = crate::ops::policy::policy(rt);
        let fits = iterations <= policy.budget().saturating_sub(64);
        let groups = match self {
            Variant::Auto => !(policy.cpu_shapes() && fits),
            Variant::Rows => !fits,
            Variant::Groups => true,
        };
        if groups {
            ("groups", 1)
        } else {
            ("rows", layout::WG)
        }
    }
}

/// `(outer, len, inner)` of `shape` around `axis`; errors name the op and the shape.
/// Loop iterations of one `rows` thread making `passes` passes over a row of
/// `(outer, len, inner)`: contiguous rows of whole vec4s are read 4 at a time.
pub fn row_iterations(passes: usize, (_, len, inner): (usize, usize, usize)) -> usize {
    let steps = if inner == 1 && len.is_multiple_of(4) {
        len / 4
    } else {
        len
    };
    passes * (steps + 1)
}

pub fn split_axis(op: &'static str, shape: &[usize], axis: usize) -> Result<(usize, usize, usize)> {
    if axis >= shape.len() {
        return Err(crate::shape_err!(
            op,
            "axis {axis} out of range for shape {shape:?} (rank {})",
            shape.len()
        ));
    }
    Ok((
        shape[..axis].iter().product(),
        shape[axis],
        shape[axis + 1..].iter().product(),
    ))
}

/// The shape without `axis`.
pub fn reduced_shape(shape: &[usize], axis: usize) -> Vec<usize> {
    let mut s = shape.to_vec();
    s.remove(axis);
    s
}

fn check_out(op: &'static str, x: &[usize], axis: usize, out: &Tensor, dtype: DType) -> Result<()> {
    expect_dtype(op, out, dtype)?;
    let mut keep = x.to_vec();
    keep[axis] = 1;
    if out.shape() != reduced_shape(x, axis) && out.shape() != keep {
        return Err(crate::shape_err!(
            op,
            "out has shape {:?}, expected {:?} (or {keep:?}) for input {x:?} along axis {axis}",
            out.shape(),
            reduced_shape(x, axis)
        ));
    }
    Ok(())
}

/// Chunks over the `[outer, inner]` outputs with x's window covering the reduced axis.
pub(crate) fn row_chunks(
    rt: &Runtime,
    op: &'static str,
    (outer, len, inner): (usize, usize, usize),
    x_len: usize,
) -> Result<Vec<layout::Chunk>> {
    let space = [outer, inner];
    let mut ax = Access::strided(x_len, vec![len * inner, 1]);
    ax.extra = len.saturating_sub(1) * inner;
    plan(rt, op, &space, &[&ax, &Access::contiguous(&space)])
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct RowParams {
    n: u32,
    start: u32,
    len: u32,
    inner: u32,
    win_a: u32,
    win_b: u32,
    scale: f32,
    _p: u32,
}

/// Dispatches for `out = op(x)` along `axis`.
pub fn reduce_into(
    rt: &Runtime,
    op: Reduce,
    x: &Tensor,
    axis: usize,
    out: &Tensor,
    variant: Variant,
) -> Result<Vec<Dispatch>> {
    const OP: &str = "reduce";
    expect_dtype(OP, x, DType::F32)?;
    let dims = split_axis(OP, x.shape(), axis)?;
    check_out(OP, x.shape(), axis, out, DType::F32)?;
    layout::no_alias(OP, &[x], out)?;
    if dims.1 == 0 && matches!(op, Reduce::Max | Reduce::Min) {
        return Err(crate::shape_err!(
            OP,
            "{op:?} over an empty axis {axis} of {:?}",
            x.shape()
        ));
    }
    let chunks = row_chunks(rt, OP, dims, x.numel())?;
    let (code, scale) = match op {
        Reduce::Sum => (0, 1.0),
        Reduce::Mean => (0, 1.0 / dims.1 as f32),
        Reduce::Max => (1, 1.0),
        Reduce::Min => (2, 1.0),
    };
    let (mut entry, mut per_wg) = variant.entry(rt, row_iterations(1, dims));
    // Strided rows of whole vec4s: 4 adjacent outputs a thread.
    let strided4 = dims.2 > 1 && dims.2.is_multiple_of(4);
    if entry == "rows" && strided4 && layout::texel_aligned(&chunks) {
        (entry, per_wg) = ("rows_cols4", 4 * layout::WG);
    }
    let k = rt.kernel(&crate::shader!("reduce"), entry, &[("OP", code as f64)])?;
    // x is read through a vec4 view; out's rounded binding is unused past its elements.
    Ok(layout::launch_with(
        rt,
        &k,
        &chunks,
        &[x, out],
        per_wg,
        layout::bind_vec4,
        |c| RowParams {
            n: u(c.n),
            start: u(c.start),
            len: u(dims.1),
            inner: u(dims.2),
            win_a: u(c.windows[0].offset),
            win_b: u(c.windows[1].offset),
            scale,
            _p: 0,
        },
    ))
}

/// `op(x)` along `axis` in a new tensor (the axis removed).
pub fn reduce(rt: &Runtime, op: Reduce, x: &Tensor, axis: usize) -> Result<Tensor> {
    split_axis("reduce", x.shape(), axis)?;
    let out = rt.empty(&reduced_shape(x.shape(), axis), DType::F32)?;
    rt.run(&reduce_into(rt, op, x, axis, &out, Variant::Auto)?);
    Ok(out)
}

/// Dispatches for the gradient of `op` (sum or mean) along `axis` of an input shaped like `dx`,
/// given `dy` (the output's shape): dy broadcast back, scaled by 1/len for the mean. Overwrites
/// dx. Max and min are [`Error::Unsupported`].
pub fn reduce_backward_into(
    rt: &Runtime,
    op: Reduce,
    dy: &Tensor,
    axis: usize,
    dx: &Tensor,
) -> Result<Vec<Dispatch>> {
    const OP: &str = "reduce_backward";
    expect_dtype(OP, dx, DType::F32)?;
    let (outer, len, inner) = split_axis(OP, dx.shape(), axis)?;
    check_out(OP, dx.shape(), axis, dy, DType::F32)?;
    layout::no_alias(OP, &[dy], dx)?;
    let scale = match op {
        Reduce::Sum => 1.0,
        Reduce::Mean => 1.0 / len as f32,
        Reduce::Max | Reduce::Min => {
            return Err(Error::Unsupported {
                op: OP,
                what: format!("the {op:?} backward (the engine records no arg indices)"),
            })
        }
    };
    let space = [outer, len, inner];
    let ad = Access::strided(dy.numel(), vec![inner, 0, 1]);
    let ax = Access::contiguous(&space);
    let chunks = plan(rt, OP, &space, &[&ad, &ax])?;
    let k = rt.kernel(&crate::shader!("reduce_backward"), "expand", &[])?;
    Ok(layout::launch(
        rt,
        &k,
        &chunks,
        &[dy, dx],
        layout::WG,
        |c| RowParams {
            n: u(c.n),
            start: u(c.start),
            len: u(len),
            inner: u(inner),
            win_a: u(c.windows[0].offset),
            win_b: u(c.windows[1].offset),
            scale,
            _p: 0,
        },
    ))
}

/// The gradient of `op` along `axis` for an input of `x_shape`, in a new tensor.
pub fn reduce_backward(
    rt: &Runtime,
    op: Reduce,
    dy: &Tensor,
    axis: usize,
    x_shape: &[usize],
) -> Result<Tensor> {
    let dx = rt.empty(x_shape, DType::F32)?;
    rt.run(&reduce_backward_into(rt, op, dy, axis, &dx)?);
    Ok(dx)
}
