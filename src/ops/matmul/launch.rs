//! Encoding one validated product into dispatches: strided views of the operands, chunking
//! past the binding limit and the adapter's grid, and choosing the kernel entry per launch.

use super::layout::{gemm_constants, large_entry, vector_modes};
use super::split::{self, SplitK};
use super::texel;
use super::{
    Activation, MatmulOptions, Variant, GEMM_MAX_K_PER_LAUNCH, GEMM_WIDE_MIN_WORKGROUPS,
    LARGE_TILE, MAX_K_PER_LAUNCH,
};
use crate::error::Result;
use crate::runtime::{Dispatch, Runtime, Shader, Tensor};

/// The buffer entries: `shaders/matmul.wgsl` appended to the parameter block, bindings and
/// epilogue it shares with the texel entries (`shaders/matmul_common.wgsl`), followed by the
/// `gemm` entry's workgroup tile (`shaders/gemm_tile.wgsl`).
const SHADER: Shader = crate::shader!("matmul" = "matmul_common", "matmul", "gemm_tile");
/// A strided matrix per batch: element (b, r, c) at `off + b·bs + r·rs + c·cs` (in elements).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct View {
    pub(super) off: u64,
    pub(super) bs: u64,
    pub(super) rs: u64,
    pub(super) cs: u64,
}

impl View {
    pub(super) fn new(bs: u64, rs: u64, cs: u64) -> Self {
        Self { off: 0, bs, rs, cs }
    }
}

/// `c = act(alpha·a·b + bias + beta·c)` over `batch` batches of [m, k]·[k, n], before chunking.
#[derive(Clone, Copy)]
pub(super) struct Problem<'a> {
    pub(super) batch: u64,
    pub(super) m: u64,
    pub(super) n: u64,
    pub(super) k: u64,
    pub(super) a: (&'a Tensor, View),
    pub(super) b: (&'a Tensor, View),
    pub(super) c: (&'a Tensor, View),
    /// Written with C's view.
    pub(super) pre: Option<&'a Tensor>,
    pub(super) bias: Option<&'a Tensor>,
    /// Added after the activation; C's view.
    pub(super) residual: Option<&'a Tensor>,
    /// `[m]`: Σ_k op(A)[m, k], written by the product where it can (`encode`).
    pub(super) row_sums: Option<&'a Tensor>,
    /// C's rows are padded to whole texels that may be overwritten past n (a scratch the
    /// caller copies out of), so the texel entries take an N that is not a multiple of 4.
    pub(super) c_padded: bool,
    pub(super) alpha: f32,
    pub(super) beta: f32,
    pub(super) act: Activation,
}

/// Mirrors `Params` in shaders/matmul.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub(super) struct Params {
    pub(super) m: u32,
    pub(super) n: u32,
    pub(super) k: u32,
    pub(super) flags: u32,
    pub(super) a_off: u32,
    pub(super) a_bs: u32,
    pub(super) a_rs: u32,
    pub(super) a_cs: u32,
    pub(super) b_off: u32,
    pub(super) b_bs: u32,
    pub(super) b_rs: u32,
    pub(super) b_cs: u32,
    pub(super) c_off: u32,
    pub(super) c_bs: u32,
    pub(super) c_rs: u32,
    pub(super) p_off: u32,
    pub(super) bias_off: u32,
    pub(super) alpha: f32,
    pub(super) beta: f32,
    pub(super) ksplit: u32,
    pub(super) kslice: u32,
    pub(super) r_off: u32,
    pub(super) s_off: u32,
    pub(super) _pad: u32,
}

const FLAG_BIAS: u32 = 1;
const FLAG_READ_C: u32 = 2;
const FLAG_WRITE_PRE: u32 = 4;
const FLAG_RESIDUAL: u32 = 8;

/// Extents of one launch: batches, rows, columns and reduction length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Extent {
    pub(super) b: u64,
    pub(super) m: u64,
    pub(super) n: u64,
    pub(super) k: u64,
}

/// Bytes a binding needs to cover `count = (batches, rows, cols)` of `v`, with the worst-case
/// slack from aligning its start down and its end up to 16 bytes.
fn span_bytes(v: &View, (nb, nr, nc): (u64, u64, u64), align: u64) -> u64 {
    if nb == 0 || nr == 0 || nc == 0 {
        return 16;
    }
    ((nb - 1) * v.bs + (nr - 1) * v.rs + (nc - 1) * v.cs + 1) * 4 + align + 16
}

