//! The training criterion's ops (`crate::ops::criterion`, `crate::ops::resample`): point
//! sampling, the per-row mask and class losses with their backward nodes, and the matcher's
//! cost (no gradient: the matching is a constant of the step).

use std::sync::Arc;

use super::infer_err;
use crate::graph::{Grads, Graph, InferResult, Io, Op, Result, TensorInfo, Value};
use crate::ops::criterion::{self as crit, MatchWeights};
use crate::ops::resample::{point_sample_backward_into, point_sample_into, Scatter};
use crate::runtime::{Dispatch, Runtime};
use crate::DType;

/// Mask2Former's `point_sample`: (x [N, C, H, W], coords [N, P, 2] in [0, 1], x then y) →
/// [N, C, P], bilinear with `align_corners = False` and zero padding. The coords get no
/// gradient (they are drawn, or chosen by a detached uncertainty).
#[derive(Debug, Clone)]
pub struct PointSample;

impl Op for PointSample {
    op_header!("point_sample", inputs: 2);
    fn infer(&self, i: &[&TensorInfo]) -> InferResult {
        let [n, c, _, _] = i[0].shape[..] else {
            return infer_err("x must be [N, C, H, W]");
        };
        match i[1].shape[..] {
            [nc, p, 2] if nc == n => Ok(vec![TensorInfo::f32(&[n, c, p])]),
            _ => infer_err(format!("coords must be [{n}, P, 2]")),
        }
    }
    fn dispatches(&self, rt: &Runtime, io: &Io<'_>) -> crate::Result<Vec<Dispatch>> {
        point_sample_into(rt, io.inputs[0], io.inputs[1], io.outputs[0])
    }
    fn backward(&self, g: &mut Graph, x: &[Value], _y: &[Value], dy: &[Option<Value>]) -> Grads {
        let Some(dy) = dy[0] else {
            return Ok(vec![None, None]);
        };
        let dx = g.apply1(PointSampleBackward, &[x[0], x[1], dy])?;
        Ok(vec![Some(dx), None])
    }
}

/// (x, coords, dy) → dx of [`PointSample`] (a scatter-add; the coords' gradient is scratch).
#[derive(Debug, Clone)]
pub struct PointSampleBackward;

impl Op for PointSampleBackward {
    op_header!("point_sample_backward", inputs: 3);
    fn infer(&self, i: &[&TensorInfo]) -> InferResult {
        Ok(vec![i[0].clone()])
    }
    fn dispatches(&self, rt: &Runtime, io: &Io<'_>) -> crate::Result<Vec<Dispatch>> {
        let [x, coords, dy] = io.inputs_n()?;
        let d_coords = rt.empty(coords.shape(), DType::F32)?;
        let ds =
            point_sample_backward_into(rt, x, coords, dy, io.outputs[0], &d_coords, Scatter::Auto)?;
        io.keep_alive(d_coords);
        Ok(ds)
    }
}

/// Point losses per row: (x [R, P] sampled logits, t [R, P] sampled targets) → (loss [R, 2] =
/// (mean sigmoid-BCE, dice), stats [R, 2], saved for the backward). The targets get no gradient.
#[derive(Debug, Clone)]
pub struct MaskLoss;

impl Op for MaskLoss {
    op_header!("mask_loss", inputs: 2);
    fn infer(&self, i: &[&TensorInfo]) -> InferResult {
        let [r, _] = i[0].shape[..] else {
            return infer_err("x must be [R, P]");
        };
        if i[1].shape != i[0].shape || i[1].dtype != DType::F32 {
            return infer_err("t must be f32 of x's shape");
        }
        Ok(vec![TensorInfo::f32(&[r, 2]), TensorInfo::f32(&[r, 2])])
    }
    fn dispatches(&self, rt: &Runtime, io: &Io<'_>) -> crate::Result<Vec<Dispatch>> {
        let [x, t] = io.inputs_n()?;
        let [loss, stats] = io.outputs_n()?;
        crit::mask_loss_into(rt, x, t, loss, stats)
    }
    fn backward(&self, g: &mut Graph, x: &[Value], y: &[Value], dy: &[Option<Value>]) -> Grads {
        let Some(dl) = dy[0] else {
            return Ok(vec![None, None]);
        };
        let dx = g.apply1(MaskLossBackward, &[x[0], x[1], y[1], dl])?;
        Ok(vec![Some(dx), None])
    }
}

