//! The criterion as graph nodes, so that the matching costs, the losses and their gradients run
//! where the logits are (`crate::ops::criterion`'s kernels):
//!
//! - [`attach_match_costs`]: per prediction, the matcher's cost [B, Q, T] on the uniform points
//!   of each image, from the logits and the (padded) target masks. Only these matrices go to
//!   the host, for the Hungarian solve ([`solve_costs`]).
//! - [`attach_losses`]: per prediction, weighted cross-entropy over all queries and BCE + dice
//!   on the points of the matched queries, summed into one scalar the backward starts from.
//!
//! Loss rows are the B·Q queries (row `b·Q + q`). A matched query's row holds its points and its
//! target's labels at them, with the mask-loss weights `(weight_mask, weight_dice) / num_masks`;
//! an unmatched row has weight 0 (its points and labels are unused). The class targets are the
//! matched classes or no-object, with the cross-entropy weights `weight_class · w_k / Σ w`.
//! [`LossFeed`] builds these inputs on the host from a matching and the points of each pair.

use super::points::sample;
use super::{Criterion, CriterionError, ImageTargets, PredictionShape, Result};
use crate::graph::{Graph, Result as GraphResult, Value};
use crate::ops::criterion::{pack_masks, MatchWeights};
use crate::DType;

/// Graph input names of prediction `k`'s loss.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LossInputNames {
    /// Points of each row, [B·Q, P, 2] in [0, 1] (x then y).
    pub coords: String,
    /// Target labels at those points, [B·Q, P].
    pub labels: String,
    /// (BCE, dice) weight of each row, [B·Q, 2].
    pub mask_weights: String,
    /// Class of each query (u32, no-object = C − 1), [B·Q].
    pub class_targets: String,
    /// Cross-entropy weight of each query, [B·Q].
    pub class_weights: String,
}

pub fn loss_input_names(k: usize) -> LossInputNames {
    let n = |what: &str| format!("loss.{k}.{what}");
    LossInputNames {
        coords: n("coords"),
        labels: n("labels"),
        mask_weights: n("mask_weights"),
        class_targets: n("class_targets"),
        class_weights: n("class_weights"),
    }
}

/// One prediction's weighted loss terms (scalars).
#[derive(Clone, Copy, Debug)]
pub struct LossTerms {
    pub cross_entropy: Value,
    pub mask: Value,
    pub dice: Value,
}

/// Adds the inputs of [`loss_input_names`] for every prediction `(class_logits [B, Q, C],
/// mask_logits [B, Q, h, w])` and returns the total loss (a scalar) and each prediction's terms.
pub fn attach_losses(
    g: &mut Graph,
    predictions: &[(Value, Value)],
    shape: PredictionShape,
    points: usize,
) -> GraphResult<(Value, Vec<LossTerms>)> {
    let (b, q, h, w) = (shape.batch, shape.queries, shape.height, shape.width);
    let rows = b * q;
    let mut losses = Vec::with_capacity(predictions.len());
    for (k, &(class_logits, mask_logits)) in predictions.iter().enumerate() {
        let names = loss_input_names(k);
        let coords = g.input(&names.coords, &[rows, points, 2])?;
        let labels = g.input(&names.labels, &[rows, points])?;
        let weights = LossWeightInputs::add(
            g,
            &names.mask_weights,
            &names.class_targets,
            &names.class_weights,
            rows,
        )?;
        let planes = g.reshape(mask_logits, &[rows, 1, h, w])?;
        let terms = loss_terms(
            g,
            (class_logits, planes),
            coords,
            labels,
            weights,
            shape,
            points,
        )?;
        losses.push(terms);
    }
    sum_terms(g, losses)
}

/// The weight inputs of one prediction's loss.
#[derive(Clone, Copy)]
struct LossWeightInputs {
    mask: Value,
    class_targets: Value,
    class: Value,
}

impl LossWeightInputs {
    fn add(
        g: &mut Graph,
        mask: &str,
        class_targets: &str,
        class: &str,
        rows: usize,
    ) -> GraphResult<Self> {
        Ok(Self {
            mask: g.input(mask, &[rows, 2])?,
            class_targets: g.input_typed(class_targets, &[rows], DType::U32)?,
            class: g.input(class, &[rows])?,
        })
    }
}

