//! Elementwise maps on f32 tensors: unary functions, binary functions with NumPy broadcasting
//! over any rank, and `select` (where), with their backward passes.
//!
//! - [`unary`]: `y = f(x)` for the functions of [`Unary`] (GELU is the exact erf form, as
//!   PyTorch's default). Tensors are contiguous; any size, also past the storage-binding limit
//!   (the launch is split into chunks bound at offsets).
//! - [`binary`]: `out = f(a, b)` for [`Binary`], shapes broadcast as in NumPy (aligned at the
//!   last dim, size-1 dims stretch). Comparisons give 1.0/0.0 masks.
//! - [`select`]: `out = cond != 0 ? a : b`, the three shapes broadcast together.
//! - Backward: [`unary_backward`] gives `dx = dy·f'(x)`; [`binary_backward`] gives the
//!   gradients of `a` and `b` already summed over the dims each was broadcast along, in one
//!   pass per input (no intermediate of the output's size); [`select_backward`] likewise.
//!   All backward launchers overwrite their outputs.
//!
//! Kernels (shaders/elementwise_*.wgsl): unary and same-shape binary maps handle 4 elements
//! per thread through vec4 views; the broadcast map walks rows of the innermost (collapsed) dim
//! 4 outputs at a time; gradients of broadcast inputs loop over the broadcast dims per output
//! element (no split along them, so a bias gradient `[N, C] → [C]` runs C threads).
//!
//! [`layout`] holds the index-space machinery (broadcast strides, collapsing, chunking under
//! the binding limit) the reduce, softmax and copy families share.

pub mod reference;
#[cfg(test)]
mod tests;
#[cfg(test)]
pub(crate) mod testutil;

use crate::error::Result;
use crate::ops::common::layout;
use crate::runtime::{DType, Dispatch, Runtime, Tensor, CPU_LOOP_ITERATIONS};
use layout::{expect, expect_dtype, pack, plan, u, Access, Chunk};

/// A unary function; scalar operands ride along.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Unary {
    Neg,
    Relu,
    /// Exact GELU: `x·Φ(x)` with the normal CDF from erf.
    Gelu,
    Sigmoid,
    Exp,
    Log,
    Sqrt,
    Rsqrt,
    Tanh,
    Abs,
    Recip,
    AddScalar(f32),
    MulScalar(f32),
    /// `x^p` as `torch.pow`: negative bases allowed for integer `p`.
    PowScalar(f32),
    Clamp {
        min: f32,
        max: f32,
    },
    /// `x < s` as 1.0/0.0.
    LtScalar(f32),
    /// `x > s` as 1.0/0.0.
    GtScalar(f32),
}

impl Unary {
    /// The shader's OP code.
    pub fn code(self) -> u32 {
        use Unary::*;
        match self {
            Neg => 0,
            Relu => 1,
            Gelu => 2,
            Sigmoid => 3,
            Exp => 4,
            Log => 5,
            Sqrt => 6,
            Rsqrt => 7,
            Tanh => 8,
            Abs => 9,
            Recip => 10,
            AddScalar(_) => 11,
            MulScalar(_) => 12,
            PowScalar(_) => 13,
            Clamp { .. } => 14,
            LtScalar(_) => 15,
            GtScalar(_) => 16,
        }
    }

    /// `(alpha, beta)` of the shader params.
    pub fn scalars(self) -> (f32, f32) {
        use Unary::*;
        match self {
            AddScalar(s) | MulScalar(s) | PowScalar(s) | LtScalar(s) | GtScalar(s) => (s, 0.0),
            Clamp { min, max } => (min, max),
            _ => (0.0, 0.0),
        }
    }
}

/// A binary function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Binary {
    Add,
    Sub,
    Mul,
    Div,
    Max,
    Min,
    /// `a^b` as `torch.pow`.
    Pow,
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
}

impl Binary {
    pub fn code(self) -> u32 {
        use Binary::*;
        match self {
            Add => 0,
            Sub => 1,
            Mul => 2,
            Div => 3,
            Max => 4,
            Min => 5,
            Pow => 6,
            Lt => 7,
            Le => 8,
            Gt => 9,
            Ge => 10,
            Eq => 11,
        }
    }
}