/// (x, t, stats, dloss) → dx of [`MaskLoss`].
#[derive(Debug, Clone)]
pub struct MaskLossBackward;

impl Op for MaskLossBackward {
    op_header!("mask_loss_backward", inputs: 4);
    fn infer(&self, i: &[&TensorInfo]) -> InferResult {
        Ok(vec![i[0].clone()])
    }
    fn dispatches(&self, rt: &Runtime, io: &Io<'_>) -> crate::Result<Vec<Dispatch>> {
        let [x, t, stats, dl] = io.inputs_n()?;
        crit::mask_loss_backward_into(rt, x, t, stats, dl, io.outputs[0])
    }
}

/// Cross-entropy per row: (x [R, C] logits, targets [R] u32) → (loss [R], lse [R], saved for
/// the backward).
#[derive(Debug, Clone)]
pub struct ClassLoss;

impl Op for ClassLoss {
    op_header!("class_loss", inputs: 2);
    fn infer(&self, i: &[&TensorInfo]) -> InferResult {
        let [r, _] = i[0].shape[..] else {
            return infer_err("logits must be [R, C]");
        };
        if i[1].shape != [r] || i[1].dtype != DType::U32 {
            return infer_err(format!("targets must be u32 [{r}]"));
        }
        Ok(vec![TensorInfo::f32(&[r]), TensorInfo::f32(&[r])])
    }
    fn dispatches(&self, rt: &Runtime, io: &Io<'_>) -> crate::Result<Vec<Dispatch>> {
        let [x, k] = io.inputs_n()?;
        let [loss, lse] = io.outputs_n()?;
        crit::class_loss_into(rt, x, k, loss, lse)
    }
    fn backward(&self, g: &mut Graph, x: &[Value], y: &[Value], dy: &[Option<Value>]) -> Grads {
        let Some(dl) = dy[0] else {
            return Ok(vec![None, None]);
        };
        let dx = g.apply1(ClassLossBackward, &[x[0], x[1], y[1], dl])?;
        Ok(vec![Some(dx), None])
    }
}

/// (x, targets, lse, dloss) → dx of [`ClassLoss`].
#[derive(Debug, Clone)]
pub struct ClassLossBackward;

impl Op for ClassLossBackward {
    op_header!("class_loss_backward", inputs: 4);
    fn infer(&self, i: &[&TensorInfo]) -> InferResult {
        Ok(vec![i[0].clone()])
    }
    fn dispatches(&self, rt: &Runtime, io: &Io<'_>) -> crate::Result<Vec<Dispatch>> {
        let [x, k, lse, dl] = io.inputs_n()?;
        crit::class_loss_backward_into(rt, x, k, lse, dl, io.outputs[0])
    }
}

/// The matcher's cost: (x [B, Q, P] sampled mask logits, labels [B, T, P] sampled target
/// masks, probs [B, Q, C], classes [B, T] u32) → cost [B, Q, T]. No gradient flows through it.
#[derive(Debug, Clone)]
pub struct MatchCost(pub MatchWeights);

