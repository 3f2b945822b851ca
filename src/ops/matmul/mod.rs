//! Batched matrix multiply with a fused epilogue.
//!
//! There is no matmul backward kernel: the graph differentiates a product with two more
//! products (`graph/ops`), which run on these same kernels.
//!
//! ```text
//! pre[b] = alpha · op(A[b]) · op(B[b]) + bias + beta · C[b]       C[b] = act(pre[b]) + R[b]
//! ```
//! - A is `[.., M, K]` (`[.., K, M]` with `trans_a`), B is `[.., K, N]` (`[.., N, K]` with
//!   `trans_b`); all tensors row-major and contiguous. The leading dims are the batch: they must
//!   match, or one side's batch is 1 (rank 2, or leading dims all 1) and broadcasts. C is
//!   `lead ++ [M, N]` where `lead` is the leading dims of the batched side.
//! - `bias` is `[N]`, added to every row. `act` is none, ReLU or GELU (exact erf form).
//! - `beta ≠ 0` accumulates into the existing C;
//!   `beta = 0` never reads C.
//! - `R` (optional, shape of C) is a residual added after the activation
//!   ([`matmul_epilogue_into`]).
//!
//! Entry points: [`matmul`] / [`matmul_into`], [`matmul_scratch_into`] (may pick a plan with a
//! scratch tensor) and [`matmul_epilogue_into`] (the same with every epilogue tensor: bias,
//! residual, pre-activation; the graph's products use it, with the activations and residual adds
//! that compilation fuses into them, `graph/fuse.rs`).
//!
//! Variants (`shaders/matmul.wgsl`), chosen by [`Variant::Auto`] from the adapter: on CPU
//! adapters `regblock_vec` (24×16 outputs per thread in registers, vec4 loads, no workgroup
//! memory; row-major A and B with K and N multiples of 4, and enough rows and columns to fill
//! a few 192×128 workgroups; `regblock_vec_ta` the same for A stored `[K, M]` with M and N
//! multiples of 4, any K; `regblock_vec_tb` for B stored `[N, K]` with K a multiple of 4, any M
//! and N) and otherwise `regblock` (8×16 per thread, vec4 loads where the layout allows);
//! `gemm` on GPUs (128×128 workgroup tiles, or 64×64 where the product has few tiles; 8×8
//! outputs per thread, vec4 loads, double-buffered staging; NN, NT and TN as pipelines of one
//! entry); `tiled` (the first GPU kernel: 64×64 tiles, 4×4 per thread); and `naive` (one output
//! per thread) as the plain port of the reference. Any operand larger than one storage binding
//! (128 MiB on lavapipe) is handled by splitting the launch over batches, rows, columns or the
//! reduction dimension and binding each piece at an aligned offset. Products with few output
//! tiles and a long reduction are split along K over more workgroups (`split.rs`) where the
//! entry point can hold the partials in scratch.

mod launch;
mod layout;
pub mod reference;
mod row_sums;
mod split;
#[cfg(test)]
mod tests;
mod texel;

use crate::error::{Error, Result};
use crate::ops::common::check;
use crate::runtime::{DType, Dispatch, Runtime, Tensor};
use launch::{encode, plan, Problem, View};
#[cfg(test)]
use launch::{stride, Extent, Params};
#[cfg(test)]
use layout::vector_modes;
pub use row_sums::matmul_row_sums_into;

/// The activation fused after bias and beta.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Activation {
    #[default]
    None,
    Relu,
    /// x·Φ(x) with the exact (erf) normal CDF, as `torch.nn.GELU()` and HF Swin use.
    Gelu,
}

impl Activation {
    fn code(self) -> u32 {
        match self {
            Activation::None => 0,
            Activation::Relu => 1,
            Activation::Gelu => 2,
        }
    }
}

