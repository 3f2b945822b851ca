//! grid_sample (bilinear, zeros, align_corners=False) and Mask2Former's point_sample, which is
//! grid_sample at [0, 1] coordinates, forward and backward.

use std::sync::OnceLock;

use super::*;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct GridParams {
    items: u32,
    channels: u32,
    in_h: u32,
    in_w: u32,
    points: u32,
    in_off: u32,
    grid_off: u32,
    out_off: u32,
}

/// Validates grid_sample shapes; returns (N, C, H, W, points).
fn check_grid(
    op: &'static str,
    x: &Tensor,
    grid: &Tensor,
    out: &Tensor,
    out_name: &str,
) -> Result<(usize, usize, usize, usize, usize)> {
    check::f32_rank(op, "input", x, 4)?;
    check::f32_rank(op, "grid", grid, 4)?;
    check::f32_rank(op, out_name, out, 4)?;
    let (n, c, h, w) = nchw(x);
    let g = grid.shape();
    if g[0] != n || g[3] != 2 {
        return Err(crate::shape_err!(
            op,
            "grid must be [N={n}, Hg, Wg, 2] for input {:?}, got {g:?}",
            x.shape()
        ));
    }
    if h == 0 || w == 0 {
        return Err(crate::shape_err!(
            op,
            "input {:?} has an empty side",
            x.shape()
        ));
    }
    if out.shape() != [n, c, g[1], g[2]] {
        return Err(crate::shape_err!(
            op,
            "{out_name} must be {:?} for input {:?} and grid {g:?}, got {:?}",
            [n, c, g[1], g[2]],
            x.shape(),
            out.shape()
        ));
    }
    Ok((n, c, h, w, g[1] * g[2]))
}

/// grid_sample (bilinear, zeros, align_corners=False): x [N, C, H, W], grid [N, Hg, Wg, 2] →
/// out [N, C, Hg, Wg].
pub fn grid_sample_into(
    rt: &Runtime,
    x: &Tensor,
    grid: &Tensor,
    out: &Tensor,
) -> Result<Vec<Dispatch>> {
    grid_sample_into_limit(rt, x, grid, out, false, chunk::binding_limit(rt))
}

/// `unit`: grid coordinates in [0, 1] (point_sample) rather than [-1, 1].
pub(super) fn grid_sample_into_limit(
    rt: &Runtime,
    x: &Tensor,
    grid: &Tensor,
    out: &Tensor,
    unit: bool,
    max_binding: u64,
) -> Result<Vec<Dispatch>> {
    const OP: &str = "resample::grid_sample";
    let (n, c, h, w, pts) = check_grid(OP, x, grid, out, "output")?;
    let per = [(c * h * w) as u64, 2 * pts as u64, (c * pts) as u64];
    let chunks = chunk::plan(
        OP,
        n as u64,
        &per,
        &["input", "grid", "output"],
        max_binding,
        rt.caps().storage_offset_alignment as u64,
    )?;
    let k = rt.kernel(
        &crate::shader!("resample_grid"),
        "grid_sample",
        &[("UNIT", unit as u8 as f64)],
    )?;
    Ok(chunks
        .iter()
        .map(|ch| {
            let p = grid_params(ch, c, h, w, pts);
            rt.dispatch(
                &k,
                &p,
                &[ch.bind(0, x), ch.bind(1, grid), ch.bind(2, out)],
                rt.grid(ch.count * pts as u64, 64),
            )
        })
        .collect())
}

fn grid_params(ch: &chunk::Chunk, c: usize, h: usize, w: usize, pts: usize) -> GridParams {
    GridParams {
        items: ch.count as u32,
        channels: c as u32,
        in_h: h as u32,
        in_w: w as u32,
        points: pts as u32,
        in_off: ch.views[0].skip,
        grid_off: ch.views[1].skip,
        out_off: ch.views[2].skip,
    }
}

/// grid_sample (bilinear, zeros, align_corners=False) of x [N, C, H, W] at grid [N, Hg, Wg, 2].
pub fn grid_sample(rt: &Runtime, x: &Tensor, grid: &Tensor) -> Result<Tensor> {
    const OP: &str = "resample::grid_sample";
    check::f32_rank(OP, "input", x, 4)?;
    check::f32_rank(OP, "grid", grid, 4)?;
    let out = rt.empty(
        &[x.shape()[0], x.shape()[1], grid.shape()[1], grid.shape()[2]],
        DType::F32,
    )?;
    rt.run(&grid_sample_into(rt, x, grid, &out)?);
    Ok(out)
}

