//! Multi-scale deformable attention: the sampling core of MSDeformAttn (Deformable-DETR, the
//! Mask2Former pixel decoder), with the semantics of its CUDA kernel.
//!
//! Shapes (all f32, contiguous):
//! - `value` [N, S, M, D]: M heads of D channels at S = Σ_l H_l·W_l positions, levels
//!   concatenated in the order of `spatial_shapes` (so level l starts at Σ_{k<l} H_k·W_k, the
//!   `level_start_index` of the PyTorch op, computed here from the shapes);
//! - `sampling_locations` [N, Lq, M, L, P, 2]: (x, y) normalised to [0, 1] per level;
//! - `attention_weights` [N, Lq, M, L, P] (already softmaxed over L·P);
//! - output [N, Lq, M·D]: `out[n, q, m·D + c] = Σ_{l,p} a · bilinear(value_l[n, :, m, c], x·W_l − 0.5,
//!   y·H_l − 0.5)`, where a point contributes only when −1 < h < H_l and −1 < w < W_l and corners
//!   outside the map read as 0.
//!
//! [`deform_attn_backward`] gives the gradients of value (scatter-add: native f32 atomics or a
//! portable compare-exchange loop, see [`Scatter`]), of the sampling locations and of the attention
//! weights (each a per-thread sum over D, no atomics). Launches are chunked over N so tensors
//! past the storage-binding limit work as long as one batch item fits.
//!
//! Variants ([`Variant`], all tested): `Vec4Wide` (one thread per head, up to 32 channels, the
//! bilinear weights computed once) is the CPU-adapter default, the fastest of the three on
//! lavapipe (docs/PERFORMANCE.md, "Deformable attention"). GPUs default to `Vec4` (more threads).
//! grad_value accumulates in a run-dependent order (atomics), so the backward is not bitwise
//! reproducible; the tests bound it against the f64 reference.

pub mod reference;
#[cfg(test)]
mod tests;

use std::sync::OnceLock;

pub use crate::ops::common::chunk::Scatter;

use crate::error::{Error, Result};
use crate::ops::common::chunk;
use crate::ops::common::{check, texel};
use crate::runtime::{DType, Dispatch, Runtime, Shader, Tensor, TexelSlot};

/// Most levels the kernel's parameter block holds (Mask2Former uses 3, Deformable-DETR 4).
pub const MAX_LEVELS: usize = 8;

/// Forward kernel variant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Variant {
    /// When D is a multiple of 4: `Vec4Wide` on CPU adapters, `Vec4` on GPUs; else `Scalar`.
    #[default]
    Auto,
    /// One thread per 4 channels with vec4 loads and stores (many threads: GPUs).
    Vec4,
    /// One thread per up to 32 channels (the largest multiple of 4 dividing D), so the bilinear
    /// weights are computed once for all of them (few heavy threads: CPU adapters).
    Vec4Wide,
    /// One thread per channel (any D).
    Scalar,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    items: u32,
    queries: u32,
    heads: u32,
    channels: u32,
    levels: u32,
    points: u32,
    spatial: u32,
    value_off: u32,
    loc_off: u32,
    attn_off: u32,
    out_off: u32,
    _pad: u32,
    shapes: [[u32; 4]; MAX_LEVELS],
}

/// Sizes taken from the tensors, checked against each other.
#[derive(Clone, Copy, Debug)]
struct Sizes {
    n: usize,
    s: usize,
    m: usize,
    d: usize,
    lq: usize,
    l: usize,
    p: usize,
}

fn check(
    op: &'static str,
    value: &Tensor,
    spatial_shapes: &[(usize, usize)],
    loc: &Tensor,
    attn: &Tensor,
) -> Result<Sizes> {
    check::f32_dtype(op, value)?;
    check::f32_dtype(op, loc)?;
    check::f32_dtype(op, attn)?;
    let (v, lc) = (value.shape(), loc.shape());
    if v.len() != 4 || lc.len() != 6 || lc[5] != 2 {
        return Err(crate::shape_err!(
            op,
            "value must be [N, S, M, D] and sampling_locations [N, Lq, M, L, P, 2], got {v:?} and {lc:?}"
        ));
    }
    let sz = Sizes {
        n: v[0],
        s: v[1],
        m: v[2],
        d: v[3],
        lq: lc[1],
        l: lc[3],
        p: lc[4],
    };
    if lc[0] != sz.n || lc[2] != sz.m {
        return Err(crate::shape_err!(
            op,
            "sampling_locations {lc:?} must match value {v:?} in N and M"
        ));
    }
    check::f32_shape(
        op,
        "attention_weights",
        attn,
        &[sz.n, sz.lq, sz.m, sz.l, sz.p],
    )?;
    if spatial_shapes.len() != sz.l {
        return Err(crate::shape_err!(
            op,
            "{} spatial shapes {spatial_shapes:?} for L = {} levels in sampling_locations {lc:?}",
            spatial_shapes.len(),
            sz.l
        ));
    }
    if sz.l > MAX_LEVELS {
        return Err(Error::Unsupported {
            op,
            what: format!("{} levels (at most {MAX_LEVELS})", sz.l),
        });
    }
    let total: usize = spatial_shapes.iter().map(|&(h, w)| h * w).sum();
    if total != sz.s || spatial_shapes.iter().any(|&(h, w)| h == 0 || w == 0) {
        return Err(crate::shape_err!(
            op,
            "spatial shapes {spatial_shapes:?} (Σ H·W = {total}, no empty level) must cover S = {} of value {v:?}",
            sz.s
        ));
    }
    Ok(sz)
}