impl Op for MatchCost {
    op_header!("match_cost", inputs: 4);
    fn infer(&self, i: &[&TensorInfo]) -> InferResult {
        let [b, q, p] = i[0].shape[..] else {
            return infer_err("x must be [B, Q, P]");
        };
        let [_, t, _] = i[1].shape[..] else {
            return infer_err("labels must be [B, T, P]");
        };
        if i[1].shape != [b, t, p] {
            return infer_err(format!("labels must be [{b}, T, {p}]"));
        }
        if i[2].shape.len() != 3 || i[2].shape[..2] != [b, q] {
            return infer_err(format!("probs must be [{b}, {q}, C]"));
        }
        if i[3].shape != [b, t] || i[3].dtype != DType::U32 {
            return infer_err(format!("classes must be u32 [{b}, {t}]"));
        }
        Ok(vec![TensorInfo::f32(&[b, q, t])])
    }
    fn dispatches(&self, rt: &Runtime, io: &Io<'_>) -> crate::Result<Vec<Dispatch>> {
        let [x, l, p, k] = io.inputs_n()?;
        crit::match_cost_into(rt, x, l, p, k, io.outputs[0], self.0)
    }
    fn backward(&self, _g: &mut Graph, _x: &[Value], _y: &[Value], _dy: &[Option<Value>]) -> Grads {
        Ok(vec![None; 4])
    }
}

/// Uniform draws in [0, 1) of a fixed shape from a seed input (u32 [2]); `stream` tells apart
/// the draws of one step (see `crate::ops::criterion::uniform_into`).
#[derive(Debug, Clone)]
pub struct Uniform {
    pub shape: Vec<usize>,
    pub stream: u32,
}

impl Op for Uniform {
    op_header!("uniform", inputs: 1);
    fn infer(&self, i: &[&TensorInfo]) -> InferResult {
        if i[0].shape != [2] || i[0].dtype != DType::U32 {
            return infer_err("seed must be u32 [2]");
        }
        Ok(vec![TensorInfo::f32(&self.shape)])
    }
    fn dispatches(&self, rt: &Runtime, io: &Io<'_>) -> crate::Result<Vec<Dispatch>> {
        crit::uniform_into(rt, io.inputs[0], self.stream, io.outputs[0])
    }
    fn backward(&self, _g: &mut Graph, _x: &[Value], _y: &[Value], _dy: &[Option<Value>]) -> Grads {
        Ok(vec![None])
    }
}

/// Importance sampling: (x [R, M] logits at the candidates, candidates [R, M, 2], extra
/// [R, E, 2]) → [R, keep + E, 2], the `keep` most uncertain candidates then the extras.
#[derive(Debug, Clone)]
pub struct ImportancePoints {
    pub keep: usize,
}

impl Op for ImportancePoints {
    op_header!("importance_points", inputs: 3);
    fn infer(&self, i: &[&TensorInfo]) -> InferResult {
        let [r, m] = i[0].shape[..] else {
            return infer_err("x must be [R, M]");
        };
        if i[1].shape != [r, m, 2] {
            return infer_err(format!("candidates must be [{r}, {m}, 2]"));
        }
        let [re, e, 2] = i[2].shape[..] else {
            return infer_err("extra must be [R, E, 2]");
        };
        if re != r || self.keep > m {
            return infer_err(format!(
                "extra must be [{r}, E, 2] and keep ({}) ≤ {m}",
                self.keep
            ));
        }
        Ok(vec![TensorInfo::f32(&[r, self.keep + e, 2])])
    }
    fn dispatches(&self, rt: &Runtime, io: &Io<'_>) -> crate::Result<Vec<Dispatch>> {
        let [x, c, e] = io.inputs_n()?;
        crit::importance_points_into(rt, x, c, e, io.outputs[0])
    }
    fn backward(&self, _g: &mut Graph, _x: &[Value], _y: &[Value], _dy: &[Option<Value>]) -> Grads {
        Ok(vec![None; 3])
    }
}

/// Binary target masks sampled at points: (bits u32 [⌈N·H·W/32⌉] (planes `dims` bit-packed),
/// idx [R] u32 when `indexed`, coords [G, P, 2]) → [R, P] with `rows` = R: plane idx[r] (or
/// plane r) at row `r / (R/G)` of the coords, 0 where the plane index is ≥ N. No gradient.
#[derive(Debug, Clone)]
pub struct GatherSample {
    pub dims: (usize, usize, usize),
    pub rows: usize,
    pub indexed: bool,
}

