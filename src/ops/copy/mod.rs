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
//! Every launch is split into chunks so that each binding stays under the adapter's limit.
//! Copies that transpose the last two dims over whole texels (NCHW ↔ NHWC) run in 4×4 blocks
//! (module `transpose`) where one chunk covers them: on the demo training step the permutes
//! took 6.6 ms of device time through the general kernel and 3.9 ms so.

pub mod reference;
#[cfg(test)]
mod tests;
mod transpose;

use crate::error::{Error, Result};
use crate::ops::common::layout::{
    self, collapse_groups, expect, expect_dtype, pack, pack_i32, plan, strides, u, Access, Affine,
};
use crate::runtime::{DType, Dispatch, Runtime, Tensor};

/// A strided copy over an index space (see the module docs). Dims are outermost first.
#[derive(Clone, Debug, PartialEq)]
pub struct StridedCopy {
    pub shape: Vec<usize>,
    /// x's element strides per index dim.
    pub x_strides: Vec<usize>,
    /// x coordinate of index 0 per dim (negative: padding before).
    pub x_start: Vec<i64>,
    /// x coordinate step per index step.
    pub x_step: Vec<usize>,
    /// x's extent per dim; coordinates outside `[0, lim)` read the pad value.
    pub x_lim: Vec<usize>,
    /// x element offset added to every read.
    pub x_base: usize,
    pub out_strides: Vec<usize>,
    pub out_base: usize,
    /// Bits of the pad value (f32 bits for f32 tensors).
    pub pad: u32,
}