/// Resolves `Auto` and checks that a vec4 variant fits D.
fn resolve_variant(rt: &Runtime, op: &'static str, variant: Variant, d: usize) -> Result<Variant> {
    // vec4 needs D % 4 == 0, which with a 16-byte-multiple alignment keeps every skip a multiple
    // of 4 elements.
    let vec4_ok =
        d.is_multiple_of(4) && (rt.caps().storage_offset_alignment as u64).is_multiple_of(16);
    Ok(match variant {
        Variant::Auto if !vec4_ok => Variant::Scalar,
        Variant::Auto if crate::ops::policy::policy(rt).cpu_shapes() => Variant::Vec4Wide,
        Variant::Auto => Variant::Vec4,
        Variant::Vec4 | Variant::Vec4Wide if !vec4_ok => {
            return Err(Error::Unsupported {
                op,
                what: format!("the {variant:?} variant with D = {d} (needs D % 4 == 0)"),
            })
        }
        v => v,
    })
}

fn params(sz: &Sizes, spatial_shapes: &[(usize, usize)], ch: &chunk::Chunk) -> Params {
    let mut shapes = [[0u32; 4]; MAX_LEVELS];
    let mut start = 0;
    for (slot, &(h, w)) in shapes.iter_mut().zip(spatial_shapes) {
        *slot = [h as u32, w as u32, start as u32, 0];
        start += h * w;
    }
    Params {
        items: ch.count as u32,
        queries: sz.lq as u32,
        heads: sz.m as u32,
        channels: sz.d as u32,
        levels: sz.l as u32,
        points: sz.p as u32,
        spatial: sz.s as u32,
        value_off: ch.views[0].skip,
        loc_off: ch.views[1].skip,
        attn_off: ch.views[2].skip,
        out_off: ch.views[3].skip,
        _pad: 0,
        shapes,
    }
}

/// Per-item element counts of value, sampling_locations, attention_weights and output.
fn per_item(sz: &Sizes) -> [u64; 4] {
    let nqm = (sz.lq * sz.m) as u64;
    [
        (sz.s * sz.m * sz.d) as u64,
        nqm * (sz.l * sz.p * 2) as u64,
        nqm * (sz.l * sz.p) as u64,
        nqm * sz.d as u64,
    ]
}

/// Writes the deformable-attention output [N, Lq, M·D] into `out`.
pub fn deform_attn_into(
    rt: &Runtime,
    value: &Tensor,
    spatial_shapes: &[(usize, usize)],
    sampling_locations: &Tensor,
    attention_weights: &Tensor,
    out: &Tensor,
    variant: Variant,
) -> Result<Vec<Dispatch>> {
    forward_limit(
        rt,
        value,
        spatial_shapes,
        sampling_locations,
        attention_weights,
        out,
        variant,
        chunk::binding_limit(rt),
    )
}