/// Halves a chunk length, keeping it a multiple of 4 (the vector paths need that) down to 4.
fn halve(x: u64) -> u64 {
    if x > 4 {
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
    let byte_end = byte_end.min(t.capacity()).max(byte_start + 4);
    (
        t.binding_range(byte_start, byte_end - byte_start),
        first - byte_start / 4,
    )
}

pub(super) fn stride(s: u64, count: u64) -> u32 {
    // A stride only matters when more than one index is launched along it, and then it is
    // smaller than the binding, so it fits in u32.
    if count > 1 {
        s as u32
    } else {
        0
    }
}

/// How a product is cut into launches: the chunk extents, the kernel family and, where the
/// product has few output tiles and a long reduction, its split-K.
pub(super) struct Plan {
    variant: Variant,
    /// The tile edge `gemm` runs with (128 or 64), chosen from the first chunk's tile count.
    gemm_tile: u64,
    auto: bool,
    align: u64,
    e: Extent,
    split: Option<SplitK>,
    c_padded: bool,
}

impl Plan {
    /// Elements of scratch the split-K partials need (0 without a split): one chunk's
    /// batches × slices × rows × columns (the first chunk is the largest).
    pub(super) fn scratch_len(&self) -> usize {
        self.split.map_or(0, |s| {
            (self.e.b * s.slices(self.e.k) * self.e.m * self.e.n) as usize
        })
    }
}

/// Plans the launches of `pr`; `split_ok`: the caller can hold a scratch tensor for split-K.
pub(super) fn plan(rt: &Runtime, pr: &Problem<'_>, opts: &MatmulOptions, split_ok: bool) -> Plan {
    let caps = rt.caps();
    let limit = binding_limit(rt, opts);
    debug_assert_eq!(pr.c.1.cs, 1, "the kernels write C contiguously along n");
    let align = caps.storage_offset_alignment.max(16) as u64;
    let variant = opts.variant.resolve(rt);
    let max_wg = caps.max_workgroups_per_dim as u64;
    let mut e = plan_chunks(pr, variant.tile(), max_wg, align.max(64), limit);
    let policy = crate::ops::policy::policy(rt);
    if policy.loop_budget.is_some() {
        // llvmpipe ends an invocation's loops after CPU_LOOP_ITERATIONS iterations in all;
        // regblock_vec_ta loops once per k (the epilogue's loops take a few hundred more), so
        // longer reductions are split into accumulating launches (a multiple of 4 for the
        // vec4 paths).
        e.k = e.k.min(match variant {
            Variant::Gemm => GEMM_MAX_K_PER_LAUNCH,
            _ => MAX_K_PER_LAUNCH,
        });
    }
    let wide_wgs = e.b * e.m.div_ceil(128) * e.n.div_ceil(128);
    let gemm_tile = if wide_wgs >= GEMM_WIDE_MIN_WORKGROUPS {
        128
    } else {
        64
    };
    let tile = match variant {
        Variant::RegBlockLarge | Variant::Texel | Variant::TexelWide | Variant::TexelSmall => {
            LARGE_TILE
        }
        Variant::Gemm => (gemm_tile, gemm_tile),
        v => v.tile(),
    };
    let launch = split::Launch {
        b: e.b,
        m: e.m,
        n: e.n,
        k: e.k,
        tile,
        max_wg,
        binding_limit: limit,
    };
    let split = match (split_ok, opts.split_k) {
        (false, _) | (true, Some(0 | 1)) => None,
        (true, forced) => split::choose(&policy, &launch, forced),
    };
    Plan {
        variant,
        gemm_tile,
        auto: opts.variant == Variant::Auto,
        align,
        e,
        split,
        c_padded: pr.c_padded,
    }
}

/// Records the launches of `plan`; `scratch` holds at least [`Plan::scratch_len`] elements.
/// Also says whether the launches write `pr.row_sums`: the texel `ta` entries fold them into a
/// product that runs as one launch (one chunk, no split-K); otherwise the caller reduces.
pub(super) fn encode(
    rt: &Runtime,
    pr: &Problem<'_>,
    plan: &Plan,
    scratch: Option<&Tensor>,
) -> Result<(Vec<Dispatch>, bool)> {
    if pr.batch == 0 || pr.m == 0 || pr.n == 0 {
        return Ok((Vec::new(), false));
    }
    let e = plan.e;
    let split = match (plan.split, scratch) {
        (Some(s), Some(t)) if t.numel() >= plan.scratch_len() => Some((s, t)),
        _ => None,
    };
    let one_launch = (e.b, e.m, e.n, e.k) == (pr.batch, pr.m, pr.n, pr.k)
        && pr.batch == 1
        && split.is_none_or(|(s, _)| s.slices(e.k) < 2);
    if let (Some(rows), true) = (pr.row_sums, one_launch) {
        // The whole product as the one launch the loop below would record, asked to fold.
        return launch(rt, pr, plan, (0, 0, 0, 0), e, None, Some(rows));
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
                    dispatches.extend(launch(rt, pr, plan, at, chunk, split, None)?.0);
                    k0 += nk;
                    if k0 >= pr.k {
                        break;
                    }
                }
            }
        }
    }
    Ok((dispatches, false))
}

