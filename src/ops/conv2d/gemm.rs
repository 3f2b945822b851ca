//! The im2col GEMM path of conv2d (one group): im2col into a workspace, then the matmul
//! family's register-blocked / tiled GEMM, chunked over images and output rows so the column
//! matrix stays under [`Conv2dWorkspace`]'s cap (at most one storage binding).
//!
//! - forward: `out[n] = W [Cout, K] · col[n] [K, P]` (K = Cin·KH·KW, P = Ho·Wo), batched over
//!   the chunk's images; a 1×1 / stride 1 / unpadded convolution multiplies `x` itself.
//! - backward: with the chunk's `dy` and columns laid out channel-major (`[Cout, L]`, `[K, L]`,
//!   L = images × pixels of the chunk), `dW += dy · colᵀ` and `dcol = Wᵀ · dy`, then `col2im`
//!   sums `dcol` into `dx` (see `shaders/conv2d_im2col.wgsl`). A 1×1 / stride 1 / unpadded
//!   convolution needs no columns: `dx = Wᵀ · dy` batched over images, and `dW` per image (into
//!   the workspace, then summed, when there are several).
//!
//! On CPU adapters `im2col` and `col2im` read `x` and `dcol` through texel views where the rows
//! are whole texels (W and Wo multiples of 4, unit column stride and dilation): an invocation's
//! four pixels then come from one or two texels, not four lane-by-lane loads (the FPN's 3×3 on
//! the demo model: im2col 4.2 → 2.9 ms, col2im 3.2 → 1.7 ms; docs/PERFORMANCE.md "Session 12").

use std::sync::OnceLock;

use super::{Conv2dOptions, ConvDims, WG};
use crate::error::{Error, Result};
use crate::ops::common::texel;
use crate::ops::matmul::{matmul_into, MatmulOptions};
use crate::runtime::{DType, Dispatch, Runtime, Tensor, TexelSlot};

/// Default cap on the column matrix: 128 MiB (one lavapipe binding) keeps the FPN's 3×3 at
/// 800×1088 (K·P = 2304·13600 floats, 125 MB) in one chunk.
const DEFAULT_CAP_BYTES: u64 = 128 << 20;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    cin: u32,
    h: u32,
    w: u32,
    cout: u32,
    ho: u32,
    wo: u32,
    kh: u32,
    kw: u32,
    sh: u32,
    sw: u32,
    ph: u32,
    pw: u32,
    dh: u32,
    dw: u32,
    n0: u32,
    nb: u32,
    oy0: u32,
    rows: u32,
    iy0: u32,
    iy1: u32,
    acc_below: u32,
    has_bias: u32,
    cm: u32,
}

/// One chunk: images `n0..n0 + nb` × output rows `oy0..oy0 + rows` (`rows = Ho` when `nb > 1`),
/// and the input rows `iy0..iy1` its `col2im` writes, adding below `acc_below`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Chunk {
    pub n0: usize,
    pub nb: usize,
    pub oy0: usize,
    pub rows: usize,
    pub iy0: usize,
    pub iy1: usize,
    pub acc_below: usize,
}

/// The chunks of one convolution and the workspace they need (elements).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Plan {
    pub chunks: Vec<Chunk>,
    pub col: usize,
    /// The per-chunk output / `dy` staging buffer; 0 when the forward's single chunk writes
    /// `out` directly.
    pub tmp: usize,
}

fn taps(d: &ConvDims) -> usize {
    d.cin * d.kh * d.kw
}

/// Input rows touched by output rows `oy0..oy1`, clamped to `0..H`.
fn touched(d: &ConvDims, o: &Conv2dOptions, oy0: usize, oy1: usize) -> (usize, usize) {
    let lo = (oy0 * o.stride[0]).saturating_sub(o.padding[0]).min(d.h);
    let hi = ((oy1 - 1) * o.stride[0] + (d.kh - 1) * o.dilation[0] + 1)
        .saturating_sub(o.padding[0])
        .min(d.h);
    (lo, hi.max(lo))
}

