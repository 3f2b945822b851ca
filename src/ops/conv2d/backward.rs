//! The backward launchers: `dx` as the transposed convolution, `dweight` and `dbias` by
//! reduction (direct kernels), `dW = dy·colᵀ` and `dx = col2im(Wᵀ·dy)` on the GEMM path, or
//! both as implicit GEMMs (GPU policy, module `implicit`).

use super::*;

/// Which kernels compute the backward's `dx` and `dweight`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backward {
    Direct,
    Gemm,
    Implicit,
}

/// The backward's kernels: under `Auto` the implicit GEMM where the forward takes it (GPU
/// policy), else the GEMM path where it applies, else the direct kernels.
fn backward_kind(
    rt: &Runtime,
    d: &ConvDims,
    opts: &Conv2dOptions,
    have_ws: bool,
) -> Result<Backward> {
    let ws_free = is_pointwise(d, opts) && d.n == 1;
    let empty = d.n * d.cin * d.cout * d.ho * d.wo == 0;
    let gemm_ok = opts.groups == 1 && gemm::feasible(d, gemm::cap(rt, opts));
    Ok(match opts.path {
        Path::Auto if auto_implicit(rt, d, opts) && implicit::backward_fits(rt, d, opts) => {
            Backward::Implicit
        }
        Path::Auto if auto_gemm(rt, d, opts, ws_free, have_ws) => Backward::Gemm,
        Path::Gemm | Path::Implicit if empty => Backward::Direct,
        Path::Implicit if implicit::backward_fits(rt, d, opts) => Backward::Implicit,
        Path::Gemm if gemm_ok => Backward::Gemm,
        Path::Gemm | Path::Implicit => return Err(unsupported_path(OP_BACK, d, opts)),
        _ => Backward::Direct,
    })
}

/// The workspace [`conv2d_backward_with_workspace_into`] needs, or `None` when the chosen path
/// needs none.
pub fn conv2d_backward_workspace(
    rt: &Runtime,
    x_shape: &[usize],
    w_shape: &[usize],
    opts: &Conv2dOptions,
) -> Result<Option<Conv2dWorkspace>> {
    let d = conv_dims_op(OP_BACK, x_shape, w_shape, opts)?;
    match backward_kind(rt, &d, opts, true)? {
        Backward::Implicit => match implicit::backward_scratch(&d) {
            0 => Ok(None),
            floats => Conv2dWorkspace::scratch(rt, floats).map(Some),
        },
        Backward::Gemm if is_pointwise(&d, opts) && d.n > 1 => {
            Conv2dWorkspace::new(rt, &gemm::pointwise_backward_plan(&d)).map(Some)
        }
        Backward::Gemm if !is_pointwise(&d, opts) => {
            let plan = gemm::backward_plan(&d, opts, gemm::cap(rt, opts));
            Conv2dWorkspace::new(rt, &plan).map(Some)
        }
        _ => Ok(None),
    }
}

/// Records the backward from the upstream gradient `dy [N, Cout, Ho, Wo]`: overwrites `dx`
/// (`x`'s shape; pass `None` when the input needs no gradient, e.g. the image under the patch
/// embedding), `dweight` (`weight`'s shape) and `dbias` (`[Cout]`, when the forward had a bias).
/// Without a workspace `Auto` takes the GEMM path only for a 1×1 / stride 1 / unpadded
/// convolution of one image.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_backward_into(
    rt: &Runtime,
    dy: &Tensor,
    x: &Tensor,
    weight: &Tensor,
    dx: Option<&Tensor>,
    dweight: &Tensor,
    dbias: Option<&Tensor>,
    opts: &Conv2dOptions,
) -> Result<Vec<Dispatch>> {
    conv2d_backward_with_workspace_into(rt, dy, x, weight, dx, dweight, dbias, None, opts)
}

