//! The GPU convolution of one group as implicit GEMMs (`shaders/conv2d_implicit.wgsl`): the
//! matmul `gemm` entry's workgroup tile (`shaders/gemm_tile.wgsl`) with the operand im2col would
//! have written gathered from its tensor while it is staged, so no column matrix (issue 13: the
//! FPN's 3×3 at 800×1216 would need 560 MB of columns):
//!
//! - forward: one launch, images along z, bias in the epilogue; no workspace.
//! - `dx`: the transposed convolution, one launch; no workspace.
//! - `dweight`: per image and slice of its output pixels (split-K, so a product with few output
//!   tiles still fills a large GPU) a partial product into the workspace, then `reduce`'s sum
//!   over the partials (one image in one slice writes `dweight` directly).
//!
//! `Auto` takes it where the kernel policy is GPU-shaped. On lavapipe the im2col path stays: its
//! texel GEMM runs the products faster than this workgroup-memory kernel, whose gathers Mesa runs
//! lane by lane (docs/PERFORMANCE.md, "Session 10").

use super::{Conv2dOptions, ConvDims};
use crate::error::{Error, Result};
use crate::ops::matmul::GEMM_WIDE_MIN_WORKGROUPS;
use crate::ops::reduce::{reduce_into, Reduce, Variant as ReduceVariant};
use crate::runtime::{DType, Dispatch, Runtime, Shader, Tensor, CPU_LOOP_ITERATIONS};

const SHADER: Shader = crate::shader!("conv2d_implicit" = "conv2d_implicit", "gemm_tile");

/// The k-steps of the tile loop (8 each) must stay under llvmpipe's loop limit.
const MAX_K: usize = (CPU_LOOP_ITERATIONS - 1) * 8;

/// The weight gradient's slices hold at least this many pixels (64 k-steps), so each partial's
/// write is small next to its product.
const MIN_SLICE: usize = 512;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    m: u32,
    n: u32,
    k: u32,
    has_bias: u32,
    cin: u32,
    h: u32,
    w: u32,
    wo: u32,
    ho: u32,
    cout: u32,
    ksplit: u32,
    kslice: u32,
    ph: u32,
    pw: u32,
    dh: u32,
    dw: u32,
}

/// Which product a launch computes (the shader's MODE).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Forward = 0,
    Dx = 1,
    Dweight = 2,
}

/// One launch: the product's (m, n, k), the k-split and the tile edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Launch {
    mode: Mode,
    m: usize,
    n: usize,
    k: usize,
    ksplit: usize,
    kslice: usize,
    pub(super) tile: usize,
    images: usize,
}

impl Launch {
    fn new(mode: Mode, d: &ConvDims) -> Self {
        let taps = d.cin * d.kh * d.kw;
        let plane = d.ho * d.wo;
        let (m, n, k) = match mode {
            Mode::Forward => (d.cout, plane, taps),
            Mode::Dx => (d.cin, d.h * d.w, d.cout * d.kh * d.kw),
            Mode::Dweight => (d.cout, taps, plane),
        };
        let mut l = Self {
            mode,
            m,
            n,
            k,
            ksplit: 1,
            kslice: k,
            tile: 64,
            images: d.n,
        };
        // 128-wide tiles where they give a large GPU at least one workgroup per SM.
        if (d.n * m.div_ceil(128) * n.div_ceil(128)) as u64 >= GEMM_WIDE_MIN_WORKGROUPS {
            l.tile = 128;
        }
        if mode == Mode::Dweight {
            // Enough slices for ~2 workgroups per SM, each at least MIN_SLICE pixels and at most
            // MAX_K (a multiple of the 8-k step).
            let tiles = d.n * m.div_ceil(l.tile) * n.div_ceil(l.tile);
            let want = (2 * GEMM_WIDE_MIN_WORKGROUPS as usize).div_ceil(tiles.max(1));
            let by_size = k.div_ceil(MIN_SLICE).max(1);
            let split = want.min(by_size).max(k.div_ceil(MAX_K)).max(1);
            l.kslice = k.div_ceil(split).next_multiple_of(8).max(8);
            l.ksplit = k.div_ceil(l.kslice).max(1);
        }
        l
    }

    fn grid(&self) -> [usize; 3] {
        [
            self.n.div_ceil(self.tile),
            self.m.div_ceil(self.tile),
            self.images * self.ksplit,
        ]
    }

    /// Floats of the weight gradient's partials (0 when the launch writes `dweight` itself).
    fn partials(&self) -> usize {
        let slots = self.images * self.ksplit;
        if self.mode == Mode::Dweight && slots > 1 {
            slots * self.m * self.n
        } else {
            0
        }
    }

    fn fits(&self, rt: &Runtime) -> bool {
        let max = rt.caps().max_workgroups_per_dim as usize;
        let loops = if self.mode == Mode::Dweight {
            self.kslice
        } else {
            self.k
        };
        loops <= MAX_K
            && self.grid().iter().all(|&g| g <= max)
            && (self.partials() * 4) as u64 <= rt.caps().max_storage_binding
    }
}

/// Whether the forward fits the kernel: one group, something to multiply, the tap loop within
/// the loop limit and the grid within the adapter's.
pub(super) fn fits(rt: &Runtime, d: &ConvDims, o: &Conv2dOptions) -> bool {
    o.groups == 1
        && d.n * d.cin * d.cout * d.ho * d.wo > 0
        && Launch::new(Mode::Forward, d).fits(rt)
}