/// Which kernel runs. `Auto` picks `RegBlockLarge` on CPU adapters and `Gemm` elsewhere.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Variant {
    #[default]
    Auto,
    /// `regblock`: 8×16 outputs per thread, any layout (vec4 loads where it allows).
    RegBlock,
    /// `regblock_vec` (24×16 outputs per thread, one vec4 code path) for launches whose layout
    /// allows it (row-major A and B, K and N multiples of 4), `regblock_vec_ta` for `trans_a`
    /// with row-major B (M and N multiples of 4, any K), `regblock_vec_tb` for `trans_b` with
    /// row-major A (K a multiple of 4), `regblock` for the others. Under
    /// `Auto` the large block is also skipped for launches too small to fill
    /// [`LARGE_MIN_WORKGROUPS`] of its workgroups. Its pipeline costs lavapipe's JIT seconds of
    /// CPU the first time on a machine; Mesa's on-disk shader cache makes later processes start
    /// at once (docs/PERFORMANCE.md gives the times).
    RegBlockLarge,
    /// The `RegBlockLarge` layouts read from texel views (`texel.rs`, CPU adapters), 32×64
    /// tiles: what `Auto` runs on CPU adapters where a 24×16 entry applies and the views can be
    /// made, from [`LARGE_MIN_FLOPS`] up, when it pads the output less than `TexelWide`;
    /// launches outside those layouts run as `RegBlockLarge`.
    Texel,
    /// The same with 20×128 tiles, faster per FLOP: what `Auto` runs otherwise.
    TexelWide,
    /// The same with 8-row tiles (`texel_nn8`, ...), which JIT in a fraction of the time: what
    /// `Auto` runs on CPU adapters for products under [`LARGE_MIN_FLOPS`].
    TexelSmall,
    /// `gemm`: the GPU kernel (see shaders/matmul.wgsl). Its tile is 128×128, or 64×64 for
    /// launches with fewer than [`GEMM_WIDE_MIN_WORKGROUPS`] of the large tiles.
    Gemm,
    /// `tiled`: 64×64 tiles through workgroup memory, 4×4 per thread (the former GPU default).
    Tiled,
    Naive,
}

/// Rows and columns of C covered by one `regblock_vec` workgroup (8×8 threads of 24×16).
const LARGE_TILE: (u64, u64) = (192, 128);

/// The longest reduction one launch runs on CPU adapters (see `encode`).
const MAX_K_PER_LAUNCH: u64 = (crate::runtime::CPU_LOOP_ITERATIONS as u64 - 1024) & !3;

/// The same for `gemm` (tested on lavapipe under the GPU policy): each 8-k step runs its k loop,
/// the prefetch and staging loops (1–2 trips, plus the exit tests), so count 4 loop iterations
/// per k where NIR leaves them rolled; a multiple of 16 keeps launches on whole k-steps.
const GEMM_MAX_K_PER_LAUNCH: u64 = ((crate::runtime::CPU_LOOP_ITERATIONS as u64 - 1024) / 4) & !15;

/// Launches with fewer 128×128 `gemm` workgroups than this run the 64×64 form (4× the
/// workgroups): an H100 has 132 SMs, and a launch under one workgroup per SM leaves SMs idle.
pub const GEMM_WIDE_MIN_WORKGROUPS: u64 = 132;

/// Under `Auto`, launches with fewer `regblock_vec` workgroups than this (batch × row tiles ×
/// column tiles) use `regblock`: its 3× smaller tiles spread a small product over more threads.
pub const LARGE_MIN_WORKGROUPS: u64 = 4;

/// Under `Auto`, launches of fewer FLOPs (2·batch·M·N·K) than this skip the 24×16 entries and the
/// large texel entries: on CPU adapters they run the 8-row texel entries (`Variant::TexelSmall`,
/// under a second of JIT each), else `regblock`. Each large entry costs lavapipe's JIT seconds to
/// tens of seconds of CPU the first time on a machine (docs/PERFORMANCE.md, "Cold start", "Session
/// 7 A/B"), and below this size the larger block saves at most a few milliseconds per launch. The demo model's products stay under it
/// (its first image on a fresh machine then JITs no 24×16 entry); Swin-T's backbone, pixel
/// decoder and mask products are above it. A runtime opened with
/// [`RuntimeOptions::compile_for_speed`](crate::runtime::RuntimeOptions::compile_for_speed)
/// (`train`) takes the large texel entries from 2^20 FLOPs ([`crate::ops::policy::Policy`]).
pub const LARGE_MIN_FLOPS: u64 = 1 << 27;

