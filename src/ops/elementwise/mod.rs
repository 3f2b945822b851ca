//! Elementwise maps on f32 tensors: unary functions and binary functions with NumPy broadcasting
//! over any rank; the unary backward. (The broadcast gradient, `sum_to_shape`, is a reduction:
//! [`crate::ops::reduce`].)
//!
//! - [`unary`]: `y = f(x)` for the functions of [`Unary`] (GELU is the exact erf form, as
//!   PyTorch's default). Tensors are contiguous; any size, also past the storage-binding limit
//!   (the launch is split into chunks bound at offsets).
//! - [`binary`]: `out = f(a, b)` for [`Binary`], shapes broadcast as in NumPy (aligned at the
//!   last dim, size-1 dims stretch). Comparisons give 1.0/0.0 masks.
//! - Backward: [`unary_backward`] gives `dx = dy·f'(x)` (overwrites its output).
//!
//! Kernels (shaders/elementwise_*.wgsl): unary and same-shape binary maps handle 4 elements
//! per thread through vec4 views; the broadcast map walks rows of the innermost (collapsed) dim
//! 4 outputs at a time.
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
use crate::runtime::{DType, Dispatch, Runtime, Tensor};
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
