//! 2-D convolution, NCHW (Swin's 4×4/4 patch embedding, the pixel decoder's 1×1 projections
//! and 3×3 output convolution).
//!
//! `x [N, Cin, H, W]`, `weight [Cout, Cin/groups, KH, KW]`, optional `bias [Cout]`, per-axis
//! stride, zero padding and dilation, and `groups` (depthwise when `groups = Cin = Cout`):
//! `out [N, Cout, Ho, Wo]` with `Ho = (H + 2·ph − dh·(KH − 1) − 1) / sh + 1` (and `Wo` alike),
//! exactly PyTorch's `nn.Conv2d` with `padding_mode="zeros"`.
//!
//! Two families of kernels. The GEMM path ([`Path::Gemm`], module `gemm`, the `Auto` choice for
//! ungrouped convolutions with at least 4 output channels and 4 taps) writes the column matrix
//! (`shaders/conv2d_im2col.wgsl`) into a [`Conv2dWorkspace`] and multiplies it with the matmul
//! family's GEMM (register-blocked on CPU adapters, tiled on GPUs), chunked over images and output
//! rows under a 128 MiB cap; the backward is `dW = dy·colᵀ` and `dx = col2im(Wᵀ·dy)`. On lavapipe
//! it beats the direct kernels on the FPN's 3×3 and 1×1 (docs/PERFORMANCE.md, "conv2d: im2col +
//! GEMM path"). The workspace comes from
//! [`conv2d_workspace`] / [`conv2d_backward_workspace`] and is passed to the `_with_workspace_`
//! launchers; without one (`conv2d_into`, `conv2d_backward_into`) `Auto` still takes the GEMM
//! where it needs no workspace (1×1, stride 1, unpadded; the backward for one image: with
//! several, the workspace holds only the per-image weight gradients) and the direct kernels
//! elsewhere.
//!
//! The direct kernels (`shaders/conv2d.wgsl`, `shaders/conv2d_backward.wgsl`; grouped and
//! depthwise convolutions, tiny channel counts) are register-blocked direct
//! convolutions without workgroup memory: each invocation owns a block of output channels ×
//! output pixels (4×8 on CPU adapters, 4×4 or 8×8 on GPUs; [`Conv2dOptions::block`] overrides).
//! Stride-1 convolutions over rows of a multiple of 4 read the input as vec4 row strips (the
//! FPN's 3×3); 1×1 convolutions with stride 1 and no padding run over the flattened plane.
//! (On lavapipe the strip kernel measured the same as the general one within noise; it is the
//! `Auto` choice because vector loads are what real GPUs prefer.)
//! The backward computes `dinput` as the transposed convolution (same blocking over input
//! pixels), `dweight` with one invocation per block of weights reducing over batch and pixels,
//! and `dbias` per channel — deterministic, no atomics.
//!
//! Where the kernel policy is GPU-shaped, `Auto` runs a one-group convolution as implicit GEMMs
//! instead ([`Path::Implicit`], module `implicit`, `shaders/conv2d_implicit.wgsl`): the GPU
//! GEMM's workgroup tile with the columns gathered as they are staged, so no column matrix; the
//! forward and `dx` need no workspace, `dweight` only its split-K partials.
//!
//! Every tensor must fit one storage binding (128 MiB on lavapipe); larger ones are a
//! [`crate::Error::TooLarge`].

mod backward;
mod gemm;
mod implicit;
pub mod reference;
#[cfg(test)]
mod tests;

pub use backward::{
    conv2d_backward, conv2d_backward_into, conv2d_backward_with_workspace_into,
    conv2d_backward_workspace,
};
pub use gemm::Conv2dWorkspace;

use crate::error::{Error, Result};
use crate::ops::common::check;
use crate::runtime::{DType, Dispatch, Runtime, Tensor};