/// Splits the convolution into chunks whose column matrix has at most `cap` elements (one
/// output row per chunk at least).
pub(super) fn plan(d: &ConvDims, o: &Conv2dOptions, cap: usize) -> Plan {
    let k = taps(d);
    let plane = d.ho * d.wo;
    let per_image = k * plane;
    let mut chunks = Vec::new();
    let whole = |n0, nb| Chunk {
        n0,
        nb,
        oy0: 0,
        rows: d.ho,
        iy0: 0,
        iy1: d.h,
        acc_below: 0,
    };
    if per_image * d.n <= cap {
        chunks.push(whole(0, d.n));
        return Plan {
            chunks,
            col: per_image * d.n,
            tmp: 0,
        };
    }
    if per_image <= cap {
        let nb = (cap / per_image).max(1);
        let mut n0 = 0;
        while n0 < d.n {
            let b = nb.min(d.n - n0);
            chunks.push(whole(n0, b));
            n0 += b;
        }
        return Plan {
            chunks,
            col: per_image * nb,
            tmp: d.cout * plane * nb,
        };
    }
    // Rows per chunk; a multiple of 4 pixels where possible keeps the GEMM's vec4 loads.
    let mut rows = (cap / (k * d.wo).max(1)).clamp(1, d.ho);
    let align = 4 / gcd(d.wo, 4);
    if rows >= align {
        rows -= rows % align;
    }
    for n in 0..d.n {
        let mut oy0 = 0;
        let mut written = 0; // dx rows 0..written hold an earlier chunk's sums
        while oy0 < d.ho {
            let r = rows.min(d.ho - oy0);
            let (lo, hi) = touched(d, o, oy0, oy0 + r);
            // Cover 0..H without gaps: the first chunk starts at row 0, each one continues where
            // the last stopped, the last ends at H (untouched rows become zeros).
            let iy0 = if oy0 == 0 { 0 } else { lo.min(written) };
            let iy1 = if oy0 + r == d.ho {
                d.h
            } else {
                hi.max(written)
            };
            chunks.push(Chunk {
                n0: n,
                nb: 1,
                oy0,
                rows: r,
                iy0,
                iy1,
                acc_below: written,
            });
            written = iy1;
            oy0 += r;
        }
    }
    Plan {
        chunks,
        col: k * rows * d.wo,
        tmp: d.cout * rows * d.wo,
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Scratch of the GEMM path: the column matrix and the staging buffer of one chunk. It must
/// stay alive until the dispatches recorded with it have run (a pooled buffer dropped earlier
/// could be handed to another tensor).
pub struct Conv2dWorkspace {
    pub(super) col: Tensor,
    pub(super) tmp: Option<Tensor>,
}

impl Conv2dWorkspace {
    pub(super) fn new(rt: &Runtime, plan: &Plan) -> Result<Self> {
        let col = rt.empty(&[plan.col.max(1)], DType::F32)?;
        let tmp = if plan.tmp > 0 {
            Some(rt.empty(&[plan.tmp], DType::F32)?)
        } else {
            None
        };
        Ok(Self { col, tmp })
    }
    /// A workspace of `floats` scratch floats in `col` (the implicit weight gradient's partials).
    pub(super) fn scratch(rt: &Runtime, floats: usize) -> Result<Self> {
        Ok(Self {
            col: rt.empty(&[floats], DType::F32)?,
            tmp: None,
        })
    }
    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.col.size_bytes() + self.tmp.as_ref().map_or(0, |t| t.size_bytes())
    }
    fn fits(&self, plan: &Plan) -> bool {
        self.col.numel() >= plan.col && self.tmp.as_ref().map_or(0, |t| t.numel()) >= plan.tmp
    }
}

/// Column-matrix cap in elements for these options and adapter.
pub(super) fn cap(rt: &Runtime, o: &Conv2dOptions) -> usize {
    let bytes = o
        .max_workspace
        .map_or(DEFAULT_CAP_BYTES, |b| b as u64)
        .min(rt.caps().max_storage_binding);
    (bytes / 4).max(1) as usize
}

/// Whether one output row's columns fit the cap (the smallest chunk).
pub(super) fn feasible(d: &ConvDims, cap: usize) -> bool {
    taps(d) * d.wo <= cap
}

fn params(d: &ConvDims, o: &Conv2dOptions, c: &Chunk, has_bias: bool, cm: bool) -> Params {
    Params {
        n: d.n as u32,
        cin: d.cin as u32,
        h: d.h as u32,
        w: d.w as u32,
        cout: d.cout as u32,
        ho: d.ho as u32,
        wo: d.wo as u32,
        kh: d.kh as u32,
        kw: d.kw as u32,
        sh: o.stride[0] as u32,
        sw: o.stride[1] as u32,
        ph: o.padding[0] as u32,
        pw: o.padding[1] as u32,
        dh: o.dilation[0] as u32,
        dw: o.dilation[1] as u32,
        n0: c.n0 as u32,
        nb: c.nb as u32,
        oy0: c.oy0 as u32,
        rows: c.rows as u32,
        iy0: c.iy0 as u32,
        iy1: c.iy1 as u32,
        acc_below: c.acc_below as u32,
        has_bias: has_bias as u32,
        cm: cm as u32,
    }
}

fn check_ws(op: &'static str, ws: &Conv2dWorkspace, plan: &Plan) -> Result<()> {
    if !ws.fits(plan) {
        return Err(crate::shape_err!(
            op,
            "workspace of {} + {} floats is smaller than the {} + {} this convolution needs",
            ws.col.numel(),
            ws.tmp.as_ref().map_or(0, |t| t.numel()),
            plan.col,
            plan.tmp
        ));
    }
    Ok(())
}

fn launch(
    rt: &Runtime,
    entry: &str,
    p: &Params,
    bindings: &[crate::runtime::Binding<'_>],
    threads: usize,
) -> Result<Dispatch> {
    let k = rt.kernel(&crate::shader!("conv2d_im2col"), entry, &[])?;
    Ok(rt.dispatch(&k, p, bindings, rt.grid(threads as u64, WG)))
}

const PX: usize = 4;

/// A texel form of `conv2d_im2col.wgsl`: its module name, the buffer it reads from a texel
/// view (binding 1), the entry, and its source, made on first use.
struct ColForm {
    name: &'static str,
    view: &'static str,
    entry: &'static str,
    source: OnceLock<String>,
}

static IM2COL_T4: ColForm = ColForm {
    name: "conv2d_im2col+texel_x",
    view: "x4",
    entry: "im2col_t4",
    source: OnceLock::new(),
};

static COL2IM_T4: ColForm = ColForm {
    name: "conv2d_im2col+texel_dcol",
    view: "dcol4",
    entry: "col2im_t4",
    source: OnceLock::new(),
};

/// Whether `im2col` and `col2im` run their texel forms: texel views preferred, rows of x and of
/// the output whole texels, unit column stride and dilation.
fn texel_rows(rt: &Runtime, d: &ConvDims, o: &Conv2dOptions) -> bool {
    let rows = d.w.is_multiple_of(PX) && d.wo.is_multiple_of(PX);
    rows && o.stride[1] == 1 && o.dilation[1] == 1 && texel::preferred(rt)
}

/// `form` reading `src` through a texel view and writing `dst` (binding 2); `None` where the
/// view cannot be made.
fn texel_launch(
    rt: &Runtime,
    form: &'static ColForm,
    p: &Params,
    src: &Tensor,
    dst: &Tensor,
    threads: usize,
) -> Result<Option<Dispatch>> {
    let Ok(view) = rt.texel_view(TexelSlot::A, src.binding()) else {
        return Ok(None);
    };
    let base = crate::shader!("conv2d_im2col");
    let shader = texel::shader(&form.source, form.name, base, &[form.view]);
    let k = rt.kernel(&shader, form.entry, &[])?;
    Ok(Some(rt.dispatch_texels(
        &k,
        p,
        &[(2, dst.binding())],
        vec![(1, view)],
        rt.grid(threads as u64, WG),
    )))
}

fn im2col(
    rt: &Runtime,
    d: &ConvDims,
    o: &Conv2dOptions,
    c: &Chunk,
    x: &Tensor,
    col: &Tensor,
    cm: bool,
) -> Result<Dispatch> {
    let p = params(d, o, c, false, cm);
    let threads = c.nb * taps(d) * (c.rows * d.wo).div_ceil(PX);
    if texel_rows(rt, d, o) {
        if let Some(t) = texel_launch(rt, &IM2COL_T4, &p, x, col, threads)? {
            return Ok(t);
        }
    }
    // Rows of whole vec4s take one store per invocation.
    let entry = if (c.rows * d.wo).is_multiple_of(PX) {
        "im2col_v4"
    } else {
        "im2col"
    };
    launch(rt, entry, &p, &[x.binding(), col.binding()], threads)
}

/// Forward of a one-group convolution through the GEMM (see the module docs).
#[allow(clippy::too_many_arguments)]
pub(super) fn forward(
    rt: &Runtime,
    d: &ConvDims,
    o: &Conv2dOptions,
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    out: &Tensor,
    ws: Option<&Conv2dWorkspace>,
    pointwise: bool,
) -> Result<Vec<Dispatch>> {
    let op = super::OP;
    let k = taps(d);
    let plane = d.ho * d.wo;
    let wmat = weight.reshape(&[d.cout, k])?;
    let mm = |beta: f32| MatmulOptions {
        beta,
        ..Default::default()
    };
    let mut list = Vec::new();
    let whole_out = out.reshape(&[d.n, d.cout, plane])?;
    if let Some(b) = bias {
        let p = params(d, o, &plan(d, o, usize::MAX).chunks[0], true, false);
        let threads = d.n * d.cout * plane.div_ceil(PX);
        // Planes of whole vec4s: one vec4 store an invocation.
        let entry = match plane.is_multiple_of(PX) {
            true => "bias_fill_v4",
            false => "bias_fill",
        };
        list.push(launch(
            rt,
            entry,
            &p,
            &[b.binding(), out.binding()],
            threads,
        )?);
    }
    let beta = if bias.is_some() { 1.0 } else { 0.0 };
    if pointwise {
        // The column matrix of a 1×1 / stride 1 / unpadded convolution is x itself.
        let xs = x.reshape(&[d.n, d.cin, plane])?;
        list.extend(matmul_into(rt, &wmat, &xs, None, &whole_out, &mm(beta))?);
        return Ok(list);
    }
    let ws = ws.ok_or_else(|| Error::Unsupported {
        op,
        what: "the GEMM path without a workspace (see conv2d_workspace)".into(),
    })?;
    let plan = plan(d, o, cap(rt, o));
    check_ws(op, ws, &plan)?;
    if plan.tmp == 0 {
        let c = plan.chunks[0];
        let col = ws.col.view_as(&[d.n, k, plane], DType::F32);
        list.push(im2col(rt, d, o, &c, x, &col, false)?);
        list.extend(matmul_into(rt, &wmat, &col, None, &whole_out, &mm(beta))?);
        return Ok(list);
    }
    // Chunked: the GEMM writes a staging buffer, `scatter` moves it into place and adds the bias
    // (so the bias fill above is not needed).
    if bias.is_some() {
        list.remove(0);
    }
    let tmp = ws.tmp.as_ref().expect("plan.tmp > 0 allocates tmp");
    for c in &plan.chunks {
        let pc = c.rows * d.wo;
        let col = ws.col.view_as(&[c.nb, k, pc], DType::F32);
        let t = tmp.view_as(&[c.nb, d.cout, pc], DType::F32);
        list.push(im2col(rt, d, o, c, x, &col, false)?);
        list.extend(matmul_into(rt, &wmat, &col, None, &t, &mm(0.0))?);
        let p = params(d, o, c, bias.is_some(), false);
        list.push(launch(
            rt,
            "scatter",
            &p,
            &[t.binding(), bias.unwrap_or(weight).binding(), out.binding()],
            c.nb * d.cout * pc.div_ceil(PX),
        )?);
    }
    Ok(list)
}

/// `dx` (when wanted) and `dweight` of a one-group convolution through the GEMM; `dbias` is the
/// caller's.
#[allow(clippy::too_many_arguments)]
pub(super) fn backward(
    rt: &Runtime,
    d: &ConvDims,
    o: &Conv2dOptions,
    dy: &Tensor,
    x: &Tensor,
    weight: &Tensor,
    dx: Option<&Tensor>,
    dweight: &Tensor,
    ws: Option<&Conv2dWorkspace>,
    pointwise: bool,
) -> Result<Vec<Dispatch>> {
    // Over ~80 lines: the pointwise fast path, then one loop recording dW and dx per chunk of the
    // plan; the per-chunk views would otherwise be threaded through helpers.
    let op = super::OP_BACK;
    let k = taps(d);
    let plane = d.ho * d.wo;
    let wmat = weight.reshape(&[d.cout, k])?;
    let dwmat = dweight.reshape(&[d.cout, k])?;
    let mut list = Vec::new();
    let missing = || Error::Unsupported {
        op,
        what: "the GEMM path without a workspace (see conv2d_backward_workspace)".into(),
    };
    if pointwise {
        // 1×1: x is the column matrix and dx the column gradient, image by image (batched
        // products); with several images the weight gradient's per-image products go to the
        // workspace and are summed there.
        let dys = dy.reshape(&[d.n, d.cout, plane])?;
        let xs = x.reshape(&[d.n, d.cin, plane])?;
        let o_dw = MatmulOptions {
            trans_b: true,
            ..Default::default()
        };
        if d.n == 1 {
            let (dy1, x1) = (dy.reshape(&[d.cout, plane])?, x.reshape(&[d.cin, plane])?);
            list.extend(matmul_into(rt, &dy1, &x1, None, &dwmat, &o_dw)?);
        } else {
            let ws = ws.ok_or_else(missing)?;
            check_ws(op, ws, &pointwise_backward_plan(d))?;
            let parts = ws.col.view_as(&[d.n, d.cout, k], DType::F32);
            list.extend(matmul_into(rt, &dys, &xs, None, &parts, &o_dw)?);
            let flat = parts.view_as(&[d.n, d.cout * k], DType::F32);
            let dw_flat = dweight.reshape(&[d.cout * k])?;
            list.extend(crate::ops::reduce::reduce_into(
                rt,
                crate::ops::reduce::Reduce::Sum,
                &flat,
                0,
                &dw_flat,
                crate::ops::reduce::Variant::Auto,
            )?);
        }
        if let Some(dx) = dx {
            let o_dx = MatmulOptions {
                trans_a: true,
                ..Default::default()
            };
            let dxs = dx.reshape(&[d.n, d.cin, plane])?;
            list.extend(matmul_into(rt, &wmat, &dys, None, &dxs, &o_dx)?);
        }
        return Ok(list);
    }
    let ws = ws.ok_or_else(missing)?;
    let plan = backward_plan(d, o, cap(rt, o));
    check_ws(op, ws, &plan)?;
    for (i, c) in plan.chunks.iter().enumerate() {
        let l = c.nb * c.rows * d.wo;
        let dyc = match &ws.tmp {
            Some(tmp) => {
                let t = tmp.view_as(&[d.cout, l], DType::F32);
                let p = params(d, o, c, false, true);
                list.push(launch(
                    rt,
                    "gather",
                    &p,
                    &[dy.binding(), t.binding()],
                    c.nb * d.cout * (c.rows * d.wo).div_ceil(PX),
                )?);
                t
            }
            None => dy.reshape(&[d.cout, l])?,
        };
        let col = ws.col.view_as(&[k, l], DType::F32);
        list.push(im2col(rt, d, o, c, x, &col, true)?);
        let o_dw = MatmulOptions {
            trans_b: true,
            beta: if i == 0 { 0.0 } else { 1.0 },
            ..Default::default()
        };
        list.extend(matmul_into(rt, &dyc, &col, None, &dwmat, &o_dw)?);
        if let Some(dx) = dx {
            // The column gradient reuses the column buffer (the dispatches run in order).
            let o_dx = MatmulOptions {
                trans_a: true,
                ..Default::default()
            };
            list.extend(matmul_into(rt, &wmat, &dyc, None, &col, &o_dx)?);
            let p = params(d, o, c, false, true);
            let threads = c.nb * d.cin * (c.iy1 - c.iy0) * d.w.div_ceil(PX);
            let t4 = match threads > 0 && texel_rows(rt, d, o) {
                true => texel_launch(rt, &COL2IM_T4, &p, &col, dx, threads)?,
                false => None,
            };
            if let Some(t) = t4 {
                list.push(t);
            } else if threads > 0 {
                list.push(launch(
                    rt,
                    if d.w.is_multiple_of(PX) {
                        "col2im_v4"
                    } else {
                        "col2im"
                    },
                    &p,
                    &[col.binding(), dx.binding()],
                    threads,
                )?);
            }
        }
    }
    Ok(list)
}

/// The backward's workspace for a 1×1 / stride 1 / unpadded convolution of several images: the
/// per-image weight gradients (`[N, Cout, Cin]`), no columns.
pub(super) fn pointwise_backward_plan(d: &ConvDims) -> Plan {
    Plan {
        chunks: Vec::new(),
        col: d.n * d.cout * taps(d),
        tmp: 0,
    }
}

/// The backward's chunks: as the forward's, and the staging buffer is needed unless the whole
/// problem is one image in one chunk (`dy` is then already the `[Cout, P]` matrix).
pub(super) fn backward_plan(d: &ConvDims, o: &Conv2dOptions, cap: usize) -> Plan {
    let mut p = plan(d, o, cap);
    let single = p.chunks.len() == 1 && d.n == 1;
    p.tmp = if single {
        0
    } else {
        let c = p.chunks[0];
        d.cout * c.nb * c.rows * d.wo
    };
    p
}
