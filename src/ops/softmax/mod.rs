//! Softmax and log-softmax along one axis of an f32 tensor, with backward passes.
//!
//! `y = softmax(x)` along `axis` (stable: the row maximum is subtracted before exponentiating);
//! `log_softmax` gives `x − max − log Σ exp(x − max)`. The input is viewed as
//! `[outer, len, inner]` around the axis, so the last axis (`inner = 1`) and any other work
//! alike; the output has the input's shape.
//!
//! Kernel variants as for the reductions ([`Variant`]): one thread per row on CPU adapters,
//! one 64-thread workgroup per row on GPUs; rows of any length (longer than a workgroup loop).
//! Tensors past the storage-binding limit are split over rows; a single row (`len·inner`
//! elements) larger than one binding is a `TooLarge` error.
//!
//! Backward (overwrites dx) from the forward's output y: softmax `dx = y·(dy − Σ dy·y)`,
//! log-softmax `dx = dy − exp(y)·Σ dy`.

pub mod reference;
#[cfg(test)]
mod tests;

use crate::error::Result;
use crate::ops::common::layout::{self, expect, expect_dtype, plan, u, Access};
pub use crate::ops::reduce::Variant;
use crate::ops::reduce::{row_iterations, split_axis};
use crate::runtime::{DType, Dispatch, Runtime, Tensor};

/// Softmax or its logarithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Softmax,
    LogSoftmax,
}

impl Kind {
    fn code(self) -> u32 {
        match self {
            Kind::Softmax => 0,
            Kind::LogSoftmax => 1,
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    start: u32,
    len: u32,
    inner: u32,
    win: [u32; 3],
    _p: u32,
}

/// Chunks over the `[outer, inner]` columns; every operand is addressed like x.
fn column_chunks(
    rt: &Runtime,
    op: &'static str,
    (outer, len, inner): (usize, usize, usize),
    operands: usize,
) -> Result<Vec<layout::Chunk>> {
    let mut a = Access::strided(outer * len * inner, vec![len * inner, 1]);
    a.extra = len.saturating_sub(1) * inner;
    let accs = vec![a; operands];
    let refs: Vec<&Access> = accs.iter().collect();
    plan(rt, op, &[outer, inner], &refs)
}

fn params(c: &layout::Chunk, (_, len, inner): (usize, usize, usize)) -> Params {
    let mut win = [0; 3];
    for (w, cw) in win.iter_mut().zip(&c.windows) {
        *w = u(cw.offset);
    }
    Params {
        n: u(c.n),
        start: u(c.start),
        len: u(len),
        inner: u(inner),
        win,
        _p: 0,
    }
}

/// Dispatches for `y = kind(x)` along `axis`; y has x's shape.
pub fn softmax_into(
    rt: &Runtime,
    kind: Kind,
    x: &Tensor,
    axis: usize,
    y: &Tensor,
    variant: Variant,
) -> Result<Vec<Dispatch>> {
    const OP: &str = "softmax";
    expect_dtype(OP, x, DType::F32)?;
    expect(OP, "y", y, DType::F32, x.shape())?;
    layout::no_alias(OP, &[x], y)?;
    let dims = split_axis(OP, x.shape(), axis)?;
    let chunks = column_chunks(rt, OP, dims, 2)?;
    // rows: max, sum and write passes.
    let (entry, per_wg) = variant.entry(rt, row_iterations(3, dims));
    let k = rt.kernel(
        &crate::shader!("softmax"),
        entry,
        &[("OP", kind.code() as f64)],
    )?;
    Ok(layout::launch_with(
        rt,
        &k,
        &chunks,
        &[x, y],
        per_wg,
        layout::bind_vec4,
        |c| params(c, dims),
    ))
}

/// Softmax along `axis` in a new tensor.
pub fn softmax(rt: &Runtime, x: &Tensor, axis: usize) -> Result<Tensor> {
    let y = rt.empty(x.shape(), DType::F32)?;
    rt.run(&softmax_into(
        rt,
        Kind::Softmax,
        x,
        axis,
        &y,
        Variant::Auto,
    )?);
    Ok(y)
}

/// Log-softmax along `axis` in a new tensor.
pub fn log_softmax(rt: &Runtime, x: &Tensor, axis: usize) -> Result<Tensor> {
    let y = rt.empty(x.shape(), DType::F32)?;
    rt.run(&softmax_into(
        rt,
        Kind::LogSoftmax,
        x,
        axis,
        &y,
        Variant::Auto,
    )?);
    Ok(y)
}

/// Dispatches for the gradient of `y = kind(x)` along `axis` from y and dy (overwrites dx).
pub fn softmax_backward_into(
    rt: &Runtime,
    kind: Kind,
    y: &Tensor,
    dy: &Tensor,
    axis: usize,
    dx: &Tensor,
    variant: Variant,
) -> Result<Vec<Dispatch>> {
    const OP: &str = "softmax_backward";
    expect_dtype(OP, y, DType::F32)?;
    expect(OP, "dy", dy, DType::F32, y.shape())?;
    expect(OP, "dx", dx, DType::F32, y.shape())?;
    layout::no_alias(OP, &[y, dy], dx)?;
    let dims = split_axis(OP, y.shape(), axis)?;
    let chunks = column_chunks(rt, OP, dims, 3)?;
    // rows: dot and write passes.
    let (entry, per_wg) = variant.entry(rt, row_iterations(2, dims));
    let k = rt.kernel(
        &crate::shader!("softmax_backward"),
        entry,
        &[("OP", kind.code() as f64)],
    )?;
    Ok(layout::launch_with(
        rt,
        &k,
        &chunks,
        &[y, dy, dx],
        per_wg,
        layout::bind_vec4,
        |c| params(c, dims),
    ))
}

/// The gradient of `kind` along `axis` in a new tensor.
pub fn softmax_backward(
    rt: &Runtime,
    kind: Kind,
    y: &Tensor,
    dy: &Tensor,
    axis: usize,
) -> Result<Tensor> {
    let dx = rt.empty(y.shape(), DType::F32)?;
    rt.run(&softmax_backward_into(
        rt,
        kind,
        y,
        dy,
        axis,
        &dx,
        Variant::Auto,
    )?);
    Ok(dx)
}
