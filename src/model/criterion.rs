//! Mask2Former's training criterion (mask2former/modeling/criterion.py and matcher.py; transformers
//! `Mask2FormerLoss`): per-image Hungarian matching on uniformly sampled points, then cross-entropy
//! (no-object weight 0.1), sigmoid BCE and dice on importance-sampled points, normalised by the
//! number of target masks, for every prediction (deep supervision).
//!
//! Matching and point selection depend on the current predictions and carry no gradient, and the
//! losses are sums over a few thousand sampled points, so the whole criterion runs on the host from
//! the downloaded logits: [`Criterion::compute`] returns the loss terms *and* the exact gradient of
//! the total loss with respect to every class and mask logit. The graph then back-propagates those
//! logit gradients through the network with [`attach_logit_gradients`], whose scalar
//! `Σ logits · seed` has exactly the parameter gradients of the real loss.
//!
//! Point sampling is bilinear with `align_corners = False` and zero padding (torch `grid_sample`
//! of `2c − 1`), in both the predictions (at H/4) and the targets (at the input resolution).
//! Random points come from a [`PointSource`], so tests can replay the draws transformers made.

use std::collections::VecDeque;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use thiserror::Error;

use crate::graph::{Graph, Result as GraphResult, Value};
use crate::model::config::Mask2FormerConfig;
use crate::model::decoder::Prediction;

#[derive(Debug, Error)]
pub enum CriterionError {
    #[error("criterion: {what} has {got} values, expected {expected} ({shape})")]
    Length {
        what: String,
        got: usize,
        expected: usize,
        shape: String,
    },
    #[error("criterion: image {image}: target {target} has class {class}, but there are {num_labels} labels")]
    Class {
        image: usize,
        target: usize,
        class: u32,
        num_labels: usize,
    },
    #[error("criterion: replayed point draw {index} has shape {got:?}, the criterion asked for {want:?}")]
    ReplayShape {
        index: usize,
        got: [usize; 3],
        want: [usize; 3],
    },
    #[error("criterion: the replayed point draws ran out after {0}")]
    ReplayExhausted(usize),
    #[error("criterion: linear assignment failed for image {image} ({rows}x{cols} cost matrix): {reason}")]
    Assignment {
        image: usize,
        rows: usize,
        cols: usize,
        reason: String,
    },
    #[error("criterion: invalid setting {what} = {value}: {reason}")]
    Config {
        what: &'static str,
        value: String,
        reason: &'static str,
    },
}

pub type Result<T, E = CriterionError> = std::result::Result<T, E>;

/// Loss weights, matcher costs and point sampling.
#[derive(Clone, Debug, PartialEq)]
pub struct CriterionConfig {
    /// P: points per mask for the matcher and the mask losses (12544 = 112²).
    pub num_points: usize,
    pub oversample_ratio: f64,
    pub importance_sample_ratio: f64,
    /// Cross-entropy weight of the no-object class.
    pub no_object_weight: f64,
    pub weight_class: f64,
    pub weight_mask: f64,
    pub weight_dice: f64,
    pub cost_class: f64,
    pub cost_mask: f64,
    pub cost_dice: f64,
    /// Deep supervision: losses on every prediction, not only the last.
    pub auxiliary: bool,
}

impl Default for CriterionConfig {
    /// The paper's settings (the original matcher's class cost is 2, as the loss weight).
    fn default() -> Self {
        Self {
            num_points: 12544,
            oversample_ratio: 3.0,
            importance_sample_ratio: 0.75,
            no_object_weight: 0.1,
            weight_class: 2.0,
            weight_mask: 5.0,
            weight_dice: 5.0,
            cost_class: 2.0,
            cost_mask: 5.0,
            cost_dice: 5.0,
            auxiliary: true,
        }
    }
}

