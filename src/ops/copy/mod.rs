//! Movement ops: permute, slice, pad, concat, and the strided copy they are built on, with
//! backward passes. (Gather / index_select and their scatter-add backward were removed: no
//! product path used them; the host does point sampling and matching.)
//!
//! - [`strided_copy_into`]: the primitive. Over an index space, element `c` is written to
//!   `out[o_base + Σ c_d·os_d]` from `x` at coordinates `c_d·step_d + start_d` (or the pad value
//!   where a coordinate falls outside `[0, lim_d)`). Works on any 4-byte dtype (f32, u32, i32).
//! - [`permute`] (`out.shape[d] = x.shape[perm[d]]`), [`slice`] (start/end/step per axis),
//!   [`pad`] (constant, per-axis before/after; negative amounts crop), [`concat`] along an axis.
//! - Backward (gradients of f32 inputs): permute → inverse permute, slice → zeros with dy
//!   written into the slice, pad → pad with the negated amounts (a crop, zero-filled where the
//!   forward cropped), concat → slices.
//!
//! Every launch is split into chunks so that each binding stays under the adapter's limit
//! (module `strided`, the launcher).
//! Copies that transpose the last two dims over whole texels (NCHW ↔ NHWC) run in 4×4 blocks
//! (module `transpose`) where one chunk covers them: on the demo training step the permutes
//! took 6.6 ms of device time through the general kernel and 3.9 ms so.

pub mod reference;
mod strided;
#[cfg(test)]
mod tests;
mod transpose;

pub use strided::{strided_copy_into, StridedCopy};

use crate::error::Result;
use crate::ops::common::layout::{self, expect, plan, strides, u, Access};
use crate::runtime::{Dispatch, Runtime, Tensor};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct FillParams {
    n: u32,
    value: u32,
}

/// Dispatches that set every element of `t` (any 4-byte dtype) to the bits `value`.
pub fn fill_into(rt: &Runtime, t: &Tensor, value: u32) -> Result<Vec<Dispatch>> {
    let space = [t.numel()];
    let chunks = plan(rt, "fill", &space, &[&Access::contiguous(&space)])?;
    let k = rt.kernel(&crate::shader!("fill"), "main", &[])?;
    // The fill kernel indexes from its binding's start, which is the chunk's start here.
    Ok(layout::launch(rt, &k, &chunks, &[t], layout::WG, |c| {
        debug_assert_eq!(c.windows[0].offset, c.start);
        FillParams { n: u(c.n), value }
    }))
}

// ---- permute ---------------------------------------------------------------------------

fn check_perm(op: &'static str, rank: usize, perm: &[usize]) -> Result<()> {
    let mut seen = vec![false; rank];
    if perm.len() != rank
        || perm
            .iter()
            .any(|&p| p >= rank || std::mem::replace(&mut seen[p], true))
    {
        return Err(crate::shape_err!(
            op,
            "{perm:?} is not a permutation of {rank} axes"
        ));
    }
    Ok(())
}

/// The shape of `permute(x, perm)`.
pub fn permuted_shape(shape: &[usize], perm: &[usize]) -> Vec<usize> {
    perm.iter().map(|&p| shape[p]).collect()
}

/// Dispatches for `out = x.permute(perm)`: `out.shape[d] = x.shape[perm[d]]`.
pub fn permute_into(
    rt: &Runtime,
    x: &Tensor,
    perm: &[usize],
    out: &Tensor,
) -> Result<Vec<Dispatch>> {
    const OP: &str = "permute";
    check_perm(OP, x.rank(), perm)?;
    let shape = permuted_shape(x.shape(), perm);
    expect(OP, "out", out, x.dtype(), &shape)?;
    let xs = strides(x.shape());
    let c = StridedCopy::gather_view(&shape, perm.iter().map(|&p| xs[p]).collect(), 0);
    strided_copy_into(rt, x, out, &c)
}

pub fn permute(rt: &Runtime, x: &Tensor, perm: &[usize]) -> Result<Tensor> {
    check_perm("permute", x.rank(), perm)?;
    let out = rt.empty(&permuted_shape(x.shape(), perm), x.dtype())?;
    rt.run(&permute_into(rt, x, perm, &out)?);
    Ok(out)
}

/// The inverse permutation (the backward of permute is permute by it).
pub fn inverse_permutation(perm: &[usize]) -> Vec<usize> {
    let mut inv = vec![0; perm.len()];
    for (d, &p) in perm.iter().enumerate() {
        inv[p] = d;
    }
    inv
}

/// Dispatches for the gradient of `permute(x, perm)`: dx = dy.permute(perm⁻¹). Overwrites dx.
pub fn permute_backward_into(
    rt: &Runtime,
    dy: &Tensor,
    perm: &[usize],
    dx: &Tensor,
) -> Result<Vec<Dispatch>> {
    check_perm("permute_backward", dy.rank(), perm)?;
    permute_into(rt, dy, &inverse_permutation(perm), dx)
}

