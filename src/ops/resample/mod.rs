//! Resampling of NCHW tensors, with PyTorch's semantics:
//!
//! - [`bilinear`]: `F.interpolate(x, size | scale_factor, mode="bilinear", align_corners=False)`.
//!   The source coordinate of output pixel `d` is `scale·(d + 0.5) − 0.5` clamped at 0, with
//!   `scale = in/out`, or `1/scale_factor` when a scale factor is given ([`Resize::Scale`]);
//!   equal sizes copy. Backward ([`bilinear_backward`]) is a gather: each input pixel sums the
//!   output pixels that read it (deterministic, no atomics).
//! - [`nearest`]: legacy `mode="nearest"`: source index `floor(d·scale)` clamped to the last pixel.
//!   Forward only (used on labels and masks, which carry no gradient).
//! - [`grid_sample`]: `F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros",
//!   align_corners=False)` with x [N, C, H, W] and grid [N, Hg, Wg, 2] (x then y, in [-1, 1]) →
//!   [N, C, Hg, Wg]. Mask2Former's `point_sample` is this with grid = 2·coords − 1; [`point_sample`]
//!   takes the coords [N, P, 2] in [0, 1] directly (a kernel constant). Backward
//!   ([`grid_sample_backward`]) gives the input gradient (scatter-add: native f32 atomics or a
//!   portable compare-exchange loop, see [`Scatter`]) and the grid gradient.
//!
//! All ops are f32. Tensors past the adapter's storage-binding limit (128 MiB on lavapipe; e.g.
//! mask logits [1, 100, 800, 1088] are 348 MB) are processed in chunks of whole planes (bilinear,
//! nearest) or whole batch items (grid_sample), each bound at an aligned offset.

mod grid;
pub mod reference;
#[cfg(test)]
mod tests;

pub(crate) use grid::grid_backward_shader;
pub use grid::{
    grid_sample, grid_sample_backward, grid_sample_backward_into, grid_sample_into, point_sample,
    point_sample_backward, point_sample_backward_into, point_sample_into,
};
#[cfg(test)]
use grid::{grid_sample_backward_into_limit, grid_sample_into_limit};

use crate::ops::common::chunk;
pub use crate::ops::common::chunk::Scatter;

use crate::error::{Error, Result};
use crate::ops::common::check;
use crate::runtime::{DType, Dispatch, Runtime, Shader, Tensor};

/// The output size of a resize: explicit, or PyTorch's `scale_factor` (output =
/// floor(input · factor), and the source scale is 1/factor, not in/out).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Resize {
    /// Output (height, width).
    To(usize, usize),
    /// Scale factors (height, width), > 0.
    Scale(f64, f64),
}

impl Resize {
    /// Output size and source scales (PyTorch's `area_pixel_compute_scale`) for input (h, w).
    fn resolve(self, op: &'static str, h: usize, w: usize) -> Result<((usize, usize), (f32, f32))> {
        let axis = |size_in: usize, factor: Option<f64>, size_out: usize| -> (usize, f32) {
            if size_out == size_in {
                // PyTorch copies when sizes match; scale 1 makes the kernels copy too.
                (size_out, 1.0)
            } else {
                (size_out, reference::source_scale(size_in, size_out, factor))
            }
        };
        let (oh, ow, fh, fw) = match self {
            Resize::To(oh, ow) => (oh, ow, None, None),
            Resize::Scale(sh, sw) => {
                if !(sh > 0.0 && sw > 0.0 && sh.is_finite() && sw.is_finite()) {
                    return Err(crate::shape_err!(
                        op,
                        "scale factors must be positive and finite, got ({sh}, {sw})"
                    ));
                }
                (
                    (h as f64 * sh).floor() as usize,
                    (w as f64 * sw).floor() as usize,
                    Some(sh),
                    Some(sw),
                )
            }
        };
        if oh == 0 || ow == 0 {
            return Err(crate::shape_err!(
                op,
                "output size ({oh}, {ow}) from input ({h}, {w}) and {self:?} has an empty side"
            ));
        }
        let (oh, sh) = axis(h, fh, oh);
        let (ow, sw) = axis(w, fw, ow);
        Ok(((oh, ow), (sh, sw)))
    }
}

fn nchw(t: &Tensor) -> (usize, usize, usize, usize) {
    let s = t.shape();
    (s[0], s[1], s[2], s[3])
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ResizeParams {
    planes: u32,
    in_h: u32,
    in_w: u32,
    out_h: u32,
    out_w: u32,
    in_off: u32,
    out_off: u32,
    _pad: u32,
    scale_h: f32,
    scale_w: f32,
}

/// Output rows per thread in the forward resize kernels: 16 reuses the column taps and the row
/// lerps down the rows (a little faster than 8 on lavapipe, docs/PERFORMANCE.md) and still leaves
/// tens of thousands of workgroups for a GPU at mask-logit sizes.
const ROWS: usize = 16;

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Bilinear,
    BilinearBackward,
    Nearest,
}

