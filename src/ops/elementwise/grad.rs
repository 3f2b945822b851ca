//! Broadcast gradients: reducing an upstream gradient to an input's shape (`sum_to_shape`) and
//! the backward of the binary ops, one fused pass per input.

use super::*;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct GradParams {
    n: u32,
    start: u32,
    krank: u32,
    rrank: u32,
    win_a: u32,
    win_b: u32,
    win_dy: u32,
    win_g: u32,
    r0: u32,
    rn: u32,
    accumulate: u32,
    _p: u32,
    kshape: [u32; 8],
    ka: [u32; 8],
    kb: [u32; 8],
    kd: [u32; 8],
    rshape: [u32; 8],
    ra: [u32; 8],
    rb: [u32; 8],
    rd: [u32; 8],
}

/// OP code of the gradient kernel for `where` (cond passed as `a`).
pub(super) const GRAD_SELECT: u32 = 12;
/// OP code of the gradient kernel for a plain sum to shape.
pub(super) const GRAD_SUM: u32 = 13;

/// Dispatches writing into `grad` (shape `target`, which broadcasts to dy's shape) the sum over
/// the broadcast dims of `∂f/∂(which)·dy`, reading a and b broadcast to dy's shape.
#[allow(clippy::too_many_arguments)]
pub(crate) fn grad_into(
    rt: &Runtime,
    op_name: &'static str,
    code: u32,
    which: u32,
    a: &Tensor,
    b: &Tensor,
    dy: &Tensor,
    grad: &Tensor,
) -> Result<Vec<Dispatch>> {
    let out = dy.shape();
    let target = grad.shape();
    layout::no_alias(op_name, &[a, b, dy], grad)?;
    if target.len() > out.len() || layout::broadcast_shape(op_name, &[target, out])? != out {
        return Err(crate::shape_err!(
            op_name,
            "gradient shape {target:?} does not broadcast to the output shape {out:?}"
        ));
    }
    let sa = layout::broadcast_strides(a.shape(), out);
    let sb = layout::broadcast_strides(b.shape(), out);
    let sd = layout::strides(out);
    let off = out.len() - target.len();
    let kept: Vec<usize> = (0..out.len())
        .filter(|&d| d >= off && target[d - off] == out[d])
        .collect();
    let reduced: Vec<usize> = (0..out.len()).filter(|d| !kept.contains(d)).collect();
    let pick = |v: &[usize], dims: &[usize]| dims.iter().map(|&d| v[d]).collect::<Vec<_>>();
    let kshape = pick(out, &kept);
    let kg = layout::strides(&kshape);
    let (ks, kst) = layout::collapse(
        &kshape,
        &[&pick(&sa, &kept), &pick(&sb, &kept), &pick(&sd, &kept), &kg],
    );
    let rshape = pick(out, &reduced);
    let (rs, rst) = layout::collapse(
        &rshape,
        &[
            &pick(&sa, &reduced),
            &pick(&sb, &reduced),
            &pick(&sd, &reduced),
        ],
    );
    let access = |len: usize, k: &[usize], r: &[usize]| {
        let mut acc = Access::strided(len, k.to_vec());
        acc.extra = rs.iter().zip(r).map(|(&n, &s)| (n - 1) * s).sum();
        acc
    };
    let acc_a = access(a.numel(), &kst[0], &rst[0]);
    let acc_b = access(b.numel(), &kst[1], &rst[1]);
    let acc_d = access(dy.numel(), &kst[2], &rst[2]);
    let acc_g = Access::contiguous(&ks);
    let chunks = plan(rt, op_name, &ks, &[&acc_a, &acc_b, &acc_d, &acc_g])?;
    let k = rt.kernel(
        &crate::shader!("elementwise_binary_backward"),
        "main",
        &[("OP", code as f64), ("WHICH", which as f64)],
    )?;
    let p = GradParams {
        n: 0,
        start: 0,
        krank: u(ks.len()),
        rrank: u(rs.len()),
        win_a: 0,
        win_b: 0,
        win_dy: 0,
        win_g: 0,
        r0: 0,
        rn: u32::MAX,
        accumulate: 0,
        _p: 0,
        kshape: pack(op_name, &ks)?,
        ka: pack(op_name, &kst[0])?,
        kb: pack(op_name, &kst[1])?,
        kd: pack(op_name, &kst[2])?,
        rshape: pack(op_name, &rs)?,
        ra: pack(op_name, &rst[0])?,
        rb: pack(op_name, &rst[1])?,
        rd: pack(op_name, &rst[2])?,
    };
    // One launch walks the whole reduced space per thread, except on CPU adapters where that
    // would pass llvmpipe's loop budget: there, pieces of `per_launch` reduced indices each,
    // the later ones adding to the first (same order of summation within each piece).
    let total: usize = rs.iter().product();
    let per_launch = if rt.caps().is_cpu {
        reduced_per_launch(&rs)
    } else {
        usize::MAX
    };
    let mut out = Vec::new();
    let mut r0 = 0;
    loop {
        let rn = per_launch.min(total - r0);
        out.extend(layout::launch(
            rt,
            &k,
            &chunks,
            &[a, b, dy, grad],
            layout::WG,
            |c| GradParams {
                n: u(c.n),
                start: u(c.start),
                win_a: u(c.windows[0].offset),
                win_b: u(c.windows[1].offset),
                win_dy: u(c.windows[2].offset),
                win_g: u(c.windows[3].offset),
                r0: u(r0),
                rn: if per_launch == usize::MAX {
                    u32::MAX
                } else {
                    u(rn)
                },
                accumulate: (r0 > 0) as u32,
                ..p
            },
        ));
        r0 += rn;
        if r0 >= total {
            break;
        }
    }
    Ok(out)
}