/// [`conv2d_backward_into`] with the scratch of the GEMM path (from
/// [`conv2d_backward_workspace`]); the workspace must stay alive until the dispatches have run.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_backward_with_workspace_into(
    rt: &Runtime,
    dy: &Tensor,
    x: &Tensor,
    weight: &Tensor,
    dx: Option<&Tensor>,
    dweight: &Tensor,
    dbias: Option<&Tensor>,
    workspace: Option<&Conv2dWorkspace>,
    opts: &Conv2dOptions,
) -> Result<Vec<Dispatch>> {
    let d = conv_dims_op(OP_BACK, x.shape(), weight.shape(), opts)?;
    check::operand(rt, OP_BACK, "dy", dy, &d.out_shape())?;
    check::operand(rt, OP_BACK, "x", x, x.shape())?;
    check::operand(rt, OP_BACK, "weight", weight, weight.shape())?;
    if let Some(t) = dx {
        check::operand(rt, OP_BACK, "dx", t, x.shape())?;
    }
    check::operand(rt, OP_BACK, "dweight", dweight, weight.shape())?;
    if let Some(t) = dbias {
        check::operand(rt, OP_BACK, "dbias", t, &[d.cout])?;
    }
    let p = params(&d, opts, dbias.is_some());
    let mut out = Vec::with_capacity(3);
    match backward_kind(rt, &d, opts, workspace.is_some())? {
        Backward::Implicit => {
            let scratch = workspace.map(|w| &w.col);
            out = implicit::backward(rt, &d, opts, dy, x, weight, dx, dweight, scratch)?;
        }
        Backward::Gemm => {
            let pointwise = is_pointwise(&d, opts);
            out = gemm::backward(
                rt, &d, opts, dy, x, weight, dx, dweight, workspace, pointwise,
            )?;
        }
        Backward::Direct => {
            if let Some(dx) = dx {
                out.extend(dx_direct(rt, &d, opts, &p, dy, weight, dx)?);
            }
            out.extend(dw_direct(rt, &d, opts, &p, dy, x, dweight)?);
        }
    }
    if let Some(db) = dbias {
        out.extend(db_dispatches(rt, &d, &p, dy, db)?);
    }
    Ok(out)
}

/// `dx` as the transposed convolution (direct kernel, one launch).
fn dx_direct(
    rt: &Runtime,
    d: &ConvDims,
    opts: &Conv2dOptions,
    p: &Params,
    dy: &Tensor,
    weight: &Tensor,
    dx: &Tensor,
) -> Result<Option<Dispatch>> {
    let cin_g = d.cin / opts.groups;
    let [cb, pb] = block(rt, OP_BACK, opts, cin_g, false)?;
    let blocks = opts.groups * cin_g.div_ceil(cb as usize);
    let threads = d.h * d.w.div_ceil(pb as usize);
    if threads * d.n * blocks == 0 {
        return Ok(None);
    }
    let grid = grid_z(rt, OP_BACK, threads, d.n * blocks)?;
    let k = rt.kernel(
        &crate::shader!("conv2d_backward"),
        "dx_direct",
        &[("CO_B", cb as f64), ("PX_B", pb as f64)],
    )?;
    Ok(Some(rt.dispatch(
        &k,
        p,
        &[dy.binding(), weight.binding(), dx.binding()],
        grid,
    )))
}

/// `dweight` by the direct reduction over images × output rows: one launch, or on adapters
/// with a loop budget (llvmpipe) launches over shares of the rows that each stay under it, the
/// ones after the first adding to dweight.
fn dw_direct(
    rt: &Runtime,
    d: &ConvDims,
    opts: &Conv2dOptions,
    p: &Params,
    dy: &Tensor,
    x: &Tensor,
    dweight: &Tensor,
) -> Result<Vec<Dispatch>> {
    let (cin_g, cout_g) = (d.cin / opts.groups, d.cout / opts.groups);
    let [cb, pb] = block(rt, OP_BACK, opts, cout_g, false)?;
    let blocks = opts.groups * cout_g.div_ceil(cb as usize);
    let threads = (cin_g * d.kh * d.kw).div_ceil(pb as usize);
    if threads * blocks == 0 {
        return Ok(Vec::new());
    }
    let grid = grid_z(rt, OP_BACK, threads, blocks)?;
    let k = rt.kernel(
        &crate::shader!("conv2d_backward"),
        "dw_direct",
        &[("CO_B", cb as f64), ("PX_B", pb as f64)],
    )?;
    // One invocation loops about rows·(wo + 1) times over its share of images × output rows.
    let rows = match crate::ops::policy::policy(rt).loop_budget {
        Some(budget) => (budget / 2 / (d.wo + 2)).max(1),
        None => usize::MAX,
    };
    Ok(row_shares(d, rows)
        .iter()
        .enumerate()
        .map(|(i, &(n0, n1, oy0, oy1))| {
            let ps = Params {
                n0: n0 as u32,
                n1: n1 as u32,
                oy0: oy0 as u32,
                oy1: oy1 as u32,
                accumulate: (i > 0) as u32,
                ..*p
            };
            rt.dispatch(
                &k,
                &ps,
                &[dy.binding(), x.binding(), dweight.binding()],
                grid,
            )
        })
        .collect())
}

