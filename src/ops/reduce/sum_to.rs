//! Broadcast gradients: reducing an upstream gradient to an input's shape (`sum_to_shape`), the
//! backward of every broadcast in the graph (bias gradients, broadcast operands of add/mul).

use super::{reduce_into, Reduce, Variant};
use crate::error::Result;
use crate::ops::common::layout::{self, expect_dtype, pack, plan, u, Access};
use crate::ops::common::texel;
use crate::runtime::{DType, Dispatch, Runtime, Tensor, TexelSlot};
use std::sync::OnceLock;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct SumParams {
    n: u32,
    start: u32,
    krank: u32,
    rrank: u32,
    win_dy: u32,
    win_g: u32,
    r0: u32,
    rn: u32,
    accumulate: u32,
    kept: u32,
    _p: [u32; 2],
    kshape: [u32; 8],
    kd: [u32; 8],
    rshape: [u32; 8],
    rd: [u32; 8],
}

/// dy's index spaces for a sum to `target`: the kept dims (one thread each, with dy's strides
/// and the output's contiguous strides) and the reduced dims (with dy's strides), collapsed.
struct SumSpaces {
    kshape: Vec<usize>,
    kdy: Vec<usize>,
    kout: Vec<usize>,
    rshape: Vec<usize>,
    rdy: Vec<usize>,
}

impl SumSpaces {
    /// The kernel parameters of these spaces, with no range, window or count set yet.
    fn params(&self, op: &'static str, kept: usize) -> Result<SumParams> {
        Ok(SumParams {
            n: 0,
            start: 0,
            krank: u(self.kshape.len()),
            rrank: u(self.rshape.len()),
            win_dy: 0,
            win_g: 0,
            r0: 0,
            rn: 0,
            accumulate: 0,
            kept: u(kept),
            _p: [0; 2],
            kshape: pack(op, &self.kshape)?,
            kd: pack(op, &self.kdy)?,
            rshape: pack(op, &self.rshape)?,
            rd: pack(op, &self.rdy)?,
        })
    }
}

fn sum_spaces(op: &'static str, out: &[usize], target: &[usize]) -> Result<SumSpaces> {
    if target.len() > out.len() || layout::broadcast_shape(op, &[target, out])? != out {
        return Err(crate::shape_err!(
            op,
            "gradient shape {target:?} does not broadcast to the output shape {out:?}"
        ));
    }
    let sd = layout::strides(out);
    let off = out.len() - target.len();
    let kept: Vec<usize> = (0..out.len())
        .filter(|&d| d >= off && target[d - off] == out[d])
        .collect();
    let reduced: Vec<usize> = (0..out.len()).filter(|d| !kept.contains(d)).collect();
    let pick = |v: &[usize], dims: &[usize]| dims.iter().map(|&d| v[d]).collect::<Vec<_>>();
    let kshape = pick(out, &kept);
    let kg = layout::strides(&kshape);
    let (kshape, mut kst) = layout::collapse(&kshape, &[&pick(&sd, &kept), &kg]);
    let (rshape, mut rst) = layout::collapse(&pick(out, &reduced), &[&pick(&sd, &reduced)]);
    Ok(SumSpaces {
        kshape,
        kout: kst.pop().unwrap_or_default(),
        kdy: kst.pop().unwrap_or_default(),
        rshape,
        rdy: rst.pop().unwrap_or_default(),
    })
}