impl Variant {
    /// The variant `Auto` resolves to on `rt`'s adapter (others are returned unchanged).
    pub fn resolve(self, rt: &Runtime) -> Variant {
        match self {
            Variant::Auto if crate::ops::policy::policy(rt).cpu_shapes() => Variant::RegBlockLarge,
            Variant::Auto => Variant::Gemm,
            v => v,
        }
    }
    fn entry(self) -> &'static str {
        match self {
            Variant::RegBlock
            | Variant::RegBlockLarge
            | Variant::Texel
            | Variant::TexelWide
            | Variant::TexelSmall => "regblock",
            Variant::Gemm => "gemm",
            Variant::Tiled => "tiled",
            Variant::Naive | Variant::Auto => "naive",
        }
    }
    /// Rows and columns of C covered by one workgroup (for `RegBlockLarge`, of its fallback:
    /// the smaller tile, so chunk planning stays within the grid limits for both entries).
    fn tile(self) -> (u64, u64) {
        match self {
            Variant::RegBlock
            | Variant::RegBlockLarge
            | Variant::Texel
            | Variant::TexelWide
            | Variant::TexelSmall => (64, 128),
            Variant::Gemm | Variant::Tiled => (64, 64),
            Variant::Naive | Variant::Auto => (16, 16),
        }
    }
}

/// Options of [`matmul`]; `Default` is a plain product (alpha 1, beta 0, no activation).
#[derive(Clone, Debug, PartialEq)]
pub struct MatmulOptions {
    pub trans_a: bool,
    pub trans_b: bool,
    pub alpha: f32,
    pub beta: f32,
    pub activation: Activation,
    pub variant: Variant,
    /// Caps the bytes bound per storage binding below the adapter's limit, so tests can reach
    /// the chunked paths with small tensors. `None` uses the adapter limit.
    #[doc(hidden)]
    pub max_binding: Option<u64>,
    /// Split-K (see `split.rs`): `None` lets the adapter's policy split products with few
    /// output tiles and a long reduction; `Some(s)` asks for `s` slices (`Some(1)`: never split),
    /// within the grid and binding limits. Only the entry points that can hold the partials
    /// (`matmul`, `matmul_scratch_into`, `matmul_epilogue_into`) split; `*_into` never does.
    pub split_k: Option<u32>,
}

impl Default for MatmulOptions {
    fn default() -> Self {
        Self {
            trans_a: false,
            trans_b: false,
            alpha: 1.0,
            beta: 0.0,
            activation: Activation::None,
            variant: Variant::Auto,
            max_binding: None,
            split_k: None,
        }
    }
}

/// The tensors a fused epilogue reads or writes besides C; all optional.
#[derive(Clone, Copy, Debug, Default)]
pub struct Epilogue<'a> {
    /// `[N]`, added to every row (before beta·C and the activation).
    pub bias: Option<&'a Tensor>,
    /// Shape of C, added after the activation: `C = act(pre) + residual` (a residual branch
    /// `x + f(x·W)` without a separate pass). Must not share C's buffer.
    pub residual: Option<&'a Tensor>,
    /// Shape of C: receives the pre-activation (what the backward of a fused activation needs).
    pub preact: Option<&'a Tensor>,
}

/// Shapes of one call, after validation.
#[derive(Clone, Debug, PartialEq)]
struct Shapes {
    /// Leading dims of C.
    lead: Vec<usize>,
    batch_a: u64,
    batch_b: u64,
    batch: u64,
    m: u64,
    n: u64,
    k: u64,
}

impl Shapes {
    fn out_shape(&self) -> Vec<usize> {
        let mut s = self.lead.clone();
        s.extend([self.m as usize, self.n as usize]);
        s
    }
    /// op(A) as a strided [M, K] matrix per batch.
    fn view_a(&self, trans: bool) -> View {
        let bs = if self.batch_a == 1 {
            0
        } else {
            self.m * self.k
        };
        if trans {
            View::new(bs, 1, self.m)
        } else {
            View::new(bs, self.k, 1)
        }
    }
    /// op(B) as a strided [K, N] matrix per batch.
    fn view_b(&self, trans: bool) -> View {
        let bs = if self.batch_b == 1 {
            0
        } else {
            self.k * self.n
        };
        if trans {
            View::new(bs, 1, self.k)
        } else {
            View::new(bs, self.n, 1)
        }
    }
    /// C (and `pre`, and the incoming gradient) as a [M, N] matrix per batch.
    fn view_c(&self) -> View {
        View::new(self.m * self.n, self.n, 1)
    }
}