/// `(n0, n1, oy0, oy1)` shares of images × output rows with at most `rows` rows each: whole
/// batches, runs of whole images, or runs of rows of one image.
fn row_shares(d: &ConvDims, rows: usize) -> Vec<(usize, usize, usize, usize)> {
    if d.n * d.ho <= rows {
        return vec![(0, d.n, 0, d.ho)];
    }
    if d.ho <= rows {
        let per = rows / d.ho;
        return (0..d.n)
            .step_by(per)
            .map(|n0| (n0, (n0 + per).min(d.n), 0, d.ho))
            .collect();
    }
    (0..d.n)
        .flat_map(|n0| {
            (0..d.ho)
                .step_by(rows)
                .map(move |r| (n0, n0 + 1, r, (r + rows).min(d.ho)))
        })
        .collect()
}

/// `dbias` (overwritten). db_sum loops over the whole batch and plane in one invocation: past
/// the adapter's loop budget (llvmpipe), dy is summed to `[cout, 1, 1]` by `sum_to_shape`,
/// whose launches each stay under it.
fn db_dispatches(
    rt: &Runtime,
    d: &ConvDims,
    p: &Params,
    dy: &Tensor,
    db: &Tensor,
) -> Result<Vec<Dispatch>> {
    if d.cout == 0 {
        return Ok(Vec::new());
    }
    let db_iterations = d.n * d.ho * (d.wo + 1) + d.n * (d.ho + 1) + d.n + 1;
    let budget = crate::ops::policy::policy(rt).budget();
    if db_iterations > budget.saturating_sub(64) {
        let db3 = db.reshape(&[d.cout, 1, 1])?;
        return crate::ops::reduce::sum_to_shape_into(rt, dy, &db3);
    }
    let k = rt.kernel(&crate::shader!("conv2d_backward"), "db_sum", &[])?;
    Ok(vec![rt.dispatch(
        &k,
        p,
        &[dy.binding(), db.binding()],
        rt.grid(d.cout as u64, WG),
    )])
}

/// Backward: returns `dx`, `dweight` and, when `has_bias`, `dbias`.
pub fn conv2d_backward(
    rt: &Runtime,
    dy: &Tensor,
    x: &Tensor,
    weight: &Tensor,
    has_bias: bool,
    opts: &Conv2dOptions,
) -> Result<Conv2dGrads> {
    let d = conv_dims_op(OP_BACK, x.shape(), weight.shape(), opts)?;
    let dx = rt.empty(x.shape(), DType::F32)?;
    let dweight = rt.empty(weight.shape(), DType::F32)?;
    let dbias = if has_bias {
        Some(rt.empty(&[d.cout], DType::F32)?)
    } else {
        None
    };
    let ws = conv2d_backward_workspace(rt, x.shape(), weight.shape(), opts)?;
    rt.run(&conv2d_backward_with_workspace_into(
        rt,
        dy,
        x,
        weight,
        Some(&dx),
        &dweight,
        dbias.as_ref(),
        ws.as_ref(),
        opts,
    )?);
    Ok(Conv2dGrads { dx, dweight, dbias })
}