impl StridedCopy {
    /// A plain copy of x read through `x_strides` into a contiguous `shape`.
    pub fn gather_view(shape: &[usize], x_strides: Vec<usize>, x_base: usize) -> Self {
        Self {
            shape: shape.to_vec(),
            x_strides,
            x_start: vec![0; shape.len()],
            x_step: vec![1; shape.len()],
            x_lim: shape.to_vec(),
            x_base,
            out_strides: strides(shape),
            out_base: 0,
            pad: 0,
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct CopyParams {
    n: u32,
    start: u32,
    rank: u32,
    win_x: u32,
    win_o: u32,
    x_base: u32,
    o_base: u32,
    pad: u32,
    shape: [u32; 8],
    xs: [u32; 8],
    os: [u32; 8],
    x0: [i32; 8],
    step: [u32; 8],
    lim: [u32; 8],
}

fn check_word_dtype(op: &'static str, x: &Tensor, out: &Tensor) -> Result<()> {
    if x.dtype() == DType::F16 {
        return Err(Error::Unsupported {
            op,
            what: "f16 tensors (the copy kernels move 4-byte words)".into(),
        });
    }
    expect_dtype(op, out, x.dtype())
}

/// Dispatches for the strided copy `c` from x into out (same 4-byte dtype). Validates that
/// every read and write stays inside the tensors.
pub fn strided_copy_into(
    rt: &Runtime,
    x: &Tensor,
    out: &Tensor,
    c: &StridedCopy,
) -> Result<Vec<Dispatch>> {
    const OP: &str = "strided_copy";
    check_word_dtype(OP, x, out)?;
    layout::no_alias(OP, &[x], out)?;
    check_copy(OP, x, out, c)?;
    if c.shape.contains(&0) {
        return Ok(Vec::new());
    }
    let s = Collapsed::new(c);
    let mut ax = Access::strided(x.numel(), s.xs.clone());
    ax.base = c.x_base;
    ax.affine = Some(Affine {
        start: s.x0.clone(),
        step: s.step.clone(),
        lim: s.lim.clone(),
    });
    let mut ao = Access::strided(out.numel(), s.os.clone());
    ao.base = c.out_base;
    let chunks = plan(rt, OP, &s.shape, &[&ax, &ao])?;
    if let (Some(t), [ch]) = (transpose::plan(&s, c), &chunks[..]) {
        if ch.windows.iter().all(|w| w.offset == 0) {
            return Ok(vec![transpose::launch(rt, x, out, &t)?]);
        }
    }
    let v4 = moves_texels(&s, c);
    let entry = if v4 { "main_v4" } else { "main" };
    let k = rt.kernel(&crate::shader!("copy"), entry, &[])?;
    let p = CopyParams {
        n: 0,
        start: 0,
        rank: u(s.shape.len()),
        win_x: 0,
        win_o: 0,
        x_base: u(c.x_base),
        o_base: u(c.out_base),
        pad: c.pad,
        shape: pack(OP, &s.shape)?,
        xs: pack(OP, &s.xs)?,
        os: pack(OP, &s.os)?,
        x0: pack_i32(OP, &s.x0)?,
        step: pack(OP, &s.step)?,
        lim: pack(OP, &s.lim)?,
    };
    let inner = *s.shape.last().unwrap();
    let bind = if v4 { layout::bind_vec4 } else { layout::bind };
    Ok(layout::launch_rows(
        rt,
        &k,
        &chunks,
        &[x, out],
        inner,
        bind,
        |ch| CopyParams {
            n: u(ch.n),
            start: u(ch.start),
            win_x: u(ch.windows[0].offset),
            win_o: u(ch.windows[1].offset),
            ..p
        },
    ))
}

/// Whether the collapsed copy `s` moves whole, aligned texels (`main_v4`): its innermost dim
/// has unit strides and step and an extent, limit and start that are multiples of 4, and every
/// other stride and both bases are multiples of 4 (so every row starts on a texel). Chunks start
/// on multiples of the workgroup size and windows on aligned offsets, so they keep this.
fn moves_texels(s: &Collapsed, c: &StridedCopy) -> bool {
    let last = s.shape.len() - 1;
    let four = |v: usize| v.is_multiple_of(4);
    let inner = s.xs[last] == 1 && s.os[last] == 1 && s.step[last] == 1;
    let inner_texels = four(s.shape[last]) && four(s.lim[last]) && s.x0[last].rem_euclid(4) == 0;
    let outer = s.xs[..last].iter().chain(&s.os[..last]).all(|&v| four(v));
    inner && inner_texels && outer && four(c.x_base) && four(c.out_base)
}

/// Errors unless every per-dim list of `c` has one entry per dim and every read and write
/// stays inside x and out.
fn check_copy(op: &'static str, x: &Tensor, out: &Tensor, c: &StridedCopy) -> Result<()> {
    let r = c.shape.len();
    if [
        c.x_strides.len(),
        c.x_start.len(),
        c.x_step.len(),
        c.x_lim.len(),
        c.out_strides.len(),
    ]
    .iter()
    .any(|&l| l != r)
    {
        return Err(crate::shape_err!(
            op,
            "every per-dim list must have {r} entries: {c:?}"
        ));
    }
    if c.shape.contains(&0) {
        return Ok(());
    }
    let out_last = c.out_base
        + (0..r)
            .map(|d| (c.shape[d] - 1) * c.out_strides[d])
            .sum::<usize>();
    let x_last = c.x_base
        + (0..r)
            .map(|d| c.x_lim[d].saturating_sub(1) * c.x_strides[d])
            .sum::<usize>();
    if out_last >= out.numel() || (x_last >= x.numel() && !c.x_lim.contains(&0)) {
        return Err(crate::shape_err!(
            op,
            "copy {c:?} reaches element {out_last} of out {:?} / {x_last} of x {:?}",
            out.shape(),
            x.shape()
        ));
    }
    Ok(())
}

/// A copy's index space with identity dims merged, at least one dim (the kernel walks rows
/// of the innermost dim), and per dim: x and out strides, x start, step and limit.
struct Collapsed {
    shape: Vec<usize>,
    xs: Vec<usize>,
    os: Vec<usize>,
    lim: Vec<usize>,
    x0: Vec<i64>,
    step: Vec<usize>,
}

impl Collapsed {
    fn new(c: &StridedCopy) -> Self {
        let r = c.shape.len();
        // Identity dims (no stepping or padding) may merge with their neighbours.
        let fixed: Vec<bool> = (0..r)
            .map(|d| c.x_start[d] != 0 || c.x_step[d] != 1 || c.x_lim[d] != c.shape[d])
            .collect();
        let groups = collapse_groups(&c.shape, &[&c.x_strides, &c.out_strides], &fixed);
        let pick =
            |v: &[usize]| -> Vec<usize> { groups.iter().map(|g| v[*g.last().unwrap()]).collect() };
        let extent = |g: &Vec<usize>| g.iter().map(|&d| c.shape[d]).product::<usize>();
        let mut s = Collapsed {
            shape: groups.iter().map(extent).collect(),
            xs: pick(&c.x_strides),
            os: pick(&c.out_strides),
            // Merged dims are identity dims, so their extent is also their limit.
            lim: groups
                .iter()
                .map(|g| {
                    if g.len() == 1 {
                        c.x_lim[g[0]]
                    } else {
                        extent(g)
                    }
                })
                .collect(),
            x0: groups.iter().map(|g| c.x_start[g[0]]).collect(),
            step: groups.iter().map(|g| c.x_step[g[0]]).collect(),
        };
        if s.shape.is_empty() {
            s.shape.push(1);
            s.xs.push(0);
            s.os.push(0);
            s.lim.push(1);
            s.x0.push(0);
            s.step.push(1);
        }
        s
    }
}

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
