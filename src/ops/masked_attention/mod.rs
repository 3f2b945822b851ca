//! Masked multi-head attention (Mask2Former's cross-attention of the queries over one level of
//! pixel features; also plain multi-head attention for the decoder's self-attention).
//!
//! Inputs after the projections: `q` [B, Q, heads·d], `k`, `v` [B, K, heads·d], head `h` owning
//! channels `h·d .. (h+1)·d`. Optional `mask` [B, 1 or heads, Q, K] (U32 or F32 0/1): nonzero =
//! the key is NOT attended, as Mask2Former's `attn_mask` (`sigmoid(mask) < 0.5`); a (batch, head,
//! query) row whose mask hides every key attends to all keys (Mask2Former's
//! `attn_mask[where(sum == len)] = False`). Optional `additive` [B, 1 or heads, Q, K] F32 added
//! to the logits (keep it finite: WGSL implementations may assume floats are finite; use e.g.
//! −1e9 rather than −inf). Output [B, Q, heads·d] =
//! softmax(q·kᵀ·scale + additive, masked keys dropped)·v per head, and `lse` [B, heads, Q], the
//! log-sum-exp of each row for backward.
//!
//! Kernels (shaders/masked_attention*.wgsl): a row-flag pass finds fully masked rows; the
//! forward splits the keys over threads (one thread per (split, batch, head, query), online
//! softmax, no workgroup memory) and a combine pass merges the splits — splits give a GPU
//! enough threads at Q = 100 and cost little on CPU adapters. Backward (deterministic, no
//! atomics): per-row dO·O, a split dq pass plus its reduction, and one thread per (batch, head,
//! key) for dk and dv looping over the Q queries.
//!
//! Limits: head_dim a multiple of 4 up to 64 (Mask2Former: 32); each tensor within one storage
//! binding (128 MiB on lavapipe: the mask [B, 8, 100, 13600] u32 is 43.5 MB per image).

pub mod reference;

#[cfg(test)]
mod tests;

use bytemuck::{Pod, Zeroable};

use crate::error::{Error, Result};
use crate::ops::common::{check, texel};
use crate::runtime::{DType, Dispatch, Runtime, Shader, Tensor};
use std::sync::OnceLock;

const OP: &str = "masked_attention";
const WG: u32 = 64;
const MAX_D4: usize = 16;
/// Fewest keys per split worth a partial result.
const MIN_KEYS_PER_SPLIT: usize = 128;

/// Settings of one masked-attention call.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MaskedAttentionOptions {
    pub heads: usize,
    /// Logit scale; `None` = 1/√head_dim.
    pub scale: Option<f32>,
    /// Key splits per row; `None` chooses from the adapter (more on GPUs, which need threads).
    pub splits: Option<usize>,
}

impl MaskedAttentionOptions {
    pub fn new(heads: usize) -> Self {
        Self {
            heads,
            scale: None,
            splits: None,
        }
    }
}

/// The tensors masked attention reads.
#[derive(Clone, Copy, Debug)]
pub struct MaskedAttentionInputs<'a> {
    pub q: &'a Tensor,
    pub k: &'a Tensor,
    pub v: &'a Tensor,
    /// Boolean mask [B, 1 or heads, Q, K], U32 or F32; nonzero = not attended.
    pub mask: Option<&'a Tensor>,
    /// Additive logit mask [B, 1 or heads, Q, K], F32.
    pub additive: Option<&'a Tensor>,
}