/// Which kernel computes the forward.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Path {
    /// `Gemm` where it applies and the workspace is at hand (see the module docs), else the
    /// vec4 / pointwise kernels where they apply, else `Direct`. The backward follows: GEMM
    /// under `Auto`/`Gemm`, the direct kernels under every other path.
    #[default]
    Auto,
    /// The general direct convolution.
    Direct,
    /// The 1×1 / stride 1 / no padding GEMM path; an error for other convolutions.
    Pointwise,
    /// Stride 1, dilation 1, `W % 4 == 0`, `pw ≤ 4`, `KW ≤ pw + 5`: vec4 row strips; an error
    /// for other convolutions.
    DirectVec4,
    /// `Pointwise` with vec4 strips over the flattened plane (`H·W % 4 == 0`); an error otherwise.
    PointwiseVec4,
    /// im2col + the matmul family's GEMM (forward and backward), one group only; needs a
    /// [`Conv2dWorkspace`] unless the convolution is 1×1 / stride 1 / unpadded (and, for the
    /// backward, one image). An error for grouped convolutions.
    Gemm,
    /// Implicit GEMMs (the GPU tile, columns gathered as they are staged), forward and backward;
    /// one group only. The backward's workspace holds the weight gradient's split-K partials.
    Implicit,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dOptions {
    /// `[sh, sw]`, each ≥ 1.
    pub stride: [usize; 2],
    /// Zero padding `[ph, pw]` on both sides.
    pub padding: [usize; 2],
    /// `[dh, dw]`, each ≥ 1.
    pub dilation: [usize; 2],
    /// Divides `Cin` and `Cout`.
    pub groups: usize,
    pub path: Path,
    /// `[channels, pixels]` per invocation, channels in `1..=16`, pixels in `1..=8` (the vec4
    /// paths always take 8 pixels); `None` picks by adapter.
    pub block: Option<[u32; 2]>,
    /// Caps the GEMM path's column matrix (bytes; default 128 MiB, never above one storage
    /// binding), so tests can force small chunks.
    #[doc(hidden)]
    pub max_workspace: Option<usize>,
}

impl Default for Conv2dOptions {
    fn default() -> Self {
        Self {
            stride: [1, 1],
            padding: [0, 0],
            dilation: [1, 1],
            groups: 1,
            path: Path::Auto,
            block: None,
            max_workspace: None,
        }
    }
}

impl Conv2dOptions {
    pub fn stride(mut self, s: usize) -> Self {
        self.stride = [s, s];
        self
    }
    pub fn padding(mut self, p: usize) -> Self {
        self.padding = [p, p];
        self
    }
    pub fn dilation(mut self, d: usize) -> Self {
        self.dilation = [d, d];
        self
    }
    pub fn groups(mut self, g: usize) -> Self {
        self.groups = g;
        self
    }
}

/// Gradients of [`conv2d`] with respect to the input, the weight and (when present) the bias.
pub struct Conv2dGrads {
    pub dx: Tensor,
    pub dweight: Tensor,
    pub dbias: Option<Tensor>,
}

/// Validated sizes of one convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvDims {
    pub n: usize,
    pub cin: usize,
    pub h: usize,
    pub w: usize,
    pub cout: usize,
    pub kh: usize,
    pub kw: usize,
    pub ho: usize,
    pub wo: usize,
}

impl ConvDims {
    pub fn out_shape(&self) -> [usize; 4] {
        [self.n, self.cout, self.ho, self.wo]
    }
    /// Multiply-adds ×2 of the forward (also of each of the two backward products).
    pub fn flops(&self, groups: usize) -> f64 {
        2.0 * (self.n * self.cout * self.ho * self.wo) as f64
            * (self.cin / groups * self.kh * self.kw) as f64
    }
}

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
    groups: u32,
    kh: u32,
    kw: u32,
    sh: u32,
    sw: u32,
    ph: u32,
    pw: u32,
    dh: u32,
    dw: u32,
    cin_g: u32,
    cout_g: u32,
    has_bias: u32,
    // dw_direct's share of the reduction (images n0..n1, output rows oy0..oy1) and whether it
    // adds to dw; the forward shader ignores these.
    n0: u32,
    n1: u32,
    oy0: u32,
    oy1: u32,
    accumulate: u32,
}

