//! Per-pixel decisions over Mask2Former's query masks at the original image size, on the device
//! (the per-pixel part of `model::postprocess`): each output pixel upsamples the query mask
//! logits it needs on the fly (two bilinear steps, mask size → network input size → output size,
//! PyTorch `align_corners=False`, the host's f32 formula and order) and decides:
//!
//! - [`panoptic_into`]: the owner, argmax over the kept queries of score · sigmoid(mask) (first
//!   wins ties), as its kept index with [`PROB_FLAG`] set when the owner's probability is ≥ 0.5;
//!   and per kept query the count of pixels where its probability is ≥ 0.5.
//! - [`semantic_into`]: the label, argmax over classes of Σ_q p[q, c] · sigmoid(mask_q) (first
//!   wins ties), summed in query order.
//! - [`instance`] (`instance.rs`): for n selected queries, the binary masks (logit > 0) packed
//!   as bits, and per query the area, bounding box and Σ sigmoid over the mask.
//!
//! So only one u32 per pixel (panoptic, semantic) or one bit per pixel and selected query
//! (instance), plus a few counters, comes back instead of `[Q, h, w]` logits.
//! [`count_nonfinite`] checks the logits for NaN/inf where they lie.
//!
//! Shapes: logits `[Q, mask_h, mask_w]` f32 (one image); maps `[out_h, out_w]` u32. At most
//! [`MAX_QUERIES`] (kept) queries per launch (the kernels keep per-query state in fixed arrays);
//! the loops run over queries and classes, far below llvmpipe's 65535-iteration limit. One
//! thread per output pixel on a (columns / 64, rows) grid (instance: one per 32 pixels of a row
//! and selected query, see `instance.rs`); every tensor is bound whole, so the
//! logits of one image must fit one storage binding (100 queries at 800×1216 are 24 MB).

mod check;
mod instance;
#[cfg(test)]
mod instance_tests;
pub mod reference;
#[cfg(test)]
mod tests;

pub use check::{count_nonfinite, NonFiniteCount};
pub use instance::{
    instance, instance_into, queries_per_launch, unpack_mask, words_per_row, InstanceMasks,
    MaskStats,
};

use crate::error::{Error, Result};
use crate::ops::common::check as chk;
use crate::runtime::{DType, Dispatch, Runtime, Tensor};

/// Most queries (semantic), kept queries (panoptic) or selected queries (instance) one launch
/// handles.
pub const MAX_QUERIES: usize = 256;

/// Bit 31 of a panoptic owner: the owner's mask probability is ≥ 0.5 at that pixel.
pub const PROB_FLAG: u32 = 0x8000_0000;

const WG: usize = 64;

/// The sizes of the two-step upsampling: mask logits → network input → output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sizes {
    pub mask: (usize, usize),
    pub input: (usize, usize),
    pub output: (usize, usize),
}

/// PyTorch's linear taps for resizing `n_in` → `n_out` samples (align_corners=False): per output
/// index the two source indices and the second one's weight, computed in f64 and rounded to f32
/// (what `postprocess::resize_bilinear` uses; equal sizes copy).
pub fn linear_taps(n_in: usize, n_out: usize) -> Vec<(usize, usize, f32)> {
    if n_in == n_out {
        return (0..n_out).map(|o| (o, o, 0.0)).collect();
    }
    let scale = n_in as f64 / n_out as f64;
    (0..n_out)
        .map(|o| {
            let s = ((o as f64 + 0.5) * scale - 0.5).max(0.0);
            let i0 = (s.floor() as usize).min(n_in - 1);
            let i1 = (i0 + 1).min(n_in - 1);
            (i0, i1, (s - i0 as f64) as f32)
        })
        .collect()
}

/// The tap tables of one [`Sizes`] on the device (see `shaders/mask_argmax.wgsl`); build once per
/// image size and keep it alive until the launches using it have been submitted.
pub struct Upsampling {
    sizes: Sizes,
    idx: Tensor,
    lam: Tensor,
}

