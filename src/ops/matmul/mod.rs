//! Batched matrix multiply with a fused epilogue.
//!
//! There is no matmul backward kernel: the graph differentiates a product with two more
//! products (`graph/ops`), which run on these same kernels.
//!
//! ```text
//! pre[b] = alpha · op(A[b]) · op(B[b]) + bias + beta · C[b]       C[b] = act(pre[b])
//! ```
//! - A is `[.., M, K]` (`[.., K, M]` with `trans_a`), B is `[.., K, N]` (`[.., N, K]` with
//!   `trans_b`); all tensors row-major and contiguous. The leading dims are the batch: they must
//!   match, or one side's batch is 1 (rank 2, or leading dims all 1) and broadcasts. C is
//!   `lead ++ [M, N]` where `lead` is the leading dims of the batched side.
//! - `bias` is `[N]`, added to every row. `act` is none, ReLU or GELU (exact erf form).
//! - `beta ≠ 0` accumulates into the existing C;
//!   `beta = 0` never reads C.
//!
//! Entry points: [`matmul`] / [`matmul_into`], [`matmul_with_preact`] /
//! [`matmul_with_preact_into`] (also writes `pre`, which differentiating a fused activation
//! needs), and [`matmul_scratch_into`] (may pick a plan with a scratch tensor; the graph uses it).
//!
//! Variants (`shaders/matmul.wgsl`), chosen by [`Variant::Auto`] from the adapter: on CPU
//! adapters `regblock_vec` (24×16 outputs per thread in registers, vec4 loads, no workgroup
//! memory; row-major A and B with K and N multiples of 4, and enough rows and columns to fill
//! a few 192×128 workgroups; `regblock_vec_ta` the same for A stored `[K, M]` with M and N
//! multiples of 4, any K) and otherwise `regblock` (8×16 per thread, vec4 loads where the
//! layout allows); `tiled` on GPUs (64×64 workgroup tiles through workgroup memory); and
//! `naive` (one output per thread) as the plain port of the reference. Any operand larger than
//! one storage binding (128 MiB on lavapipe) is handled by splitting the launch over batches,
//! rows, columns or the reduction dimension and binding each piece at an aligned offset.

pub mod reference;
#[cfg(test)]
mod tests;

use crate::error::{Error, Result};
use crate::ops::common::check;
use crate::runtime::{DType, Dispatch, Runtime, Tensor};

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

/// Which kernel runs. `Auto` picks `RegBlockLarge` on CPU adapters and `Tiled` elsewhere.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Variant {
    #[default]
    Auto,
    /// `regblock`: 8×16 outputs per thread, any layout (vec4 loads where it allows).
    RegBlock,
    /// `regblock_vec` (24×16 outputs per thread, one vec4 code path) for launches whose layout
    /// allows it (row-major A and B, K and N multiples of 4), `regblock_vec_ta` for `trans_a`
    /// with row-major B (M and N multiples of 4, any K), `regblock` for the others. Under
    /// `Auto` the large block is also skipped for launches too small to fill
    /// [`LARGE_MIN_WORKGROUPS`] of its workgroups. Its pipeline costs lavapipe's JIT seconds of
    /// CPU the first time on a machine; Mesa's on-disk shader cache makes later processes start
    /// at once (docs/PERFORMANCE.md gives the times).
    RegBlockLarge,
    Tiled,
    Naive,
}

/// Rows and columns of C covered by one `regblock_vec` workgroup (8×8 threads of 24×16).
const LARGE_TILE: (u64, u64) = (192, 128);

/// The longest reduction one launch runs on CPU adapters (see `encode`).
const MAX_K_PER_LAUNCH: u64 = (crate::runtime::CPU_LOOP_ITERATIONS as u64 - 1024) & !3;

/// Under `Auto`, launches with fewer `regblock_vec` workgroups than this (batch × row tiles ×
/// column tiles) use `regblock`: its 3× smaller tiles spread a small product over more threads.
pub const LARGE_MIN_WORKGROUPS: u64 = 4;

impl Variant {
    /// The variant `Auto` resolves to on `rt`'s adapter (others are returned unchanged).
    pub fn resolve(self, rt: &Runtime) -> Variant {
        match self {
            Variant::Auto if rt.caps().is_cpu => Variant::RegBlockLarge,
            Variant::Auto => Variant::Tiled,
            v => v,
        }
    }
    fn entry(self) -> &'static str {
        match self {
            Variant::RegBlock | Variant::RegBlockLarge => "regblock",
            Variant::Tiled => "tiled",
            Variant::Naive | Variant::Auto => "naive",
        }
    }
    /// Rows and columns of C covered by one workgroup (for `RegBlockLarge`, of its fallback:
    /// the smaller tile, so chunk planning stays within the grid limits for both entries).
    fn tile(self) -> (u64, u64) {
        match self {
            Variant::RegBlock | Variant::RegBlockLarge => (64, 128),
            Variant::Tiled => (64, 64),
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
        }
    }
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
    forward_into("matmul", rt, a, b, bias, out, None, opts)
}