const OP: &str = "conv2d";
const OP_BACK: &str = "conv2d_backward";
const WG: u32 = 64;

/// Output size along one axis, or `None` when the dilated kernel does not fit the padded input.
fn out_len(len: usize, k: usize, s: usize, p: usize, d: usize) -> Option<usize> {
    let span = d * (k - 1) + 1;
    (len + 2 * p).checked_sub(span).map(|r| r / s + 1)
}

/// Checks the shapes of `x` and `weight` against the options and returns the sizes.
pub fn conv_dims(x_shape: &[usize], w_shape: &[usize], opts: &Conv2dOptions) -> Result<ConvDims> {
    conv_dims_op(OP, x_shape, w_shape, opts)
}

fn conv_dims_op(
    op: &'static str,
    x_shape: &[usize],
    w_shape: &[usize],
    opts: &Conv2dOptions,
) -> Result<ConvDims> {
    let (&[n, cin, h, w], &[cout, cin_g, kh, kw]) = (x_shape, w_shape) else {
        return Err(crate::shape_err!(
            op,
            "x must be [N, Cin, H, W] and weight [Cout, Cin/groups, KH, KW], got {x_shape:?} and {w_shape:?}"
        ));
    };
    let g = opts.groups;
    if g == 0 || cin % g != 0 || cout % g != 0 {
        return Err(crate::shape_err!(
            op,
            "groups = {g} must divide Cin = {cin} and Cout = {cout} (x {x_shape:?}, weight {w_shape:?})"
        ));
    }
    if cin_g != cin / g {
        return Err(crate::shape_err!(
            op,
            "weight {w_shape:?} has {cin_g} input channels per group, expected Cin/groups = {cin}/{g} = {}",
            cin / g
        ));
    }
    if opts.stride.contains(&0) || opts.dilation.contains(&0) || kh == 0 || kw == 0 {
        return Err(crate::shape_err!(
            op,
            "stride {:?}, dilation {:?} and kernel [{kh}, {kw}] must all be >= 1",
            opts.stride,
            opts.dilation
        ));
    }
    let [sh, sw] = opts.stride;
    let [ph, pw] = opts.padding;
    let [dh, dw] = opts.dilation;
    let (Some(ho), Some(wo)) = (out_len(h, kh, sh, ph, dh), out_len(w, kw, sw, pw, dw)) else {
        return Err(crate::shape_err!(
            op,
            "kernel [{kh}, {kw}] with dilation {:?} does not fit input [{h}, {w}] padded by {:?}",
            opts.dilation,
            opts.padding
        ));
    };
    let d = ConvDims {
        n,
        cin,
        h,
        w,
        cout,
        kh,
        kw,
        ho,
        wo,
    };
    for (what, v) in [
        ("x elements", (n * cin * h * w) as u64),
        ("out elements", (n * cout * ho * wo) as u64),
        ("weight elements", (cout * cin_g * kh * kw) as u64),
    ] {
        check::u32_range(op, what, v)?;
    }
    if (h + 2 * ph).max(w + 2 * pw) > i32::MAX as usize / 4 {
        return Err(Error::Unsupported {
            op,
            what: format!("padded input extent {:?} + {:?}", [h, w], opts.padding),
        });
    }
    Ok(d)
}