impl CriterionConfig {
    /// The settings a transformers config carries; the matcher costs follow the loss weights
    /// (as in the original code and in transformers 5).
    pub fn from_model(cfg: &Mask2FormerConfig) -> Self {
        Self {
            num_points: cfg.train_num_points,
            oversample_ratio: cfg.oversample_ratio,
            importance_sample_ratio: cfg.importance_sample_ratio,
            no_object_weight: cfg.no_object_weight,
            weight_class: cfg.class_weight,
            weight_mask: cfg.mask_weight,
            weight_dice: cfg.dice_weight,
            cost_class: cfg.class_weight,
            cost_mask: cfg.mask_weight,
            cost_dice: cfg.dice_weight,
            auxiliary: cfg.use_auxiliary_loss,
        }
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |what, value: String, reason| {
            Err(CriterionError::Config {
                what,
                value,
                reason,
            })
        };
        if self.num_points == 0 {
            return bad("num_points", "0".into(), "must be at least 1");
        }
        if self.oversample_ratio.is_nan() || self.oversample_ratio < 1.0 {
            return bad(
                "oversample_ratio",
                self.oversample_ratio.to_string(),
                "must be at least 1",
            );
        }
        if !(0.0..=1.0).contains(&self.importance_sample_ratio) {
            return bad(
                "importance_sample_ratio",
                self.importance_sample_ratio.to_string(),
                "must be in [0, 1]",
            );
        }
        Ok(())
    }

    /// Oversampled points per mask (`int(P · ratio)`, as Python truncates).
    fn oversampled(&self) -> usize {
        (self.num_points as f64 * self.oversample_ratio) as usize
    }

    /// Points kept by uncertainty (`int(ratio · P)`).
    fn uncertain(&self) -> usize {
        (self.importance_sample_ratio * self.num_points as f64) as usize
    }
}

/// Uniform random points in `[0, 1)²`, `(x, y)` with x along the width.
pub trait PointSource {
    /// `n · p` points (torch `rand(n, p, 2)` in row-major order).
    fn draw(&mut self, n: usize, p: usize) -> Result<Vec<[f32; 2]>>;
}

/// Points from a seeded generator (training).
pub struct RandomPoints(ChaCha8Rng);

impl RandomPoints {
    pub fn new(seed: u64) -> Self {
        Self(ChaCha8Rng::seed_from_u64(seed))
    }
}

impl PointSource for RandomPoints {
    fn draw(&mut self, n: usize, p: usize) -> Result<Vec<[f32; 2]>> {
        Ok((0..n * p)
            .map(|_| [self.0.random::<f32>(), self.0.random::<f32>()])
            .collect())
    }
}

/// Recorded draws replayed in order (parity tests): each is `([n, p, 2], values)`.
pub struct ReplayPoints {
    draws: VecDeque<([usize; 3], Vec<f32>)>,
    used: usize,
}

impl ReplayPoints {
    pub fn new(draws: Vec<([usize; 3], Vec<f32>)>) -> Self {
        Self {
            draws: draws.into(),
            used: 0,
        }
    }
    /// Draws not consumed yet.
    pub fn remaining(&self) -> usize {
        self.draws.len()
    }
}

impl PointSource for ReplayPoints {
    fn draw(&mut self, n: usize, p: usize) -> Result<Vec<[f32; 2]>> {
        let (shape, data) = self
            .draws
            .pop_front()
            .ok_or(CriterionError::ReplayExhausted(self.used))?;
        let want = [n, p, 2];
        if shape != want || data.len() != n * p * 2 {
            return Err(CriterionError::ReplayShape {
                index: self.used,
                got: shape,
                want,
            });
        }
        self.used += 1;
        Ok(data.chunks_exact(2).map(|c| [c[0], c[1]]).collect())
    }
}

/// The targets of one image: `n` binary masks `[n, H, W]` (any resolution; sampled bilinearly at
/// the same relative points as the predictions) and their classes `0..K`.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageTargets {
    pub height: usize,
    pub width: usize,
    pub masks: Vec<f32>,
    pub classes: Vec<u32>,
}

impl ImageTargets {
    pub fn len(&self) -> usize {
        self.classes.len()
    }
    pub fn is_empty(&self) -> bool {
        self.classes.is_empty()
    }
    fn mask(&self, t: usize) -> &[f32] {
        let plane = self.height * self.width;
        &self.masks[t * plane..(t + 1) * plane]
    }
}

/// Dimensions of the predictions: `class_logits [B, Q, C]` (C = K + 1), `mask_logits [B, Q, h, w]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PredictionShape {
    pub batch: usize,
    pub queries: usize,
    pub classes: usize,
    pub height: usize,
    pub width: usize,
}