#[allow(clippy::too_many_arguments)]
fn forward_limit(
    rt: &Runtime,
    value: &Tensor,
    spatial_shapes: &[(usize, usize)],
    loc: &Tensor,
    attn: &Tensor,
    out: &Tensor,
    variant: Variant,
    max_binding: u64,
) -> Result<Vec<Dispatch>> {
    const OP: &str = "deform_attn";
    let sz = check(OP, value, spatial_shapes, loc, attn)?;
    check::f32_shape(OP, "output", out, &[sz.n, sz.lq, sz.m * sz.d])?;
    let align = rt.caps().storage_offset_alignment as u64;
    let variant = resolve_variant(rt, OP, variant, sz.d)?;
    // Channels per thread: 1, 4, or 4·C4 with C4 the largest divisor of D/4 up to 8.
    let c4 = match variant {
        Variant::Vec4Wide => (1..=8).rev().find(|g| (sz.d / 4) % g == 0).unwrap_or(1),
        _ => 1,
    };
    let per_thread = if variant == Variant::Scalar {
        1
    } else {
        4 * c4
    };
    let chunks = chunk::plan(
        OP,
        sz.n as u64,
        &per_item(&sz),
        &["value", "sampling_locations", "attention_weights", "output"],
        max_binding,
        align,
    )?;
    // The buffer kernel is compiled only where a launch uses it (its JIT is a cold-start cost).
    let buffer_kernel = || match variant {
        Variant::Scalar => rt.kernel(&crate::shader!("deform_attn"), "forward", &[]),
        _ => rt.kernel(
            &crate::shader!("deform_attn"),
            "forward_vec4",
            &[("C4", c4 as f64)],
        ),
    };
    // On CPU adapters the vec4 kernel reads the value from a texel view (ops/common/texel.rs).
    let texel_kernel = match variant != Variant::Scalar && texel::preferred(rt) {
        true => Some(rt.kernel(&texel_shader(), "forward_vec4", &[("C4", c4 as f64)])?),
        false => None,
    };
    chunks
        .iter()
        .map(|ch| {
            let threads = ch.count * (sz.lq * sz.m * sz.d / per_thread) as u64;
            let (params, grid) = (params(&sz, spatial_shapes, ch), rt.grid(threads, 64));
            let view = texel_kernel
                .as_ref()
                .and_then(|tk| Some((tk, rt.texel_view(TexelSlot::A, ch.bind(0, value)).ok()?)));
            Ok(match view {
                Some((tk, view)) => {
                    let storage = [
                        (2, ch.bind(1, loc)),
                        (3, ch.bind(2, attn)),
                        (4, ch.bind(3, out)),
                    ];
                    rt.dispatch_texels(tk, &params, &storage, vec![(1, view)], grid)
                }
                None => rt.dispatch(
                    &buffer_kernel()?,
                    &params,
                    &[
                        ch.bind(0, value),
                        ch.bind(1, loc),
                        ch.bind(2, attn),
                        ch.bind(3, out),
                    ],
                    grid,
                ),
            })
        })
        .collect()
}

/// `deform_attn.wgsl` with the value read from a texel view (CPU adapters).
fn texel_shader() -> Shader {
    static SOURCE: OnceLock<String> = OnceLock::new();
    texel::shader(
        &SOURCE,
        "deform_attn+texel",
        crate::shader!("deform_attn"),
        &["value4"],
    )
}

/// Deformable attention output [N, Lq, M·D] (see the module docs for the shapes).
pub fn deform_attn(
    rt: &Runtime,
    value: &Tensor,
    spatial_shapes: &[(usize, usize)],
    sampling_locations: &Tensor,
    attention_weights: &Tensor,
) -> Result<Tensor> {
    let sz = check(
        "deform_attn",
        value,
        spatial_shapes,
        sampling_locations,
        attention_weights,
    )?;
    let out = rt.empty(&[sz.n, sz.lq, sz.m * sz.d], DType::F32)?;
    rt.run(&deform_attn_into(
        rt,
        value,
        spatial_shapes,
        sampling_locations,
        attention_weights,
        &out,
        Variant::Auto,
    )?);
    Ok(out)
}

/// Gradients of [`deform_attn`].
pub struct Gradients {
    /// [N, S, M, D]
    pub value: Tensor,
    /// [N, Lq, M, L, P, 2]
    pub sampling_locations: Tensor,
    /// [N, Lq, M, L, P]
    pub attention_weights: Tensor,
}

pub(crate) fn backward_shader(native: bool) -> Shader {
    static NATIVE: OnceLock<String> = OnceLock::new();
    let base = crate::shader!("deform_attn");
    if !native {
        return base;
    }
    Shader {
        name: "deform_attn+f32atomic",
        source: NATIVE.get_or_init(|| chunk::native_scatter_source(base.source, 7, "grad_value")),
    }
}

/// [`backward_shader`] with the value read from a texel view (CPU adapters).
fn backward_texel_shader(native: bool) -> Shader {
    static NATIVE: OnceLock<String> = OnceLock::new();
    match native {
        false => texel_shader(),
        true => texel::shader(
            &NATIVE,
            "deform_attn+f32atomic+texel",
            backward_shader(true),
            &["value4"],
        ),
    }
}

/// How the backward runs: the scatter-add of grad_value, and scalar or vec4 loads (`Vec4` and
/// `Vec4Wide` both mean vec4 loads here; one thread always handles all D channels of a head).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackwardOptions {
    pub scatter: Scatter,
    pub variant: Variant,
}

