//! The kernels of Mask2Former's training criterion (mask2former/modeling/criterion.py and
//! matcher.py), so the loss runs where the logits are:
//!
//! - [`mask_loss_into`]: rows of sampled mask logits x [R, P] against sampled target masks
//!   t [R, P] → loss [R, 2] = (mean sigmoid-BCE, dice) per row and stats [R, 2] = (2·Σ s·t + 1,
//!   Σ s + Σ t + 1) with s = sigmoid(x); backward [`mask_loss_backward_into`] overwrites dx [R, P].
//! - [`class_loss_into`]: cross-entropy of class logits x [R, C] against u32 targets k [R] →
//!   loss [R] = logsumexp(x) − x[k] and lse [R]; backward [`class_loss_backward_into`]. Weights
//!   (the no-object weight, the mean over rows) are products of the caller.
//! - [`match_cost_into`]: the matcher's cost of every (image, query, target) over the points of
//!   the image (class, sigmoid-BCE and dice costs) → cost [B, Q, T]. No backward: the matching
//!   carries no gradient.
//! - Point selection (no gradient): [`uniform_into`] (counter-based uniform draws from a seed
//!   tensor, so each step draws anew without a new plan), [`importance_points_into`] (per row,
//!   the K most uncertain of M candidates by a radix-select top-k, then the uniform extras) and
//!   [`gather_sample_into`] (each row's matched target mask, bit-packed binary masks, sampled at
//!   its points).
//!
//! The row losses run one 64-thread workgroup per row (tree sums in workgroup memory) on every
//! adapter: rows are few (≤ batch · queries) and long (12544 points), so the per-row tree is the
//! shape for GPUs, and on llvmpipe each invocation loops `P/64` times, well under its loop budget
//! (checked: [`crate::ops::policy`]). Backward kernels run one thread per element. Every tensor
//! is bound whole and must fit one storage binding (a `TooLarge` error names it otherwise).
//! `reference.rs` is the f64 specification; `model::criterion`'s tests also check these kernels
//! against the host criterion.

pub mod reference;
mod sampling;
#[cfg(test)]
mod tests;

pub use sampling::{gather_sample_into, importance_points_into, pack_masks, uniform, uniform_into};

use crate::error::{Error, Result};
use crate::ops::common::check;
use crate::ops::policy;
use crate::runtime::{DType, Dispatch, Runtime, Tensor};

/// Threads per workgroup of the row kernels (the shaders' `WG`).
const WG: usize = 64;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct RowParams {
    rows: u32,
    len: u32,
    _p: [u32; 2],
}

/// The matcher's cost weights (`cost_class`, `cost_mask`, `cost_dice`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MatchWeights {
    pub class: f32,
    pub mask: f32,
    pub dice: f32,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct MatchParams {
    batch: u32,
    queries: u32,
    targets: u32,
    points: u32,
    classes: u32,
    cost_class: f32,
    cost_mask: f32,
    cost_dice: f32,
}

/// `[R, L]` of a rank-2 f32 tensor named `name`, with both sides non-empty.
fn rows_of(op: &'static str, name: &str, x: &Tensor) -> Result<(usize, usize)> {
    check::f32_rank(op, name, x, 2)?;
    let (r, l) = (x.shape()[0], x.shape()[1]);
    if r == 0 || l == 0 {
        return Err(crate::shape_err!(
            op,
            "{name} {:?} has an empty side",
            x.shape()
        ));
    }
    Ok((r, l))
}

/// A u32 tensor of shape `expected`.
fn u32_operand(op: &'static str, name: &str, t: &Tensor, expected: &[usize]) -> Result<()> {
    if t.dtype() != DType::U32 {
        return Err(Error::DType {
            op,
            expected: DType::U32,
            got: t.dtype(),
        });
    }
    check::shape(op, name, t, expected)
}

/// Every tensor fits one binding, and one invocation's loop of `len / 64` steps fits the
/// adapter's loop budget.
fn limits(rt: &Runtime, op: &'static str, named: &[(&str, &Tensor)], len: usize) -> Result<()> {
    for (name, t) in named {
        check::binding(rt, op, name, t)?;
    }
    check::u32_range(
        op,
        "elements",
        named.iter().map(|t| t.1.numel()).max().unwrap_or(0) as u64,
    )?;
    let budget = policy::policy(rt).budget();
    if len.div_ceil(WG) > budget {
        return Err(Error::Unsupported {
            op,
            what: format!(
                "rows of {len} values: one invocation would loop {} times, past this adapter's \
                 loop budget of {budget}",
                len.div_ceil(WG)
            ),
        });
    }
    Ok(())
}

/// One workgroup per row, `n` rows (split over the grid's x and y past its limit).
fn row_groups(rt: &Runtime, n: usize) -> [u32; 3] {
    rt.grid((n * WG) as u64, WG as u32)
}