/// [`matmul_into`], free to pick a faster plan that needs a scratch tensor; the caller keeps the
/// returned scratch alive as long as it keeps the dispatches (the graph executor records them
/// once per plan).
///
/// On CPU adapters the fastest kernel (`regblock_vec`) reads B row-major, so a transposed 2-D B
/// (a linear layer's weight, `[out, in]`) with enough rows of A to fill its workgroups is first
/// copied transposed into scratch: the copy is O(K·N) against the product's O(M·K·N), and the
/// product runs ~1.4× faster (docs/PERFORMANCE.md).
pub fn matmul_scratch_into(
    rt: &Runtime,
    a: &Tensor,
    b: &Tensor,
    bias: Option<&Tensor>,
    out: &Tensor,
    opts: &MatmulOptions,
) -> Result<(Vec<Dispatch>, Option<Tensor>)> {
    let rows = a.numel() / a.shape().last().copied().unwrap_or(1).max(1);
    if let ([n, k], true, false) = (b.shape(), opts.trans_b, opts.trans_a) {
        if rt.caps().is_cpu && rows >= 192 && n % 4 == 0 && k % 4 == 0 {
            let bt = rt.empty(&[*k, *n], DType::F32)?;
            let mut ds = crate::ops::copy::permute_into(rt, b, &[1, 0], &bt)?;
            let o = MatmulOptions {
                trans_b: false,
                ..opts.clone()
            };
            ds.extend(matmul_into(rt, a, &bt, bias, out, &o)?);
            return Ok((ds, Some(bt)));
        }
    }
    Ok((matmul_into(rt, a, b, bias, out, opts)?, None))
}

/// Like [`matmul_into`], also writing the pre-activation `alpha·op(A)·op(B) + bias + beta·C`
/// into `preact` (shape of `out`): the backward of a fused activation needs it.
pub fn matmul_with_preact_into(
    rt: &Runtime,
    a: &Tensor,
    b: &Tensor,
    bias: Option<&Tensor>,
    out: &Tensor,
    preact: &Tensor,
    opts: &MatmulOptions,
) -> Result<Vec<Dispatch>> {
    forward_into("matmul", rt, a, b, bias, out, Some(preact), opts)
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
    rt.run(&matmul_into(rt, a, b, bias, &out, opts)?);
    Ok(out)
}

/// Allocates C and the pre-activation, runs [`matmul_with_preact_into`]; returns `(C, pre)`.
pub fn matmul_with_preact(
    rt: &Runtime,
    a: &Tensor,
    b: &Tensor,
    bias: Option<&Tensor>,
    opts: &MatmulOptions,
) -> Result<(Tensor, Tensor)> {
    let out = alloc_out("matmul", rt, a, b, opts)?;
    let pre = rt.empty(out.shape(), DType::F32)?;
    rt.run(&matmul_with_preact_into(rt, a, b, bias, &out, &pre, opts)?);
    Ok((out, pre))
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
    bias: Option<&Tensor>,
    out: &Tensor,
    preact: Option<&Tensor>,
    opts: &MatmulOptions,
) -> Result<Vec<Dispatch>> {
    let s = resolve(op, a, b, opts)?;
    let out_shape = s.out_shape();
    check::f32_shape(op, "the output", out, &out_shape)?;
    if let Some(bias) = bias {
        check::f32_shape(op, "bias", bias, &[s.n as usize])?;
    }
    if let Some(pre) = preact {
        check::f32_shape(op, "the pre-activation output", pre, &out_shape)?;
    }
    let mut ins = vec![("A", a), ("B", b)];
    ins.extend(bias.map(|t| ("bias", t)));
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
        alpha: opts.alpha,
        beta: opts.beta,
        act: opts.activation,
    };
    encode(rt, &problem, opts)
}

/// A strided matrix per batch: element (b, r, c) at `off + b·bs + r·rs + c·cs` (in elements).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct View {
    off: u64,
    bs: u64,
    rs: u64,
    cs: u64,
}

impl View {
    fn new(bs: u64, rs: u64, cs: u64) -> Self {
        Self { off: 0, bs, rs, cs }
    }
}