fn params(d: &ConvDims, opts: &Conv2dOptions, has_bias: bool) -> Params {
    let g = opts.groups;
    Params {
        n: d.n as u32,
        cin: d.cin as u32,
        h: d.h as u32,
        w: d.w as u32,
        cout: d.cout as u32,
        ho: d.ho as u32,
        wo: d.wo as u32,
        groups: g as u32,
        kh: d.kh as u32,
        kw: d.kw as u32,
        sh: opts.stride[0] as u32,
        sw: opts.stride[1] as u32,
        ph: opts.padding[0] as u32,
        pw: opts.padding[1] as u32,
        dh: opts.dilation[0] as u32,
        dw: opts.dilation[1] as u32,
        cin_g: (d.cin / g) as u32,
        cout_g: (d.cout / g) as u32,
        has_bias: has_bias as u32,
        n0: 0,
        n1: d.n as u32,
        oy0: 0,
        oy1: d.ho as u32,
        accumulate: 0,
    }
}

/// `[channels, pixels]` per invocation: the requested block or the adapter's default, with the
/// channel block no larger than the channels of a group (depthwise convs would waste the rest).
fn block(
    rt: &Runtime,
    op: &'static str,
    opts: &Conv2dOptions,
    channels: usize,
    vec4: bool,
) -> Result<[u32; 2]> {
    // On lavapipe (3x3 256→256 at 100×136, a loaded machine) 4 channels × 8 pixels beat 8×8
    // and 16×8 by up to 2×: larger blocks spill their accumulators.
    let cpu = crate::ops::policy::policy(rt).cpu_shapes();
    let [c, px] = match (opts.block, cpu, vec4) {
        (Some(b), _, _) => b,
        (None, true, _) => [4, 8],
        (None, false, true) => [8, 8],
        (None, false, false) => [4, 4],
    };
    if !(1..=16).contains(&c) || !(1..=8).contains(&px) {
        return Err(crate::shape_err!(
            op,
            "block {:?} must have channels in 1..=16 and pixels in 1..=8",
            [c, px]
        ));
    }
    Ok([c.min(channels.max(1) as u32), px])
}

/// Workgroups for `threads` invocations along x/y (split past the per-dimension limit) times
/// `z` uniform blocks along z.
fn grid_z(rt: &Runtime, op: &'static str, threads: usize, z: usize) -> Result<[u32; 3]> {
    let max = rt.caps().max_workgroups_per_dim;
    if z > max as usize {
        return Err(Error::Unsupported {
            op,
            what: format!("{z} batch × channel blocks (more than {max} workgroups along z)"),
        });
    }
    let [x, y, _] = rt.grid(threads as u64, WG);
    Ok([x, y, z as u32])
}

fn is_pointwise(d: &ConvDims, opts: &Conv2dOptions) -> bool {
    d.kh == 1 && d.kw == 1 && opts.stride == [1, 1] && opts.padding == [0, 0]
}

/// The vec4-strip kernel's conditions (see `shaders/conv2d.wgsl`, `direct_v4`).
fn is_direct_v4(d: &ConvDims, opts: &Conv2dOptions) -> bool {
    let pw = opts.padding[1];
    opts.stride == [1, 1]
        && opts.dilation == [1, 1]
        && d.w.is_multiple_of(4)
        && pw <= 4
        && d.kw <= pw + 5
}

/// The forward kernel for this convolution and path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Forward {
    Direct,
    Pointwise,
    DirectV4,
    PointwiseV4,
    Gemm,
    Implicit,
}

/// Whether `Auto` takes the GEMM path: one group, non-empty, one output row's columns within the
/// cap, and a workspace at hand (or none needed). Big-block GEMMs beat the direct kernels by an
/// order of magnitude on lavapipe and use the tiled kernel on GPUs; tiny channel counts gain
/// nothing from the extra dispatches.
fn auto_gemm(
    rt: &Runtime,
    d: &ConvDims,
    opts: &Conv2dOptions,
    ws_free: bool,
    have_ws: bool,
) -> bool {
    opts.groups == 1
        && d.n * d.cin * d.cout * d.ho * d.wo > 0
        && d.cout >= 4
        && d.cin * d.kh * d.kw >= 4
        && gemm::feasible(d, gemm::cap(rt, opts))
        && (ws_free || have_ws)
}