impl Upsampling {
    pub fn new(rt: &Runtime, sizes: Sizes) -> Result<Self> {
        const OP: &str = "mask_argmax::Upsampling";
        let dims = [sizes.mask, sizes.input, sizes.output];
        if dims.iter().any(|&(h, w)| h == 0 || w == 0) {
            return Err(crate::shape_err!(OP, "{sizes:?} has an empty side"));
        }
        let (mut idx, mut lam) = (Vec::new(), Vec::new());
        for (n_in, n_out) in [
            (sizes.mask.0, sizes.input.0),
            (sizes.mask.1, sizes.input.1),
            (sizes.input.0, sizes.output.0),
            (sizes.input.1, sizes.output.1),
        ] {
            for (a, b, l) in linear_taps(n_in, n_out) {
                idx.extend([a as u32, b as u32]);
                lam.push(l);
            }
        }
        Ok(Self {
            sizes,
            idx: rt.upload_u32(&idx, &[idx.len()])?,
            lam: rt.upload(&lam, &[lam.len()])?,
        })
    }

    pub fn sizes(&self) -> Sizes {
        self.sizes
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    mask_h: u32,
    mask_w: u32,
    in_h: u32,
    in_w: u32,
    out_h: u32,
    out_w: u32,
    n: u32,
    classes: u32,
}

/// Checks shared by every launcher (logits against the sizes, the query count, binding and
/// index limits); returns the params with `classes` = 0.
fn params(
    rt: &Runtime,
    op: &'static str,
    logits: &Tensor,
    up: &Upsampling,
    n: usize,
) -> Result<Params> {
    let s = up.sizes;
    chk::f32_rank(op, "logits", logits, 3)?;
    if logits.shape()[1..] != [s.mask.0, s.mask.1] {
        return Err(crate::shape_err!(
            op,
            "logits {:?} do not have the mask size {:?}",
            logits.shape(),
            s.mask
        ));
    }
    if n > MAX_QUERIES {
        return Err(Error::Unsupported {
            op,
            what: format!("{n} queries (at most {MAX_QUERIES})"),
        });
    }
    chk::binding(rt, op, "logits", logits)?;
    chk::u32_range(op, "logits elements", logits.numel() as u64)?;
    let u = |v: usize| v as u32;
    Ok(Params {
        mask_h: u(s.mask.0),
        mask_w: u(s.mask.1),
        in_h: u(s.input.0),
        in_w: u(s.input.1),
        out_h: u(s.output.0),
        out_w: u(s.output.1),
        n: u(n),
        classes: 0,
    })
}

/// [`params`] plus the checks of the per-pixel kernels (panoptic, semantic): the map's shape and
/// the (columns / WG, rows) grid; returns the params and the grid.
fn launch(
    rt: &Runtime,
    op: &'static str,
    logits: &Tensor,
    up: &Upsampling,
    n: usize,
    map: &Tensor,
) -> Result<(Params, [u32; 3])> {
    let p = params(rt, op, logits, up, n)?;
    let (oh, ow) = up.sizes.output;
    chk::shape(op, "map", map, &[oh, ow])?;
    chk::dtype_in(op, "map", map, &[DType::U32])?;
    let max_dim = rt.caps().max_workgroups_per_dim as usize;
    if oh > max_dim || ow.div_ceil(WG) > max_dim {
        return Err(Error::Unsupported {
            op,
            what: format!("{oh} x {ow} output pixels (at most {max_dim} rows)"),
        });
    }
    chk::binding(rt, op, "map", map)?;
    Ok((p, [ow.div_ceil(WG) as u32, oh as u32, 1]))
}

/// Panoptic owners: `kept` is u32 [2 · n] (n kept query indices into Q, then their scores as f32
/// bits, see [`panoptic_table`]); writes `owners` u32 [out_h, out_w] (kept index | [`PROB_FLAG`])
/// and ADDS to `area` u32 [n] each kept query's pixel count with probability ≥ 0.5 (zero it first).
pub fn panoptic_into(
    rt: &Runtime,
    logits: &Tensor,
    up: &Upsampling,
    kept: &Tensor,
    owners: &Tensor,
    area: &Tensor,
) -> Result<Vec<Dispatch>> {
    const OP: &str = "mask_argmax::panoptic";
    let n = area.numel();
    chk::shape(OP, "kept", kept, &[2 * n])?;
    chk::dtype_in(OP, "kept", kept, &[DType::U32])?;
    chk::dtype_in(OP, "area", area, &[DType::U32])?;
    let (p, grid) = launch(rt, OP, logits, up, n, owners)?;
    if n == 0 {
        return Err(crate::shape_err!(OP, "no kept queries"));
    }
    let k = rt.kernel(&crate::shader!("mask_argmax"), "panoptic", &[])?;
    let bind = [
        logits.binding(),
        up.idx.binding(),
        up.lam.binding(),
        kept.binding(),
        owners.binding(),
        area.binding(),
    ];
    Ok(vec![rt.dispatch(&k, &p, &bind, grid)])
}

/// The `kept` table of [`panoptic_into`] from (query index, score) pairs.
pub fn panoptic_table(kept: &[(u32, f32)]) -> Vec<u32> {
    let mut t: Vec<u32> = kept.iter().map(|k| k.0).collect();
    t.extend(kept.iter().map(|k| k.1.to_bits()));
    t
}

/// Semantic labels: `probs` u32 [Q, classes] (class probabilities without "no object", as f32
/// bits); writes `labels` u32 [out_h, out_w].
pub fn semantic_into(
    rt: &Runtime,
    logits: &Tensor,
    up: &Upsampling,
    probs: &Tensor,
    labels: &Tensor,
) -> Result<Vec<Dispatch>> {
    const OP: &str = "mask_argmax::semantic";
    chk::f32_rank(OP, "logits", logits, 3)?;
    let q = logits.shape()[0];
    let (mut p, grid) = launch(rt, OP, logits, up, q, labels)?;
    chk::dtype_in(OP, "probs", probs, &[DType::U32])?;
    if probs.rank() != 2 || probs.shape()[0] != q || probs.shape()[1] == 0 {
        return Err(crate::shape_err!(
            OP,
            "probs must be [{q}, classes >= 1], got {:?}",
            probs.shape()
        ));
    }
    if probs.shape()[1] > crate::runtime::CPU_LOOP_ITERATIONS {
        return Err(Error::Unsupported {
            op: OP,
            what: format!("{} classes", probs.shape()[1]),
        });
    }
    chk::binding(rt, OP, "probs", probs)?;
    p.classes = probs.shape()[1] as u32;
    let k = rt.kernel(&crate::shader!("mask_argmax"), "semantic", &[])?;
    let bind = [
        logits.binding(),
        up.idx.binding(),
        up.lam.binding(),
        probs.binding(),
        labels.binding(),
    ];
    Ok(vec![rt.dispatch(&k, &p, &bind, grid)])
}

/// Runs [`panoptic_into`]: (owners u32 [out_h, out_w], area u32 [n]) for `kept` (query, score).
pub fn panoptic(
    rt: &Runtime,
    logits: &Tensor,
    up: &Upsampling,
    kept: &[(u32, f32)],
) -> Result<(Tensor, Tensor)> {
    let table = panoptic_table(kept);
    let table = rt.upload_u32(&table, &[table.len()])?;
    let (oh, ow) = up.sizes.output;
    let owners = rt.empty(&[oh, ow], DType::U32)?;
    let area = rt.upload_u32(&vec![0; kept.len()], &[kept.len()])?;
    rt.run(&panoptic_into(rt, logits, up, &table, &owners, &area)?);
    Ok((owners, area))
}

/// Runs [`semantic_into`]: labels u32 [out_h, out_w] for `probs` [Q][classes].
pub fn semantic(
    rt: &Runtime,
    logits: &Tensor,
    up: &Upsampling,
    probs: &[Vec<f32>],
) -> Result<Tensor> {
    let classes = probs.first().map_or(0, |p| p.len());
    let table: Vec<u32> = probs.iter().flatten().map(|v| v.to_bits()).collect();
    let table = rt.upload_u32(&table, &[probs.len(), classes])?;
    let (oh, ow) = up.sizes.output;
    let labels = rt.empty(&[oh, ow], DType::U32)?;
    rt.run(&semantic_into(rt, logits, up, &table, &labels)?);
    Ok(labels)
}
