//! LayerNorm over the last dimension (Swin blocks and patch merging, the pixel decoder's
//! encoder, the transformer decoder).
//!
//! `x` is `[.., C]`, seen as `rows × C` row-major; `weight` and `bias` are `[C]`:
//! `y = (x − mean) · rstd · weight + bias` with `rstd = 1/√(var + eps)` and the biased
//! variance, as in PyTorch. Rows of any length are handled, including rows longer than a
//! workgroup. The training forward also writes the per-row `mean` and `rstd` (`[rows]`) that
//! [`layer_norm_backward`] needs.
//!
//! Kernels (`shaders/layer_norm.wgsl`, `shaders/layer_norm_backward.wgsl`): one invocation per
//! row on CPU adapters (no workgroup memory), one workgroup per row with a tree reduction on
//! GPUs; [`Variant`] forces either. On CPU adapters under the CPU kernel policy the forward and
//! the `dx` pass read their rows through texel views, four columns a load
//! (`shaders/layer_norm_texel.wgsl`; C a multiple of 4): lavapipe loads storage buffers lane by
//! lane. On GPUs whose subgroups have one size, the forward runs one subgroup per row with vec4
//! loads and `subgroupAdd` (`shaders/layer_norm_subgroup.wgsl`; C a multiple of 4); without
//! subgroups, one workgroup per row. The weight/bias gradients are column sums computed in two deterministic stages without
//! atomics, so every adapter takes the same path.

pub mod reference;
#[cfg(test)]
mod tests;

use crate::error::Result;
use crate::ops::common::{check, texel};
use crate::runtime::{Binding, DType, Dispatch, Runtime, Tensor, TexelSlot};

/// Which kernel shape to use; `Auto` picks from the adapter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Variant {
    #[default]
    Auto,
    /// One invocation per row, no workgroup memory (fast on CPU adapters).
    RowPerThread,
    /// One 256-invocation workgroup per row (fast on GPUs).
    RowPerWorkgroup,
    /// Forward only: one subgroup per row, vec4 loads, `subgroupAdd` reductions: what `Auto`
    /// runs under the GPU policy where the adapter has subgroups of a single size. Rows whose
    /// length is not a multiple of 4, adapters without subgroups, and the backward run
    /// `RowPerWorkgroup`.
    RowPerSubgroup,
    /// One invocation per row reading the rows through texel views (CPU adapters): what `Auto`
    /// runs on a CPU adapter under the CPU kernel policy. Rows whose length is not a multiple of
    /// 4, or tensors the views cannot hold, run `RowPerThread`.
    RowTexel,
}

impl Variant {
    fn resolve(self, rt: &Runtime) -> Variant {
        match self {
            Variant::Auto if texel::preferred(rt) => Variant::RowTexel,
            Variant::Auto if crate::ops::policy::policy(rt).cpu_shapes() => Variant::RowPerThread,
            Variant::Auto if subgroup_size(rt).is_some() => Variant::RowPerSubgroup,
            Variant::Auto => Variant::RowPerWorkgroup,
            v => v,
        }
    }
}

/// The adapter's subgroup size, where it has subgroups of one size only (a workgroup of the
/// subgroup kernel must be exactly one subgroup).
fn subgroup_size(rt: &Runtime) -> Option<u32> {
    let caps = rt.caps();
    let (lo, hi) = caps.subgroup_size;
    (caps.subgroups && lo == hi && lo > 0).then_some(lo)
}