/// Dispatches for the point losses of x [R, P] against t [R, P]: loss [R, 2] (mean BCE, dice)
/// and stats [R, 2] (the dice numerator and denominator), both overwritten.
pub fn mask_loss_into(
    rt: &Runtime,
    x: &Tensor,
    t: &Tensor,
    loss: &Tensor,
    stats: &Tensor,
) -> Result<Vec<Dispatch>> {
    const OP: &str = "criterion::mask_loss";
    let (r, p) = rows_of(OP, "x", x)?;
    check::f32_shape(OP, "t", t, &[r, p])?;
    check::f32_shape(OP, "loss", loss, &[r, 2])?;
    check::f32_shape(OP, "stats", stats, &[r, 2])?;
    limits(rt, OP, &[("x", x), ("t", t)], p)?;
    let k = rt.kernel(&crate::shader!("criterion_mask"), "forward", &[])?;
    let params = RowParams {
        rows: r as u32,
        len: p as u32,
        _p: [0; 2],
    };
    let bind = [x.binding(), t.binding(), loss.binding(), stats.binding()];
    Ok(vec![rt.dispatch(&k, &params, &bind, row_groups(rt, r))])
}

/// [`mask_loss_into`] into new tensors: (loss [R, 2], stats [R, 2]).
pub fn mask_loss(rt: &Runtime, x: &Tensor, t: &Tensor) -> Result<(Tensor, Tensor)> {
    let r = x.shape().first().copied().unwrap_or(0);
    let loss = rt.empty(&[r, 2], DType::F32)?;
    let stats = rt.empty(&[r, 2], DType::F32)?;
    rt.run(&mask_loss_into(rt, x, t, &loss, &stats)?);
    Ok((loss, stats))
}

/// Dispatches for the gradient of [`mask_loss_into`] with respect to x from the forward's stats
/// and dloss [R, 2] (overwrites dx [R, P]; the labels get none).
pub fn mask_loss_backward_into(
    rt: &Runtime,
    x: &Tensor,
    t: &Tensor,
    stats: &Tensor,
    dloss: &Tensor,
    dx: &Tensor,
) -> Result<Vec<Dispatch>> {
    const OP: &str = "criterion::mask_loss_backward";
    let (r, p) = rows_of(OP, "x", x)?;
    check::f32_shape(OP, "t", t, &[r, p])?;
    check::f32_shape(OP, "stats", stats, &[r, 2])?;
    check::f32_shape(OP, "dloss", dloss, &[r, 2])?;
    check::f32_shape(OP, "dx", dx, &[r, p])?;
    limits(rt, OP, &[("x", x), ("t", t), ("dx", dx)], 0)?;
    let k = rt.kernel(&crate::shader!("criterion_mask_backward"), "backward", &[])?;
    let params = RowParams {
        rows: r as u32,
        len: p as u32,
        _p: [0; 2],
    };
    let bind = [
        x.binding(),
        t.binding(),
        stats.binding(),
        dloss.binding(),
        dx.binding(),
    ];
    Ok(vec![rt.dispatch(
        &k,
        &params,
        &bind,
        rt.grid((r * p) as u64, WG as u32),
    )])
}

/// [`mask_loss_backward_into`] into a new dx [R, P].
pub fn mask_loss_backward(
    rt: &Runtime,
    x: &Tensor,
    t: &Tensor,
    stats: &Tensor,
    dloss: &Tensor,
) -> Result<Tensor> {
    let dx = rt.empty(x.shape(), DType::F32)?;
    rt.run(&mask_loss_backward_into(rt, x, t, stats, dloss, &dx)?);
    Ok(dx)
}

/// Dispatches for the cross-entropy of x [R, C] against targets [R] (u32): loss [R] and the
/// log-sum-exp lse [R], both overwritten. A target ≥ C gives a NaN loss for its row.
pub fn class_loss_into(
    rt: &Runtime,
    x: &Tensor,
    targets: &Tensor,
    loss: &Tensor,
    lse: &Tensor,
) -> Result<Vec<Dispatch>> {
    const OP: &str = "criterion::class_loss";
    let (r, c) = rows_of(OP, "logits", x)?;
    u32_operand(OP, "targets", targets, &[r])?;
    check::f32_shape(OP, "loss", loss, &[r])?;
    check::f32_shape(OP, "lse", lse, &[r])?;
    limits(rt, OP, &[("logits", x)], c)?;
    let k = rt.kernel(&crate::shader!("criterion_class"), "forward", &[])?;
    let params = RowParams {
        rows: r as u32,
        len: c as u32,
        _p: [0; 2],
    };
    let bind = [
        x.binding(),
        targets.binding(),
        loss.binding(),
        lse.binding(),
    ];
    Ok(vec![rt.dispatch(&k, &params, &bind, row_groups(rt, r))])
}

/// [`class_loss_into`] into new tensors: (loss [R], lse [R]).
pub fn class_loss(rt: &Runtime, x: &Tensor, targets: &Tensor) -> Result<(Tensor, Tensor)> {
    let r = x.shape().first().copied().unwrap_or(0);
    let loss = rt.empty(&[r], DType::F32)?;
    let lse = rt.empty(&[r], DType::F32)?;
    rt.run(&class_loss_into(rt, x, targets, &loss, &lse)?);
    Ok((loss, lse))
}