fn resolve(op: &'static str, a: &Tensor, b: &Tensor, opts: &MatmulOptions) -> Result<Shapes> {
    check::f32_dtype(op, a)?;
    check::f32_dtype(op, b)?;
    let (sa, sb) = (a.shape(), b.shape());
    if sa.len() < 2 || sb.len() < 2 {
        return Err(crate::shape_err!(
            op,
            "A {sa:?} and B {sb:?} must both have rank ≥ 2"
        ));
    }
    let (lead_a, mat_a) = sa.split_at(sa.len() - 2);
    let (lead_b, mat_b) = sb.split_at(sb.len() - 2);
    let (m, ka) = if opts.trans_a {
        (mat_a[1], mat_a[0])
    } else {
        (mat_a[0], mat_a[1])
    };
    let (kb, n) = if opts.trans_b {
        (mat_b[1], mat_b[0])
    } else {
        (mat_b[0], mat_b[1])
    };
    if ka != kb {
        return Err(crate::shape_err!(
            op,
            "inner dims differ: A {sa:?} (trans_a={}) gives K={ka}, B {sb:?} (trans_b={}) gives K={kb}",
            opts.trans_a,
            opts.trans_b
        ));
    }
    let batch_a: usize = lead_a.iter().product();
    let batch_b: usize = lead_b.iter().product();
    let lead = if batch_a != 1 && batch_b != 1 {
        if lead_a != lead_b {
            return Err(crate::shape_err!(
                op,
                "batch dims of A {sa:?} and B {sb:?} differ and neither is 1"
            ));
        }
        lead_a
    } else if batch_a != 1 || (batch_b == 1 && lead_a.len() >= lead_b.len()) {
        lead_a
    } else {
        lead_b
    };
    Ok(Shapes {
        lead: lead.to_vec(),
        batch_a: batch_a as u64,
        batch_b: batch_b as u64,
        batch: batch_a.max(batch_b) as u64,
        m: m as u64,
        n: n as u64,
        k: ka as u64,
    })
}

/// Writing a buffer that is also bound for reading in the same dispatch is a wgpu validation
/// error (and a wrong result), so such calls are refused up front.
fn check_distinct(
    op: &'static str,
    outs: &[(&str, &Tensor)],
    ins: &[(&str, &Tensor)],
) -> Result<()> {
    for (i, (on, o)) in outs.iter().enumerate() {
        let clash = ins
            .iter()
            .chain(&outs[i + 1..])
            .find(|(_, t)| t.buffer() == o.buffer());
        if let Some((name, _)) = clash {
            return Err(Error::Unsupported {
                op,
                what: format!("{on} sharing its buffer with {name}"),
            });
        }
    }
    Ok(())
}

/// Computes `out = act(alpha·op(A)·op(B) + bias + beta·out)`; see the module docs for shapes.
pub fn matmul_into(
    rt: &Runtime,
    a: &Tensor,
    b: &Tensor,
    bias: Option<&Tensor>,
    out: &Tensor,
    opts: &MatmulOptions,
) -> Result<Vec<Dispatch>> {
    let ep = Epilogue {
        bias,
        ..Default::default()
    };
    Ok(forward_into("matmul", rt, a, b, &ep, out, opts, false)?.0)
}

/// [`matmul_into`], free to pick a faster plan that needs a scratch tensor; the caller keeps the
/// returned scratch alive as long as it keeps the dispatches (the graph executor records them
/// once per plan).
///
/// A product with few output tiles and a long reduction is split along K (`split.rs`): the
/// scratch holds the partial products, and one extra dispatch sums them and applies the
/// epilogue.
///
/// Where the product runs `regblock_vec` (the CPU-shaped buffer kernel), which reads B row-major, a
/// transposed 2-D B (a linear layer's weight, `[out, in]`) with enough rows of A to fill its
/// workgroups is first copied transposed into scratch: the copy is O(K·N) against the product's
/// O(M·K·N), and the product runs ~1.4× faster (docs/PERFORMANCE.md). Where texel views are
/// preferred (CPU adapters) `texel_tb` reads the weight as stored instead: the copy itself runs
/// lane by lane there, and skipping it made the Swin-T forward at 384×512 6.5% and its 384²
/// training step 4% faster (800×1216: within 1%; docs/PERFORMANCE.md, "Session 9").
pub fn matmul_scratch_into(
    rt: &Runtime,
    a: &Tensor,
    b: &Tensor,
    bias: Option<&Tensor>,
    out: &Tensor,
    opts: &MatmulOptions,
) -> Result<(Vec<Dispatch>, Option<Tensor>)> {
    let ep = Epilogue {
        bias,
        ..Default::default()
    };
    matmul_epilogue_into(rt, a, b, &ep, out, opts)
}