/// The backward grid shader with native f32 atomics for the input gradient.
pub(crate) fn grid_backward_shader(native: bool) -> Shader {
    static NATIVE: OnceLock<String> = OnceLock::new();
    let base = crate::shader!("resample_grid");
    if !native {
        return base;
    }
    Shader {
        name: "resample_grid+f32atomic",
        source: NATIVE.get_or_init(|| chunk::native_scatter_source(base.source, 5, "grad_input")),
    }
}

/// Gradients of [`grid_sample`]: grad_x [N, C, H, W] and grad_grid [N, Hg, Wg, 2], both
/// overwritten (grad_x is zeroed by the first dispatch, then scatter-added into).
#[allow(clippy::too_many_arguments)]
pub fn grid_sample_backward_into(
    rt: &Runtime,
    x: &Tensor,
    grid: &Tensor,
    grad_out: &Tensor,
    grad_x: &Tensor,
    grad_grid: &Tensor,
    scatter: Scatter,
) -> Result<Vec<Dispatch>> {
    grid_sample_backward_into_limit(
        rt,
        x,
        grid,
        grad_out,
        grad_x,
        grad_grid,
        scatter,
        false,
        chunk::binding_limit(rt),
    )
}

#[allow(clippy::too_many_arguments)]
pub(super) fn grid_sample_backward_into_limit(
    rt: &Runtime,
    x: &Tensor,
    grid: &Tensor,
    grad_out: &Tensor,
    grad_x: &Tensor,
    grad_grid: &Tensor,
    scatter: Scatter,
    unit: bool,
    max_binding: u64,
) -> Result<Vec<Dispatch>> {
    const OP: &str = "resample::grid_sample_backward";
    let (n, c, h, w, pts) = check_grid(OP, x, grid, grad_out, "grad_out")?;
    check::f32_rank(OP, "grad_x", grad_x, 4)?;
    check::f32_rank(OP, "grad_grid", grad_grid, 4)?;
    if grad_x.shape() != x.shape() || grad_grid.shape() != grid.shape() {
        return Err(crate::shape_err!(
            OP,
            "grad_x {:?} and grad_grid {:?} must match input {:?} and grid {:?}",
            grad_x.shape(),
            grad_grid.shape(),
            x.shape(),
            grid.shape()
        ));
    }
    let native = scatter.resolve(rt, OP)? == Scatter::NativeF32;
    let per = [
        (c * h * w) as u64,
        2 * pts as u64,
        (c * pts) as u64,
        2 * pts as u64,
        (c * h * w) as u64,
    ];
    let chunks = chunk::plan(
        OP,
        n as u64,
        &per,
        &["input", "grid", "grad_out", "grad_grid", "grad_x"],
        max_binding,
        rt.caps().storage_offset_alignment as u64,
    )?;
    let k = rt.kernel(
        &grid_backward_shader(native),
        "grid_sample_backward",
        &[("UNIT", unit as u8 as f64)],
    )?;
    let mut out = chunk::zero_dispatches(rt, grad_x)?;
    for ch in &chunks {
        let p = grid_params(ch, c, h, w, pts);
        out.push(rt.dispatch(
            &k,
            &p,
            &[
                ch.bind(0, x),
                ch.bind(1, grid),
                ch.bind(2, grad_out),
                ch.bind(3, grad_grid),
                ch.bind(4, grad_x),
            ],
            rt.grid(ch.count * pts as u64, 64),
        ));
    }
    Ok(out)
}

/// Gradients of [`grid_sample`] with respect to x and grid: (grad_x, grad_grid).
pub fn grid_sample_backward(
    rt: &Runtime,
    x: &Tensor,
    grid: &Tensor,
    grad_out: &Tensor,
    scatter: Scatter,
) -> Result<(Tensor, Tensor)> {
    let grad_x = rt.empty(x.shape(), DType::F32)?;
    let grad_grid = rt.empty(grid.shape(), DType::F32)?;
    rt.run(&grid_sample_backward_into(
        rt, x, grid, grad_out, &grad_x, &grad_grid, scatter,
    )?);
    Ok((grad_x, grad_grid))
}