/// Shared launcher of the plane-wise kernels. `src` [P, sh, sw] → `dst` [P, dh, dw], where for
/// the backward `src` is grad_out and `dst` grad_in (the kernel runs over the input pixels).
#[allow(clippy::too_many_arguments)]
fn plane_dispatches(
    rt: &Runtime,
    op: &'static str,
    mode: Mode,
    src: &Tensor,
    dst: &Tensor,
    in_hw: (usize, usize),
    out_hw: (usize, usize),
    scale: (f32, f32),
    max_binding: u64,
) -> Result<Vec<Dispatch>> {
    // Over ~80 lines: the forward and backward differ only in which side is chunked and gridded;
    // one launcher keeps the two in step.
    let (n, c, _, _) = nchw(src);
    let planes = (n * c) as u64;
    let (plane_in, plane_out) = ((in_hw.0 * in_hw.1) as u64, (out_hw.0 * out_hw.1) as u64);
    let (src_plane, dst_plane) = if mode == Mode::BilinearBackward {
        (plane_out, plane_in)
    } else {
        (plane_in, plane_out)
    };
    // The grid is (columns / 64, rows or row blocks, planes): rows and planes per chunk are
    // capped by the per-dimension workgroup limit.
    let max_dim = rt.caps().max_workgroups_per_dim as usize;
    let (rows, cols) = if mode == Mode::BilinearBackward {
        in_hw
    } else {
        out_hw
    };
    if rows > max_dim || cols.div_ceil(64) > max_dim {
        return Err(Error::Unsupported {
            op,
            what: format!(
                "{rows} x {cols} pixels per plane (at most {max_dim} rows and {} columns)",
                max_dim * 64
            ),
        });
    }
    let chunks = chunk::plan_capped(
        op,
        planes,
        &[src_plane, dst_plane],
        &["input", "output"],
        max_binding,
        rt.caps().storage_offset_alignment as u64,
        max_dim as u64,
    )?;
    // Forward kernels write ROWS rows per thread; the gather backward one pixel.
    let row_groups = if mode == Mode::BilinearBackward {
        rows
    } else {
        rows.div_ceil(ROWS)
    };
    let entry = match mode {
        Mode::Bilinear => "bilinear",
        Mode::BilinearBackward => "bilinear_backward",
        Mode::Nearest => "nearest",
    };
    let k = if mode == Mode::BilinearBackward {
        rt.kernel(&crate::shader!("resample"), entry, &[])?
    } else {
        rt.kernel(&crate::shader!("resample"), entry, &[("ROWS", ROWS as f64)])?
    };
    let mut out = Vec::with_capacity(chunks.len());
    for ch in &chunks {
        let (in_off, out_off) = if mode == Mode::BilinearBackward {
            (ch.views[1].skip, ch.views[0].skip)
        } else {
            (ch.views[0].skip, ch.views[1].skip)
        };
        let p = ResizeParams {
            planes: ch.count as u32,
            in_h: in_hw.0 as u32,
            in_w: in_hw.1 as u32,
            out_h: out_hw.0 as u32,
            out_w: out_hw.1 as u32,
            in_off,
            out_off,
            _pad: 0,
            scale_h: scale.0,
            scale_w: scale.1,
        };
        // One thread per element written: output pixels forward, input pixels backward.
        out.push(rt.dispatch(
            &k,
            &p,
            &[ch.bind(0, src), ch.bind(1, dst)],
            [cols.div_ceil(64) as u32, row_groups as u32, ch.count as u32],
        ));
    }
    Ok(out)
}

/// Validates a resize forward: x [N, C, H, W] and out [N, C, H', W'] with (H', W') from `size`.
fn check_resize(
    op: &'static str,
    x: &Tensor,
    out: &Tensor,
    size: Resize,
) -> Result<((usize, usize), (f32, f32))> {
    check::f32_rank(op, "input", x, 4)?;
    check::f32_rank(op, "output", out, 4)?;
    let (n, c, h, w) = nchw(x);
    if h == 0 || w == 0 {
        return Err(crate::shape_err!(
            op,
            "input {:?} has an empty side",
            x.shape()
        ));
    }
    let (ohw, scale) = size.resolve(op, h, w)?;
    if out.shape() != [n, c, ohw.0, ohw.1] {
        return Err(crate::shape_err!(
            op,
            "output must be {:?} for input {:?} and {size:?}, got {:?}",
            [n, c, ohw.0, ohw.1],
            x.shape(),
            out.shape()
        ));
    }
    Ok((ohw, scale))
}

/// Bilinear resize (align_corners=False) of x [N, C, H, W] into out [N, C, H', W'].
pub fn bilinear_into(
    rt: &Runtime,
    x: &Tensor,
    out: &Tensor,
    size: Resize,
) -> Result<Vec<Dispatch>> {
    bilinear_into_limit(rt, x, out, size, chunk::binding_limit(rt))
}