/// One prediction's weighted terms from its mask planes [B·Q, 1, h, w], the points of each row
/// and the labels there.
fn loss_terms(
    g: &mut Graph,
    (class_logits, planes): (Value, Value),
    coords: Value,
    labels: Value,
    weights: LossWeightInputs,
    shape: PredictionShape,
    points: usize,
) -> GraphResult<LossTerms> {
    let rows = shape.batch * shape.queries;
    let x = g.point_sample(planes, coords)?;
    let x = g.reshape(x, &[rows, points])?;
    let per_row = g.mask_loss(x, labels)?;
    let weighted = g.mul(per_row, weights.mask)?;
    let bce = g.slice(weighted, 1, 0, 1)?;
    let mask = g.sum(bce)?;
    let dice = g.slice(weighted, 1, 1, 2)?;
    let dice = g.sum(dice)?;
    let logits = g.reshape(class_logits, &[rows, shape.classes])?;
    let ce = g.class_loss(logits, weights.class_targets)?;
    let ce = g.mul(ce, weights.class)?;
    let cross_entropy = g.sum(ce)?;
    Ok(LossTerms {
        cross_entropy,
        mask,
        dice,
    })
}

/// The total of every prediction's terms.
fn sum_terms(g: &mut Graph, terms: Vec<LossTerms>) -> GraphResult<(Value, Vec<LossTerms>)> {
    let mut total: Option<Value> = None;
    for t in &terms {
        let mut sum = g.add(t.mask, t.dice)?;
        sum = g.add(sum, t.cross_entropy)?;
        total = Some(match total {
            Some(acc) => g.add(acc, sum)?,
            None => sum,
        });
    }
    Ok((total.expect("at least one prediction"), terms))
}

/// Input name of the step's seed (u32 [2]) from which [`attach_drawn_criterion`] draws every point.
pub const POINTS_SEED: &str = "criterion.seed";

/// Graph input names of prediction `k`'s loss when its points are drawn on the device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DrawnLossInputNames {
    /// Plane of each row's matched target in the target masks seen as [B·T, H, W] (u32 b·T + t;
    /// B·T for an unmatched row), [B·Q].
    pub row_targets: String,
    pub mask_weights: String,
    pub class_targets: String,
    pub class_weights: String,
}

pub fn drawn_loss_input_names(k: usize) -> DrawnLossInputNames {
    let n = loss_input_names(k);
    DrawnLossInputNames {
        row_targets: format!("loss.{k}.row_targets"),
        mask_weights: n.mask_weights,
        class_targets: n.class_targets,
        class_weights: n.class_weights,
    }
}

/// The uniform streams of prediction `k` (matcher points, candidates, extras): distinct per
/// prediction, so every draw of a step is independent.
pub fn streams(k: usize) -> [u32; 3] {
    let k = 3 * k as u32;
    [k, k + 1, k + 2]
}

/// The whole criterion on the device with its points drawn from [`POINTS_SEED`]: the matcher's
/// costs (as [`attach_match_costs`], points `uniform [B, P, 2]`) and the losses, whose points are
/// chosen as the host criterion chooses them: `int(P·oversample)` uniform candidates per query,
/// the `int(P·importance)` most uncertain kept, and uniform extras up to P. Returns (costs per
/// prediction, total loss, terms per prediction).
pub fn attach_drawn_criterion(
    g: &mut Graph,
    predictions: &[(Value, Value)],
    shape: PredictionShape,
    m: MatchShape,
    crit: &Criterion,
) -> GraphResult<(Vec<Value>, Value, Vec<LossTerms>)> {
    attach_device_criterion(g, predictions, shape, m, crit, PointsFrom::Seed)
}

/// Where [`attach_device_criterion`] takes its uniform points from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PointsFrom {
    /// Drawn on the device from the [`POINTS_SEED`] input (training).
    Seed,
    /// Given as inputs ([`given_point_names`]): replayed draws (parity tests).
    Inputs,
}