/// Elements per workgroup of the vec4 kernels (256 threads × 4).
const VEC_WG: u32 = 4 * layout::WG;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct UnaryParams {
    n: u32,
    start: u32,
    win_x: u32,
    win_y: u32,
    alpha: f32,
    beta: f32,
    _p: [u32; 2],
}

/// Dispatches for `out = op(x)`; `out` has x's shape (f32).
pub fn unary_into(rt: &Runtime, op: Unary, x: &Tensor, out: &Tensor) -> Result<Vec<Dispatch>> {
    const OP: &str = "unary";
    expect_dtype(OP, x, DType::F32)?;
    expect(OP, "out", out, DType::F32, x.shape())?;
    layout::no_alias(OP, &[x], out)?;
    let space = [x.numel()];
    let acc = Access::contiguous(&space);
    let chunks = plan(rt, OP, &space, &[&acc, &acc])?;
    let k = rt.kernel(
        &crate::shader!("elementwise_unary"),
        "main",
        &[("OP", op.code() as f64)],
    )?;
    let (alpha, beta) = op.scalars();
    Ok(layout::launch_with(
        rt,
        &k,
        &chunks,
        &[x, out],
        VEC_WG,
        layout::bind_vec4,
        |c| UnaryParams {
            n: u(c.n),
            start: u(c.start),
            win_x: u(c.windows[0].offset),
            win_y: u(c.windows[1].offset),
            alpha,
            beta,
            _p: [0; 2],
        },
    ))
}

