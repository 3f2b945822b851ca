//! GroupNorm on `[N, C, *spatial]` (NCHW), as in the pixel decoder: `GroupNorm(32, 256)` after
//! the input projections, the lateral 1×1 and the output 3×3 convolutions.
//!
//! The `C` channels form `G` groups of `C/G`; every `(n, g)` segment of `(C/G)·H·W` values is
//! normalised with its own mean and rstd (`1/√(var + eps)`, biased variance), then scaled and
//! shifted per channel: `y = xhat · weight[c] + bias[c]`, optionally followed by a fused ReLU
//! (the FPN's `layer_1` is Conv → GN → ReLU). The statistics are written to `mean`/`rstd`
//! `[N, G]`, which the backward reads.
//!
//! Kernels (`shaders/group_norm.wgsl`, `shaders/group_norm_backward.wgsl`): the per-segment and
//! per-channel reductions run one invocation per segment on CPU adapters (no workgroup memory)
//! and one workgroup per segment on GPUs ([`Variant`] forces either); the forward statistics on
//! GPUs run one workgroup per chunk of a segment (chunk mean and M2 into a workspace of
//! [`group_norm_workspace_len`], then a merge per segment), since a few dozen segments cannot
//! fill a GPU. The elementwise passes run one invocation per element. All reductions are
//! deterministic; no atomics.

pub mod reference;
#[cfg(test)]
mod tests;

use crate::error::Result;
use crate::ops::common::check;
use crate::runtime::{DType, Dispatch, Runtime, Tensor};

/// Which reduction shape to use; `Auto` picks from the adapter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Variant {
    #[default]
    Auto,
    /// One invocation per reduced segment, no workgroup memory (fast on CPU adapters).
    SegmentPerThread,
    /// One 256-invocation workgroup per reduced segment.
    SegmentPerWorkgroup,
    /// Forward statistics: one 256-invocation workgroup per chunk of a segment, then a merge
    /// (GPUs; needs the workspace). The backward's reductions run `SegmentPerWorkgroup`.
    Chunked,
}

