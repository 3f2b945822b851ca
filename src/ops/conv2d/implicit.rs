//! The GPU forward of a one-group convolution as an implicit GEMM
//! (`shaders/conv2d_implicit.wgsl`): the matmul `gemm` entry's workgroup tile
//! (`shaders/gemm_tile.wgsl`) with the column operand gathered from `x` while it is staged, so no
//! column matrix is written (issue 13: the FPN's 3×3 at 800×1216 would need 560 MB of columns)
//! and no workspace is needed. One launch per convolution: images along z, bias in the epilogue.
//!
//! `Auto` takes it where the kernel policy is GPU-shaped. On lavapipe the im2col path stays: its
//! texel GEMM runs the product several times faster than this workgroup-memory kernel, and the
//! column writes are a few percent of the forward there (docs/PERFORMANCE.md, "Session 10").

use super::{Conv2dOptions, ConvDims};
use crate::error::{Error, Result};
use crate::ops::matmul::GEMM_WIDE_MIN_WORKGROUPS;
use crate::runtime::{Dispatch, Runtime, Shader, Tensor, CPU_LOOP_ITERATIONS};

const SHADER: Shader = Shader {
    name: "conv2d_implicit",
    source: concat!(
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/shaders/conv2d_implicit.wgsl"
        )),
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/shaders/gemm_tile.wgsl"
        ))
    ),
};

/// The k-steps of the tile loop (8 taps each) must stay under llvmpipe's loop limit.
const MAX_TAPS: usize = (CPU_LOOP_ITERATIONS - 1) * 8;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    cout: u32,
    np: u32,
    k: u32,
    has_bias: u32,
    cin: u32,
    h: u32,
    w: u32,
    wo: u32,
    sh: u32,
    sw: u32,
    ph: u32,
    pw: u32,
    dh: u32,
    dw: u32,
}

/// The tile edge: 128, or 64 where 128-wide tiles would leave a large GPU's SMs idle.
pub(super) fn tile_of(d: &ConvDims) -> usize {
    let wide = d.n * (d.ho * d.wo).div_ceil(128) * d.cout.div_ceil(128);
    if wide as u64 >= GEMM_WIDE_MIN_WORKGROUPS {
        128
    } else {
        64
    }
}

fn grid(d: &ConvDims) -> [usize; 3] {
    let t = tile_of(d);
    [(d.ho * d.wo).div_ceil(t), d.cout.div_ceil(t), d.n]
}

/// Whether this convolution fits the kernel: one group, something to multiply, the tap loop
/// within the loop limit and the grid within the adapter's.
pub(super) fn fits(rt: &Runtime, d: &ConvDims, o: &Conv2dOptions) -> bool {
    let max = rt.caps().max_workgroups_per_dim as usize;
    o.groups == 1
        && d.n * d.cin * d.cout * d.ho * d.wo > 0
        && d.cin * d.kh * d.kw <= MAX_TAPS
        && grid(d).iter().all(|&g| g <= max)
}

/// Records the forward into `out`; the caller checked the operands and [`fits`].
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
        return Err(Error::Unsupported {
            op: super::OP,
            what: format!("the implicit GEMM for {d:?} and {o:?}"),
        });
    }
    let k = d.cin * d.kh * d.kw;
    let u = |v: usize| v as u32;
    let p = Params {
        cout: u(d.cout),
        np: u(d.ho * d.wo),
        k: u(k),
        has_bias: bias.is_some() as u32,
        cin: u(d.cin),
        h: u(d.h),
        w: u(d.w),
        wo: u(d.wo),
        sh: u(o.stride[0]),
        sw: u(o.stride[1]),
        ph: u(o.padding[0]),
        pw: u(o.padding[1]),
        dh: u(o.dilation[0]),
        dw: u(o.dilation[1]),
    };
    // The weight is read as vec4s: bound rounded up to 16 bytes (within its buffer), and loaded
    // as one vec4 per four taps only when every row starts on a multiple of 4.
    let w_bytes = weight.size_bytes().div_ceil(16) * 16;
    let w_bind = weight.binding_range(0, w_bytes.min(weight.capacity()));
    let constants = [
        ("GT", tile_of(d) as f64),
        ("W_VEC", if k.is_multiple_of(4) { 1.0 } else { 0.0 }),
        ("KH", d.kh as f64),
        ("KW", d.kw as f64),
    ];
    let kernel = rt.kernel(&SHADER, "implicit", &constants)?;
    let [gx, gy, gz] = grid(d);
    Ok(vec![rt.dispatch(
        &kernel,
        &p,
        &[
            w_bind,
            x.binding(),
            bias.unwrap_or(weight).binding(),
            out.binding(),
        ],
        [u(gx), u(gy), u(gz)],
    )])
}