/// Whether `Auto` takes the implicit GEMM: the kernel policy is GPU-shaped and the convolution is
/// one the GEMM path would take but for its columns (a 1×1 / stride 1 / unpadded one multiplies
/// `x` itself and needs none).
fn auto_implicit(rt: &Runtime, d: &ConvDims, opts: &Conv2dOptions) -> bool {
    !crate::ops::policy::policy(rt).cpu_shapes()
        && !is_pointwise(d, opts)
        && d.cout >= 4
        && d.cin * d.kh * d.kw >= 4
        && implicit::fits(rt, d, opts)
}

fn unsupported_path(op: &'static str, d: &ConvDims, opts: &Conv2dOptions) -> Error {
    Error::Unsupported {
        op,
        what: format!(
            "the {:?} path for x [{}, {}, {}, {}], kernel [{}, {}], stride {:?}, padding {:?}, dilation {:?}, groups {}",
            opts.path, d.n, d.cin, d.h, d.w, d.kh, d.kw, opts.stride, opts.padding, opts.dilation, opts.groups
        ),
    }
}

fn choose_forward(
    rt: &Runtime,
    d: &ConvDims,
    opts: &Conv2dOptions,
    have_ws: bool,
) -> Result<Forward> {
    let pointwise = is_pointwise(d, opts);
    let plane4 = (d.h * d.w).is_multiple_of(4);
    let chosen = match opts.path {
        Path::Auto if auto_implicit(rt, d, opts) => Forward::Implicit,
        Path::Auto if auto_gemm(rt, d, opts, pointwise, have_ws) => Forward::Gemm,
        Path::Auto if pointwise && plane4 => Forward::PointwiseV4,
        Path::Auto if pointwise => Forward::Pointwise,
        Path::Auto if is_direct_v4(d, opts) => Forward::DirectV4,
        Path::Auto | Path::Direct => Forward::Direct,
        Path::Pointwise if pointwise => Forward::Pointwise,
        Path::PointwiseVec4 if pointwise && plane4 => Forward::PointwiseV4,
        Path::DirectVec4 if is_direct_v4(d, opts) => Forward::DirectV4,
        // Nothing to multiply: the direct kernel writes the (bias-only or empty) output.
        Path::Gemm | Path::Implicit if d.n * d.cin * d.cout * d.ho * d.wo == 0 => Forward::Direct,
        Path::Implicit if implicit::fits(rt, d, opts) => Forward::Implicit,
        Path::Gemm if opts.groups == 1 && gemm::feasible(d, gemm::cap(rt, opts)) => Forward::Gemm,
        _ => return Err(unsupported_path(OP, d, opts)),
    };
    Ok(chosen)
}

/// The workspace [`conv2d_with_workspace_into`] needs for this convolution, or `None` when the
/// chosen path needs none.
pub fn conv2d_workspace(
    rt: &Runtime,
    x_shape: &[usize],
    w_shape: &[usize],
    opts: &Conv2dOptions,
) -> Result<Option<Conv2dWorkspace>> {
    let d = conv_dims_op(OP, x_shape, w_shape, opts)?;
    if choose_forward(rt, &d, opts, true)? != Forward::Gemm || is_pointwise(&d, opts) {
        return Ok(None);
    }
    let plan = gemm::plan(&d, opts, gemm::cap(rt, opts));
    Conv2dWorkspace::new(rt, &plan).map(Some)
}

/// Records the forward into `out` (`[N, Cout, Ho, Wo]`, overwritten), without a workspace:
/// `Auto` then takes the GEMM path only where it needs none (1×1 / stride 1 / unpadded).
pub fn conv2d_into(
    rt: &Runtime,
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    out: &Tensor,
    opts: &Conv2dOptions,
) -> Result<Vec<Dispatch>> {
    conv2d_with_workspace_into(rt, x, weight, bias, out, None, opts)
}