/// Dispatches writing `Σ dy` over the dims along which `out`'s shape broadcasts to dy's shape
/// (the gradient of a broadcast; e.g. a bias gradient `[N, C] → [C]`). Overwrites `out`.
pub fn sum_to_shape_into(rt: &Runtime, dy: &Tensor, out: &Tensor) -> Result<Vec<Dispatch>> {
    const OP: &str = "sum_to_shape";
    expect_dtype(OP, dy, DType::F32)?;
    expect_dtype(OP, out, DType::F32)?;
    layout::no_alias(OP, &[dy], out)?;
    let sp = sum_spaces(OP, dy.shape(), out.shape())?;
    let mut acc_d = Access::strided(dy.numel(), sp.kdy.clone());
    acc_d.extra = sp
        .rshape
        .iter()
        .zip(&sp.rdy)
        .map(|(&n, &s)| (n - 1) * s)
        .sum();
    let acc_g = Access::strided(out.numel(), sp.kout.clone());
    let chunks = plan(rt, OP, &sp.kshape, &[&acc_d, &acc_g])?;
    // 4 kept elements a thread where they are 4 consecutive values of dy everywhere.
    let four = |v: &usize| v.is_multiple_of(4);
    let v4 = sp.kdy.last() == Some(&1)
        && sp.kshape.last().is_some_and(four)
        && sp.kdy.iter().rev().skip(1).all(four)
        && sp.rdy.iter().all(four)
        && layout::texel_aligned(&chunks);
    let (entry, per_wg, bind) = match v4 {
        true => (
            "main_v4",
            4 * layout::WG,
            layout::bind_vec4 as layout::Binder,
        ),
        false => ("main", layout::WG, layout::bind as layout::Binder),
    };
    let k = rt.kernel(&crate::shader!("sum_to_shape"), entry, &[])?;
    let p = SumParams {
        rn: u32::MAX,
        ..sp.params(OP, out.numel())?
    };
    // One launch walks the whole reduced space per thread, except where that would pass the
    // adapter's loop budget (llvmpipe): there, pieces of `per_launch` reduced indices each, the
    // later ones adding to the first (same order of summation within each piece).
    let total: usize = sp.rshape.iter().product();
    let per_launch = match crate::ops::policy::policy(rt).loop_budget {
        Some(budget) => reduced_per_launch(&sp.rshape, budget),
        None => usize::MAX,
    };
    let mut d = Vec::new();
    let mut r0 = 0;
    loop {
        let rn = per_launch.min(total - r0);
        d.extend(layout::launch_with(
            rt,
            &k,
            &chunks,
            &[dy, out],
            per_wg,
            bind,
            |c| SumParams {
                n: u(c.n),
                start: u(c.start),
                win_dy: u(c.windows[0].offset),
                win_g: u(c.windows[1].offset),
                r0: u(r0),
                rn: if per_launch == usize::MAX {
                    u32::MAX
                } else {
                    u(rn)
                },
                accumulate: (r0 > 0) as u32,
                ..p
            },
        ));
        r0 += rn;
        if r0 >= total {
            break;
        }
    }
    Ok(d)
}

/// Shortest segment of the two-pass sum: shorter ones cost more in the second pass and in
/// per-thread setup than they save.
const MIN_SEGMENT: usize = 64;

/// The segment length of a two-pass sum of `reduced` indices into `kept` outputs, or `None` where
/// one thread per output keeps the adapter busy, the reduction is short, or dy is larger than one
/// binding (the one-pass launcher chunks those).
fn segment_length(rt: &Runtime, kept: usize, reduced: usize, dy_bytes: u64) -> Option<usize> {
    // Up to 3 loop iterations a term: the outer loop, the odometer's, and a carry now and then.
    let segments = crate::ops::policy::policy(rt).sum_segments(kept, reduced, MIN_SEGMENT, 3);
    if kept == 0 || segments < 2 || dy_bytes > rt.caps().max_storage_binding {
        return None;
    }
    Some(reduced.div_ceil(segments))
}