/// Dispatches for the gradient of [`class_loss_into`] with respect to the logits from the
/// forward's lse and dloss [R] (overwrites dx [R, C]).
pub fn class_loss_backward_into(
    rt: &Runtime,
    x: &Tensor,
    targets: &Tensor,
    lse: &Tensor,
    dloss: &Tensor,
    dx: &Tensor,
) -> Result<Vec<Dispatch>> {
    const OP: &str = "criterion::class_loss_backward";
    let (r, c) = rows_of(OP, "logits", x)?;
    u32_operand(OP, "targets", targets, &[r])?;
    check::f32_shape(OP, "lse", lse, &[r])?;
    check::f32_shape(OP, "dloss", dloss, &[r])?;
    check::f32_shape(OP, "dx", dx, &[r, c])?;
    limits(rt, OP, &[("logits", x), ("dx", dx)], 0)?;
    let k = rt.kernel(&crate::shader!("criterion_class_backward"), "backward", &[])?;
    let params = RowParams {
        rows: r as u32,
        len: c as u32,
        _p: [0; 2],
    };
    let bind = [
        x.binding(),
        targets.binding(),
        lse.binding(),
        dloss.binding(),
        dx.binding(),
    ];
    Ok(vec![rt.dispatch(
        &k,
        &params,
        &bind,
        rt.grid((r * c) as u64, WG as u32),
    )])
}

/// [`class_loss_backward_into`] into a new dx [R, C].
pub fn class_loss_backward(
    rt: &Runtime,
    x: &Tensor,
    targets: &Tensor,
    lse: &Tensor,
    dloss: &Tensor,
) -> Result<Tensor> {
    let dx = rt.empty(x.shape(), DType::F32)?;
    rt.run(&class_loss_backward_into(rt, x, targets, lse, dloss, &dx)?);
    Ok(dx)
}

/// Dispatches for the matcher's cost [B, Q, T] (overwritten) from the sampled mask logits
/// x [B, Q, P], the sampled target masks labels [B, T, P], the class probabilities
/// probs [B, Q, C] and the target classes [B, T] (u32, each < C: a class past the row gives a
/// cost of 0, as a NaN cost does).
pub fn match_cost_into(
    rt: &Runtime,
    x: &Tensor,
    labels: &Tensor,
    probs: &Tensor,
    classes: &Tensor,
    cost: &Tensor,
    weights: MatchWeights,
) -> Result<Vec<Dispatch>> {
    const OP: &str = "criterion::match_cost";
    check::f32_rank(OP, "x", x, 3)?;
    let (b, q, p) = (x.shape()[0], x.shape()[1], x.shape()[2]);
    check::f32_rank(OP, "labels", labels, 3)?;
    let t = labels.shape()[1];
    check::f32_shape(OP, "labels", labels, &[b, t, p])?;
    check::f32_rank(OP, "probs", probs, 3)?;
    let c = probs.shape()[2];
    check::f32_shape(OP, "probs", probs, &[b, q, c])?;
    u32_operand(OP, "classes", classes, &[b, t])?;
    check::f32_shape(OP, "cost", cost, &[b, q, t])?;
    if b * q * t * p * c == 0 {
        return Err(crate::shape_err!(
            OP,
            "empty operand: x {:?}, labels {:?}, probs {:?}",
            x.shape(),
            labels.shape(),
            probs.shape()
        ));
    }
    limits(
        rt,
        OP,
        &[
            ("x", x),
            ("labels", labels),
            ("probs", probs),
            ("cost", cost),
        ],
        p,
    )?;
    let k = rt.kernel(&crate::shader!("criterion_match"), "main", &[])?;
    let params = MatchParams {
        batch: b as u32,
        queries: q as u32,
        targets: t as u32,
        points: p as u32,
        classes: c as u32,
        cost_class: weights.class,
        cost_mask: weights.mask,
        cost_dice: weights.dice,
    };
    let bind = [
        x.binding(),
        labels.binding(),
        probs.binding(),
        classes.binding(),
        cost.binding(),
    ];
    Ok(vec![rt.dispatch(
        &k,
        &params,
        &bind,
        row_groups(rt, b * q * t),
    )])
}

/// [`match_cost_into`] into a new cost [B, Q, T].
pub fn match_cost(
    rt: &Runtime,
    x: &Tensor,
    labels: &Tensor,
    probs: &Tensor,
    classes: &Tensor,
    weights: MatchWeights,
) -> Result<Tensor> {
    const OP: &str = "criterion::match_cost";
    check::f32_rank(OP, "x", x, 3)?;
    check::f32_rank(OP, "labels", labels, 3)?;
    let (b, q, t) = (x.shape()[0], x.shape()[1], labels.shape()[1]);
    let cost = rt.empty(&[b, q, t], DType::F32)?;
    rt.run(&match_cost_into(
        rt, x, labels, probs, classes, &cost, weights,
    )?);
    Ok(cost)
}