impl Op for GatherSample {
    op_header!("gather_sample");
    fn arity(&self) -> Option<usize> {
        Some(2 + self.indexed as usize)
    }
    fn infer(&self, i: &[&TensorInfo]) -> InferResult {
        let (n, h, w) = self.dims;
        if i[0].shape != [(n * h * w).div_ceil(32)] || i[0].dtype != DType::U32 {
            return infer_err(format!(
                "mask bits must be u32 [{}]",
                (n * h * w).div_ceil(32)
            ));
        }
        let coords = i[i.len() - 1];
        let [g, p, 2] = coords.shape[..] else {
            return infer_err("coords must be [G, P, 2]");
        };
        if g == 0 || !self.rows.is_multiple_of(g) {
            return infer_err(format!(
                "{g} rows of coords do not divide {} rows",
                self.rows
            ));
        }
        if self.indexed && (i[1].shape != [self.rows] || i[1].dtype != DType::U32) {
            return infer_err(format!("idx must be u32 [{}]", self.rows));
        }
        Ok(vec![TensorInfo::f32(&[self.rows, p])])
    }
    fn dispatches(&self, rt: &Runtime, io: &Io<'_>) -> crate::Result<Vec<Dispatch>> {
        let idx = self.indexed.then(|| io.inputs[1]);
        let coords = io.inputs[io.inputs.len() - 1];
        crit::gather_sample_into(rt, io.inputs[0], self.dims, idx, coords, io.outputs[0])
    }
    fn backward(&self, _g: &mut Graph, x: &[Value], _y: &[Value], _dy: &[Option<Value>]) -> Grads {
        Ok(vec![None; x.len()])
    }
}

impl Graph {
    /// `point_sample(x, coords)`: x [N, C, H, W] at coords [N, P, 2] in [0, 1] → [N, C, P].
    pub fn point_sample(&mut self, x: Value, coords: Value) -> Result<Value> {
        self.apply1(PointSample, &[x, coords])
    }

    /// Per-row (mean sigmoid-BCE, dice) [R, 2] of logits x [R, P] against targets t [R, P].
    pub fn mask_loss(&mut self, x: Value, t: Value) -> Result<Value> {
        Ok(self.apply(Arc::new(MaskLoss), &[x, t])?[0])
    }

    /// Per-row cross-entropy [R] of logits x [R, C] against u32 targets [R].
    pub fn class_loss(&mut self, x: Value, targets: Value) -> Result<Value> {
        Ok(self.apply(Arc::new(ClassLoss), &[x, targets])?[0])
    }

    /// The matcher's cost [B, Q, T] (see [`MatchCost`]).
    pub fn match_cost(
        &mut self,
        x: Value,
        labels: Value,
        probs: Value,
        classes: Value,
        weights: MatchWeights,
    ) -> Result<Value> {
        self.apply1(MatchCost(weights), &[x, labels, probs, classes])
    }

    /// Uniform draws of `shape` from `seed` (u32 [2]) on stream `stream`.
    pub fn uniform(&mut self, seed: Value, shape: &[usize], stream: u32) -> Result<Value> {
        let shape = shape.to_vec();
        self.apply1(Uniform { shape, stream }, &[seed])
    }

    /// Importance sampling (see [`ImportancePoints`]).
    pub fn importance_points(
        &mut self,
        x: Value,
        candidates: Value,
        extra: Value,
        keep: usize,
    ) -> Result<Value> {
        self.apply1(ImportancePoints { keep }, &[x, candidates, extra])
    }

    /// Bit-packed binary planes `dims` sampled at points: plane idx[r] (`None`: plane r) at row
    /// `r / (rows/G)` of coords [G, P, 2] → [rows, P] (see [`GatherSample`]).
    pub fn gather_sample(
        &mut self,
        bits: Value,
        dims: (usize, usize, usize),
        idx: Option<Value>,
        coords: Value,
        rows: usize,
    ) -> Result<Value> {
        let op = GatherSample {
            dims,
            rows,
            indexed: idx.is_some(),
        };
        let mut inputs = vec![bits];
        inputs.extend(idx);
        inputs.push(coords);
        self.apply1(op, &inputs)
    }
}