/// Scratch memory of one call shape (partial results of the key splits, fully-masked-row
/// flags). Allocate it once per plan with [`MaskedAttentionWorkspace::new`] and keep it alive
/// until the recorded dispatches have run.
pub struct MaskedAttentionWorkspace {
    flags: Tensor,
    part_acc: Tensor,
    part_ml: Tensor,
    row_dot: Tensor,
    geometry: Geometry,
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Geometry {
    batch: usize,
    nq: usize,
    nk: usize,
    heads: usize,
    head_dim: usize,
    mask_heads: usize,
    mask_f32: bool,
    add_heads: usize,
    splits: usize,
    chunk: usize,
    scale: f32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    batch: u32,
    nq: u32,
    nk: u32,
    heads: u32,
    c4: u32,
    mask_heads: u32,
    add_heads: u32,
    splits: u32,
    chunk: u32,
    scale: f32,
    n_threads: u32,
    mask_f32: u32,
}

impl Geometry {
    fn rows(&self) -> usize {
        self.batch * self.heads * self.nq
    }
    fn params(&self, n_threads: usize) -> Params {
        Params {
            batch: self.batch as u32,
            nq: self.nq as u32,
            nk: self.nk as u32,
            heads: self.heads as u32,
            c4: (self.heads * self.head_dim / 4) as u32,
            mask_heads: self.mask_heads as u32,
            add_heads: self.add_heads as u32,
            splits: self.splits as u32,
            chunk: self.chunk as u32,
            scale: self.scale,
            n_threads: n_threads as u32,
            mask_f32: self.mask_f32 as u32,
        }
    }
    /// Override constants. The mask's dtype is a uniform (`Params::mask_f32`), not a constant:
    /// a second pipeline per entry cost ~0.45 s of JIT on a fresh machine (issue 13, cold start).
    fn constants(&self) -> [(&'static str, f64); 1] {
        [("D4", (self.head_dim / 4) as f64)]
    }
    fn flag_len(&self) -> usize {
        (self.batch * self.mask_heads * self.nq).max(1)
    }
}

/// Heads of a [B, 1 or heads, Q, K] mask, after checking its shape.
fn mask_heads(
    t: &Tensor,
    name: &str,
    b: usize,
    heads: usize,
    nq: usize,
    nk: usize,
    dtypes: &[DType],
) -> Result<usize> {
    let mh = if t.rank() == 4 { t.shape()[1] } else { 0 };
    let mh = if mh == heads { heads } else { 1 };
    check::dtype_in(OP, name, t, dtypes)?;
    check::shape(OP, name, t, &[b, mh, nq, nk])?;
    Ok(mh)
}

/// How many key splits run per row: the requested count, or enough threads to fill the adapter
/// (a few per core under CPU-shaped kernels, tens of thousands under GPU-shaped ones, never
/// fewer than MIN_KEYS_PER_SPLIT keys per split); raised where the adapter caps loops.
fn key_splits(
    rt: &Runtime,
    requested: Option<usize>,
    rows: usize,
    nk: usize,
    head_dim: usize,
) -> Result<usize> {
    let policy = crate::ops::policy::policy(rt);
    let splits = match requested {
        Some(0) => return Err(crate::shape_err!(OP, "splits must be at least 1")),
        Some(s) => s.min(nk),
        None => {
            let target: usize = if policy.cpu_shapes() { 1024 } else { 32768 };
            target
                .div_ceil(rows)
                .clamp(1, nk.div_ceil(MIN_KEYS_PER_SPLIT).max(1))
        }
    };
    // llvmpipe ends an invocation's loops after CPU_LOOP_ITERATIONS iterations in all; the
    // forward and dq threads loop over their split's keys with up to 2·D4 + 5 iterations per
    // key (the channel loops, if not unrolled), so such adapters split rows into chunks under
    // it (splits = 1 would put Mask2Former's 27889 keys at 1333² in one thread).
    Ok(match policy.loop_budget {
        Some(budget) => {
            let per_key = 2 * (head_dim / 4) + 5;
            splits.max(nk.div_ceil((budget - 1024) / per_key))
        }
        None => splits,
    })
}

/// Validates the inputs and derives the geometry (split count included).
fn geometry(
    rt: &Runtime,
    x: &MaskedAttentionInputs,
    o: &MaskedAttentionOptions,
) -> Result<Geometry> {
    // Over ~80 lines: one check per input, each naming the shape it wants.
    let qs = x.q.shape();
    let ks = x.k.shape();
    if qs.len() != 3 || ks.len() != 3 || qs.contains(&0) || ks.contains(&0) {
        return Err(crate::shape_err!(
            OP,
            "q [B, Q, C] and k [B, K, C] must be non-empty rank 3, got {qs:?} and {ks:?}"
        ));
    }
    let (batch, nq, channels) = (qs[0], qs[1], qs[2]);
    let nk = ks[1];
    check::f32_shape(OP, "q", x.q, qs)?;
    check::f32_shape(OP, "k", x.k, &[batch, nk, channels])?;
    check::f32_shape(OP, "v", x.v, &[batch, nk, channels])?;
    if o.heads == 0 || channels % o.heads != 0 {
        return Err(crate::shape_err!(
            OP,
            "C = {channels} (q shape {qs:?}) is not a multiple of heads = {}",
            o.heads
        ));
    }
    let head_dim = channels / o.heads;
    if !head_dim.is_multiple_of(4) || head_dim / 4 > MAX_D4 {
        return Err(Error::Unsupported {
            op: OP,
            what: format!(
                "head_dim {head_dim} (C {channels} / {} heads): needs a multiple of 4 up to {}",
                o.heads,
                MAX_D4 * 4
            ),
        });
    }
    let (mh, mask_f32) = match x.mask {
        Some(m) => (
            mask_heads(m, "mask", batch, o.heads, nq, nk, &[DType::U32, DType::F32])?,
            m.dtype() == DType::F32,
        ),
        None => (0, false),
    };
    let ah = match x.additive {
        Some(a) => mask_heads(a, "additive", batch, o.heads, nq, nk, &[DType::F32])?,
        None => 0,
    };
    for (t, name) in [(x.q, "q"), (x.k, "k"), (x.v, "v")] {
        check::binding(rt, OP, name, t)?;
    }
    if let Some(m) = x.mask {
        check::binding(rt, OP, "mask", m)?;
    }
    if let Some(a) = x.additive {
        check::binding(rt, OP, "additive", a)?;
    }
    let rows = batch * o.heads * nq;
    let splits = key_splits(rt, o.splits, rows, nk, head_dim)?;
    let chunk = nk.div_ceil(splits);
    let splits = nk.div_ceil(chunk);
    let part_bytes = (splits * rows * head_dim * 4) as u64;
    if part_bytes > rt.caps().max_storage_binding || splits * rows >= u32::MAX as usize {
        return Err(Error::TooLarge {
            op: OP,
            what: format!("{splits} key splits of {rows} rows"),
            bytes: part_bytes,
            limit: rt.caps().max_storage_binding,
            limit_name: "max_storage_buffer_binding_size",
        });
    }
    Ok(Geometry {
        batch,
        nq,
        nk,
        heads: o.heads,
        head_dim,
        mask_heads: mh,
        mask_f32,
        add_heads: ah,
        splits,
        chunk,
        scale: o.scale.unwrap_or(1.0 / (head_dim as f32).sqrt()),
    })
}

impl MaskedAttentionWorkspace {
    /// Scratch for forward and backward calls with these inputs and options.
    pub fn new(
        rt: &Runtime,
        x: &MaskedAttentionInputs,
        opts: &MaskedAttentionOptions,
    ) -> Result<Self> {
        let g = geometry(rt, x, opts)?;
        Ok(Self {
            flags: rt.empty(&[g.flag_len()], DType::U32)?,
            part_acc: rt.empty(&[g.splits, g.rows(), g.head_dim], DType::F32)?,
            part_ml: rt.empty(&[g.splits, g.rows(), 2], DType::F32)?,
            row_dot: rt.empty(&[g.rows()], DType::F32)?,
            geometry: g,
        })
    }

