//! The backward launchers: `dx` as the transposed convolution, `dweight` and `dbias` by
//! reduction (direct kernels), or `dW = dy·colᵀ` and `dx = col2im(Wᵀ·dy)` on the GEMM path.

use super::*;

/// Whether the backward of this convolution takes the GEMM path.
fn backward_gemm(rt: &Runtime, d: &ConvDims, opts: &Conv2dOptions, have_ws: bool) -> Result<bool> {
    let ws_free = is_pointwise(d, opts) && d.n == 1;
    match opts.path {
        Path::Auto => Ok(auto_gemm(rt, d, opts, ws_free, have_ws)),
        Path::Gemm if d.n * d.cin * d.cout * d.ho * d.wo == 0 => Ok(false),
        Path::Gemm if opts.groups == 1 && gemm::feasible(d, gemm::cap(rt, opts)) => Ok(true),
        Path::Gemm => Err(unsupported_path(OP_BACK, d, opts)),
        _ => Ok(false),
    }
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
    if !backward_gemm(rt, &d, opts, true)? || (is_pointwise(&d, opts) && d.n == 1) {
        return Ok(None);
    }
    let plan = gemm::backward_plan(&d, opts, gemm::cap(rt, opts));
    Conv2dWorkspace::new(rt, &plan).map(Some)
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
    let g = opts.groups;
    let (cin_g, cout_g) = (d.cin / g, d.cout / g);
    let p = params(&d, opts, dbias.is_some());
    let shader = crate::shader!("conv2d_backward");
    let mut out = Vec::with_capacity(3);
    let use_gemm = backward_gemm(rt, &d, opts, workspace.is_some())?;
    if use_gemm {
        let pointwise = is_pointwise(&d, opts);
        out = gemm::backward(
            rt, &d, opts, dy, x, weight, dx, dweight, workspace, pointwise,
        )?;
    }
    if let (false, Some(dx)) = (use_gemm, dx) {
        let [cb, pb] = block(rt, OP_BACK, opts, cin_g, false)?;
        let blocks = g * cin_g.div_ceil(cb as usize);
        let threads = d.h * d.w.div_ceil(pb as usize);
        if threads * d.n * blocks > 0 {
            let grid = grid_z(rt, OP_BACK, threads, d.n * blocks)?;
            let k = rt.kernel(
                &shader,
                "dx_direct",
                &[("CO_B", cb as f64), ("PX_B", pb as f64)],
            )?;
            out.push(rt.dispatch(
                &k,
                &p,
                &[dy.binding(), weight.binding(), dx.binding()],
                grid,
            ));
        }
    }
    let [cb, pb] = block(rt, OP_BACK, opts, cout_g, false)?;
    let taps = cin_g * d.kh * d.kw;
    let blocks = g * cout_g.div_ceil(cb as usize);
    let threads = taps.div_ceil(pb as usize);
    if !use_gemm && threads * blocks > 0 {
        let grid = grid_z(rt, OP_BACK, threads, blocks)?;
        let k = rt.kernel(
            &shader,
            "dw_direct",
            &[("CO_B", cb as f64), ("PX_B", pb as f64)],
        )?;
        // One invocation reduces over its share of images × output rows, about rows·(wo + 1)
        // loop iterations: on CPU adapters the share stays under llvmpipe's loop budget and the
        // launches after the first add to dw.
        let budget = CPU_LOOP_ITERATIONS / 2;
        let rows = if rt.caps().is_cpu {
            (budget / (d.wo + 2)).max(1)
        } else {
            usize::MAX
        };
        let mut shares = Vec::new();
        if d.n * d.ho <= rows {
            shares.push((0, d.n, 0, d.ho));
        } else if d.ho <= rows {
            let per = rows / d.ho;
            shares.extend(
                (0..d.n)
                    .step_by(per)
                    .map(|n0| (n0, (n0 + per).min(d.n), 0, d.ho)),
            );
        } else {
            for n0 in 0..d.n {
                shares.extend(
                    (0..d.ho)
                        .step_by(rows)
                        .map(|r| (n0, n0 + 1, r, (r + rows).min(d.ho))),
                );
            }
        }
        for (i, &(n0, n1, oy0, oy1)) in shares.iter().enumerate() {
            let ps = Params {
                n0: n0 as u32,
                n1: n1 as u32,
                oy0: oy0 as u32,
                oy1: oy1 as u32,
                accumulate: (i > 0) as u32,
                ..p
            };
            out.push(rt.dispatch(
                &k,
                &ps,
                &[dy.binding(), x.binding(), dweight.binding()],
                grid,
            ));
        }
    }
    if let Some(db) = dbias {
        // db_sum loops over the whole batch and plane in one invocation: past llvmpipe's loop
        // budget, the CPU path sums dy to [cout, 1, 1] in launches that each stay under it.
        let db_iterations = d.n * d.ho * (d.wo + 1) + d.n * (d.ho + 1) + d.n + 1;
        if d.cout > 0 && rt.caps().is_cpu && db_iterations > CPU_LOOP_ITERATIONS - 64 {
            let db3 = db.reshape(&[d.cout, 1, 1])?;
            out.extend(crate::ops::elementwise::sum_to_shape_into(rt, dy, &db3)?);
        } else if d.cout > 0 {
            let k = rt.kernel(&shader, "db_sum", &[])?;
            out.push(rt.dispatch(
                &k,
                &p,
                &[dy.binding(), db.binding()],
                rt.grid(d.cout as u64, WG),
            ));
        }
    }
    Ok(out)
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