/// Reduced indices one gradient thread may walk within llvmpipe's loop budget: each step costs
/// one pass of the outer loop, one of the odometer loop, and one more per carry (a carry past
/// dim j happens once every product-of-the-inner-sizes steps).
pub(super) fn reduced_per_launch(rshape: &[usize]) -> usize {
    let mut per_step = 2.0;
    let mut period = 1.0;
    for &n in rshape.iter().rev().take(rshape.len().saturating_sub(1)) {
        period *= n.max(1) as f64;
        per_step += 1.0 / period;
    }
    // Setup loops (index decompositions, at most 8 dims each) and the carries of a partial
    // period at each end: a few hundred iterations at most.
    let budget = (CPU_LOOP_ITERATIONS - 512) as f64;
    ((budget / per_step) as usize).max(1)
}

/// Dispatches writing `Σ dy` over the dims along which `out`'s shape broadcasts to dy's shape
/// (the gradient of a broadcast; e.g. a bias gradient `[N, C] → [C]`). Overwrites `out`.
pub fn sum_to_shape_into(rt: &Runtime, dy: &Tensor, out: &Tensor) -> Result<Vec<Dispatch>> {
    const OP: &str = "sum_to_shape";
    expect_dtype(OP, dy, DType::F32)?;
    expect_dtype(OP, out, DType::F32)?;
    grad_into(rt, OP, GRAD_SUM, 0, dy, dy, dy, out)
}

/// [`sum_to_shape_into`] in a new tensor of `shape`.
pub fn sum_to_shape(rt: &Runtime, dy: &Tensor, shape: &[usize]) -> Result<Tensor> {
    let out = rt.empty(shape, DType::F32)?;
    rt.run(&sum_to_shape_into(rt, dy, &out)?);
    Ok(out)
}

/// Dispatches for the gradients of `out = op(a, b)`: `da` (a's shape) and `db` (b's shape),
/// each summed over the dims its input was broadcast along. Either may be skipped (`None`).
/// Overwrites them.
pub fn binary_backward_into(
    rt: &Runtime,
    op: Binary,
    a: &Tensor,
    b: &Tensor,
    dy: &Tensor,
    da: Option<&Tensor>,
    db: Option<&Tensor>,
) -> Result<Vec<Dispatch>> {
    const OP: &str = "binary_backward";
    expect_dtype(OP, a, DType::F32)?;
    expect_dtype(OP, b, DType::F32)?;
    let shape = layout::broadcast_shape(OP, &[a.shape(), b.shape()])?;
    expect(OP, "dy", dy, DType::F32, &shape)?;
    let mut d = Vec::new();
    if let Some(da) = da {
        expect(OP, "da", da, DType::F32, a.shape())?;
        d.extend(grad_into(rt, OP, op.code(), 0, a, b, dy, da)?);
    }
    if let Some(db) = db {
        expect(OP, "db", db, DType::F32, b.shape())?;
        d.extend(grad_into(rt, OP, op.code(), 1, a, b, dy, db)?);
    }
    Ok(d)
}

/// `(da, db)` of `op(a, b)` in new tensors.
pub fn binary_backward(
    rt: &Runtime,
    op: Binary,
    a: &Tensor,
    b: &Tensor,
    dy: &Tensor,
) -> Result<(Tensor, Tensor)> {
    let da = rt.empty(a.shape(), DType::F32)?;
    let db = rt.empty(b.shape(), DType::F32)?;
    rt.run(&binary_backward_into(
        rt,
        op,
        a,
        b,
        dy,
        Some(&da),
        Some(&db),
    )?);
    Ok((da, db))
}