    fn check(&self, g: &Geometry) -> Result<()> {
        if *g != self.geometry {
            return Err(crate::shape_err!(
                OP,
                "workspace was made for {:?}, the call needs {g:?}",
                self.geometry
            ));
        }
        Ok(())
    }
}

/// The row-flag pass (only with a boolean mask).
fn flag_dispatch(
    rt: &Runtime,
    g: &Geometry,
    x: &MaskedAttentionInputs,
    ws: &MaskedAttentionWorkspace,
) -> Result<Option<Dispatch>> {
    let Some(mask) = x.mask else { return Ok(None) };
    let n = g.batch * g.mask_heads * g.nq;
    // A thread per row on CPU adapters (the early exit makes most rows short); a workgroup per
    // row on GPUs, where fully masked rows would otherwise be long serial scans.
    let (entry, grid) = if crate::ops::policy::policy(rt).cpu_shapes() {
        ("row_flags", rt.grid(n as u64, WG))
    } else {
        ("row_flags_wg", rt.grid(n as u64, 1))
    };
    let kernel = rt.kernel(&crate::shader!("masked_attention"), entry, &g.constants())?;
    Ok(Some(rt.dispatch(
        &kernel,
        &g.params(n),
        &[mask.binding(), ws.flags.binding()],
        grid,
    )))
}

/// Records the forward pass into `out` [B, Q, heads·d] and `lse` [B, heads, Q]; overwrites both.
pub fn masked_attention_into(
    rt: &Runtime,
    x: &MaskedAttentionInputs,
    out: &Tensor,
    lse: &Tensor,
    ws: &MaskedAttentionWorkspace,
    opts: &MaskedAttentionOptions,
) -> Result<Vec<Dispatch>> {
    let g = geometry(rt, x, opts)?;
    ws.check(&g)?;
    check::f32_shape(OP, "out", out, x.q.shape())?;
    check::f32_shape(OP, "lse", lse, &[g.batch, g.heads, g.nq])?;
    let shader = crate::shader!("masked_attention");
    let mut ds: Vec<Dispatch> = flag_dispatch(rt, &g, x, ws)?.into_iter().collect();
    // Absent masks bind q in their place: the kernel reads them only when their heads are > 0.
    let mask = x.mask.unwrap_or(x.q);
    let additive = x.additive.unwrap_or(x.q);
    let n = g.splits * g.rows();
    let grid = rt.grid(n as u64, WG);
    // On CPU adapters K and V are read from texel views (the GPU-policy runtime of the tests
    // runs the buffer kernel on the same adapter).
    let texel = match texel::preferred(rt) {
        true => texel::views(rt, x.k, x.v),
        false => None,
    };
    if let Some((k, v)) = texel {
        let split = rt.kernel(&texel_shader(), "forward_split", &g.constants())?;
        let storage = [
            (1, x.q.binding()),
            (4, mask.binding()),
            (5, additive.binding()),
            (6, ws.flags.binding()),
            (7, ws.part_acc.binding()),
            (8, ws.part_ml.binding()),
        ];
        let texels = vec![(2, k), (3, v)];
        ds.push(rt.dispatch_texels(&split, &g.params(n), &storage, texels, grid));
    } else {
        let split = rt.kernel(&shader, "forward_split", &g.constants())?;
        ds.push(rt.dispatch(
            &split,
            &g.params(n),
            &[
                x.q.binding(),
                x.k.binding(),
                x.v.binding(),
                mask.binding(),
                additive.binding(),
                ws.flags.binding(),
                ws.part_acc.binding(),
                ws.part_ml.binding(),
            ],
            grid,
        ));
    }
    let combine = rt.kernel(&shader, "forward_combine", &g.constants())?;
    ds.push(rt.dispatch(
        &combine,
        &g.params(g.rows()),
        &[
            ws.part_acc.binding(),
            ws.part_ml.binding(),
            out.binding(),
            lse.binding(),
        ],
        rt.grid(g.rows() as u64, WG),
    ));
    Ok(ds)
}

/// `masked_attention.wgsl` with K and V read from texel views (CPU adapters: `ops/common/texel.rs`).
fn texel_shader() -> Shader {
    static SOURCE: OnceLock<String> = OnceLock::new();
    texel::shader(
        &SOURCE,
        "masked_attention+texel",
        crate::shader!("masked_attention"),
        &["k", "v"],
    )
}

/// Forward pass: returns (out [B, Q, heads·d], lse [B, heads, Q]).
pub fn masked_attention(
    rt: &Runtime,
    x: &MaskedAttentionInputs,
    opts: &MaskedAttentionOptions,
) -> Result<(Tensor, Tensor)> {
    let ws = MaskedAttentionWorkspace::new(rt, x, opts)?;
    let g = ws.geometry;
    let out = rt.empty(x.q.shape(), DType::F32)?;
    let lse = rt.empty(&[g.batch, g.heads, g.nq], DType::F32)?;
    rt.run(&masked_attention_into(rt, x, &out, &lse, &ws, opts)?);
    // The workspace may go back to the pool now: the queue runs later users after this submit.
    Ok((out, lse))
}

/// Gradients of masked attention (the masks are not differentiable). Overwritten by backward.
pub struct MaskedAttentionGrads {
    /// [B, Q, heads·d]
    pub dq: Tensor,
    /// [B, K, heads·d] each.
    pub dk: Tensor,
    pub dv: Tensor,
}

impl MaskedAttentionGrads {
    /// Uninitialised gradient tensors for these inputs.
    pub fn new(rt: &Runtime, x: &MaskedAttentionInputs) -> Result<Self> {
        Ok(Self {
            dq: rt.empty(x.q.shape(), DType::F32)?,
            dk: rt.empty(x.k.shape(), DType::F32)?,
            dv: rt.empty(x.v.shape(), DType::F32)?,
        })
    }
}

/// Records the backward pass: from the forward's inputs, its `out` and `lse`, and the output
/// gradient `dout`, overwrites `grads`. `ws` must have been made for the same inputs and options.
#[allow(clippy::too_many_arguments)]
pub fn masked_attention_backward_into(
    rt: &Runtime,
    x: &MaskedAttentionInputs,
    out: &Tensor,
    lse: &Tensor,
    dout: &Tensor,
    grads: &MaskedAttentionGrads,
    ws: &MaskedAttentionWorkspace,
    opts: &MaskedAttentionOptions,
) -> Result<Vec<Dispatch>> {
    let g = geometry(rt, x, opts)?;
    ws.check(&g)?;
    check::f32_shape(OP, "out", out, x.q.shape())?;
    check::f32_shape(OP, "dout", dout, x.q.shape())?;
    check::f32_shape(OP, "lse", lse, &[g.batch, g.heads, g.nq])?;
    check::f32_shape(OP, "dq", &grads.dq, x.q.shape())?;
    check::f32_shape(OP, "dk", &grads.dk, x.k.shape())?;
    check::f32_shape(OP, "dv", &grads.dv, x.v.shape())?;
    let shader = crate::shader!("masked_attention_backward");
    let c = g.constants();
    let mut ds: Vec<Dispatch> = flag_dispatch(rt, &g, x, ws)?.into_iter().collect();
    ds.push(rt.dispatch(
        &rt.kernel(&shader, "bwd_rowdot", &c)?,
        &g.params(g.rows()),
        &[out.binding(), dout.binding(), ws.row_dot.binding()],
        rt.grid(g.rows() as u64, WG),
    ));
    let mask = x.mask.unwrap_or(x.q);
    let additive = x.additive.unwrap_or(x.q);
    let shared = [
        x.q,
        x.k,
        x.v,
        mask,
        additive,
        &ws.flags,
        dout,
        lse,
        &ws.row_dot,
    ];
    // On CPU adapters the passes read their inner loops' operands from texel views: dq's
    // threads walk the keys (k, v), dk/dv's the queries (q, dout).
    let n = g.splits * g.rows();
    let mut b = shared.to_vec();
    b.push(&ws.part_acc);
    ds.push(texel::dispatch(
        rt,
        shader,
        &DQ_TEXEL,
        "bwd_dq_split",
        &c,
        &g.params(n),
        &b,
        [1, 2],
        rt.grid(n as u64, WG),
    )?);
    ds.push(rt.dispatch(
        &rt.kernel(&shader, "bwd_dq_combine", &c)?,
        &g.params(g.rows()),
        &[ws.part_acc.binding(), grads.dq.binding()],
        rt.grid(g.rows() as u64, WG),
    ));
    let n = g.batch * g.heads * g.nk;
    let mut b = shared.to_vec();
    b.extend([&grads.dk, &grads.dv]);
    ds.push(texel::dispatch(
        rt,
        shader,
        &KV_TEXEL,
        "bwd_kv",
        &c,
        &g.params(n),
        &b,
        [0, 6],
        rt.grid(n as u64, WG),
    )?);
    Ok(ds)
}

/// `bwd_dq_split`'s texel form: keys and values from views.
static DQ_TEXEL: texel::Form = texel::Form::new("masked_attention_backward+texel_dq", ["k", "v"]);
/// `bwd_kv`'s texel form: queries and output gradients from views.
static KV_TEXEL: texel::Form =
    texel::Form::new("masked_attention_backward+texel_kv", ["q", "dout"]);

/// Backward pass; returns fresh gradients (see [`masked_attention_backward_into`]).
pub fn masked_attention_backward(
    rt: &Runtime,
    x: &MaskedAttentionInputs,
    out: &Tensor,
    lse: &Tensor,
    dout: &Tensor,
    opts: &MaskedAttentionOptions,
) -> Result<MaskedAttentionGrads> {
    let ws = MaskedAttentionWorkspace::new(rt, x, opts)?;
    let grads = MaskedAttentionGrads::new(rt, x)?;
    rt.run(&masked_attention_backward_into(
        rt, x, out, lse, dout, &grads, &ws, opts,
    )?);
    Ok(grads)
}