/// With [`PointsFrom::Inputs`], prediction `k`'s point inputs: the matcher's [B, P, 2], the
/// candidates [B·Q, M, 2] and the uniform extras [B·Q, P − K, 2] of each row.
pub fn given_point_names(k: usize) -> [String; 3] {
    [
        match_coords_name(k),
        format!("loss.{k}.candidates"),
        format!("loss.{k}.extra"),
    ]
}

/// [`attach_drawn_criterion`] with the points drawn from the seed or given as inputs.
pub fn attach_device_criterion(
    g: &mut Graph,
    predictions: &[(Value, Value)],
    shape: PredictionShape,
    m: MatchShape,
    crit: &Criterion,
    from: PointsFrom,
) -> GraphResult<(Vec<Value>, Value, Vec<LossTerms>)> {
    let seed = match from {
        PointsFrom::Seed => Some(g.input_typed(POINTS_SEED, &[2], DType::U32)?),
        PointsFrom::Inputs => None,
    };
    let points = |g: &mut Graph, name: &str, shape: &[usize], stream: u32| match seed {
        Some(seed) => g.uniform(seed, shape, stream),
        None => g.input(name, shape),
    };
    let (b, q, h, w) = (shape.batch, shape.queries, shape.height, shape.width);
    let rows = b * q;
    let (p, over, keep) = (
        crit.cfg.num_points,
        crit.cfg.oversampled(),
        crit.cfg.uncertain(),
    );
    let mut coords = Vec::with_capacity(predictions.len());
    for k in 0..predictions.len() {
        let name = &given_point_names(k)[0];
        coords.push(points(g, name, &[b, m.points, 2], streams(k)[0])?);
    }
    let costs = match_costs(g, predictions, shape, m, crit.match_weights(), &coords)?;
    let bits = g.by_name(MATCH_TARGET_MASKS).expect("added by match_costs");
    let dims = (b * m.max_targets, m.target_height, m.target_width);
    let mut losses = Vec::with_capacity(predictions.len());
    for (k, &(class_logits, mask_logits)) in predictions.iter().enumerate() {
        let names = drawn_loss_input_names(k);
        let [_, s_cand, s_extra] = streams(k);
        let row_targets = g.input_typed(&names.row_targets, &[rows], DType::U32)?;
        let planes = g.reshape(mask_logits, &[rows, 1, h, w])?;
        let fixed = g.detach(planes)?;
        let [_, cand_name, extra_name] = given_point_names(k);
        let cand = points(g, &cand_name, &[rows, over, 2], s_cand)?;
        let xc = g.point_sample(fixed, cand)?;
        let xc = g.reshape(xc, &[rows, over])?;
        let extra = points(g, &extra_name, &[rows, p - keep, 2], s_extra)?;
        let pts = g.importance_points(xc, cand, extra, keep)?;
        let labels = g.gather_sample(bits, dims, Some(row_targets), pts, rows)?;
        let weights = LossWeightInputs::add(
            g,
            &names.mask_weights,
            &names.class_targets,
            &names.class_weights,
            rows,
        )?;
        losses.push(loss_terms(
            g,
            (class_logits, planes),
            pts,
            labels,
            weights,
            shape,
            p,
        )?);
    }
    let (total, terms) = sum_terms(g, losses)?;
    Ok((costs, total, terms))
}

/// Graph input names of the matcher: the padded target masks [B, T, H, W] (bit-packed, u32
/// [⌈B·T·H·W/32⌉], see [`match_targets`]) and classes [B, T] (u32) shared by every prediction, and prediction `k`'s uniform points [B, P, 2].
pub const MATCH_TARGET_MASKS: &str = "match.target_masks";
pub const MATCH_TARGET_CLASSES: &str = "match.target_classes";

pub fn match_coords_name(k: usize) -> String {
    format!("match.{k}.coords")
}

/// The matcher's settings on the device: points per image, target slots per image (T) and the
/// target masks' size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatchShape {
    pub points: usize,
    pub max_targets: usize,
    pub target_height: usize,
    pub target_width: usize,
}

/// Adds the matcher inputs and returns each prediction's cost [B, Q, T] (no gradient: the
/// logits are detached).
pub fn attach_match_costs(
    g: &mut Graph,
    predictions: &[(Value, Value)],
    shape: PredictionShape,
    m: MatchShape,
    weights: MatchWeights,
) -> GraphResult<Vec<Value>> {
    let mut coords = Vec::with_capacity(predictions.len());
    for k in 0..predictions.len() {
        coords.push(g.input(&match_coords_name(k), &[shape.batch, m.points, 2])?);
    }
    match_costs(g, predictions, shape, m, weights, &coords)
}