/// Records the backward: all three gradients are overwritten (grad_value is zeroed by the first
/// dispatch, then scatter-added into).
#[allow(clippy::too_many_arguments)]
pub fn deform_attn_backward_into(
    rt: &Runtime,
    value: &Tensor,
    spatial_shapes: &[(usize, usize)],
    sampling_locations: &Tensor,
    attention_weights: &Tensor,
    grad_out: &Tensor,
    grads: &Gradients,
    opts: BackwardOptions,
) -> Result<Vec<Dispatch>> {
    backward_limit(
        rt,
        value,
        spatial_shapes,
        sampling_locations,
        attention_weights,
        grad_out,
        grads,
        opts,
        chunk::binding_limit(rt),
    )
}

#[allow(clippy::too_many_arguments)]
fn backward_limit(
    rt: &Runtime,
    value: &Tensor,
    spatial_shapes: &[(usize, usize)],
    loc: &Tensor,
    attn: &Tensor,
    grad_out: &Tensor,
    grads: &Gradients,
    opts: BackwardOptions,
    max_binding: u64,
) -> Result<Vec<Dispatch>> {
    // Over ~80 lines: validation, zeroing the value gradient, then one launch per chunk (the
    // texel form where it runs, else the buffer kernel).
    const OP: &str = "deform_attn_backward";
    let sz = check(OP, value, spatial_shapes, loc, attn)?;
    check::f32_shape(OP, "grad_out", grad_out, &[sz.n, sz.lq, sz.m * sz.d])?;
    check::f32_shape(OP, "grad value", &grads.value, value.shape())?;
    check::f32_shape(
        OP,
        "grad sampling_locations",
        &grads.sampling_locations,
        loc.shape(),
    )?;
    check::f32_shape(
        OP,
        "grad attention_weights",
        &grads.attention_weights,
        attn.shape(),
    )?;
    let native = opts.scatter.resolve(rt, OP)? == Scatter::NativeF32;
    let vec4 = resolve_variant(rt, OP, opts.variant, sz.d)? != Variant::Scalar;
    let [pv, pl, pa, po] = per_item(&sz);
    let chunks = chunk::plan(
        OP,
        sz.n as u64,
        &[pv, pl, pa, po, pl, pa, pv],
        &[
            "value",
            "sampling_locations",
            "attention_weights",
            "grad_out",
            "grad sampling_locations",
            "grad attention_weights",
            "grad value",
        ],
        max_binding,
        rt.caps().storage_offset_alignment as u64,
    )?;
    let entry = if vec4 { "backward_vec4" } else { "backward" };
    // On CPU adapters the vec4 kernel reads the value from a texel view (ops/common/texel.rs).
    let texel_kernel = match vec4 && texel::preferred(rt) {
        true => Some(rt.kernel(&backward_texel_shader(native), entry, &[])?),
        false => None,
    };
    let mut out = chunk::zero_dispatches(rt, &grads.value)?;
    for ch in &chunks {
        let threads = ch.count * (sz.lq * sz.m) as u64;
        let (params, grid) = (params(&sz, spatial_shapes, ch), rt.grid(threads, 64));
        let rest = [
            ch.bind(1, loc),
            ch.bind(2, attn),
            ch.bind(3, grad_out),
            ch.bind(4, &grads.sampling_locations),
            ch.bind(5, &grads.attention_weights),
            ch.bind(6, &grads.value),
        ];
        let view = texel_kernel
            .as_ref()
            .and_then(|tk| Some((tk, rt.texel_view(TexelSlot::A, ch.bind(0, value)).ok()?)));
        out.push(match view {
            Some((tk, view)) => {
                let storage: Vec<_> = (2..).zip(rest).collect();
                rt.dispatch_texels(tk, &params, &storage, vec![(1, view)], grid)
            }
            None => {
                let mut b = vec![ch.bind(0, value)];
                b.extend(rest);
                rt.dispatch(
                    &rt.kernel(&backward_shader(native), entry, &[])?,
                    &params,
                    &b,
                    grid,
                )
            }
        });
    }
    Ok(out)
}

/// Gradients of [`deform_attn`] for the upstream gradient `grad_out` [N, Lq, M·D].
pub fn deform_attn_backward(
    rt: &Runtime,
    value: &Tensor,
    spatial_shapes: &[(usize, usize)],
    sampling_locations: &Tensor,
    attention_weights: &Tensor,
    grad_out: &Tensor,
    opts: BackwardOptions,
) -> Result<Gradients> {
    let grads = Gradients {
        value: rt.empty(value.shape(), DType::F32)?,
        sampling_locations: rt.empty(sampling_locations.shape(), DType::F32)?,
        attention_weights: rt.empty(attention_weights.shape(), DType::F32)?,
    };
    rt.run(&deform_attn_backward_into(
        rt,
        value,
        spatial_shapes,
        sampling_locations,
        attention_weights,
        grad_out,
        &grads,
        opts,
    )?);
    Ok(grads)
}