/// `c = act(alpha·a·b + bias + beta·c)` over `batch` batches of [m, k]·[k, n], before chunking.
struct Problem<'a> {
    batch: u64,
    m: u64,
    n: u64,
    k: u64,
    a: (&'a Tensor, View),
    b: (&'a Tensor, View),
    c: (&'a Tensor, View),
    /// Written with C's view.
    pre: Option<&'a Tensor>,
    bias: Option<&'a Tensor>,
    alpha: f32,
    beta: f32,
    act: Activation,
}

/// Mirrors `Params` in shaders/matmul.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    m: u32,
    n: u32,
    k: u32,
    flags: u32,
    a_off: u32,
    a_bs: u32,
    a_rs: u32,
    a_cs: u32,
    b_off: u32,
    b_bs: u32,
    b_rs: u32,
    b_cs: u32,
    c_off: u32,
    c_bs: u32,
    c_rs: u32,
    p_off: u32,
    bias_off: u32,
    alpha: f32,
    beta: f32,
    _pad: u32,
}

const FLAG_BIAS: u32 = 1;
const FLAG_READ_C: u32 = 2;
const FLAG_WRITE_PRE: u32 = 4;

/// Extents of one launch: batches, rows, columns and reduction length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Extent {
    b: u64,
    m: u64,
    n: u64,
    k: u64,
}

/// Bytes a binding needs to cover `count = (batches, rows, cols)` of `v`, with the worst-case
/// slack from aligning its start down and its end up to 16 bytes.
fn span_bytes(v: &View, (nb, nr, nc): (u64, u64, u64), align: u64) -> u64 {
    if nb == 0 || nr == 0 || nc == 0 {
        return 16;
    }
    ((nb - 1) * v.bs + (nr - 1) * v.rs + (nc - 1) * v.cs + 1) * 4 + align + 16
}

/// Halves a chunk length, keeping it a multiple of 4 (the vector paths need that) while large.
fn halve(x: u64) -> u64 {
    if x > 8 {
        x.div_ceil(2).div_ceil(4) * 4
    } else {
        x - 1
    }
}

/// Chooses chunk extents so that every binding fits in `limit` bytes and every grid dimension
/// fits the adapter. Splits batches first, then the dimension that is outermost in memory for
/// the operand that is too large.
fn plan_chunks(pr: &Problem<'_>, tile: (u64, u64), max_wg: u64, align: u64, limit: u64) -> Extent {
    let mut e = Extent {
        b: pr.batch.min(max_wg),
        m: pr.m.min(max_wg * tile.0),
        n: pr.n.min(max_wg * tile.1),
        k: pr.k,
    };
    let (va, vb, vc) = (pr.a.1, pr.b.1, pr.c.1);
    loop {
        let sa = span_bytes(&va, (e.b, e.m, e.k), align);
        let sb = span_bytes(&vb, (e.b, e.k, e.n), align);
        let sc = span_bytes(&vc, (e.b, e.m, e.n), align);
        if sa <= limit && sb <= limit && sc <= limit {
            return e;
        }
        if e.b > 1 {
            e.b = e.b.div_ceil(2);
            continue;
        }
        // Shrink the dim with the larger stride first: that is what makes a chunk contiguous.
        // (The limit is at least 4 KiB, so a 1×1 block always fits and both never reach 1.)
        let shrink = |rows: &mut u64, cols: &mut u64, v: &View| {
            if (v.rs >= v.cs && *rows > 1) || *cols <= 1 {
                *rows = halve(*rows);
            } else {
                *cols = halve(*cols);
            }
        };
        if sa > limit {
            shrink(&mut e.m, &mut e.k, &va);
        } else if sb > limit {
            shrink(&mut e.k, &mut e.n, &vb);
        } else {
            shrink(&mut e.m, &mut e.n, &vc);
        }
    }
}

/// A binding covering a sub-block of `t` seen through `v`, and the element offset of the block's
/// first element inside that binding.
fn bind_block<'t>(
    t: &'t Tensor,
    v: &View,
    start: (u64, u64, u64),
    count: (u64, u64, u64),
    align: u64,
) -> (crate::runtime::Binding<'t>, u64) {
    let first = v.off + start.0 * v.bs + start.1 * v.rs + start.2 * v.cs;
    let last = if count.0 == 0 || count.1 == 0 || count.2 == 0 {
        first
    } else {
        first + (count.0 - 1) * v.bs + (count.1 - 1) * v.rs + (count.2 - 1) * v.cs
    };
    let byte_start = first * 4 / align * align;
    // Rounded up to 16 bytes for the vec4 view; pooled buffers are sized in 64-byte classes.
    let byte_end = ((last + 1) * 4).div_ceil(16) * 16;
    let byte_end = byte_end.min(t.buffer().size()).max(byte_start + 4);
    (
        t.binding_range(byte_start, byte_end - byte_start),
        first - byte_start / 4,
    )
}