/// One chunk's dispatches: the product, or under split-K the partial products and their sum;
/// `row_sums` (only for a whole one-batch problem): the product also writes them where its
/// kernel can (the second value says whether it did).
fn launch(
    rt: &Runtime,
    pr: &Problem<'_>,
    plan: &Plan,
    (b0, m0, n0, k0): (u64, u64, u64, u64),
    e: Extent,
    split: Option<(SplitK, &Tensor)>,
    row_sums: Option<&Tensor>,
) -> Result<(Vec<Dispatch>, bool)> {
    // Over ~80 lines: binding the three blocks, the parameter block, then the product or split-K.
    let align = plan.align;
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
        // Never written (flag off); the slot still needs a buffer, one that overlaps no other.
        _ => (rt.unused_binding(), 0),
    };
    if last_k {
        flags |= pr.act.code() << 4;
    }
    // Read-only like A, so A's binding fills the slot when there is no residual.
    let (bind_r, r_off) = match pr.residual {
        Some(t) if last_k => {
            flags |= FLAG_RESIDUAL;
            bind_block(t, &vc, (b0, m0, n0), (e.b, e.m, e.n), align)
        }
        _ => (bind_a, 0),
    };
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
        ksplit: 1,
        kslice: e.k.max(1) as u32,
        r_off: r_off as u32,
        ..bytemuck::Zeroable::zeroed()
    };
    let binds = [bind_a, bind_b, bind_bias, bind_c, bind_p, bind_r];
    if let Some((split, scratch)) = split.filter(|(s, _)| s.slices(e.k) >= 2) {
        let d = split_launch(rt, plan, &params, e, split, scratch, binds)?;
        return Ok((d, false));
    }
    let rows = row_sums.map(|t| bind_block(t, &View::new(0, 1, 1), (0, 0, 0), (1, e.m, 1), align));
    let params = Params {
        s_off: rows.as_ref().map_or(0, |r| r.1 as u32),
        ..params
    };
    let (d, folded) = product(rt, plan, &params, e, 1, binds, rows.map(|r| r.0))?;
    Ok((vec![d], folded))
}