impl PredictionShape {
    fn class_len(&self) -> usize {
        self.batch * self.queries * self.classes
    }
    fn mask_len(&self) -> usize {
        self.batch * self.queries * self.height * self.width
    }
}

/// One prediction's logits on the host.
#[derive(Clone, Copy, Debug)]
pub struct Logits<'a> {
    pub class_logits: &'a [f32],
    pub mask_logits: &'a [f32],
}

/// The gradient of the total loss with respect to one prediction's logits (same layouts).
#[derive(Clone, Debug, PartialEq)]
pub struct LogitGrads {
    pub class_logits: Vec<f32>,
    pub mask_logits: Vec<f32>,
}

/// The result of one criterion evaluation.
#[derive(Clone, Debug)]
pub struct LossOutput {
    /// Sum of the weighted terms.
    pub total: f64,
    /// Weighted terms named as transformers names them: `loss_cross_entropy`, `loss_mask`,
    /// `loss_dice` for the final prediction, suffixed `_i` for auxiliary prediction i.
    pub terms: Vec<(String, f64)>,
    /// Matching per matcher call (final prediction first, then auxiliary 0..), per image:
    /// (query, target) pairs sorted by query.
    pub matches: Vec<Vec<Vec<(usize, usize)>>>,
    /// Gradients, indexed like the predictions given (network order, final last).
    pub grads: Vec<LogitGrads>,
    /// Number of target masks in the batch (at least 1), the normaliser of the mask losses.
    pub num_masks: f64,
}

impl LossOutput {
    /// A weighted term by name.
    pub fn term(&self, name: &str) -> Option<f64> {
        self.terms.iter().find(|(n, _)| n == name).map(|t| t.1)
    }

    /// The weighted (cross-entropy, mask, dice) terms, each summed over every prediction.
    pub fn sums(&self) -> (f64, f64, f64) {
        let mut s = (0.0, 0.0, 0.0);
        for (n, v) in &self.terms {
            if n.starts_with("loss_cross_entropy") {
                s.0 += v;
            } else if n.starts_with("loss_mask") {
                s.1 += v;
            } else if n.starts_with("loss_dice") {
                s.2 += v;
            }
        }
        s
    }
}

/// Bilinear taps of point `(x, y) ∈ [0, 1]²` in an `h × w` map (grid_sample, align_corners =
/// False, zero padding): up to four (index, weight) pairs, out-of-map taps dropped.
fn taps(h: usize, w: usize, p: [f32; 2]) -> ([(usize, f32); 4], usize) {
    // torch: ((2c − 1) + 1)·size − 1) / 2 = c·size − 0.5, in f32.
    let ix = ((2.0 * p[0] - 1.0 + 1.0) * w as f32 - 1.0) / 2.0;
    let iy = ((2.0 * p[1] - 1.0 + 1.0) * h as f32 - 1.0) / 2.0;
    let x0 = ix.floor();
    let y0 = iy.floor();
    let (fx, fy) = (ix - x0, iy - y0);
    let (x0, y0) = (x0 as i64, y0 as i64);
    let mut out = [(0usize, 0f32); 4];
    let mut n = 0;
    for (dy, wy) in [(0i64, 1.0 - fy), (1, fy)] {
        for (dx, wx) in [(0i64, 1.0 - fx), (1, fx)] {
            let (yy, xx) = (y0 + dy, x0 + dx);
            if yy >= 0 && xx >= 0 && (yy as usize) < h && (xx as usize) < w {
                out[n] = (yy as usize * w + xx as usize, wy * wx);
                n += 1;
            }
        }
    }
    (out, n)
}

fn sample(map: &[f32], h: usize, w: usize, p: [f32; 2]) -> f32 {
    let (t, n) = taps(h, w, p);
    t[..n].iter().map(|&(i, wt)| map[i] * wt).sum()
}