/// `op(x)` in a new tensor.
pub fn unary(rt: &Runtime, op: Unary, x: &Tensor) -> Result<Tensor> {
    let out = rt.empty(x.shape(), DType::F32)?;
    rt.run(&unary_into(rt, op, x, &out)?);
    Ok(out)
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct UnaryBackwardParams {
    n: u32,
    start: u32,
    win_x: u32,
    win_dy: u32,
    win_dx: u32,
    alpha: f32,
    beta: f32,
    _p: u32,
}

/// Dispatches for `dx = dy·op'(x)` (overwrites dx). All three share x's shape.
pub fn unary_backward_into(
    rt: &Runtime,
    op: Unary,
    x: &Tensor,
    dy: &Tensor,
    dx: &Tensor,
) -> Result<Vec<Dispatch>> {
    const OP: &str = "unary_backward";
    expect_dtype(OP, x, DType::F32)?;
    expect(OP, "dy", dy, DType::F32, x.shape())?;
    expect(OP, "dx", dx, DType::F32, x.shape())?;
    layout::no_alias(OP, &[x, dy], dx)?;
    let space = [x.numel()];
    let acc = Access::contiguous(&space);
    let chunks = plan(rt, OP, &space, &[&acc, &acc, &acc])?;
    let k = rt.kernel(
        &crate::shader!("elementwise_unary_backward"),
        "main",
        &[("OP", op.code() as f64)],
    )?;
    let (alpha, beta) = op.scalars();
    Ok(layout::launch_with(
        rt,
        &k,
        &chunks,
        &[x, dy, dx],
        VEC_WG,
        layout::bind_vec4,
        |c| UnaryBackwardParams {
            n: u(c.n),
            start: u(c.start),
            win_x: u(c.windows[0].offset),
            win_dy: u(c.windows[1].offset),
            win_dx: u(c.windows[2].offset),
            alpha,
            beta,
            _p: 0,
        },
    ))
}

/// `dy·op'(x)` in a new tensor.
pub fn unary_backward(rt: &Runtime, op: Unary, x: &Tensor, dy: &Tensor) -> Result<Tensor> {
    let dx = rt.empty(x.shape(), DType::F32)?;
    rt.run(&unary_backward_into(rt, op, x, dy, &dx)?);
    Ok(dx)
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct BinaryParams {
    n: u32,
    start: u32,
    rank: u32,
    win_a: u32,
    win_b: u32,
    win_o: u32,
    _p: [u32; 2],
    shape: [u32; 8],
    sa: [u32; 8],
    sb: [u32; 8],
}

/// The broadcast output shape of `op(a, b)`.
pub fn binary_shape(a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    layout::broadcast_shape("binary", &[a, b])
}

/// Dispatches for `out = op(a, b)` with broadcasting; `out` has the broadcast shape.
pub fn binary_into(
    rt: &Runtime,
    op: Binary,
    a: &Tensor,
    b: &Tensor,
    out: &Tensor,
) -> Result<Vec<Dispatch>> {
    const OP: &str = "binary";
    expect_dtype(OP, a, DType::F32)?;
    expect_dtype(OP, b, DType::F32)?;
    let shape = layout::broadcast_shape(OP, &[a.shape(), b.shape()])?;
    expect(OP, "out", out, DType::F32, &shape)?;
    layout::no_alias(OP, &[a, b], out)?;
    let consts = [("OP", op.code() as f64)];
    let shader = crate::shader!("elementwise_binary");
    if a.shape() == b.shape() {
        let space = [out.numel()];
        let acc = Access::contiguous(&space);
        let chunks = plan(rt, OP, &space, &[&acc, &acc, &acc])?;
        let k = rt.kernel(&shader, "same", &consts)?;
        return Ok(layout::launch_with(
            rt,
            &k,
            &chunks,
            &[a, b, out],
            VEC_WG,
            layout::bind_vec4,
            |c| binary_params(c, 0, [0; 8], [0; 8], [0; 8]),
        ));
    }
    let sa = layout::broadcast_strides(a.shape(), &shape);
    let sb = layout::broadcast_strides(b.shape(), &shape);
    let so = layout::strides(&shape);
    let (mut space, mut st) = layout::collapse(&shape, &[&sa, &sb, &so]);
    if space.is_empty() {
        // The kernel walks rows of the innermost dim: one row of one element.
        space.push(1);
        for s in &mut st {
            s.push(0);
        }
    }
    let acc_a = Access::strided(a.numel(), st[0].clone());
    let acc_b = Access::strided(b.numel(), st[1].clone());
    let acc_o = Access::contiguous(&space);
    let chunks = plan(rt, OP, &space, &[&acc_a, &acc_b, &acc_o])?;
    let k = rt.kernel(&shader, "broadcast", &consts)?;
    let (ps, pa, pb) = (pack(OP, &space)?, pack(OP, &st[0])?, pack(OP, &st[1])?);
    Ok(layout::launch_rows(
        rt,
        &k,
        &chunks,
        &[a, b, out],
        *space.last().unwrap(),
        layout::bind_vec4,
        |c| binary_params(c, space.len(), ps, pa, pb),
    ))
}

fn binary_params(
    c: &Chunk,
    rank: usize,
    shape: [u32; 8],
    sa: [u32; 8],
    sb: [u32; 8],
) -> BinaryParams {
    BinaryParams {
        n: u(c.n),
        start: u(c.start),
        rank: u(rank),
        win_a: u(c.windows[0].offset),
        win_b: u(c.windows[1].offset),
        win_o: u(c.windows[2].offset),
        _p: [0; 2],
        shape,
        sa,
        sb,
    }
}

/// `op(a, b)` in a new tensor of the broadcast shape.
pub fn binary(rt: &Runtime, op: Binary, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let out = rt.empty(&binary_shape(a.shape(), b.shape())?, DType::F32)?;
    rt.run(&binary_into(rt, op, a, b, &out)?);
    Ok(out)
}

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
const GRAD_SELECT: u32 = 12;
/// OP code of the gradient kernel for a plain sum to shape.
const GRAD_SUM: u32 = 13;

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
fn reduced_per_launch(rshape: &[usize]) -> usize {
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

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct SelectParams {
    n: u32,
    start: u32,
    rank: u32,
    win_c: u32,
    win_a: u32,
    win_b: u32,
    win_o: u32,
    _p: u32,
    shape: [u32; 8],
    sc: [u32; 8],
    sa: [u32; 8],
    sb: [u32; 8],
}

/// Dispatches for `out = where(cond != 0, a, b)`; the three broadcast to out's shape.
pub fn select_into(
    rt: &Runtime,
    cond: &Tensor,
    a: &Tensor,
    b: &Tensor,
    out: &Tensor,
) -> Result<Vec<Dispatch>> {
    const OP: &str = "select";
    for t in [cond, a, b] {
        expect_dtype(OP, t, DType::F32)?;
    }
    let shape = layout::broadcast_shape(OP, &[cond.shape(), a.shape(), b.shape()])?;
    expect(OP, "out", out, DType::F32, &shape)?;
    layout::no_alias(OP, &[cond, a, b], out)?;
    let sc = layout::broadcast_strides(cond.shape(), &shape);
    let sa = layout::broadcast_strides(a.shape(), &shape);
    let sb = layout::broadcast_strides(b.shape(), &shape);
    let so = layout::strides(&shape);
    let (space, st) = layout::collapse(&shape, &[&sc, &sa, &sb, &so]);
    let accs: Vec<Access> = [cond, a, b]
        .iter()
        .zip(&st)
        .map(|(t, s)| Access::strided(t.numel(), s.clone()))
        .collect();
    let acc_o = Access::contiguous(&space);
    let chunks = plan(rt, OP, &space, &[&accs[0], &accs[1], &accs[2], &acc_o])?;
    let k = rt.kernel(&crate::shader!("elementwise_select"), "main", &[])?;
    let p = SelectParams {
        n: 0,
        start: 0,
        rank: u(space.len()),
        win_c: 0,
        win_a: 0,
        win_b: 0,
        win_o: 0,
        _p: 0,
        shape: pack(OP, &space)?,
        sc: pack(OP, &st[0])?,
        sa: pack(OP, &st[1])?,
        sb: pack(OP, &st[2])?,
    };
    Ok(layout::launch(
        rt,
        &k,
        &chunks,
        &[cond, a, b, out],
        layout::WG,
        |c| SelectParams {
            n: u(c.n),
            start: u(c.start),
            win_c: u(c.windows[0].offset),
            win_a: u(c.windows[1].offset),
            win_b: u(c.windows[2].offset),
            win_o: u(c.windows[3].offset),
            ..p
        },
    ))
}

/// `where(cond != 0, a, b)` in a new tensor.
pub fn select(rt: &Runtime, cond: &Tensor, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let shape = layout::broadcast_shape("select", &[cond.shape(), a.shape(), b.shape()])?;
    let out = rt.empty(&shape, DType::F32)?;
    rt.run(&select_into(rt, cond, a, b, &out)?);
    Ok(out)
}

/// Dispatches for the gradients of `where(cond, a, b)`: `da` (shape of a) = Σ dy where cond,
/// `db` (shape of b) = Σ dy elsewhere, summed over broadcast dims. Overwrites them.
pub fn select_backward_into(
    rt: &Runtime,
    cond: &Tensor,
    dy: &Tensor,
    da: Option<&Tensor>,
    db: Option<&Tensor>,
) -> Result<Vec<Dispatch>> {
    const OP: &str = "select_backward";
    expect_dtype(OP, cond, DType::F32)?;
    expect_dtype(OP, dy, DType::F32)?;
    let mut d = Vec::new();
    for (which, g) in [(0, da), (1, db)] {
        if let Some(g) = g {
            expect_dtype(OP, g, DType::F32)?;
            let shape = layout::broadcast_shape(OP, &[cond.shape(), g.shape(), dy.shape()])?;
            if shape != dy.shape() {
                return Err(crate::shape_err!(
                    OP,
                    "cond {:?} and gradient {:?} must broadcast to dy's shape {:?}",
                    cond.shape(),
                    g.shape(),
                    dy.shape()
                ));
            }
            d.extend(grad_into(rt, OP, GRAD_SELECT, which, cond, cond, dy, g)?);
        }
    }
    Ok(d)
}

/// `(da, db)` of `where(cond, a, b)` for inputs of shapes `a_shape` and `b_shape`.
pub fn select_backward(
    rt: &Runtime,
    cond: &Tensor,
    dy: &Tensor,
    a_shape: &[usize],
    b_shape: &[usize],
) -> Result<(Tensor, Tensor)> {
    let da = rt.empty(a_shape, DType::F32)?;
    let db = rt.empty(b_shape, DType::F32)?;
    rt.run(&select_backward_into(rt, cond, dy, Some(&da), Some(&db))?);
    Ok((da, db))
}