/// The matcher's target inputs and each prediction's cost at its points `coords[k]`.
fn match_costs(
    g: &mut Graph,
    predictions: &[(Value, Value)],
    shape: PredictionShape,
    m: MatchShape,
    weights: MatchWeights,
    coords: &[Value],
) -> GraphResult<Vec<Value>> {
    let b = shape.batch;
    let dims = (b * m.max_targets, m.target_height, m.target_width);
    let words = (dims.0 * dims.1 * dims.2).div_ceil(32);
    let bits = g.input_typed(MATCH_TARGET_MASKS, &[words], DType::U32)?;
    let classes = g.input_typed(MATCH_TARGET_CLASSES, &[b, m.max_targets], DType::U32)?;
    let mut costs = Vec::with_capacity(predictions.len());
    for (&(class_logits, mask_logits), &coords) in predictions.iter().zip(coords) {
        let mask_logits = g.detach(mask_logits)?;
        let class_logits = g.detach(class_logits)?;
        let x = g.point_sample(mask_logits, coords)?;
        // Every target of image b at image b's points.
        let labels = g.gather_sample(bits, dims, None, coords, dims.0)?;
        let labels = g.reshape(labels, &[b, m.max_targets, m.points])?;
        let probs = g.softmax(class_logits)?;
        costs.push(g.match_cost(x, labels, probs, classes, weights)?);
    }
    Ok(costs)
}

impl Criterion {
    /// The matcher's cost weights as the device kernel takes them.
    pub fn match_weights(&self) -> MatchWeights {
        MatchWeights {
            class: self.cfg.cost_class as f32,
            mask: self.cfg.cost_mask as f32,
            dice: self.cfg.cost_dice as f32,
        }
    }
}

/// The matcher's target inputs: the masks [B, T, H, W] bit-packed ([`pack_masks`]; zero past
/// each image's targets) and the classes [B, T] (0 past them; those columns are never solved).
/// Target masks must be binary (0 or 1).
pub fn match_targets(targets: &[ImageTargets], m: MatchShape) -> Result<(Vec<u32>, Vec<u32>)> {
    let plane = m.target_height * m.target_width;
    let mut masks = vec![0f32; targets.len() * m.max_targets * plane];
    let mut classes = vec![0u32; targets.len() * m.max_targets];
    for (b, t) in targets.iter().enumerate() {
        if t.len() > m.max_targets {
            return Err(CriterionError::TooManyTargets {
                image: b,
                got: t.len(),
                max: m.max_targets,
            });
        }
        if (t.height, t.width) != (m.target_height, m.target_width) {
            return Err(CriterionError::Length {
                what: format!("targets.{b} mask size"),
                got: t.height * t.width,
                expected: plane,
                shape: format!(
                    "{}x{}, the matcher was built for {}x{}",
                    t.height, t.width, m.target_height, m.target_width
                ),
            });
        }
        let at = b * m.max_targets;
        masks[at * plane..(at + t.len()) * plane].copy_from_slice(&t.masks);
        classes[at..at + t.len()].copy_from_slice(&t.classes);
    }
    let bits = pack_masks(&masks).map_err(|i| {
        let (b, rest) = (i / (m.max_targets * plane), i % (m.max_targets * plane));
        CriterionError::NonBinaryTarget {
            image: b,
            target: rest / plane,
            value: masks[i],
        }
    })?;
    Ok((bits, classes))
}

/// Solves each image's assignment from the device costs [B, Q, T] (its first `n` columns, `n`
/// its target count): (query, target) pairs sorted by query, per image.
pub fn solve_costs(
    cost: &[f32],
    shape: PredictionShape,
    max_targets: usize,
    targets: &[ImageTargets],
) -> Result<Vec<Vec<(usize, usize)>>> {
    let q = shape.queries;
    let mut out = Vec::with_capacity(targets.len());
    for (b, t) in targets.iter().enumerate() {
        let n = t.len();
        let block = &cost[b * q * max_targets..(b + 1) * q * max_targets];
        let m: Vec<f64> = (0..q * n)
            .map(|i| block[(i / n) * max_targets + i % n] as f64)
            .collect();
        if n == 0 {
            out.push(Vec::new());
            continue;
        }
        out.push(super::matcher::assign(b, q, n, &m)?);
    }
    Ok(out)
}

