//! The strided copy every movement op is built on: [`StridedCopy`] (an index space, x's and
//! out's strides, stepping, offsets and a pad value) and its launcher, which runs the general
//! kernel (`shaders/copy.wgsl` `main`), its vec4 form where whole texels move, or a 4×4-block
//! transpose (`super::transpose`) where the copy is one.

use super::transpose;
use crate::error::{Error, Result};
use crate::ops::common::layout::{
    self, collapse_groups, expect_dtype, pack, pack_i32, plan, strides, u, Access, Affine,
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
pub(super) struct Collapsed {
    pub(super) shape: Vec<usize>,
    pub(super) xs: Vec<usize>,
    pub(super) os: Vec<usize>,
    pub(super) lim: Vec<usize>,
    pub(super) x0: Vec<i64>,
    pub(super) step: Vec<usize>,
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