fn stride(s: u64, count: u64) -> u32 {
    // A stride only matters when more than one index is launched along it, and then it is
    // smaller than the binding, so it fits in u32.
    if count > 1 {
        s as u32
    } else {
        0
    }
}

fn encode(rt: &Runtime, pr: &Problem<'_>, opts: &MatmulOptions) -> Result<Vec<Dispatch>> {
    if pr.batch == 0 || pr.m == 0 || pr.n == 0 {
        return Ok(Vec::new());
    }
    let caps = rt.caps();
    let limit = binding_limit(rt, opts);
    debug_assert_eq!(pr.c.1.cs, 1, "the kernels write C contiguously along n");
    let align = caps.storage_offset_alignment.max(16) as u64;
    let variant = opts.variant.resolve(rt);
    let auto = opts.variant == Variant::Auto;
    let tile = variant.tile();
    let max_wg = caps.max_workgroups_per_dim as u64;
    let mut e = plan_chunks(pr, tile, max_wg, align.max(64), limit);
    if caps.is_cpu {
        // llvmpipe ends an invocation's loops after CPU_LOOP_ITERATIONS iterations in all;
        // regblock_vec_ta loops once per k (the epilogue's loops take a few hundred more), so
        // longer reductions are split into accumulating launches (a multiple of 4 for the
        // vec4 paths).
        e.k = e.k.min(MAX_K_PER_LAUNCH);
    }

    let mut dispatches = Vec::new();
    for b0 in (0..pr.batch).step_by(e.b as usize) {
        let nb = e.b.min(pr.batch - b0);
        for m0 in (0..pr.m).step_by(e.m as usize) {
            let nm = e.m.min(pr.m - m0);
            for n0 in (0..pr.n).step_by(e.n as usize) {
                let nn = e.n.min(pr.n - n0);
                // k == 0 still launches once: C = bias + beta·C.
                let mut k0 = 0;
                loop {
                    let nk = e.k.min(pr.k - k0);
                    let chunk = Extent {
                        b: nb,
                        m: nm,
                        n: nn,
                        k: nk,
                    };
                    let at = (b0, m0, n0, k0);
                    dispatches.push(launch(rt, pr, variant, auto, at, chunk, align)?);
                    k0 += nk;
                    if k0 >= pr.k {
                        break;
                    }
                }
            }
        }
    }
    Ok(dispatches)
}

fn launch(
    rt: &Runtime,
    pr: &Problem<'_>,
    variant: Variant,
    auto: bool,
    (b0, m0, n0, k0): (u64, u64, u64, u64),
    e: Extent,
    align: u64,
) -> Result<Dispatch> {
    let (ta, va) = pr.a;
    let (tb, vb) = pr.b;
    let (tc, vc) = pr.c;
    let (bind_a, a_off) = bind_block(ta, &va, (b0, m0, k0), (e.b, e.m, e.k), align);
    let (bind_b, b_off) = bind_block(tb, &vb, (b0, k0, n0), (e.b, e.k, e.n), align);
    let (bind_c, c_off) = bind_block(tc, &vc, (b0, m0, n0), (e.b, e.m, e.n), align);
    let first_k = k0 == 0;
    let last_k = k0 + e.k >= pr.k;
    let mut flags = 0;
    if first_k && pr.bias.is_some() {
        flags |= FLAG_BIAS;
    }
    // Later reduction chunks add to the partial sum already in C.
    let beta = if first_k { pr.beta } else { 1.0 };
    if beta != 0.0 {
        flags |= FLAG_READ_C;
    }
    let (bind_p, p_off) = match pr.pre {
        Some(t) if last_k => {
            flags |= FLAG_WRITE_PRE;
            bind_block(t, &vc, (b0, m0, n0), (e.b, e.m, e.n), align)
        }
        // Never written (flag off); the binding slot still needs a buffer.
        _ => (bind_c, c_off),
    };
    if last_k {
        flags |= pr.act.code() << 4;
    }
    // The bias covers this launch's columns; no wider than a row of C, so it fits too.
    let (bind_bias, bias_off) = match pr.bias {
        Some(t) => bind_block(t, &View::new(0, 0, 1), (0, 0, n0), (1, 1, e.n), align),
        None => (bind_a, 0),
    };
    let params = Params {
        m: e.m as u32,
        n: e.n as u32,
        k: e.k as u32,
        flags,
        a_off: a_off as u32,
        a_bs: stride(va.bs, e.b),
        a_rs: stride(va.rs, e.m),
        a_cs: stride(va.cs, e.k),
        b_off: b_off as u32,
        b_bs: stride(vb.bs, e.b),
        b_rs: stride(vb.rs, e.k),
        b_cs: stride(vb.cs, e.n),
        c_off: c_off as u32,
        c_bs: stride(vc.bs, e.b),
        c_rs: stride(vc.rs, e.m),
        p_off: p_off as u32,
        bias_off: bias_off as u32,
        alpha: pr.alpha,
        beta,
        _pad: 0,
    };
    let large = match variant {
        Variant::RegBlockLarge => large_entry(&params, e, auto),
        _ => None,
    };
    let kernel = match variant {
        _ if large.is_some() => rt.kernel(&crate::shader!("matmul"), large.unwrap(), &[])?,
        Variant::RegBlock | Variant::RegBlockLarge => {
            let (am, bm) = vector_modes(&params, e);
            rt.kernel(
                &crate::shader!("matmul"),
                "regblock",
                &[("A_MODE", am as f64), ("B_MODE", bm as f64)],
            )?
        }
        v => rt.kernel(&crate::shader!("matmul"), v.entry(), &[])?,
    };
    let (tm, tn) = if large.is_some() {
        LARGE_TILE
    } else {
        variant.tile()
    };
    let workgroups = [e.n.div_ceil(tn) as u32, e.m.div_ceil(tm) as u32, e.b as u32];
    Ok(rt.dispatch(
        &kernel,
        &params,
        &[bind_a, bind_b, bind_bias, bind_c, bind_p],
        workgroups,
    ))
}