/// Views point_sample's coords [N, P, 2] and output [N, C, P] as a grid [N, 1, P, 2] and an
/// output [N, C, 1, P].
fn point_views(
    op: &'static str,
    x: &Tensor,
    coords: &Tensor,
    out: &Tensor,
    out_name: &str,
) -> Result<(Tensor, Tensor)> {
    check::f32_rank(op, "input", x, 4)?;
    check::f32_rank(op, "coords", coords, 3)?;
    check::f32_rank(op, out_name, out, 3)?;
    let (n, c, _, _) = nchw(x);
    let (cs, os) = (coords.shape(), out.shape());
    if cs[0] != n || cs[2] != 2 || os != [n, c, cs[1]] {
        return Err(crate::shape_err!(
            op,
            "coords must be [N={n}, P, 2] and {out_name} [N, C={c}, P] for input {:?}, got {cs:?} and {os:?}",
            x.shape()
        ));
    }
    Ok((
        coords.reshape(&[n, 1, cs[1], 2])?,
        out.reshape(&[n, c, 1, cs[1]])?,
    ))
}

/// Mask2Former's `point_sample`: grid_sample of x [N, C, H, W] at coords [N, P, 2] given in
/// [0, 1] (x then y), i.e. `grid_sample(x, 2·coords − 1)` → out [N, C, P].
pub fn point_sample_into(
    rt: &Runtime,
    x: &Tensor,
    coords: &Tensor,
    out: &Tensor,
) -> Result<Vec<Dispatch>> {
    const OP: &str = "resample::point_sample";
    let (grid, out4) = point_views(OP, x, coords, out, "output")?;
    grid_sample_into_limit(rt, x, &grid, &out4, true, chunk::binding_limit(rt))
}

/// [`point_sample_into`] into a new tensor [N, C, P].
pub fn point_sample(rt: &Runtime, x: &Tensor, coords: &Tensor) -> Result<Tensor> {
    const OP: &str = "resample::point_sample";
    check::f32_rank(OP, "input", x, 4)?;
    check::f32_rank(OP, "coords", coords, 3)?;
    let out = rt.empty(&[x.shape()[0], x.shape()[1], coords.shape()[1]], DType::F32)?;
    rt.run(&point_sample_into(rt, x, coords, &out)?);
    Ok(out)
}

/// Gradients of [`point_sample`]: grad_x [N, C, H, W] and grad_coords [N, P, 2], both
/// overwritten (grad_x is zeroed first, then scatter-added into).
#[allow(clippy::too_many_arguments)]
pub fn point_sample_backward_into(
    rt: &Runtime,
    x: &Tensor,
    coords: &Tensor,
    grad_out: &Tensor,
    grad_x: &Tensor,
    grad_coords: &Tensor,
    scatter: Scatter,
) -> Result<Vec<Dispatch>> {
    const OP: &str = "resample::point_sample_backward";
    let (grid, grad_out4) = point_views(OP, x, coords, grad_out, "grad_out")?;
    check::f32_rank(OP, "grad_coords", grad_coords, 3)?;
    if grad_coords.shape() != coords.shape() {
        return Err(crate::shape_err!(
            OP,
            "grad_coords {:?} must match coords {:?}",
            grad_coords.shape(),
            coords.shape()
        ));
    }
    let grad_grid = grad_coords.reshape(grid.shape())?;
    grid_sample_backward_into_limit(
        rt,
        x,
        &grid,
        &grad_out4,
        grad_x,
        &grad_grid,
        scatter,
        true,
        chunk::binding_limit(rt),
    )
}

/// Gradients of [`point_sample`] with respect to x and coords: (grad_x, grad_coords).
pub fn point_sample_backward(
    rt: &Runtime,
    x: &Tensor,
    coords: &Tensor,
    grad_out: &Tensor,
    scatter: Scatter,
) -> Result<(Tensor, Tensor)> {
    let grad_x = rt.empty(x.shape(), DType::F32)?;
    let grad_coords = rt.empty(coords.shape(), DType::F32)?;
    rt.run(&point_sample_backward_into(
        rt,
        x,
        coords,
        grad_out,
        &grad_x,
        &grad_coords,
        scatter,
    )?);
    Ok((grad_x, grad_coords))
}