/// Whether the backward (`dx` and `dweight`) fits the kernel.
pub(super) fn backward_fits(rt: &Runtime, d: &ConvDims, o: &Conv2dOptions) -> bool {
    fits(rt, d, o) && Launch::new(Mode::Dx, d).fits(rt) && Launch::new(Mode::Dweight, d).fits(rt)
}

/// The tile edge the forward runs with (tests).
#[cfg(test)]
pub(super) fn tile_of(d: &ConvDims) -> usize {
    Launch::new(Mode::Forward, d).tile
}

/// The weight-gradient launch (tests check its split).
#[cfg(test)]
pub(super) fn dweight_split(d: &ConvDims) -> (usize, usize) {
    let l = Launch::new(Mode::Dweight, d);
    (l.ksplit, l.kslice)
}

/// Floats of scratch the backward needs (the weight gradient's partials).
pub(super) fn backward_scratch(d: &ConvDims) -> usize {
    Launch::new(Mode::Dweight, d).partials()
}

fn dispatch(
    rt: &Runtime,
    l: &Launch,
    d: &ConvDims,
    o: &Conv2dOptions,
    has_bias: bool,
    bind: [crate::runtime::Binding<'_>; 4],
) -> Result<Dispatch> {
    let u = |v: usize| v as u32;
    let p = Params {
        m: u(l.m),
        n: u(l.n),
        k: u(l.k),
        has_bias: has_bias as u32,
        cin: u(d.cin),
        h: u(d.h),
        w: u(d.w),
        wo: u(d.wo),
        ho: u(d.ho),
        cout: u(d.cout),
        ksplit: u(l.ksplit),
        kslice: u(l.kslice),
        ph: u(o.padding[0]),
        pw: u(o.padding[1]),
        dh: u(o.dilation[0]),
        dw: u(o.dilation[1]),
    };
    let flag = |b: bool| if b { 1.0 } else { 0.0 };
    let constants = [
        ("MODE", l.mode as u32 as f64),
        ("GT", l.tile as f64),
        ("A_KMAJOR", 1.0),
        ("B_KMAJOR", flag(l.mode == Mode::Dweight)),
        (
            "W_VEC",
            flag(l.mode == Mode::Forward && l.k.is_multiple_of(4)),
        ),
        ("KH", d.kh as f64),
        ("KW", d.kw as f64),
        ("SH", o.stride[0] as f64),
        ("SW", o.stride[1] as f64),
    ];
    let kernel = rt.kernel(&SHADER, "implicit", &constants)?;
    let [gx, gy, gz] = l.grid();
    Ok(rt.dispatch(&kernel, &p, &bind, [u(gx), u(gy), u(gz)]))
}

/// The weight bound as vec4s: rounded up to 16 bytes, within its buffer.
fn weight_binding(weight: &Tensor) -> crate::runtime::Binding<'_> {
    let bytes = weight.size_bytes().div_ceil(16) * 16;
    weight.binding_range(0, bytes.min(weight.capacity()))
}

fn unsupported(op: &'static str, d: &ConvDims, o: &Conv2dOptions) -> Error {
    Error::Unsupported {
        op,
        what: format!("the implicit GEMM for {d:?} and {o:?}"),
    }
}

/// Records the forward into `out`; the caller checked the operands.
pub(super) fn forward(
    rt: &Runtime,
    d: &ConvDims,
    o: &Conv2dOptions,
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    out: &Tensor,
) -> Result<Vec<Dispatch>> {
    if !fits(rt, d, o) {
        return Err(unsupported(super::OP, d, o));
    }
    let l = Launch::new(Mode::Forward, d);
    let bind = [
        weight_binding(weight),
        x.binding(),
        bias.unwrap_or(weight).binding(),
        out.binding(),
    ];
    Ok(vec![dispatch(rt, &l, d, o, bias.is_some(), bind)?])
}

/// Records `dx` (when wanted) and `dweight`; `scratch` holds [`backward_scratch`] floats (or is
/// `None` when that is 0). `dbias` is the caller's.
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
    scratch: Option<&Tensor>,
) -> Result<Vec<Dispatch>> {
    let op = super::OP_BACK;
    if !backward_fits(rt, d, o) {
        return Err(unsupported(op, d, o));
    }
    let mut list = Vec::new();
    if let Some(dx) = dx {
        let l = Launch::new(Mode::Dx, d);
        let bind = [
            weight_binding(weight),
            dy.binding(),
            weight.binding(),
            dx.binding(),
        ];
        list.push(dispatch(rt, &l, d, o, false, bind)?);
    }
    let l = Launch::new(Mode::Dweight, d);
    let partials = l.partials();
    if partials == 0 {
        let bind = [
            weight_binding(weight),
            x.binding(),
            dy.binding(),
            dweight.binding(),
        ];
        list.push(dispatch(rt, &l, d, o, false, bind)?);
        return Ok(list);
    }
    let scratch = scratch
        .filter(|s| s.numel() >= partials)
        .ok_or_else(|| {
            crate::shape_err!(
                op,
                "the implicit weight gradient needs a workspace of {partials} floats (see conv2d_backward_workspace)"
            )
        })?;
    let parts = scratch.view_as(&[l.images * l.ksplit, l.m * l.n], DType::F32);
    let bind = [
        weight_binding(weight),
        x.binding(),
        dy.binding(),
        parts.binding(),
    ];
    list.push(dispatch(rt, &l, d, o, false, bind)?);
    let flat = dweight.reshape(&[l.m * l.n])?;
    list.extend(reduce_into(
        rt,
        Reduce::Sum,
        &parts,
        0,
        &flat,
        ReduceVariant::Auto,
    )?);
    Ok(list)
}