/// A chunk under split-K: slice s of batch b writes its partial product into scratch slot
/// b·S + s with the plain epilogue (alpha 1, nothing else), then `splitk_sum` sums the slices
/// and applies the chunk's real epilogue (`params`, bound to `binds`).
fn split_launch(
    rt: &Runtime,
    plan: &Plan,
    params: &Params,
    e: Extent,
    split: SplitK,
    scratch: &Tensor,
    binds: [crate::runtime::Binding<'_>; 6],
) -> Result<Vec<Dispatch>> {
    let [bind_a, bind_b, bind_bias, bind_c, bind_p, bind_r] = binds;
    let slices = split.slices(e.k);
    let plane = e.m * e.n;
    let (bind_s, _) = bind_block(
        scratch,
        &View::new(0, 0, 1),
        (0, 0, 0),
        (1, 1, e.b * slices * plane),
        plan.align,
    );
    let partial = Params {
        flags: 0,
        alpha: 1.0,
        beta: 0.0,
        c_off: 0,
        c_bs: plane as u32,
        c_rs: e.n as u32,
        p_off: 0,
        ksplit: slices as u32,
        kslice: split.kslice as u32,
        ..*params
    };
    // The bias, pre-activation and residual slots are never used here (flags 0).
    let binds = [bind_a, bind_b, bind_a, bind_s, bind_s, bind_a];
    let (first, _) = product(rt, plan, &partial, e, slices, binds, None)?;
    let sum = Params {
        k: e.b as u32,
        a_off: 0,
        a_bs: (slices * plane) as u32,
        a_rs: e.n as u32,
        a_cs: plane as u32,
        ksplit: slices as u32,
        ..*params
    };
    let kernel = rt.kernel(&SHADER, "splitk_sum", &[])?;
    let binds = [bind_s, bind_s, bind_bias, bind_c, bind_p, bind_r];
    let grid = rt.grid(e.b * plane, 64);
    Ok(vec![first, rt.dispatch(&kernel, &sum, &binds, grid)])
}

/// The product dispatch of one chunk, `slices` launches side by side along z per batch, and
/// whether it also writes the row sums bound at `row_sums` (`params.s_off`): only a texel `ta`
/// entry does.
fn product(
    rt: &Runtime,
    plan: &Plan,
    params: &Params,
    e: Extent,
    slices: u64,
    binds: [crate::runtime::Binding<'_>; 6],
    row_sums: Option<crate::runtime::Binding<'_>>,
) -> Result<(Dispatch, bool)> {
    let variant = plan.variant;
    let large = match variant {
        Variant::RegBlockLarge | Variant::Texel | Variant::TexelWide | Variant::TexelSmall => {
            large_entry(params, e, e.b * slices, plan.auto)
        }
        _ => None,
    };
    // Texel entries have small tiles, so unlike the 24×16 ones they also take launches with few
    // workgroups. Under `Auto` the 8-row entries run products under `LARGE_MIN_FLOPS`: the large
    // ones would cost a small model's first run seconds of JIT for little gain.
    let flops = 2 * e.b * slices * e.m * e.n * e.k;
    let texel_variant = matches!(
        variant,
        Variant::Texel | Variant::TexelWide | Variant::TexelSmall
    );
    let use_texel = texel_variant || (plan.auto && texel::preferred(rt));
    let size = match variant {
        Variant::TexelSmall => texel::Size::Small,
        Variant::Texel => texel::Size::Tall,
        Variant::TexelWide => texel::Size::Wide,
        _ if flops < crate::ops::policy::policy(rt).large_tile_flops => texel::Size::Small,
        _ => texel::large_size(e),
    };
    let layout = match variant {
        Variant::RegBlockLarge | Variant::Texel | Variant::TexelWide | Variant::TexelSmall
            if use_texel =>
        {
            large_entry(params, e, e.b * slices, false)
        }
        _ => None,
    };
    if let Some(large) = layout {
        let max_wg = rt.caps().max_workgroups_per_dim as u64;
        if let Some(entry) = texel::entry(large, params, e, max_wg, size, plan.c_padded) {
            if let Some(d) = texel::dispatch(rt, entry, params, e, slices, binds, row_sums)? {
                return Ok(d);
            }
        }
    }
    let kernel = match variant {
        _ if large.is_some() => rt.kernel(&SHADER, large.unwrap(), &[])?,
        Variant::RegBlock
        | Variant::RegBlockLarge
        | Variant::Texel
        | Variant::TexelWide
        | Variant::TexelSmall => {
            let (am, bm) = vector_modes(params, e);
            rt.kernel(
                &SHADER,
                "regblock",
                &[("A_MODE", am as f64), ("B_MODE", bm as f64)],
            )?
        }
        Variant::Gemm => rt.kernel(&SHADER, "gemm", &gemm_constants(params, plan.gemm_tile))?,
        v => rt.kernel(&SHADER, v.entry(), &[])?,
    };
    let (tm, tn) = match variant {
        _ if large.is_some() => LARGE_TILE,
        Variant::Gemm => (plan.gemm_tile, plan.gemm_tile),
        v => v.tile(),
    };
    let z = (e.b * slices) as u32;
    let workgroups = [e.n.div_ceil(tn) as u32, e.m.div_ceil(tm) as u32, z];
    Ok((rt.dispatch(&kernel, params, &binds, workgroups), false))
}

fn binding_limit(rt: &Runtime, opts: &MatmulOptions) -> u64 {
    let max = rt.caps().max_storage_binding;
    opts.max_binding.unwrap_or(max).clamp(4096, max)
}