/// The host-built weights of one prediction's loss, from its matching: per row (query) its
/// target plane (`b·T + t`, `B·T` when unmatched), mask-loss weights, class and class weight.
#[derive(Clone, Debug, PartialEq)]
pub struct LossWeights {
    pub row_targets: Vec<u32>,
    pub mask_weights: Vec<f32>,
    pub class_targets: Vec<u32>,
    pub class_weights: Vec<f32>,
}

impl LossWeights {
    /// From a matching (per image, (query, target) pairs), `max_targets` the T of the target
    /// planes and `num_masks` the batch's target count (at least 1).
    pub fn new(
        crit: &Criterion,
        shape: PredictionShape,
        targets: &[ImageTargets],
        matches: &[Vec<(usize, usize)>],
        max_targets: usize,
        num_masks: f64,
    ) -> Self {
        let cfg = &crit.cfg;
        let rows = shape.batch * shape.queries;
        let no_object = (shape.classes - 1) as u32;
        let mut out = Self {
            row_targets: vec![(shape.batch * max_targets) as u32; rows],
            mask_weights: vec![0.0; rows * 2],
            class_targets: vec![no_object; rows],
            class_weights: vec![0.0; rows],
        };
        for (b, pairs) in matches.iter().enumerate() {
            for &(qi, t) in pairs {
                let r = b * shape.queries + qi;
                out.row_targets[r] = (b * max_targets + t) as u32;
                out.mask_weights[2 * r] = (cfg.weight_mask / num_masks) as f32;
                out.mask_weights[2 * r + 1] = (cfg.weight_dice / num_masks) as f32;
                out.class_targets[r] = targets[b].classes[t];
            }
        }
        let weight = |k: u32| {
            if k == no_object {
                cfg.no_object_weight
            } else {
                1.0
            }
        };
        let wsum: f64 = out.class_targets.iter().map(|&k| weight(k)).sum();
        for (w, &k) in out.class_weights.iter_mut().zip(&out.class_targets) {
            *w = (cfg.weight_class * weight(k) / wsum) as f32;
        }
        out
    }
}

/// The host-built inputs of one prediction's loss with given points (see [`loss_input_names`]).
#[derive(Clone, Debug, PartialEq)]
pub struct LossFeed {
    pub coords: Vec<f32>,
    pub labels: Vec<f32>,
    pub weights: LossWeights,
}

impl LossFeed {
    /// From a matching and the points of each pair, in the matching's order
    /// (`pair_points[i·P..(i+1)·P]` for the i-th pair, image by image), with the labels sampled
    /// from the targets at those points.
    pub fn new(
        crit: &Criterion,
        shape: PredictionShape,
        targets: &[ImageTargets],
        matches: &[Vec<(usize, usize)>],
        pair_points: &[[f32; 2]],
        num_masks: f64,
    ) -> Self {
        let (q, p) = (shape.queries, crit.cfg.num_points);
        let rows = shape.batch * q;
        let mut coords = vec![0.0; rows * p * 2];
        let mut labels = vec![0.0; rows * p];
        let pairs = matches
            .iter()
            .enumerate()
            .flat_map(|(b, m)| m.iter().map(move |&(qi, t)| (b, qi, t)));
        for (i, (b, qi, t)) in pairs.enumerate() {
            let r = b * q + qi;
            let tgt = &targets[b];
            for (j, &pt) in pair_points[i * p..(i + 1) * p].iter().enumerate() {
                coords[(r * p + j) * 2..(r * p + j) * 2 + 2].copy_from_slice(&pt);
                labels[r * p + j] = sample(tgt.mask(t), tgt.height, tgt.width, pt);
            }
        }
        // Row targets are unused with given labels.
        let weights = LossWeights::new(crit, shape, targets, matches, 0, num_masks);
        Self {
            coords,
            labels,
            weights,
        }
    }
}