fn bilinear_into_limit(
    rt: &Runtime,
    x: &Tensor,
    out: &Tensor,
    size: Resize,
    max_binding: u64,
) -> Result<Vec<Dispatch>> {
    const OP: &str = "resample::bilinear";
    let (ohw, scale) = check_resize(OP, x, out, size)?;
    let (_, _, h, w) = nchw(x);
    plane_dispatches(
        rt,
        OP,
        Mode::Bilinear,
        x,
        out,
        (h, w),
        ohw,
        scale,
        max_binding,
    )
}

/// Bilinear resize (align_corners=False) of x [N, C, H, W] to `size`.
pub fn bilinear(rt: &Runtime, x: &Tensor, size: Resize) -> Result<Tensor> {
    let out = alloc_resized(rt, "resample::bilinear", x, size)?;
    rt.run(&bilinear_into(rt, x, &out, size)?);
    Ok(out)
}

fn alloc_resized(rt: &Runtime, op: &'static str, x: &Tensor, size: Resize) -> Result<Tensor> {
    check::f32_rank(op, "input", x, 4)?;
    let (n, c, h, w) = nchw(x);
    if h == 0 || w == 0 {
        return Err(crate::shape_err!(
            op,
            "input {:?} has an empty side",
            x.shape()
        ));
    }
    let ((oh, ow), _) = size.resolve(op, h, w)?;
    rt.empty(&[n, c, oh, ow], DType::F32)
}

/// Gradient of [`bilinear`] with respect to its input: grad_out [N, C, H', W'] → grad_in
/// [N, C, H, W] (overwritten). `size` is the forward's; grad_in's shape gives (H, W).
pub fn bilinear_backward_into(
    rt: &Runtime,
    grad_out: &Tensor,
    grad_in: &Tensor,
    size: Resize,
) -> Result<Vec<Dispatch>> {
    bilinear_backward_into_limit(rt, grad_out, grad_in, size, chunk::binding_limit(rt))
}

fn bilinear_backward_into_limit(
    rt: &Runtime,
    grad_out: &Tensor,
    grad_in: &Tensor,
    size: Resize,
    max_binding: u64,
) -> Result<Vec<Dispatch>> {
    const OP: &str = "resample::bilinear_backward";
    // The forward's shape rules with the roles swapped: grad_in is the forward's input.
    let (ohw, scale) = check_resize(OP, grad_in, grad_out, size)?;
    let (_, _, h, w) = nchw(grad_in);
    plane_dispatches(
        rt,
        OP,
        Mode::BilinearBackward,
        grad_out,
        grad_in,
        (h, w),
        ohw,
        scale,
        max_binding,
    )
}

/// Gradient of [`bilinear`] with respect to its input of spatial size `in_hw`.
pub fn bilinear_backward(
    rt: &Runtime,
    grad_out: &Tensor,
    in_hw: (usize, usize),
    size: Resize,
) -> Result<Tensor> {
    check::f32_rank("resample::bilinear_backward", "grad_out", grad_out, 4)?;
    let (n, c, _, _) = nchw(grad_out);
    let grad_in = rt.empty(&[n, c, in_hw.0, in_hw.1], DType::F32)?;
    rt.run(&bilinear_backward_into(rt, grad_out, &grad_in, size)?);
    Ok(grad_in)
}

/// Legacy nearest resize of x [N, C, H, W] into out [N, C, H', W'].
pub fn nearest_into(rt: &Runtime, x: &Tensor, out: &Tensor, size: Resize) -> Result<Vec<Dispatch>> {
    nearest_into_limit(rt, x, out, size, chunk::binding_limit(rt))
}

fn nearest_into_limit(
    rt: &Runtime,
    x: &Tensor,
    out: &Tensor,
    size: Resize,
    max_binding: u64,
) -> Result<Vec<Dispatch>> {
    const OP: &str = "resample::nearest";
    let (ohw, _) = check_resize(OP, x, out, size)?;
    let (_, _, h, w) = nchw(x);
    // Nearest keeps PyTorch's scale even when sizes match (the kernel special-cases equality).
    let scale = match size {
        Resize::To(..) => (
            reference::source_scale(h, ohw.0, None),
            reference::source_scale(w, ohw.1, None),
        ),
        Resize::Scale(sh, sw) => (
            reference::source_scale(h, ohw.0, Some(sh)),
            reference::source_scale(w, ohw.1, Some(sw)),
        ),
    };
    plane_dispatches(
        rt,
        OP,
        Mode::Nearest,
        x,
        out,
        (h, w),
        ohw,
        scale,
        max_binding,
    )
}

/// Legacy nearest resize of x [N, C, H, W] to `size`.
pub fn nearest(rt: &Runtime, x: &Tensor, size: Resize) -> Result<Tensor> {
    let out = alloc_resized(rt, "resample::nearest", x, size)?;
    rt.run(&nearest_into(rt, x, &out, size)?);
    Ok(out)
}
