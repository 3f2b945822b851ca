//! Swin window attention, fused: the attention core of one Swin block (HF `SwinLayer` between
//! the q/k/v linears and the output projection).
//!
//! Inputs `q`, `k`, `v`: [B, H, W, C] channels-last token maps (the q/k/v linears applied to the
//! layer-normed tokens, one matmul each), C = heads · head_dim with channel `h·head_dim + e`
//! belonging to head `h`; `table`: relative_position_bias_table [(2w−1)², heads]. Output
//! [B, H, W, C] and, for backward, `lse` [B, nW, heads, w²] (the log-sum-exp of each softmax row,
//! windows numbered row-major in the shifted padded frame, nW = ⌈H/w⌉·⌈W/w⌉).
//!
//! What it computes, step for step as HF does (modeling_swin.py, `always_partition=True`):
//! 1. pad the map bottom/right to multiples of w (also when the map is smaller than the window);
//!    HF pads the layer-normed tokens *before* the linears, so a padding token's key and value
//!    are the key/value linear biases: pass them as `pad_k` / `pad_v` (`None` = zero tokens, as
//!    for linears without bias);
//! 2. roll by (−s, −s) (s = 0 or w/2; the shift is kept even when the map is smaller than w);
//! 3. per window and head: softmax(q·kᵀ·scale + table[relative_position_index] + shift_mask)·v
//!    where shift_mask is −100 between tokens of different regions of the padded map, regions
//!    given by the slices (0,−w), (−w,−s), (−s,None) on each axis (no mask when s = 0);
//! 4. window reverse, roll by (+s, +s), crop the padding.
//!
//! Limits: head_dim a multiple of 4 and at most 64 (Swin uses 32), window ≤ 16 (Swin uses 7
//! and 12), every tensor within one storage binding (128 MiB on lavapipe).
//!
//! Kernels: one thread per (batch, window, head, query token), scores of one window row at a
//! time in registers with an online softmax across rows, no workgroup memory (barriers are slow
//! on CPU adapters). Backward is deterministic (no atomics): a query pass (dq, and p / dscore per
//! pair into a workspace of 8·B·nW·heads·w⁴ bytes: 11 MB for Swin-T stage 1 at 384×384), a key
//! pass (dk, dv), and gathers for the bias table and the padding-token gradients.

pub mod reference;

use bytemuck::{Pod, Zeroable};

use crate::error::{Error, Result};
use crate::ops::common::{check, texel};
use crate::runtime::{DType, Dispatch, Runtime, Shader, Tensor};
use std::sync::OnceLock;

mod backward;
#[cfg(test)]
mod tests;

pub use backward::{
    window_attention_backward, window_attention_backward_into, WindowAttentionGrads,
    WindowAttentionWorkspace,
};

const OP: &str = "window_attention";
const WG: u32 = 64;
/// Largest head_dim / 4 the kernels hold in registers (`MAX_D4` in the shader).
const MAX_D4: usize = 16;
/// Largest window (`MAX_WIN` in the shader).
const MAX_WINDOW: usize = 16;

/// Settings of one window-attention call.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WindowAttentionOptions {
    pub heads: usize,
    /// Window size w.
    pub window: usize,
    /// Cyclic shift s, 0 ≤ s < w (Swin: 0 for even blocks, w/2 for odd ones).
    pub shift: usize,
    /// Logit scale; `None` = 1/√head_dim.
    pub scale: Option<f32>,
}

/// The tensors window attention reads.
#[derive(Clone, Copy, Debug)]
pub struct WindowAttentionInputs<'a> {
    pub q: &'a Tensor,
    pub k: &'a Tensor,
    pub v: &'a Tensor,
    /// relative_position_bias_table [(2w−1)², heads].
    pub table: &'a Tensor,
    /// Key of a padding token [C] (HF: the key linear's bias); `None` = zeros.
    pub pad_k: Option<&'a Tensor>,
    /// Value of a padding token [C] (HF: the value linear's bias); `None` = zeros.
    pub pad_v: Option<&'a Tensor>,
}