// ---- slice -----------------------------------------------------------------------------

/// A slice of one axis: `start..end` by `step` (≥ 1), as Python's `x[start:end:step]` with
/// `0 ≤ start ≤ end ≤ dim`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    pub start: usize,
    pub end: usize,
    pub step: usize,
}

impl Range {
    pub fn new(start: usize, end: usize, step: usize) -> Self {
        Self { start, end, step }
    }
    /// The whole axis.
    pub fn all(dim: usize) -> Self {
        Self::new(0, dim, 1)
    }
    pub fn len(&self) -> usize {
        (self.end - self.start).div_ceil(self.step)
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The shape of a slice; validates the ranges against `shape`.
pub fn sliced_shape(op: &'static str, shape: &[usize], ranges: &[Range]) -> Result<Vec<usize>> {
    if ranges.len() != shape.len() {
        return Err(crate::shape_err!(
            op,
            "{} ranges for shape {shape:?}",
            ranges.len()
        ));
    }
    for (d, (r, &n)) in ranges.iter().zip(shape).enumerate() {
        if r.step == 0 || r.start > r.end || r.end > n {
            return Err(crate::shape_err!(
                op,
                "range {r:?} of axis {d} is invalid for shape {shape:?}"
            ));
        }
    }
    Ok(ranges.iter().map(Range::len).collect())
}

fn slice_view(shape: &[usize], ranges: &[Range]) -> (Vec<usize>, usize) {
    let st = strides(shape);
    let strided = ranges.iter().zip(&st).map(|(r, s)| r.step * s).collect();
    let base = ranges.iter().zip(&st).map(|(r, s)| r.start * s).sum();
    (strided, base)
}

/// Dispatches for `out = x[ranges]` (one range per axis).
pub fn slice_into(
    rt: &Runtime,
    x: &Tensor,
    ranges: &[Range],
    out: &Tensor,
) -> Result<Vec<Dispatch>> {
    const OP: &str = "slice";
    let shape = sliced_shape(OP, x.shape(), ranges)?;
    expect(OP, "out", out, x.dtype(), &shape)?;
    let (xs, base) = slice_view(x.shape(), ranges);
    strided_copy_into(rt, x, out, &StridedCopy::gather_view(&shape, xs, base))
}

pub fn slice(rt: &Runtime, x: &Tensor, ranges: &[Range]) -> Result<Tensor> {
    let out = rt.empty(&sliced_shape("slice", x.shape(), ranges)?, x.dtype())?;
    rt.run(&slice_into(rt, x, ranges, &out)?);
    Ok(out)
}

/// Dispatches for the gradient of `slice(x, ranges)`: dx = zeros with dy written at the
/// sliced positions. Overwrites dx (x's shape).
pub fn slice_backward_into(
    rt: &Runtime,
    dy: &Tensor,
    ranges: &[Range],
    dx: &Tensor,
) -> Result<Vec<Dispatch>> {
    const OP: &str = "slice_backward";
    let shape = sliced_shape(OP, dx.shape(), ranges)?;
    expect(OP, "dy", dy, dx.dtype(), &shape)?;
    let (os, base) = slice_view(dx.shape(), ranges);
    let mut c = StridedCopy::gather_view(&shape, strides(&shape), 0);
    c.out_strides = os;
    c.out_base = base;
    let mut d = fill_into(rt, dx, 0)?;
    d.extend(strided_copy_into(rt, dy, dx, &c)?);
    Ok(d)
}

// ---- pad -------------------------------------------------------------------------------

/// The shape of `pad(x, amounts)`; amounts are (before, after) per axis, negative crops.
pub fn padded_shape(
    op: &'static str,
    shape: &[usize],
    amounts: &[(i64, i64)],
) -> Result<Vec<usize>> {
    if amounts.len() != shape.len() {
        return Err(crate::shape_err!(
            op,
            "{} pad amounts for shape {shape:?}",
            amounts.len()
        ));
    }
    shape
        .iter()
        .zip(amounts)
        .map(|(&n, &(b, a))| {
            let m = n as i64 + b + a;
            if m < 0 || (b < 0 && -b > n as i64) || (a < 0 && -a > n as i64) {
                Err(crate::shape_err!(
                    op,
                    "padding {amounts:?} crops more than shape {shape:?} holds"
                ))
            } else {
                Ok(m as usize)
            }
        })
        .collect()
}

/// Dispatches for `out = pad(x, amounts, value)` (value as f32 bits for f32 tensors).
pub fn pad_into(
    rt: &Runtime,
    x: &Tensor,
    amounts: &[(i64, i64)],
    value: u32,
    out: &Tensor,
) -> Result<Vec<Dispatch>> {
    const OP: &str = "pad";
    let shape = padded_shape(OP, x.shape(), amounts)?;
    expect(OP, "out", out, x.dtype(), &shape)?;
    let c = StridedCopy {
        shape: shape.clone(),
        x_strides: strides(x.shape()),
        x_start: amounts.iter().map(|&(b, _)| -b).collect(),
        x_step: vec![1; shape.len()],
        x_lim: x.shape().to_vec(),
        x_base: 0,
        out_strides: strides(&shape),
        out_base: 0,
        pad: value,
    };
    strided_copy_into(rt, x, out, &c)
}

/// Constant padding of an f32 tensor.
pub fn pad(rt: &Runtime, x: &Tensor, amounts: &[(i64, i64)], value: f32) -> Result<Tensor> {
    let out = rt.empty(&padded_shape("pad", x.shape(), amounts)?, x.dtype())?;
    rt.run(&pad_into(rt, x, amounts, value.to_bits(), &out)?);
    Ok(out)
}

/// Dispatches for the gradient of `pad(x, amounts)`: the padding removed (and zeros where the
/// forward cropped), i.e. a pad by the negated amounts. Overwrites dx.
pub fn pad_backward_into(
    rt: &Runtime,
    dy: &Tensor,
    amounts: &[(i64, i64)],
    dx: &Tensor,
) -> Result<Vec<Dispatch>> {
    let neg: Vec<(i64, i64)> = amounts.iter().map(|&(b, a)| (-b, -a)).collect();
    let fwd = padded_shape("pad_backward", dx.shape(), amounts)?;
    expect("pad_backward", "dy", dy, dx.dtype(), &fwd)?;
    pad_into(rt, dy, &neg, 0, dx)
}

// ---- concat ----------------------------------------------------------------------------

/// The shape of `concat(xs, axis)`.
pub fn concat_shape(op: &'static str, shapes: &[&[usize]], axis: usize) -> Result<Vec<usize>> {
    let first = shapes
        .first()
        .ok_or_else(|| crate::shape_err!(op, "nothing to concatenate"))?;
    if axis >= first.len() {
        return Err(crate::shape_err!(
            op,
            "axis {axis} out of range for shape {first:?}"
        ));
    }
    let mut out = first.to_vec();
    out[axis] = 0;
    for s in shapes {
        let same = s.len() == first.len() && (0..s.len()).all(|d| d == axis || s[d] == first[d]);
        if !same {
            return Err(crate::shape_err!(
                op,
                "shapes {shapes:?} differ off axis {axis}"
            ));
        }
        out[axis] += s[axis];
    }
    Ok(out)
}

/// Dispatches for `out = concat(xs, axis)`.
pub fn concat_into(
    rt: &Runtime,
    xs: &[&Tensor],
    axis: usize,
    out: &Tensor,
) -> Result<Vec<Dispatch>> {
    const OP: &str = "concat";
    let shapes: Vec<&[usize]> = xs.iter().map(|t| t.shape()).collect();
    let shape = concat_shape(OP, &shapes, axis)?;
    expect(OP, "out", out, xs[0].dtype(), &shape)?;
    let os = strides(&shape);
    let mut d = Vec::new();
    let mut offset = 0;
    for x in xs {
        let mut c = StridedCopy::gather_view(x.shape(), strides(x.shape()), 0);
        c.out_strides = os.clone();
        c.out_base = offset * os[axis];
        d.extend(strided_copy_into(rt, x, out, &c)?);
        offset += x.shape()[axis];
    }
    Ok(d)
}

pub fn concat(rt: &Runtime, xs: &[&Tensor], axis: usize) -> Result<Tensor> {
    let shapes: Vec<&[usize]> = xs.iter().map(|t| t.shape()).collect();
    let out = rt.empty(&concat_shape("concat", &shapes, axis)?, xs[0].dtype())?;
    rt.run(&concat_into(rt, xs, axis, &out)?);
    Ok(out)
}

/// Dispatches for the gradients of `concat`: each dxs[i] is its slice of dy along `axis`.
pub fn concat_backward_into(
    rt: &Runtime,
    dy: &Tensor,
    axis: usize,
    dxs: &[&Tensor],
) -> Result<Vec<Dispatch>> {
    const OP: &str = "concat_backward";
    let shapes: Vec<&[usize]> = dxs.iter().map(|t| t.shape()).collect();
    let shape = concat_shape(OP, &shapes, axis)?;
    expect(OP, "dy", dy, dxs[0].dtype(), &shape)?;
    let mut d = Vec::new();
    let mut offset = 0;
    for dx in dxs {
        let mut ranges: Vec<Range> = shape.iter().map(|&n| Range::all(n)).collect();
        ranges[axis] = Range::new(offset, offset + dx.shape()[axis], 1);
        d.extend(slice_into(rt, dy, &ranges, dx)?);
        offset += dx.shape()[axis];
    }
    Ok(d)
}
