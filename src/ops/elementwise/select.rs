//! `select` (where): `out = cond != 0 ? a : b` over broadcast shapes, and its backward.

use super::grad::GRAD_SELECT;
use super::*;

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
