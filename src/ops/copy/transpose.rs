//! Strided copies that transpose the last two dims in 4×4 blocks (`shaders/transpose.wgsl`):
//! the permutes between channel-first and channel-last layouts. Where a copy qualifies
//! ([`plan`]), [`super::strided_copy_into`] runs it instead of the general kernel.

use super::strided::{Collapsed, StridedCopy};
use crate::error::Result;
use crate::ops::common::layout::u;
use crate::runtime::{Dispatch, Runtime, Tensor};

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub(super) struct Params {
    batch: u32,
    p: u32,
    q: u32,
    xs_b: u32,
    xs_q: u32,
    os_b: u32,
    os_p: u32,
    x_base: u32,
    o_base: u32,
    pad: [u32; 3],
}

/// The transpose a collapsed copy is, if it is one: over (batch,) P, Q with out contiguous
/// along Q and x contiguous along P, no padding, stepping or offsets into x, and every extent,
/// stride and base a multiple of 4 (whole texels on both sides).
pub(super) fn plan(s: &Collapsed, c: &StridedCopy) -> Option<Params> {
    let r = s.shape.len();
    if !(2..=3).contains(&r) {
        return None;
    }
    let plain = (0..r).all(|d| s.step[d] == 1 && s.x0[d] == 0 && s.lim[d] == s.shape[d]);
    let (p, q) = (s.shape[r - 2], s.shape[r - 1]);
    let units = s.xs[r - 2] == 1 && s.os[r - 1] == 1;
    let (xs_b, os_b) = if r == 3 { (s.xs[0], s.os[0]) } else { (0, 0) };
    let four = [
        p,
        q,
        s.xs[r - 1],
        s.os[r - 2],
        xs_b,
        os_b,
        c.x_base,
        c.out_base,
    ]
    .iter()
    .all(|v| v.is_multiple_of(4));
    (plain && units && four).then(|| Params {
        batch: u(if r == 3 { s.shape[0] } else { 1 }),
        p: u(p),
        q: u(q),
        xs_b: u(xs_b),
        xs_q: u(s.xs[r - 1]),
        os_b: u(os_b),
        os_p: u(s.os[r - 2]),
        x_base: u(c.x_base),
        o_base: u(c.out_base),
        pad: [0; 3],
    })
}

/// The transpose's one launch over whole tensors (the caller checked that one chunk covers them).
pub(super) fn launch(rt: &Runtime, x: &Tensor, out: &Tensor, p: &Params) -> Result<Dispatch> {
    let k = rt.kernel(&crate::shader!("transpose"), "transpose4", &[])?;
    let blocks = p.batch as u64 * (p.p as u64 / 4) * (p.q as u64 / 4);
    Ok(rt.dispatch(&k, p, &[x.binding(), out.binding()], rt.grid(blocks, 256)))
}