impl Variant {
    /// The variant for segments whose one-invocation loop runs `iterations` times. Where the
    /// adapter caps an invocation's loops (llvmpipe, [`crate::ops::policy::Policy::loop_budget`])
    /// a segment too long for one invocation takes the workgroup variant (whose invocations
    /// each loop over 1/256 of it) even where `SegmentPerThread` was asked for.
    fn resolve(self, rt: &Runtime, iterations: usize) -> Variant {
        let policy = crate::ops::policy::policy(rt);
        let fits = iterations <= policy.budget() / 2;
        match self {
            Variant::Auto if policy.cpu_shapes() && fits => Variant::SegmentPerThread,
            Variant::Auto if policy.cpu_shapes() => Variant::SegmentPerWorkgroup,
            Variant::Auto => Variant::Chunked,
            Variant::SegmentPerThread if !fits => Variant::SegmentPerWorkgroup,
            v => v,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GroupNormOptions {
    pub groups: usize,
    pub eps: f32,
    /// Apply ReLU to the output (and mask the gradient accordingly in the backward).
    pub relu: bool,
    pub variant: Variant,
}

impl GroupNormOptions {
    /// `groups` groups, `eps = 1e-5` (PyTorch's default, used by Mask2Former), no ReLU.
    pub fn new(groups: usize) -> Self {
        Self {
            groups,
            eps: 1e-5,
            relu: false,
            variant: Variant::Auto,
        }
    }
}

/// Gradients of [`group_norm`] with respect to `x`, `weight` and `bias`.
pub struct GroupNormGrads {
    pub dx: Tensor,
    pub dweight: Tensor,
    pub dbias: Tensor,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    c: u32,
    s: u32,
    groups: u32,
    eps: f32,
    chunks: u32,
    _pad: [u32; 2],
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct BackwardParams {
    n: u32,
    c: u32,
    s: u32,
    groups: u32,
}

const OP: &str = "group_norm";
const OP_BACK: &str = "group_norm_backward";
const WG: u32 = 64;
/// Invocations a workgroup of `stats_thread` (`WG_STATS` in group_norm.wgsl).
const STATS_WG: u32 = 16;

/// Workgroups for the elementwise passes: `ceil(s / WG)` per (n, c) plane, split over x and y.
fn plane_grid(rt: &Runtime, planes: usize, s: usize) -> [u32; 3] {
    rt.grid((planes * s.div_ceil(WG as usize)) as u64, 1)
}

/// `(n, c, spatial)` of `x`, checked against the options.
fn dims(op: &'static str, x: &Tensor, opts: &GroupNormOptions) -> Result<(usize, usize, usize)> {
    let shape = x.shape();
    if shape.len() < 2 {
        return Err(crate::shape_err!(
            op,
            "x must be [N, C, *spatial], got shape {shape:?}"
        ));
    }
    let (n, c) = (shape[0], shape[1]);
    let s: usize = shape[2..].iter().product();
    if opts.groups == 0 || c % opts.groups != 0 {
        return Err(crate::shape_err!(
            op,
            "{} groups do not divide the {c} channels of x {shape:?}",
            opts.groups
        ));
    }
    if s == 0 {
        return Err(crate::shape_err!(
            op,
            "x has shape {shape:?}: cannot normalise over an empty spatial extent"
        ));
    }
    if opts.eps.is_nan() || opts.eps < 0.0 {
        return Err(crate::shape_err!(op, "eps must be >= 0, got {}", opts.eps));
    }
    check::u32_range(op, "elements of x", x.numel() as u64)?;
    Ok((n, c, s))
}

/// Values per chunk of the chunked statistics: 16 per invocation of a 256-wide workgroup.
const CHUNK: usize = 4096;
/// At most this many chunks per segment (the merge loops over them).
const MAX_CHUNKS: usize = 1024;

/// Chunks per segment of the chunked statistics for `x_shape` with `groups` groups.
fn chunks(x_shape: &[usize], groups: usize) -> usize {
    let c = x_shape.get(1).copied().unwrap_or(0);
    let s: usize = x_shape.iter().skip(2).product();
    let seg_len = c / groups.max(1) * s;
    seg_len.div_ceil(CHUNK).clamp(1, MAX_CHUNKS)
}

/// Elements of the f32 workspace the chunked statistics need (`2·N·G·chunks`: mean and M2 per
/// chunk). Other variants need none.
pub fn group_norm_workspace_len(x_shape: &[usize], groups: usize) -> usize {
    let n = x_shape.first().copied().unwrap_or(0);
    2 * n * groups * chunks(x_shape, groups)
}

/// Records the forward into `out` (shape of `x`) and the statistics into `mean`, `rstd`
/// (`[N, G]`, needed in between even for inference). Overwrites all three. `workspace` (at
/// least [`group_norm_workspace_len`] f32 elements, alive until the dispatches have run) lets
/// GPUs take the chunked statistics; without it they take one workgroup per segment.
#[allow(clippy::too_many_arguments)]
pub fn group_norm_into(
    rt: &Runtime,
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    out: &Tensor,
    mean: &Tensor,
    rstd: &Tensor,
    workspace: Option<&Tensor>,
    opts: &GroupNormOptions,
) -> Result<Vec<Dispatch>> {
    // Over ~80 lines: validation, the statistics variant chosen for the adapter, then the apply pass.
    let (n, c, s) = dims(OP, x, opts)?;
    let g = opts.groups;
    check::operand(rt, OP, "x", x, x.shape())?;
    check::operand(rt, OP, "weight", weight, &[c])?;
    check::operand(rt, OP, "bias", bias, &[c])?;
    check::operand(rt, OP, "out", out, x.shape())?;
    check::operand(rt, OP, "mean", mean, &[n, g])?;
    check::operand(rt, OP, "rstd", rstd, &[n, g])?;
    if n == 0 || c == 0 {
        return Ok(Vec::new());
    }
    let params = Params {
        n: n as u32,
        c: c as u32,
        s: s as u32,
        groups: g as u32,
        eps: opts.eps,
        chunks: chunks(x.shape(), g) as u32,
        _pad: [0; 2],
    };
    let shader = crate::shader!("group_norm");
    let segments = (n * g) as u64;
    // stats_thread: two passes of len/4 vec4 steps plus len/256 block steps.
    let seg_len = c / g * s;
    let need = group_norm_workspace_len(x.shape(), g);
    let ws = workspace.filter(|w| w.numel() >= need && w.dtype() == DType::F32);
    let variant = match opts
        .variant
        .resolve(rt, 2 * (seg_len / 4 + seg_len / 256 + 8))
    {
        Variant::Chunked if ws.is_none() && opts.variant == Variant::Chunked => {
            return Err(crate::shape_err!(
                OP,
                "the chunked statistics need a workspace of {need} f32 elements for x of shape {:?}",
                x.shape()
            ));
        }
        Variant::Chunked if ws.is_none() => Variant::SegmentPerWorkgroup,
        v => v,
    };
    let stats = match (variant, ws) {
        (Variant::SegmentPerThread, _) => vec![rt.dispatch(
            // Segments of whole vec4s: one vec4 load a step.
            &rt.kernel(
                &shader,
                match seg_len.is_multiple_of(4) {
                    true => "stats_v4",
                    false => "stats_thread",
                },
                &[],
            )?,
            &params,
            &[x.binding(), mean.binding(), rstd.binding()],
            rt.grid(segments, STATS_WG),
        )],
        (Variant::Chunked, Some(ws)) => {
            check::binding(rt, OP, "workspace", ws)?;
            let parts = segments * params.chunks as u64;
            vec![
                rt.dispatch(
                    &rt.kernel(&shader, "stats_part", &[])?,
                    &params,
                    &[x.binding(), ws.binding()],
                    rt.grid(parts, 1),
                ),
                rt.dispatch(
                    &rt.kernel(&shader, "stats_combine", &[])?,
                    &params,
                    &[ws.binding(), mean.binding(), rstd.binding()],
                    rt.grid(segments, WG),
                ),
            ]
        }
        // One workgroup per segment.
        _ => vec![rt.dispatch(
            &rt.kernel(&shader, "stats_wg", &[])?,
            &params,
            &[x.binding(), mean.binding(), rstd.binding()],
            rt.grid(segments, 1),
        )],
    };
    // Planes of whole vec4s: 4 values an invocation.
    let (apply, s_units) = match s.is_multiple_of(4) {
        true => ("apply_v4", s / 4),
        false => ("apply", s),
    };
    let apply = rt.kernel(&shader, apply, &[("RELU", opts.relu as u32 as f64)])?;
    Ok(stats
        .into_iter()
        .chain([rt.dispatch(
            &apply,
            &params,
            &[
                x.binding(),
                weight.binding(),
                bias.binding(),
                mean.binding(),
                rstd.binding(),
                out.binding(),
            ],
            plane_grid(rt, n * c, s_units),
        )])
        .collect())
}

/// Training forward: returns `(y, mean, rstd)`, the statistics shaped `[N, G]`.
pub fn group_norm_train(
    rt: &Runtime,
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    opts: &GroupNormOptions,
) -> Result<(Tensor, Tensor, Tensor)> {
    let (n, _, _) = dims(OP, x, opts)?;
    let out = rt.empty(x.shape(), DType::F32)?;
    let mean = rt.empty(&[n, opts.groups], DType::F32)?;
    let rstd = rt.empty(&[n, opts.groups], DType::F32)?;
    let ws_len = group_norm_workspace_len(x.shape(), opts.groups).max(1);
    let ws = rt.empty(&[ws_len], DType::F32)?;
    rt.run(&group_norm_into(
        rt,
        x,
        weight,
        bias,
        &out,
        &mean,
        &rstd,
        Some(&ws),
        opts,
    )?);
    Ok((out, mean, rstd))
}

/// Inference forward: returns `y`.
pub fn group_norm(
    rt: &Runtime,
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    opts: &GroupNormOptions,
) -> Result<Tensor> {
    Ok(group_norm_train(rt, x, weight, bias, opts)?.0)
}

/// Elements of the f32 workspace [`group_norm_backward_into`] needs: `2·N·C + 2·N·G`.
pub fn group_norm_backward_workspace_len(x_shape: &[usize], groups: usize) -> usize {
    let n = x_shape.first().copied().unwrap_or(0);
    let c = x_shape.get(1).copied().unwrap_or(0);
    2 * n * c + 2 * n * groups
}

/// Records the backward: overwrites `dx` (shape of `x`), `dweight`, `dbias` (`[C]`) from the
/// upstream gradient `dy`, the forward input `x`, `weight`, `bias` (read only with the fused
/// ReLU, to recover its mask) and the saved `mean`/`rstd`. `workspace` is an f32 tensor of at
/// least [`group_norm_backward_workspace_len`] elements that must stay alive until the
/// dispatches have run.
#[allow(clippy::too_many_arguments)]
pub fn group_norm_backward_into(
    rt: &Runtime,
    dy: &Tensor,
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    mean: &Tensor,
    rstd: &Tensor,
    dx: &Tensor,
    dweight: &Tensor,
    dbias: &Tensor,
    workspace: &Tensor,
    opts: &GroupNormOptions,
) -> Result<Vec<Dispatch>> {
    // Over ~80 lines: validation of every operand and the workspace, then the segment sums,
    // parameter gradients, group sums and dx passes in order, one flat sequence.
    let (n, c, s) = dims(OP_BACK, x, opts)?;
    let g = opts.groups;
    check::operand(rt, OP_BACK, "x", x, x.shape())?;
    check::operand(rt, OP_BACK, "dy", dy, x.shape())?;
    check::operand(rt, OP_BACK, "weight", weight, &[c])?;
    check::operand(rt, OP_BACK, "bias", bias, &[c])?;
    check::operand(rt, OP_BACK, "mean", mean, &[n, g])?;
    check::operand(rt, OP_BACK, "rstd", rstd, &[n, g])?;
    check::operand(rt, OP_BACK, "dx", dx, x.shape())?;
    check::operand(rt, OP_BACK, "dweight", dweight, &[c])?;
    check::operand(rt, OP_BACK, "dbias", dbias, &[c])?;
    check::f32_dtype(OP_BACK, workspace)?;
    check::binding(rt, OP_BACK, "workspace", workspace)?;
    let need = group_norm_backward_workspace_len(x.shape(), g);
    if workspace.numel() < need {
        return Err(crate::shape_err!(
            OP_BACK,
            "workspace has {} elements, needs {need} for x of shape {:?} with {g} groups",
            workspace.numel(),
            x.shape()
        ));
    }
    if c == 0 {
        return Ok(Vec::new());
    }
    let params = BackwardParams {
        n: n as u32,
        c: c as u32,
        s: s as u32,
        groups: g as u32,
    };
    let shader = crate::shader!("group_norm_backward");
    let relu = [("RELU", opts.relu as u32 as f64)];
    let nc = (n * c) as u64;
    // channel_sums_thread: one scalar step per element of the plane plus s/256 block steps.
    let (entry, grid) = match opts.variant.resolve(rt, s + s / 256 + 1) {
        Variant::SegmentPerThread if s.is_multiple_of(4) => ("channel_sums_v4", rt.grid(nc, WG)),
        Variant::SegmentPerThread => ("channel_sums_thread", rt.grid(nc, WG)),
        _ => ("channel_sums_wg", rt.grid(nc, 1)),
    };
    let sums = rt.kernel(&shader, entry, &relu)?;
    let params_k = rt.kernel(&shader, "param_grads", &[])?;
    let groups_k = rt.kernel(&shader, "group_sums", &[])?;
    let (dx_entry, s_units) = match s.is_multiple_of(4) {
        true => ("dx_apply_v4", s / 4),
        false => ("dx_apply", s),
    };
    let dx_k = rt.kernel(&shader, dx_entry, &relu)?;
    let fwd = [
        dy.binding(),
        x.binding(),
        weight.binding(),
        bias.binding(),
        mean.binding(),
        rstd.binding(),
        workspace.binding(),
    ];
    let mut out = Vec::with_capacity(4);
    // With N = 0 the channel sums are empty and param_grads writes exact zeros.
    if n > 0 {
        out.push(rt.dispatch(&sums, &params, &fwd, grid));
    }
    out.push(rt.dispatch(
        &params_k,
        &params,
        &[workspace.binding(), dweight.binding(), dbias.binding()],
        rt.grid(c as u64, WG),
    ));
    if n > 0 {
        out.push(rt.dispatch(
            &groups_k,
            &params,
            &[weight.binding(), workspace.binding()],
            rt.grid((n * g) as u64, WG),
        ));
        let mut b = fwd.to_vec();
        b.push(dx.binding());
        out.push(rt.dispatch(&dx_k, &params, &b, plane_grid(rt, n * c, s_units)));
    }
    Ok(out)
}

/// Backward: returns `dx`, `dweight`, `dbias`.
#[allow(clippy::too_many_arguments)]
pub fn group_norm_backward(
    rt: &Runtime,
    dy: &Tensor,
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    mean: &Tensor,
    rstd: &Tensor,
    opts: &GroupNormOptions,
) -> Result<GroupNormGrads> {
    let (_, c, _) = dims(OP_BACK, x, opts)?;
    let dx = rt.empty(x.shape(), DType::F32)?;
    let dweight = rt.empty(&[c], DType::F32)?;
    let dbias = rt.empty(&[c], DType::F32)?;
    let workspace = rt.empty(
        &[group_norm_backward_workspace_len(x.shape(), opts.groups)],
        DType::F32,
    )?;
    rt.run(&group_norm_backward_into(
        rt, dy, x, weight, bias, mean, rstd, &dx, &dweight, &dbias, &workspace, opts,
    )?);
    // `workspace` is dropped only after the submit above, so the pool cannot hand it out first.
    Ok(GroupNormGrads { dx, dweight, dbias })
}