/// [`conv2d_into`] with the scratch of the GEMM path (from [`conv2d_workspace`]); the workspace
/// must stay alive until the dispatches have run.
pub fn conv2d_with_workspace_into(
    rt: &Runtime,
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    out: &Tensor,
    workspace: Option<&Conv2dWorkspace>,
    opts: &Conv2dOptions,
) -> Result<Vec<Dispatch>> {
    let d = conv_dims_op(OP, x.shape(), weight.shape(), opts)?;
    check::operand(rt, OP, "x", x, x.shape())?;
    check::operand(rt, OP, "weight", weight, weight.shape())?;
    if let Some(b) = bias {
        check::operand(rt, OP, "bias", b, &[d.cout])?;
    }
    check::operand(rt, OP, "out", out, &d.out_shape())?;
    let kind = choose_forward(rt, &d, opts, workspace.is_some())?;
    if kind == Forward::Implicit {
        return implicit::forward(rt, &d, opts, x, weight, bias, out);
    }
    if kind == Forward::Gemm {
        let pointwise = is_pointwise(&d, opts);
        return gemm::forward(rt, &d, opts, x, weight, bias, out, workspace, pointwise);
    }
    let vec4 = matches!(kind, Forward::DirectV4 | Forward::PointwiseV4);
    let [cb, pb] = block(rt, OP, opts, d.cout / opts.groups, vec4)?;
    if out.numel() == 0 {
        return Ok(Vec::new());
    }
    let channel_blocks = opts.groups * (d.cout / opts.groups).div_ceil(cb as usize);
    let pb = if vec4 { 8 } else { pb };
    // The pointwise vec4 path is the strip kernel over the plane seen as one row of H·W pixels.
    let geometry = match kind {
        Forward::PointwiseV4 => ConvDims {
            h: 1,
            w: d.h * d.w,
            ho: 1,
            wo: d.h * d.w,
            ..d
        },
        _ => d,
    };
    let (entry, threads) = match kind {
        Forward::Pointwise => ("pointwise", (d.h * d.w).div_ceil(pb as usize)),
        Forward::Direct => ("direct", d.ho * d.wo.div_ceil(pb as usize)),
        Forward::DirectV4 | Forward::PointwiseV4 => {
            ("direct_v4", geometry.ho * geometry.wo.div_ceil(pb as usize))
        }
        Forward::Gemm | Forward::Implicit => unreachable!("handled above"),
    };
    let grid = grid_z(rt, OP, threads, d.n * channel_blocks)?;
    let mut constants = vec![("CO_B", cb as f64), ("PX_B", pb as f64)];
    if vec4 {
        constants.push(("KW", d.kw as f64));
        constants.push(("PW", opts.padding[1] as f64));
    }
    let k = rt.kernel(&crate::shader!("conv2d"), entry, &constants)?;
    let p = params(&geometry, opts, bias.is_some());
    Ok(vec![rt.dispatch(
        &k,
        &p,
        &[
            x.binding(),
            weight.binding(),
            bias.unwrap_or(weight).binding(),
            out.binding(),
        ],
        grid,
    )])
}

/// Forward: returns `out [N, Cout, Ho, Wo]`.
pub fn conv2d(
    rt: &Runtime,
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    opts: &Conv2dOptions,
) -> Result<Tensor> {
    let d = conv_dims_op(OP, x.shape(), weight.shape(), opts)?;
    let out = rt.empty(&d.out_shape(), DType::F32)?;
    let ws = conv2d_workspace(rt, x.shape(), weight.shape(), opts)?;
    rt.run(&conv2d_with_workspace_into(
        rt,
        x,
        weight,
        bias,
        &out,
        ws.as_ref(),
        opts,
    )?);
    // `ws` drops after the submit, so the pool cannot hand it out before the GEMM reads it.
    Ok(out)
}