/// [`sum_to_shape_into`], in two passes where the reduction is long and the outputs few (a
/// bias gradient: 96 columns summed over 2·256² rows): segment partial sums `[S, kept]` over
/// `S·kept` threads into a scratch tensor, then a sum over the segments (`reduce`'s kernel).
/// Returns the scratch, which must outlive the dispatches (`None`: one pass).
pub fn sum_to_shape_scratch_into(
    rt: &Runtime,
    dy: &Tensor,
    out: &Tensor,
) -> Result<(Vec<Dispatch>, Option<Tensor>)> {
    const OP: &str = "sum_to_shape";
    expect_dtype(OP, dy, DType::F32)?;
    expect_dtype(OP, out, DType::F32)?;
    layout::no_alias(OP, &[dy], out)?;
    let sp = sum_spaces(OP, dy.shape(), out.shape())?;
    let (kept, reduced) = (out.numel(), sp.rshape.iter().product::<usize>());
    let Some(seg) = segment_length(rt, kept, reduced, dy.size_bytes()) else {
        return Ok((sum_to_shape_into(rt, dy, out)?, None));
    };
    let segments = reduced.div_ceil(seg);
    let partial = rt.empty(&[segments, kept], DType::F32)?;
    let first = match rows_texel(rt, &sp, dy, &partial, seg, segments)? {
        Some(d) => d,
        None => {
            let k = rt.kernel(&crate::shader!("sum_to_shape"), "partials", &[])?;
            let p = SumParams {
                n: u(segments * kept),
                rn: u(seg),
                ..sp.params(OP, kept)?
            };
            rt.dispatch(
                &k,
                &p,
                &[dy.binding(), partial.binding()],
                rt.grid((segments * kept) as u64, layout::WG),
            )
        }
    };
    let mut d = vec![first];
    let flat = out.reshape(&[kept])?;
    d.extend(reduce_into(
        rt,
        Reduce::Sum,
        &partial,
        0,
        &flat,
        Variant::Auto,
    )?);
    Ok((d, Some(partial)))
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct RowsParams {
    rows: u32,
    c4: u32,
    rn: u32,
    segments: u32,
}

static ROWS_TEXEL: OnceLock<String> = OnceLock::new();

/// The partial sums of a two-pass sum through `shaders/sum_rows.wgsl`'s texel form, where it
/// applies: CPU adapters (texel views preferred), dy a row-major `[R, C]` matrix summed over its
/// rows (one kept dim of unit stride, one reduced dim of stride C), C % 4 == 0, and a texel view
/// of dy can be made. `None`: the strided `partials` kernel.
fn rows_texel(
    rt: &Runtime,
    sp: &SumSpaces,
    dy: &Tensor,
    partial: &Tensor,
    seg: usize,
    segments: usize,
) -> Result<Option<Dispatch>> {
    let [c] = sp.kshape[..] else {
        return Ok(None);
    };
    let rows_of_c = sp.kdy == [1] && sp.rshape.len() == 1 && sp.rdy == [c];
    if !texel::preferred(rt) || !rows_of_c || !c.is_multiple_of(4) {
        return Ok(None);
    }
    let Ok(view) = rt.texel_view(TexelSlot::A, dy.binding()) else {
        return Ok(None);
    };
    let shader = texel::shader(
        &ROWS_TEXEL,
        "sum_rows+texel",
        crate::shader!("sum_rows"),
        &["dy"],
    );
    let k = rt.kernel(&shader, "partials", &[])?;
    let p = RowsParams {
        rows: u(sp.rshape[0]),
        c4: u(c / 4),
        rn: u(seg),
        segments: u(segments),
    };
    let grid = rt.grid((segments * c / 4) as u64, 64);
    Ok(Some(rt.dispatch_texels(
        &k,
        &p,
        &[(2, partial.binding())],
        vec![(1, view)],
        grid,
    )))
}

/// Reduced indices one gradient thread may walk within llvmpipe's loop budget: each step costs
/// one pass of the outer loop, one of the odometer loop, and one more per carry (a carry past
/// dim j happens once every product-of-the-inner-sizes steps).
fn reduced_per_launch(rshape: &[usize], budget: usize) -> usize {
    let mut per_step = 2.0;
    let mut period = 1.0;
    for &n in rshape.iter().rev().take(rshape.len().saturating_sub(1)) {
        period *= n.max(1) as f64;
        per_step += 1.0 / period;
    }
    // Setup loops (index decompositions, at most 8 dims each) and the carries of a partial
    // period at each end: a few hundred iterations at most.
    let budget = budget.saturating_sub(512) as f64;
    ((budget / per_step) as usize).max(1)
}

/// [`sum_to_shape_scratch_into`] in a new tensor of `shape`.
pub fn sum_to_shape(rt: &Runtime, dy: &Tensor, shape: &[usize]) -> Result<Tensor> {
    let out = rt.empty(shape, DType::F32)?;
    let (d, _scratch) = sum_to_shape_scratch_into(rt, dy, &out)?;
    rt.run(&d);
    Ok(out)
}
