//! The criterion's point selection on the device: uniform draws from a counter-based hash,
//! importance sampling (a per-row top-k by uncertainty), and target labels sampled at the
//! chosen points of each row's matched target. None carries a gradient.

use super::{limits, u32_operand};
use crate::error::Result;
use crate::ops::common::check;
use crate::runtime::{DType, Dispatch, Runtime, Tensor};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct UniformParams {
    n: u32,
    stream: u32,
    _p: [u32; 2],
}

/// Dispatches that fill `out` (f32, any shape) with uniform numbers in [0, 1): element i is
/// [`super::reference::uniform`]`(seed, stream, i)`, `seed` a u32 [2] tensor (set per step).
pub fn uniform_into(
    rt: &Runtime,
    seed: &Tensor,
    stream: u32,
    out: &Tensor,
) -> Result<Vec<Dispatch>> {
    const OP: &str = "criterion::uniform";
    u32_operand(OP, "seed", seed, &[2])?;
    check::f32_dtype(OP, out)?;
    limits(rt, OP, &[("out", out)], 0)?;
    let k = rt.kernel(&crate::shader!("criterion_uniform"), "main", &[])?;
    let n = out.numel();
    let params = UniformParams {
        n: n as u32,
        stream,
        _p: [0; 2],
    };
    Ok(vec![rt.dispatch(
        &k,
        &params,
        &[seed.binding(), out.binding()],
        rt.grid(n as u64, 64),
    )])
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct TopkParams {
    rows: u32,
    cand: u32,
    keep: u32,
    extra: u32,
}

/// Threads per workgroup of the top-k kernel.
const TOPK_WG: usize = 256;

/// Dispatches for importance sampling: per row, the K = P − E candidates of cand [R, M, 2]
/// whose logits x [R, M] have the smallest |x| (ties: lowest index), in index order, then the
/// rows of extra [R, E, 2] → out [R, P, 2] (overwritten). K ≤ M.
pub fn importance_points_into(
    rt: &Runtime,
    x: &Tensor,
    cand: &Tensor,
    extra: &Tensor,
    out: &Tensor,
) -> Result<Vec<Dispatch>> {
    const OP: &str = "criterion::importance_points";
    let (r, m) = super::rows_of(OP, "x", x)?;
    check::f32_shape(OP, "candidates", cand, &[r, m, 2])?;
    check::f32_rank(OP, "extra", extra, 3)?;
    let e = extra.shape()[1];
    check::f32_rank(OP, "out", out, 3)?;
    let p = out.shape()[1];
    check::f32_shape(OP, "extra", extra, &[r, e, 2])?;
    check::f32_shape(OP, "out", out, &[r, p, 2])?;
    if p < e || p - e > m {
        return Err(crate::shape_err!(
            OP,
            "out {:?} keeps {} of {m} candidates plus {e} uniform points: it must keep between 0 \
             and {m}",
            out.shape(),
            p as i64 - e as i64
        ));
    }
    // Each invocation loops over the row in steps of 256 (per pass); the budget check takes
    // loops in steps of 64, so scale.
    limits(
        rt,
        OP,
        &[
            ("x", x),
            ("candidates", cand),
            ("extra", extra),
            ("out", out),
        ],
        m.div_ceil(TOPK_WG) * 64,
    )?;
    let k = rt.kernel(&crate::shader!("criterion_topk"), "main", &[])?;
    let params = TopkParams {
        rows: r as u32,
        cand: m as u32,
        keep: (p - e) as u32,
        extra: e as u32,
    };
    // Without extras the kernel never reads them: bind the candidates there (an empty binding
    // is smaller than one vec2).
    let extra = if e == 0 { cand } else { extra };
    let bind = [x.binding(), cand.binding(), extra.binding(), out.binding()];
    Ok(vec![rt.dispatch(
        &k,
        &params,
        &bind,
        rt.grid((r * TOPK_WG) as u64, TOPK_WG as u32),
    )])
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct GatherParams {
    rows: u32,
    points: u32,
    planes: u32,
    h: u32,
    w: u32,
    group: u32,
    _p: [u32; 2],
}

/// Binary masks `[planes, h, w]` packed 32 pixels to a u32 word (bit `i % 32` of word
/// `i / 32` is element i), as [`gather_sample_into`] reads them. A value other than 0 or 1 is
/// `Err(its index)`.
pub fn pack_masks(values: &[f32]) -> std::result::Result<Vec<u32>, usize> {
    let mut bits = vec![0u32; values.len().div_ceil(32)];
    for (i, &v) in values.iter().enumerate() {
        if v == 1.0 {
            bits[i / 32] |= 1 << (i % 32);
        } else if v != 0.0 {
            return Err(i);
        }
    }
    Ok(bits)
}

/// Dispatches for out [R, P] (overwritten): binary mask planes `(planes, h, w)` bit-packed in
/// `bits` (u32, [`pack_masks`]), plane idx[r] (`None`: plane r) sampled bilinearly at row
/// `r / group` of coords [R / group, P, 2] in [0, 1] (point_sample), 0 for a plane index ≥
/// planes.
pub fn gather_sample_into(
    rt: &Runtime,
    bits: &Tensor,
    (planes, h, w): (usize, usize, usize),
    idx: Option<&Tensor>,
    coords: &Tensor,
    out: &Tensor,
) -> Result<Vec<Dispatch>> {
    const OP: &str = "criterion::gather_sample";
    u32_operand(OP, "mask bits", bits, &[(planes * h * w).div_ceil(32)])?;
    check::f32_rank(OP, "out", out, 2)?;
    let (r, p) = (out.shape()[0], out.shape()[1]);
    check::f32_rank(OP, "coords", coords, 3)?;
    let groups = coords.shape()[0];
    if groups == 0 || r % groups != 0 || coords.shape()[1..] != [p, 2] {
        return Err(crate::shape_err!(
            OP,
            "coords {:?} must be [G, {p}, 2] with G dividing the {r} rows of out",
            coords.shape()
        ));
    }
    if let Some(idx) = idx {
        u32_operand(OP, "idx", idx, &[r])?;
    }
    check::u32_range(OP, "mask pixels", (planes * h * w) as u64)?;
    if h == 0 || w == 0 {
        return Err(crate::shape_err!(
            OP,
            "mask planes {h}x{w} have an empty side"
        ));
    }
    limits(
        rt,
        OP,
        &[("mask bits", bits), ("coords", coords), ("out", out)],
        0,
    )?;
    let k = rt.kernel(
        &crate::shader!("criterion_gather_sample"),
        "main",
        &[("IDENTITY", idx.is_none() as u8 as f64)],
    )?;
    let params = GatherParams {
        rows: r as u32,
        points: p as u32,
        planes: planes as u32,
        h: h as u32,
        w: w as u32,
        group: (r / groups) as u32,
        _p: [0; 2],
    };
    // Without an index the kernel never reads it: bind the bits there.
    let idx = idx.unwrap_or(bits);
    let bind = [
        bits.binding(),
        idx.binding(),
        coords.binding(),
        out.binding(),
    ];
    Ok(vec![rt.dispatch(
        &k,
        &params,
        &bind,
        rt.grid((r * p) as u64, 64),
    )])
}

/// [`uniform_into`] into a new tensor of `shape`.
pub fn uniform(rt: &Runtime, seed: &Tensor, stream: u32, shape: &[usize]) -> Result<Tensor> {
    let out = rt.empty(shape, DType::F32)?;
    rt.run(&uniform_into(rt, seed, stream, &out)?);
    Ok(out)
}