/// [`matmul_scratch_into`] with every epilogue tensor: `out = act(pre) + residual` where
/// `pre = alpha·op(A)·op(B) + bias + beta·out` is also written to `ep.preact` when given.
pub fn matmul_epilogue_into(
    rt: &Runtime,
    a: &Tensor,
    b: &Tensor,
    ep: &Epilogue<'_>,
    out: &Tensor,
    opts: &MatmulOptions,
) -> Result<(Vec<Dispatch>, Option<Tensor>)> {
    let rows = a.numel() / a.shape().last().copied().unwrap_or(1).max(1);
    if let ([n, k], true, false) = (b.shape(), opts.trans_b, opts.trans_a) {
        let large = opts.variant.resolve(rt) == Variant::RegBlockLarge;
        if large && !texel::preferred(rt) && rows >= 192 && n % 4 == 0 && k % 4 == 0 {
            let bt = rt.empty(&[*k, *n], DType::F32)?;
            let mut ds = crate::ops::copy::permute_into(rt, b, &[1, 0], &bt)?;
            let o = MatmulOptions {
                trans_b: false,
                ..opts.clone()
            };
            ds.extend(forward_into("matmul", rt, a, &bt, ep, out, &o, false)?.0);
            return Ok((ds, Some(bt)));
        }
    }
    forward_into("matmul", rt, a, b, ep, out, opts, true)
}

/// A product the texel `tb` entries would take but for N (a class head over K + 1 labels):
/// they store whole texels of C, so it runs into a scratch C with rows padded to a multiple of
/// 4 and is copied out (one strided copy; the buffer entry it would fall back to costs lavapipe
/// seconds of JIT on a cold start). Only plain products (no residual, pre-activation or beta),
/// for callers that keep the scratch alive with the dispatches (`split_ok`), and not under
/// split-K; `None` where this does not apply.
fn padded_c(
    rt: &Runtime,
    s: &Shapes,
    pr: &Problem<'_>,
    opts: &MatmulOptions,
) -> Result<Option<Launches>> {
    let texel = matches!(
        opts.variant,
        Variant::Auto | Variant::Texel | Variant::TexelWide | Variant::TexelSmall
    ) && texel::preferred(rt)
        && crate::ops::policy::policy(rt).cpu_shapes();
    let plain = pr.residual.is_none() && pr.pre.is_none() && pr.beta == 0.0;
    let tb = opts.trans_b && !opts.trans_a && s.k.is_multiple_of(4);
    if !(texel && plain && tb && !s.n.is_multiple_of(4) && pr.row_sums.is_none()) {
        return Ok(None);
    }
    let n4 = s.n.next_multiple_of(4);
    let mut shape = s.lead.clone();
    shape.extend([s.m as usize, n4 as usize]);
    let padded = rt.empty(&shape, DType::F32)?;
    let inner = Problem {
        c: (&padded, View::new(s.m * n4, n4, 1)),
        c_padded: true,
        ..*pr
    };
    let no_split = MatmulOptions {
        split_k: Some(1),
        ..opts.clone()
    };
    let (mut ds, _) = encode(rt, &inner, &plan(rt, &inner, &no_split, false), None)?;
    // C read out of the padded rows: the padded shape's strides over C's shape.
    let strides = crate::ops::common::layout::strides(&shape);
    let copy = crate::ops::copy::StridedCopy::gather_view(&s.out_shape(), strides, 0);
    ds.extend(crate::ops::copy::strided_copy_into(
        rt, &padded, pr.c.0, &copy,
    )?);
    Ok(Some((ds, Some(padded), false)))
}