/// The regblock load modes (see shaders/matmul.wgsl) this launch's layout and alignment allow.
fn vector_modes(p: &Params, e: Extent) -> (u32, u32) {
    let a_ok = p.a_off.is_multiple_of(4) && p.a_bs.is_multiple_of(4);
    let a_mode = if a_ok && p.a_cs <= 1 && p.a_rs.is_multiple_of(4) && e.k >= 4 {
        1
    } else if a_ok && p.a_rs <= 1 && p.a_cs.is_multiple_of(4) && e.m.is_multiple_of(4) && e.k >= 4 {
        2
    } else {
        0
    };
    let b_ok = p.b_off.is_multiple_of(4) && p.b_bs.is_multiple_of(4);
    let b_mode =
        if b_ok && p.b_cs <= 1 && p.b_rs.is_multiple_of(4) && e.n.is_multiple_of(4) && e.k >= 4 {
            1
        } else if b_ok && p.b_rs <= 1 && p.b_cs.is_multiple_of(4) && e.k >= 4 {
            2
        } else {
            0
        };
    (a_mode, b_mode)
}

/// The 24×16 entry a `RegBlockLarge` launch runs, if any: `regblock_vec` when both operands
/// are in the row-major vec4 layouts (A_MODE = B_MODE = 1) with K a multiple of 4 (it has no
/// scalar k tail); `regblock_vec_ta` when A is stored [K, M] (`trans_a`: unit row stride, M and
/// the k stride multiples of 4) and B is row-major with N a multiple of 4, any K. Under `Auto`
/// either needs at least [`LARGE_MIN_WORKGROUPS`] of its workgroups. `None`: `regblock`.
fn large_entry(p: &Params, e: Extent, auto: bool) -> Option<&'static str> {
    let wgs = e.b * e.m.div_ceil(LARGE_TILE.0) * e.n.div_ceil(LARGE_TILE.1);
    if auto && wgs < LARGE_MIN_WORKGROUPS {
        return None;
    }
    if vector_modes(p, e) == (1, 1) && e.k.is_multiple_of(4) {
        return Some("regblock_vec");
    }
    let a_ok = p.a_off.is_multiple_of(4) && p.a_bs.is_multiple_of(4);
    let a_t = a_ok && p.a_rs <= 1 && p.a_cs.is_multiple_of(4) && e.m.is_multiple_of(4);
    let b_ok = p.b_off.is_multiple_of(4) && p.b_bs.is_multiple_of(4);
    let b_r = b_ok && p.b_cs <= 1 && p.b_rs.is_multiple_of(4) && e.n.is_multiple_of(4);
    (a_t && b_r).then_some("regblock_vec_ta")
}

fn binding_limit(rt: &Runtime, opts: &MatmulOptions) -> u64 {
    let max = rt.caps().max_storage_binding;
    opts.max_binding.unwrap_or(max).clamp(4096, max)
}