/// Derived sizes of one call; also the shader's parameter block.
#[derive(Clone, Copy, Debug)]
struct Geometry {
    batch: usize,
    height: usize,
    width: usize,
    channels: usize,
    heads: usize,
    head_dim: usize,
    window: usize,
    shift: usize,
    scale: f32,
    hp: usize,
    wp: usize,
    nww: usize,
    nw: usize,
    /// Tokens per window, w².
    n: usize,
    /// Padding tokens per image.
    n_pad: usize,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    batch: u32,
    height: u32,
    width: u32,
    c4: u32,
    heads: u32,
    hp: u32,
    wp: u32,
    nww: u32,
    nw: u32,
    shift: u32,
    has_pad: u32,
    scale: f32,
    n_rows: u32,
    n_pad: u32,
    /// Windows (table sum) or padding rows (pad partials) per segment of a two-pass sum.
    seg: u32,
    /// Rows `bwd_pad` sums.
    pad_rows: u32,
    /// Window size (the forward's; the backward has it as the override constant `WIN`).
    win: u32,
    _r: [u32; 3],
}

impl Geometry {
    /// Query rows: one per (batch, window, head, token).
    fn rows(&self) -> usize {
        self.batch * self.nw * self.heads * self.n
    }
    fn lse_shape(&self) -> [usize; 4] {
        [self.batch, self.nw, self.heads, self.n]
    }
    fn table_len(&self) -> usize {
        (2 * self.window - 1) * (2 * self.window - 1)
    }
    fn params(&self, has_pad: bool) -> Params {
        Params {
            batch: self.batch as u32,
            height: self.height as u32,
            width: self.width as u32,
            c4: (self.channels / 4) as u32,
            heads: self.heads as u32,
            hp: self.hp as u32,
            wp: self.wp as u32,
            nww: self.nww as u32,
            nw: self.nw as u32,
            shift: self.shift as u32,
            has_pad: has_pad as u32,
            scale: self.scale,
            n_rows: self.rows() as u32,
            n_pad: self.n_pad as u32,
            seg: (self.batch * self.nw) as u32,
            pad_rows: (self.batch * self.n_pad) as u32,
            win: self.window as u32,
            _r: [0; 3],
        }
    }
    /// The forward's override constants: the window size is a uniform there (`Params::win`),
    /// so that the shader compiler does not unroll its key loops (half its JIT time on lavapipe).
    fn forward_constants(&self) -> [(&'static str, f64); 1] {
        [("D4", (self.head_dim / 4) as f64)]
    }
    /// The backward's override constants.
    fn constants(&self) -> [(&'static str, f64); 2] {
        [
            ("WIN", self.window as f64),
            ("D4", (self.head_dim / 4) as f64),
        ]
    }
}

/// Validates the inputs and derives the geometry.
fn geometry(
    rt: &Runtime,
    x: &WindowAttentionInputs,
    o: &WindowAttentionOptions,
) -> Result<Geometry> {
    // Over ~80 lines: a flat sequence of checks, each with its own error message.
    check::f32_dtype(OP, x.q)?;
    let s = x.q.shape();
    if s.len() != 4 || s.contains(&0) {
        return Err(crate::shape_err!(
            OP,
            "q must be a non-empty [B, H, W, C] map, got {s:?}"
        ));
    }
    let (batch, height, width, channels) = (s[0], s[1], s[2], s[3]);
    check::f32_shape(OP, "k", x.k, s)?;
    check::f32_shape(OP, "v", x.v, s)?;
    if o.heads == 0 || channels % o.heads != 0 {
        return Err(crate::shape_err!(
            OP,
            "C = {channels} (q shape {s:?}) is not a multiple of heads = {}",
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
    if o.window == 0 || o.window > MAX_WINDOW {
        return Err(Error::Unsupported {
            op: OP,
            what: format!("window size {} (supported: 1..={MAX_WINDOW})", o.window),
        });
    }
    if o.shift >= o.window {
        return Err(crate::shape_err!(
            OP,
            "shift {} must be smaller than the window {}",
            o.shift,
            o.window
        ));
    }
    let w = o.window;
    let hp = height.div_ceil(w) * w;
    let wp = width.div_ceil(w) * w;
    let g = Geometry {
        batch,
        height,
        width,
        channels,
        heads: o.heads,
        head_dim,
        window: w,
        shift: o.shift,
        scale: o.scale.unwrap_or(1.0 / (head_dim as f32).sqrt()),
        hp,
        wp,
        nww: wp / w,
        nw: (hp / w) * (wp / w),
        n: w * w,
        n_pad: hp * wp - height * width,
    };
    check::f32_shape(
        OP,
        "relative_position_bias_table",
        x.table,
        &[g.table_len(), o.heads],
    )?;
    for (t, name) in [(x.pad_k, "pad_k"), (x.pad_v, "pad_v")] {
        if let Some(t) = t {
            check::f32_shape(OP, name, t, &[channels])?;
        }
    }
    if x.pad_k.is_some() != x.pad_v.is_some() {
        return Err(crate::shape_err!(
            OP,
            "pad_k and pad_v must be given together (got pad_k: {}, pad_v: {})",
            x.pad_k.is_some(),
            x.pad_v.is_some()
        ));
    }
    check::binding_of(rt, OP, "q", s, 4)?;
    check::binding_of(rt, OP, "lse", &g.lse_shape(), 4)?;
    if g.rows() as u64 >= u32::MAX as u64 {
        return Err(crate::shape_err!(OP, "too many query rows for q {s:?}"));
    }
    Ok(g)
}

/// Records the forward pass into `out` ([B, H, W, C]) and `lse` ([B, nW, heads, w²]).
/// Overwrites both.
pub fn window_attention_into(
    rt: &Runtime,
    x: &WindowAttentionInputs,
    out: &Tensor,
    lse: &Tensor,
    opts: &WindowAttentionOptions,
) -> Result<Vec<Dispatch>> {
    let g = geometry(rt, x, opts)?;
    check::f32_shape(OP, "out", out, x.q.shape())?;
    check::f32_shape(OP, "lse", lse, &g.lse_shape())?;
    // Without padding values any bound buffer will do: the kernel reads them only when has_pad = 1.
    let pad_k = x.pad_k.unwrap_or(x.k);
    let pad_v = x.pad_v.unwrap_or(x.v);
    let params = g.params(x.pad_k.is_some());
    let grid = rt.grid(g.rows() as u64, WG);
    // On CPU adapters K and V are read from texel views (ops/common/texel.rs).
    let views = match texel::preferred(rt) {
        true => texel::views(rt, x.k, x.v),
        false => None,
    };
    if let Some((k, v)) = views {
        let kernel = rt.kernel(&texel_shader(), "forward", &g.forward_constants())?;
        let storage = [
            (1, x.q.binding()),
            (4, x.table.binding()),
            (5, pad_k.binding()),
            (6, pad_v.binding()),
            (7, out.binding()),
            (8, lse.binding()),
        ];
        return Ok(vec![rt.dispatch_texels(
            &kernel,
            &params,
            &storage,
            vec![(2, k), (3, v)],
            grid,
        )]);
    }
    let kernel = rt.kernel(
        &crate::shader!("window_attention"),
        "forward",
        &g.forward_constants(),
    )?;
    Ok(vec![rt.dispatch(
        &kernel,
        &params,
        &[
            x.q.binding(),
            x.k.binding(),
            x.v.binding(),
            x.table.binding(),
            pad_k.binding(),
            pad_v.binding(),
            out.binding(),
            lse.binding(),
        ],
        grid,
    )])
}

/// `window_attention.wgsl` with K and V read from texel views (CPU adapters).
fn texel_shader() -> Shader {
    static SOURCE: OnceLock<String> = OnceLock::new();
    texel::shader(
        &SOURCE,
        "window_attention+texel",
        crate::shader!("window_attention"),
        &["k", "v"],
    )
}

/// Forward pass: returns (out [B, H, W, C], lse [B, nW, heads, w²]).
pub fn window_attention(
    rt: &Runtime,
    x: &WindowAttentionInputs,
    opts: &WindowAttentionOptions,
) -> Result<(Tensor, Tensor)> {
    let g = geometry(rt, x, opts)?;
    let out = rt.empty(x.q.shape(), DType::F32)?;
    let lse = rt.empty(&g.lse_shape(), DType::F32)?;
    rt.run(&window_attention_into(rt, x, &out, &lse, opts)?);
    Ok((out, lse))
}