/// Allocates C, runs [`matmul_into`] (beta must be 0: there is no C to accumulate into).
pub fn matmul(
    rt: &Runtime,
    a: &Tensor,
    b: &Tensor,
    bias: Option<&Tensor>,
    opts: &MatmulOptions,
) -> Result<Tensor> {
    let out = alloc_out("matmul", rt, a, b, opts)?;
    // Split-K partials may be dropped once submitted: the pool hands the buffer out again only
    // to work queued after this.
    let ep = Epilogue {
        bias,
        ..Default::default()
    };
    let (ds, _scratch) = forward_into("matmul", rt, a, b, &ep, &out, opts, true)?;
    rt.run(&ds);
    Ok(out)
}

fn alloc_out(
    op: &'static str,
    rt: &Runtime,
    a: &Tensor,
    b: &Tensor,
    opts: &MatmulOptions,
) -> Result<Tensor> {
    if opts.beta != 0.0 {
        return Err(Error::Unsupported {
            op,
            what: format!(
                "beta = {} without an existing output (use matmul_into)",
                opts.beta
            ),
        });
    }
    let s = resolve(op, a, b, opts)?;
    rt.empty(&s.out_shape(), DType::F32)
}

#[allow(clippy::too_many_arguments)]
fn forward_into(
    op: &'static str,
    rt: &Runtime,
    a: &Tensor,
    b: &Tensor,
    ep: &Epilogue<'_>,
    out: &Tensor,
    opts: &MatmulOptions,
    split_ok: bool,
) -> Result<(Vec<Dispatch>, Option<Tensor>)> {
    let (ds, scratch, _) = forward_rows_into(op, rt, a, b, ep, out, opts, split_ok, None)?;
    Ok((ds, scratch))
}

/// A product's dispatches, the scratch they use and whether they write the row sums.
type Launches = (Vec<Dispatch>, Option<Tensor>, bool);

/// [`forward_into`] that also asks the product to write op(A)'s row sums into `row_sums`;
/// the flag says whether it does (see `row_sums.rs`).
#[allow(clippy::too_many_arguments)]
fn forward_rows_into(
    op: &'static str,
    rt: &Runtime,
    a: &Tensor,
    b: &Tensor,
    ep: &Epilogue<'_>,
    out: &Tensor,
    opts: &MatmulOptions,
    split_ok: bool,
    row_sums: Option<&Tensor>,
) -> Result<Launches> {
    let Epilogue {
        bias,
        residual,
        preact,
    } = *ep;
    let s = resolve(op, a, b, opts)?;
    let out_shape = s.out_shape();
    check::f32_shape(op, "the output", out, &out_shape)?;
    if let Some(bias) = bias {
        check::f32_shape(op, "bias", bias, &[s.n as usize])?;
    }
    if let Some(pre) = preact {
        check::f32_shape(op, "the pre-activation output", pre, &out_shape)?;
    }
    if let Some(r) = residual {
        check::f32_shape(op, "the residual", r, &out_shape)?;
    }
    let mut ins = vec![("A", a), ("B", b)];
    ins.extend(bias.map(|t| ("bias", t)));
    ins.extend(residual.map(|t| ("the residual", t)));
    let mut outs = vec![("the output", out)];
    outs.extend(preact.map(|t| ("the pre-activation output", t)));
    check_distinct(op, &outs, &ins)?;
    let problem = Problem {
        batch: s.batch,
        m: s.m,
        n: s.n,
        k: s.k,
        a: (a, s.view_a(opts.trans_a)),
        b: (b, s.view_b(opts.trans_b)),
        c: (out, s.view_c()),
        pre: preact,
        bias,
        residual,
        row_sums,
        c_padded: false,
        alpha: opts.alpha,
        beta: opts.beta,
        act: opts.activation,
    };
    // The padded rows are a scratch tensor: only for callers that keep it (as for split-K).
    if split_ok {
        if let Some(padded) = padded_c(rt, &s, &problem, opts)? {
            return Ok(padded);
        }
    }
    let plan = plan(rt, &problem, opts, split_ok);
    let scratch = match plan.scratch_len() {
        0 => None,
        n => Some(rt.empty(&[n], DType::F32)?),
    };
    let (ds, folded) = encode(rt, &problem, &plan, scratch.as_ref())?;
    Ok((ds, scratch, folded))
}