/// `BCEWithLogits(x, t)`, the numerically stable form torch uses.
fn bce(x: f64, t: f64) -> f64 {
    x.max(0.0) - x * t + (-x.abs()).exp().ln_1p()
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// The criterion for a batch shape and config.
pub struct Criterion {
    cfg: CriterionConfig,
    num_labels: usize,
}

impl Criterion {
    pub fn new(cfg: CriterionConfig, num_labels: usize) -> Result<Self> {
        cfg.validate()?;
        Ok(Self { cfg, num_labels })
    }

    pub fn config(&self) -> &CriterionConfig {
        &self.cfg
    }

    /// Matches, samples points and evaluates every loss term and its logit gradients.
    /// `predictions` are in network order (the final one last); `targets` one per image.
    pub fn compute(
        &self,
        shape: PredictionShape,
        predictions: &[Logits<'_>],
        targets: &[ImageTargets],
        points: &mut dyn PointSource,
    ) -> Result<LossOutput> {
        self.check(shape, predictions, targets)?;
        let num_masks = (targets.iter().map(|t| t.len()).sum::<usize>() as f64).max(1.0);
        let mut grads: Vec<LogitGrads> = predictions
            .iter()
            .map(|_| LogitGrads {
                class_logits: vec![0.0; shape.class_len()],
                mask_logits: vec![0.0; shape.mask_len()],
            })
            .collect();
        let last = predictions.len() - 1;
        // transformers' order: the final prediction, then auxiliary 0..L-2.
        let mut order = vec![(last, String::new())];
        if self.cfg.auxiliary {
            order.extend((0..last).map(|i| (i, format!("_{i}"))));
        }
        let mut terms = Vec::new();
        let mut all_matches = Vec::new();
        let mut total = 0.0;
        for (k, suffix) in order {
            let pred = predictions[k];
            let matches = self.match_batch(shape, pred, targets, points)?;
            let (mask, dice) = self.mask_losses(
                shape,
                pred,
                targets,
                &matches,
                num_masks,
                points,
                &mut grads[k].mask_logits,
            )?;
            let ce = self.class_loss(shape, pred, targets, &matches, &mut grads[k].class_logits);
            let weighted = [
                (format!("loss_mask{suffix}"), mask * self.cfg.weight_mask),
                (format!("loss_dice{suffix}"), dice * self.cfg.weight_dice),
                (
                    format!("loss_cross_entropy{suffix}"),
                    ce * self.cfg.weight_class,
                ),
            ];
            total += weighted.iter().map(|t| t.1).sum::<f64>();
            terms.extend(weighted);
            all_matches.push(matches);
        }
        Ok(LossOutput {
            total,
            terms,
            matches: all_matches,
            grads,
            num_masks,
        })
    }

    fn check(
        &self,
        shape: PredictionShape,
        predictions: &[Logits<'_>],
        targets: &[ImageTargets],
    ) -> Result<()> {
        let len = |what: String, got: usize, expected: usize, shape: String| {
            if got != expected {
                Err(CriterionError::Length {
                    what,
                    got,
                    expected,
                    shape,
                })
            } else {
                Ok(())
            }
        };
        if predictions.is_empty() {
            return len("predictions".into(), 0, 1, "at least one".into());
        }
        len(
            "class logits width".into(),
            shape.classes,
            self.num_labels + 1,
            "K + 1".into(),
        )?;
        for (k, p) in predictions.iter().enumerate() {
            len(
                format!("predictions.{k}.class_logits"),
                p.class_logits.len(),
                shape.class_len(),
                format!("[{}, {}, {}]", shape.batch, shape.queries, shape.classes),
            )?;
            len(
                format!("predictions.{k}.mask_logits"),
                p.mask_logits.len(),
                shape.mask_len(),
                format!(
                    "[{}, {}, {}, {}]",
                    shape.batch, shape.queries, shape.height, shape.width
                ),
            )?;
        }
        len(
            "targets (images)".into(),
            targets.len(),
            shape.batch,
            "one per image".into(),
        )?;
        for (b, t) in targets.iter().enumerate() {
            len(
                format!("targets.{b}.masks"),
                t.masks.len(),
                t.len() * t.height * t.width,
                format!("[{}, {}, {}]", t.len(), t.height, t.width),
            )?;
            for (i, &c) in t.classes.iter().enumerate() {
                if c as usize >= self.num_labels {
                    return Err(CriterionError::Class {
                        image: b,
                        target: i,
                        class: c,
                        num_labels: self.num_labels,
                    });
                }
            }
        }
        Ok(())
    }

    fn softmax_row(row: &[f32]) -> Vec<f64> {
        let m = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
        let e: Vec<f64> = row.iter().map(|&v| (v as f64 - m).exp()).collect();
        let s: f64 = e.iter().sum();
        e.into_iter().map(|v| v / s).collect()
    }

    /// Per image: cost = cost_mask·BCE + cost_class·(−p(class)) + cost_dice·dice on P uniform
    /// points shared by all queries and targets; solved exactly (scipy's algorithm).
    fn match_batch(
        &self,
        shape: PredictionShape,
        pred: Logits<'_>,
        targets: &[ImageTargets],
        points: &mut dyn PointSource,
    ) -> Result<Vec<Vec<(usize, usize)>>> {
        let (q, c, h, w) = (shape.queries, shape.classes, shape.height, shape.width);
        let np = self.cfg.num_points;
        let mut out = Vec::with_capacity(shape.batch);
        for (b, tgt) in targets.iter().enumerate() {
            let pts = points.draw(1, np)?;
            let n = tgt.len();
            if n == 0 {
                out.push(Vec::new());
                continue;
            }
            // Target labels at the points [n, P] and their sums.
            let labels: Vec<Vec<f32>> = (0..n)
                .map(|t| {
                    pts.iter()
                        .map(|&p| sample(tgt.mask(t), tgt.height, tgt.width, p))
                        .collect()
                })
                .collect();
            let label_sums: Vec<f64> = labels
                .iter()
                .map(|l| l.iter().map(|&v| v as f64).sum())
                .collect();
            let mut cost = vec![0f64; q * n];
            for qi in 0..q {
                let logits = &pred.mask_logits[(b * q + qi) * h * w..(b * q + qi + 1) * h * w];
                let row = &pred.class_logits[(b * q + qi) * c..(b * q + qi + 1) * c];
                let probs = Self::softmax_row(row);
                let x: Vec<f64> = pts
                    .iter()
                    .map(|&p| sample(logits, h, w, p) as f64)
                    .collect();
                let pos: Vec<f64> = x.iter().map(|&v| bce(v, 1.0) / np as f64).collect();
                let neg: Vec<f64> = x.iter().map(|&v| bce(v, 0.0) / np as f64).collect();
                let sig: Vec<f64> = x.iter().map(|&v| sigmoid(v)).collect();
                let sig_sum: f64 = sig.iter().sum();
                for t in 0..n {
                    let (mut ce, mut inter) = (0.0, 0.0);
                    for (p, &lab) in labels[t].iter().enumerate() {
                        let lab = lab as f64;
                        ce += pos[p] * lab + neg[p] * (1.0 - lab);
                        inter += sig[p] * lab;
                    }
                    let dice = 1.0 - (2.0 * inter + 1.0) / (sig_sum + label_sums[t] + 1.0);
                    let class = -probs[tgt.classes[t] as usize];
                    let v = self.cfg.cost_mask * ce
                        + self.cfg.cost_class * class
                        + self.cfg.cost_dice * dice;
                    // transformers clamps to ±1e10 and zeroes NaN before the assignment.
                    cost[qi * n + t] = if v.is_nan() {
                        0.0
                    } else {
                        v.clamp(-1e10, 1e10)
                    };
                }
            }
            let (rows, cols) =
                lsap::solve(q, n, &cost, false).map_err(|e| CriterionError::Assignment {
                    image: b,
                    rows: q,
                    cols: n,
                    reason: e.to_string(),
                })?;
            let mut pairs: Vec<(usize, usize)> = rows.into_iter().zip(cols).collect();
            pairs.sort_unstable();
            out.push(pairs);
        }
        Ok(out)
    }

    /// Weighted cross-entropy over K + 1 classes (unmatched queries → no-object, weight 0.1),
    /// averaged by the sum of weights as torch's `CrossEntropyLoss(weight=...)` does. Adds
    /// `weight_class · ∂CE/∂logits` to `grad`.
    fn class_loss(
        &self,
        shape: PredictionShape,
        pred: Logits<'_>,
        targets: &[ImageTargets],
        matches: &[Vec<(usize, usize)>],
        grad: &mut [f32],
    ) -> f64 {
        let (q, c) = (shape.queries, shape.classes);
        let no_object = c - 1;
        let mut target_class = vec![no_object; shape.batch * q];
        for (b, pairs) in matches.iter().enumerate() {
            for &(qi, t) in pairs {
                target_class[b * q + qi] = targets[b].classes[t] as usize;
            }
        }
        let weight = |k: usize| {
            if k == no_object {
                self.cfg.no_object_weight
            } else {
                1.0
            }
        };
        let wsum: f64 = target_class.iter().map(|&k| weight(k)).sum();
        let mut loss = 0.0;
        for (r, &k) in target_class.iter().enumerate() {
            let probs = Self::softmax_row(&pred.class_logits[r * c..(r + 1) * c]);
            let wk = weight(k) / wsum;
            loss -= wk * probs[k].ln();
            for (j, p) in probs.iter().enumerate() {
                let d = p - if j == k { 1.0 } else { 0.0 };
                grad[r * c + j] += (self.cfg.weight_class * wk * d) as f32;
            }
        }
        loss
    }

    /// Point selection (3P uniform, the 0.75P most uncertain by −|logit|, plus 0.25P uniform) per
    /// matched query, then BCE (mean over points) and dice, summed and divided by `num_masks`.
    /// Adds the weighted gradients, scattered back through the bilinear taps, to `grad`.
    #[allow(clippy::too_many_arguments)]
    fn mask_losses(
        &self,
        shape: PredictionShape,
        pred: Logits<'_>,
        targets: &[ImageTargets],
        matches: &[Vec<(usize, usize)>],
        num_masks: f64,
        points: &mut dyn PointSource,
        grad: &mut [f32],
    ) -> Result<(f64, f64)> {
        let (q, h, w) = (shape.queries, shape.height, shape.width);
        let np = self.cfg.num_points;
        // Matched pairs in transformers' order: image by image, sorted by query.
        let pairs: Vec<(usize, usize, usize)> = matches
            .iter()
            .enumerate()
            .flat_map(|(b, m)| m.iter().map(move |&(qi, t)| (b, qi, t)))
            .collect();
        let n = pairs.len();
        let over = self.cfg.oversampled();
        let keep = self.cfg.uncertain();
        let random = np - keep;
        let drawn = points.draw(n, over)?;
        let extra = if random > 0 {
            points.draw(n, random)?
        } else {
            Vec::new()
        };
        let (mut loss_mask, mut loss_dice) = (0.0, 0.0);
        for (i, &(b, qi, t)) in pairs.iter().enumerate() {
            let off = (b * q + qi) * h * w;
            let logits = &pred.mask_logits[off..off + h * w];
            let cand = &drawn[i * over..(i + 1) * over];
            // Most uncertain first: largest −|logit|, ties by index (stable).
            let unc: Vec<f32> = cand
                .iter()
                .map(|&p| -sample(logits, h, w, p).abs())
                .collect();
            let mut idx: Vec<usize> = (0..over).collect();
            idx.sort_by(|&a, &b| unc[b].total_cmp(&unc[a]).then(a.cmp(&b)));
            let mut pts: Vec<[f32; 2]> = idx[..keep].iter().map(|&j| cand[j]).collect();
            pts.extend_from_slice(&extra[i * random..(i + 1) * random]);

            let tgt = &targets[b];
            let x: Vec<f64> = pts
                .iter()
                .map(|&p| sample(logits, h, w, p) as f64)
                .collect();
            let lab: Vec<f64> = pts
                .iter()
                .map(|&p| sample(tgt.mask(t), tgt.height, tgt.width, p) as f64)
                .collect();
            let s: Vec<f64> = x.iter().map(|&v| sigmoid(v)).collect();
            let bce_mean = x.iter().zip(&lab).map(|(&v, &l)| bce(v, l)).sum::<f64>() / np as f64;
            loss_mask += bce_mean / num_masks;
            let inter: f64 = s.iter().zip(&lab).map(|(a, b)| a * b).sum();
            let num = 2.0 * inter + 1.0;
            let den = s.iter().sum::<f64>() + lab.iter().sum::<f64>() + 1.0;
            loss_dice += (1.0 - num / den) / num_masks;

            let gm = self.cfg.weight_mask / (np as f64 * num_masks);
            let gd = self.cfg.weight_dice / num_masks;
            for (p, &pt) in pts.iter().enumerate() {
                let d_bce = (s[p] - lab[p]) * gm;
                // d(1 − N/D)/ds = −(2t·D − N)/D²; ds/dx = s(1 − s).
                let d_dice = -(2.0 * lab[p] * den - num) / (den * den) * s[p] * (1.0 - s[p]) * gd;
                let dx = d_bce + d_dice;
                let (tp, nt) = taps(h, w, pt);
                for &(j, wt) in &tp[..nt] {
                    grad[off + j] += (dx * wt as f64) as f32;
                }
            }
        }
        Ok((loss_mask, loss_dice))
    }
}

/// Graph input names of the logit-gradient seeds of prediction `k`.
pub fn seed_names(k: usize) -> (String, String) {
    (
        format!("loss_seed.{k}.class_logits"),
        format!("loss_seed.{k}.mask_logits"),
    )
}

/// Adds inputs `loss_seed.{k}.{class,mask}_logits` (shaped like each prediction) and returns the
/// scalar `Σ_k Σ logits_k · seed_k`. Its gradient with respect to every parameter is the
/// gradient of the real loss when the seeds are [`LogitGrads`] from [`Criterion::compute`] (the
/// seeds are inputs, so nothing flows back into them). Call `g.backward` on the result.
pub fn attach_logit_gradients(g: &mut Graph, predictions: &[Prediction]) -> GraphResult<Value> {
    let mut total: Option<Value> = None;
    for (k, p) in predictions.iter().enumerate() {
        let (cn, mn) = seed_names(k);
        for (name, v) in [(cn, p.class_logits), (mn, p.mask_logits)] {
            let shape = g.shape(v).to_vec();
            let seed = g.input(&name, &shape)?;
            let prod = g.mul(v, seed)?;
            let s = g.sum(prod)?;
            total = Some(match total {
                Some(t) => g.add(t, s)?,
                None => s,
            });
        }
    }
    Ok(total.expect("at least one prediction"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric_check(auxiliary: bool) {
        let shape = PredictionShape {
            batch: 2,
            queries: 4,
            classes: 4,
            height: 5,
            width: 6,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let preds: Vec<(Vec<f32>, Vec<f32>)> = (0..2)
            .map(|_| {
                (
                    (0..shape.class_len())
                        .map(|_| rng.random::<f32>() * 4.0 - 2.0)
                        .collect(),
                    (0..shape.mask_len())
                        .map(|_| rng.random::<f32>() * 6.0 - 3.0)
                        .collect(),
                )
            })
            .collect();
        let targets: Vec<ImageTargets> = [2usize, 1]
            .iter()
            .map(|&n| ImageTargets {
                height: 10,
                width: 12,
                masks: (0..n * 120)
                    .map(|_| (rng.random::<f32>() > 0.5) as u8 as f32)
                    .collect(),
                classes: (0..n as u32).collect(),
            })
            .collect();
        let cfg = CriterionConfig {
            num_points: 16,
            auxiliary,
            ..CriterionConfig::default()
        };
        let crit = Criterion::new(cfg, 3).unwrap();
        let run = |preds: &[(Vec<f32>, Vec<f32>)]| {
            let logits: Vec<Logits> = preds
                .iter()
                .map(|(c, m)| Logits {
                    class_logits: c,
                    mask_logits: m,
                })
                .collect();
            crit.compute(shape, &logits, &targets, &mut RandomPoints::new(9))
                .unwrap()
        };
        let base = run(&preds);
        assert_eq!(base.terms.len(), if auxiliary { 6 } else { 3 });
        assert!((base.total - base.terms.iter().map(|t| t.1).sum::<f64>()).abs() < 1e-9);
        // Central differences on a few logits (the matching and points stay fixed for small steps).
        let eps = 1e-3f32;
        for k in 0..2 {
            for (is_mask, i) in [(false, 3), (false, 17), (true, 7), (true, 40), (true, 200)] {
                let mut plus = preds.clone();
                let mut minus = preds.clone();
                let (pv, mv) = if is_mask {
                    (&mut plus[k].1[i], &mut minus[k].1[i])
                } else {
                    (&mut plus[k].0[i], &mut minus[k].0[i])
                };
                *pv += eps;
                *mv -= eps;
                let num = (run(&plus).total - run(&minus).total) / (2.0 * eps as f64);
                let g = &base.grads[k];
                let ana = if is_mask {
                    g.mask_logits[i]
                } else {
                    g.class_logits[i]
                } as f64;
                assert!(
                    (num - ana).abs() < 2e-3 + 1e-2 * ana.abs(),
                    "pred {k} mask={is_mask} [{i}]: numeric {num} analytic {ana}"
                );
            }
        }
        if !auxiliary {
            assert!(base.grads[0].class_logits.iter().all(|&v| v == 0.0));
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        numeric_check(true);
        numeric_check(false);
    }

    #[test]
    fn bilinear_taps_follow_grid_sample() {
        // A point at a pixel centre reads that pixel; at the map corner a quarter of it (zero padding).
        let map: Vec<f32> = (0..12).map(|v| v as f32).collect();
        assert!((sample(&map, 3, 4, [(1.5) / 4.0, (2.5) / 3.0]) - 9.0).abs() < 1e-5);
        assert!((sample(&map, 3, 4, [0.0, 0.0]) - 0.0).abs() < 1e-6);
        assert!((sample(&map, 3, 4, [1.0, 1.0]) - 11.0 / 4.0).abs() < 1e-5);
        // Half-way between pixel centres (0,1) and (0,2): their mean.
        assert!((sample(&map, 3, 4, [2.0 / 4.0, 0.5 / 3.0]) - 1.5).abs() < 1e-5);
    }

    #[test]
    fn the_matcher_finds_the_obvious_assignment() {
        // Query 2 predicts target 0's mask exactly and its class; query 0 target 1's.
        let shape = PredictionShape {
            batch: 1,
            queries: 3,
            classes: 3,
            height: 4,
            width: 4,
        };
        let m0: Vec<f32> = (0..16).map(|i| if i < 8 { 1.0 } else { 0.0 }).collect();
        let m1: Vec<f32> = m0.iter().map(|v| 1.0 - v).collect();
        let to_logit = |m: &[f32]| {
            m.iter()
                .map(|&v| if v > 0.5 { 8.0 } else { -8.0 })
                .collect::<Vec<f32>>()
        };
        let mut masks = to_logit(&m1);
        masks.extend(vec![0.0; 16]);
        masks.extend(to_logit(&m0));
        let class = vec![-5.0, 5.0, -5.0, 0.0, 0.0, 0.0, 5.0, -5.0, -5.0];
        let mut tm = m0.clone();
        tm.extend(&m1);
        let targets = [ImageTargets {
            height: 4,
            width: 4,
            masks: tm,
            classes: vec![0, 1],
        }];
        let crit = Criterion::new(
            CriterionConfig {
                num_points: 64,
                ..CriterionConfig::default()
            },
            2,
        )
        .unwrap();
        let out = crit
            .compute(
                shape,
                &[Logits {
                    class_logits: &class,
                    mask_logits: &masks,
                }],
                &targets,
                &mut RandomPoints::new(1),
            )
            .unwrap();
        assert_eq!(out.matches[0][0], vec![(0, 1), (2, 0)]);
    }

    #[test]
    fn replay_checks_shapes() {
        let mut r = ReplayPoints::new(vec![([1, 2, 2], vec![0.1, 0.2, 0.3, 0.4])]);
        assert!(matches!(
            r.draw(1, 3),
            Err(CriterionError::ReplayShape { .. })
        ));
        let mut r = ReplayPoints::new(vec![([1, 2, 2], vec![0.1, 0.2, 0.3, 0.4])]);
        assert_eq!(r.draw(1, 2).unwrap(), vec![[0.1, 0.2], [0.3, 0.4]]);
        assert!(matches!(
            r.draw(1, 2),
            Err(CriterionError::ReplayExhausted(1))
        ));
    }
}