/// The texel form of a row pass, when `variant` asks for it and the rows allow it: `views`
/// (tensor, slot) are made, the others bound as buffers at their binding numbers. `None`: run
/// the buffer kernel.
#[allow(clippy::too_many_arguments)]
fn texel_dispatch<P: bytemuck::Pod>(
    rt: &Runtime,
    variant: Variant,
    cols: usize,
    entry: &str,
    params: &P,
    views: &[(u32, &Tensor, TexelSlot)],
    storage: &[(u32, Binding<'_>)],
    grid: [u32; 3],
) -> Result<Option<Dispatch>> {
    // Each row loop runs C/4 iterations: within llvmpipe's loop limit.
    let fits = cols.is_multiple_of(4) && cols / 4 < crate::runtime::CPU_LOOP_ITERATIONS;
    if variant != Variant::RowTexel || !fits {
        return Ok(None);
    }
    let mut texels = Vec::with_capacity(views.len());
    for &(binding, t, slot) in views {
        match rt.texel_view(slot, t.binding()) {
            Ok(v) => texels.push((binding, v)),
            Err(_) => return Ok(None),
        }
    }
    let k = rt.kernel(&crate::shader!("layer_norm_texel"), entry, &[])?;
    Ok(Some(rt.dispatch_texels(&k, params, storage, texels, grid)))
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LayerNormOptions {
    pub eps: f32,
    pub variant: Variant,
}

impl Default for LayerNormOptions {
    /// `eps = 1e-5`, the value of every LayerNorm in Mask2Former (Swin and both decoders).
    fn default() -> Self {
        Self {
            eps: 1e-5,
            variant: Variant::Auto,
        }
    }
}

/// Gradients of [`layer_norm`] with respect to `x`, `weight` and `bias`.
pub struct LayerNormGrads {
    pub dx: Tensor,
    pub dweight: Tensor,
    pub dbias: Tensor,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
    eps: f32,
    _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct BackwardParams {
    rows: u32,
    cols: u32,
    chunk_rows: u32,
    chunks: u32,
}

const OP: &str = "layer_norm";
const OP_BACK: &str = "layer_norm_backward";
const WG_THREAD: u32 = 64;

/// `(rows, cols)` of `x`, checked.
fn rows_cols(op: &'static str, x: &Tensor) -> Result<(usize, usize)> {
    let cols = *x
        .shape()
        .last()
        .ok_or_else(|| crate::shape_err!(op, "x must have at least one dimension, got a scalar"))?;
    if cols == 0 {
        return Err(crate::shape_err!(
            op,
            "x has shape {:?}: cannot normalise over an empty last dimension",
            x.shape()
        ));
    }
    Ok((x.numel() / cols, cols))
}

/// Records the forward into `out` (same shape as `x`); with `saved = Some((mean, rstd))`, each
/// `[rows]`, also writes the statistics the backward needs. Overwrites its outputs.
pub fn layer_norm_into(
    rt: &Runtime,
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    out: &Tensor,
    saved: Option<(&Tensor, &Tensor)>,
    opts: &LayerNormOptions,
) -> Result<Vec<Dispatch>> {
    let (rows, cols) = rows_cols(OP, x)?;
    check::operand(rt, OP, "x", x, x.shape())?;
    check::operand(rt, OP, "weight", weight, &[cols])?;
    check::operand(rt, OP, "bias", bias, &[cols])?;
    check::operand(rt, OP, "out", out, x.shape())?;
    if let Some((mean, rstd)) = saved {
        check::operand(rt, OP, "mean", mean, &[rows])?;
        check::operand(rt, OP, "rstd", rstd, &[rows])?;
    }
    if opts.eps.is_nan() || opts.eps < 0.0 {
        return Err(crate::shape_err!(OP, "eps must be >= 0, got {}", opts.eps));
    }
    let rows32 = check::u32_range(OP, "rows", rows as u64)?;
    if rows == 0 {
        return Ok(Vec::new());
    }
    let params = Params {
        rows: rows32,
        cols: cols as u32,
        eps: opts.eps,
        _pad: 0,
    };
    let variant = opts.variant.resolve(rt);
    let rows_grid = rt.grid(rows as u64, WG_THREAD);
    let views = [
        (1, x, TexelSlot::A),
        (2, weight, TexelSlot::B),
        (3, bias, TexelSlot::C),
    ];
    let texel = match saved {
        Some((mean, rstd)) => texel_dispatch(
            rt,
            variant,
            cols,
            "rows_texel_stats",
            &params,
            &views,
            &[(4, out.binding()), (5, mean.binding()), (6, rstd.binding())],
            rows_grid,
        )?,
        None => texel_dispatch(
            rt,
            variant,
            cols,
            "rows_texel",
            &params,
            &views,
            &[(4, out.binding())],
            rows_grid,
        )?,
    };
    if let Some(d) = texel {
        return Ok(vec![d]);
    }
    let stats = if saved.is_some() { "_stats" } else { "" };
    let mut bindings = vec![x.binding(), weight.binding(), bias.binding(), out.binding()];
    if let Some((mean, rstd)) = saved {
        bindings.push(mean.binding());
        bindings.push(rstd.binding());
    }
    if let (Variant::RowPerSubgroup, Some(sg), true) =
        (variant, subgroup_size(rt), cols.is_multiple_of(4))
    {
        let shader = crate::shader!("layer_norm_subgroup");
        let k = rt.kernel(
            &shader,
            &format!("rows_subgroup{stats}"),
            &[("SG", sg as f64)],
        )?;
        return Ok(vec![rt.dispatch(
            &k,
            &params,
            &bindings,
            rt.grid(rows as u64, 1),
        )]);
    }
    let shader = crate::shader!("layer_norm");
    let (entry, grid) = match variant {
        Variant::RowPerThread | Variant::RowTexel => ("rows_thread", rows_grid),
        // One workgroup per row: a "grid" of rows threads in workgroups of one.
        _ => ("rows_wg", rt.grid(rows as u64, 1)),
    };
    let k = rt.kernel(&shader, &format!("{entry}{stats}"), &[])?;
    Ok(vec![rt.dispatch(&k, &params, &bindings, grid)])
}

/// Inference forward: returns `y`.
pub fn layer_norm(
    rt: &Runtime,
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    opts: &LayerNormOptions,
) -> Result<Tensor> {
    let out = rt.empty(x.shape(), DType::F32)?;
    rt.run(&layer_norm_into(rt, x, weight, bias, &out, None, opts)?);
    Ok(out)
}

/// Training forward: returns `(y, mean, rstd)`, the statistics shaped `[rows]`.
pub fn layer_norm_train(
    rt: &Runtime,
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    opts: &LayerNormOptions,
) -> Result<(Tensor, Tensor, Tensor)> {
    let (rows, _) = rows_cols(OP, x)?;
    let out = rt.empty(x.shape(), DType::F32)?;
    let mean = rt.empty(&[rows], DType::F32)?;
    let rstd = rt.empty(&[rows], DType::F32)?;
    rt.run(&layer_norm_into(
        rt,
        x,
        weight,
        bias,
        &out,
        Some((&mean, &rstd)),
        opts,
    )?);
    Ok((out, mean, rstd))
}

/// Rows per partial sum of the weight/bias gradients, and the number of such chunks.
fn chunking(rows: usize) -> (usize, usize) {
    // About 64 chunks: enough invocations to fill a device, few enough that the second stage is cheap.
    let chunk_rows = rows.div_ceil(64).max(16);
    (chunk_rows, rows.div_ceil(chunk_rows).max(1))
}

/// Elements of the f32 workspace [`layer_norm_backward_into`] needs for an input of this shape.
pub fn layer_norm_backward_workspace_len(x_shape: &[usize]) -> usize {
    let cols = x_shape.last().copied().unwrap_or(0);
    let rows = x_shape
        .iter()
        .product::<usize>()
        .checked_div(cols)
        .unwrap_or(0);
    2 * chunking(rows).1 * cols
}

/// Records the backward: overwrites `dx` (shape of `x`), `dweight` and `dbias` (`[C]`) from the
/// upstream gradient `dy` and the forward's saved `mean`/`rstd`. `workspace` is an f32 tensor of
/// at least [`layer_norm_backward_workspace_len`] elements that must stay alive until the
/// dispatches have run.
#[allow(clippy::too_many_arguments)]
pub fn layer_norm_backward_into(
    rt: &Runtime,
    dy: &Tensor,
    x: &Tensor,
    weight: &Tensor,
    mean: &Tensor,
    rstd: &Tensor,
    dx: &Tensor,
    dweight: &Tensor,
    dbias: &Tensor,
    workspace: &Tensor,
    opts: &LayerNormOptions,
) -> Result<Vec<Dispatch>> {
    // Over ~80 lines: validation of every operand and the workspace, then the dx pass and the
    // two parameter-gradient passes in order (on texel views dx and the partials in one
    // launch), one flat sequence.
    let (rows, cols) = rows_cols(OP_BACK, x)?;
    check::operand(rt, OP_BACK, "x", x, x.shape())?;
    check::operand(rt, OP_BACK, "dy", dy, x.shape())?;
    check::operand(rt, OP_BACK, "weight", weight, &[cols])?;
    check::operand(rt, OP_BACK, "mean", mean, &[rows])?;
    check::operand(rt, OP_BACK, "rstd", rstd, &[rows])?;
    check::operand(rt, OP_BACK, "dx", dx, x.shape())?;
    check::operand(rt, OP_BACK, "dweight", dweight, &[cols])?;
    check::operand(rt, OP_BACK, "dbias", dbias, &[cols])?;
    check::f32_dtype(OP_BACK, workspace)?;
    check::binding(rt, OP_BACK, "workspace", workspace)?;
    let need = layer_norm_backward_workspace_len(x.shape());
    if workspace.numel() < need {
        return Err(crate::shape_err!(
            OP_BACK,
            "workspace has {} elements, needs {need} for x of shape {:?}",
            workspace.numel(),
            x.shape()
        ));
    }
    let rows32 = check::u32_range(OP_BACK, "rows", rows as u64)?;
    let (chunk_rows, chunks) = chunking(rows);
    let params = BackwardParams {
        rows: rows32,
        cols: cols as u32,
        chunk_rows: chunk_rows as u32,
        chunks: chunks as u32,
    };
    let shader = crate::shader!("layer_norm_backward");
    let mut out = Vec::with_capacity(3);
    let variant = opts.variant.resolve(rt);
    // With no rows the partials are zero-filled by the first stage (rows loop is empty), so the
    // gradients come out as exact zeros.
    let dx_threads = rows.div_ceil(WG_THREAD as usize) * WG_THREAD as usize;
    let texel = match rows {
        0 => None,
        _ => texel_dispatch(
            rt,
            variant,
            cols,
            "backward_texel",
            &params,
            &[
                (1, dy, TexelSlot::A),
                (2, x, TexelSlot::B),
                (3, weight, TexelSlot::C),
            ],
            &[
                (4, mean.binding()),
                (5, rstd.binding()),
                (6, dx.binding()),
                (7, workspace.binding_range(0, 4 * need as u64)),
            ],
            rt.grid((dx_threads + chunks * cols / 4) as u64, WG_THREAD),
        )?,
    };
    if let Some(d) = texel {
        out.push(d);
    } else {
        if rows > 0 {
            let (entry, grid) = match variant {
                Variant::RowPerThread | Variant::RowTexel => {
                    ("dx_thread", rt.grid(rows as u64, WG_THREAD))
                }
                _ => ("dx_wg", rt.grid(rows as u64, 1)),
            };
            let k = rt.kernel(&shader, entry, &[])?;
            out.push(rt.dispatch(
                &k,
                &params,
                &[
                    dy.binding(),
                    x.binding(),
                    weight.binding(),
                    mean.binding(),
                    rstd.binding(),
                    dx.binding(),
                ],
                grid,
            ));
        }
        let k = rt.kernel(&shader, "param_partials", &[])?;
        out.push(rt.dispatch(
            &k,
            &params,
            &[
                dy.binding(),
                x.binding(),
                mean.binding(),
                rstd.binding(),
                workspace.binding(),
            ],
            rt.grid((chunks * cols) as u64, WG_THREAD),
        ));
    }
    // Rows of whole vec4s: 4 columns an invocation.
    let (entry, units) = match cols.is_multiple_of(4) {
        true => ("param_reduce_v4", cols / 4),
        false => ("param_reduce", cols),
    };
    let k = rt.kernel(&shader, entry, &[])?;
    out.push(rt.dispatch(
        &k,
        &params,
        &[workspace.binding(), dweight.binding(), dbias.binding()],
        rt.grid(units as u64, WG_THREAD),
    ));
    Ok(out)
}

/// Backward: returns `dx`, `dweight`, `dbias`.
pub fn layer_norm_backward(
    rt: &Runtime,
    dy: &Tensor,
    x: &Tensor,
    weight: &Tensor,
    mean: &Tensor,
    rstd: &Tensor,
    opts: &LayerNormOptions,
) -> Result<LayerNormGrads> {
    let (_, cols) = rows_cols(OP_BACK, x)?;
    let dx = rt.empty(x.shape(), DType::F32)?;
    let dweight = rt.empty(&[cols], DType::F32)?;
    let dbias = rt.empty(&[cols], DType::F32)?;
    let workspace = rt.empty(&[layer_norm_backward_workspace_len(x.shape())], DType::F32)?;
    rt.run(&layer_norm_backward_into(
        rt, dy, x, weight, mean, rstd, &dx, &dweight, &dbias, &workspace, opts,
    )?);
    // `workspace` is dropped only after the submit above, so the pool cannot hand it out first.
    Ok(LayerNormGrads { dx, dweight, dbias })
}
