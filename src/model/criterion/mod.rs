//! Mask2Former's training criterion (mask2former/modeling/criterion.py and matcher.py; transformers
//! `Mask2FormerLoss`): per-image Hungarian matching on uniformly sampled points, then cross-entropy
//! (no-object weight 0.1), sigmoid BCE and dice on importance-sampled points, normalised by the
//! number of target masks, for every prediction (deep supervision).
//!
//! Matching and point selection depend on the current predictions and carry no gradient, and the
//! losses are sums over a few thousand sampled points, so the whole criterion runs on the host from
//! the downloaded logits: [`Criterion::compute`] returns the loss terms *and* the exact gradient of
//! the total loss with respect to every class and mask logit. The graph then back-propagates those
//! logit gradients through the network from [`attach_logit_gradients`]' seed inputs.
//!
//! Point sampling is bilinear with `align_corners = False` and zero padding (torch `grid_sample`
//! of `2c − 1`), in both the predictions (at H/4) and the targets (at the input resolution).
//! Random points come from a [`PointSource`], so tests can replay the draws transformers made.
//!
//! Modules as upstream keeps them: `matcher` (matcher.py), `losses` (the loss terms of
//! criterion.py), `points` (point sampling); this file holds the inputs, outputs and the
//! driver that runs them over every prediction.

pub mod device;
mod losses;
mod matcher;
mod parallel;
mod points;

use thiserror::Error;

use crate::graph::{Graph, Result as GraphResult};
use crate::model::config::Mask2FormerConfig;
use crate::model::decoder::Prediction;

pub use points::{ImagePoints, PointSource, RandomPoints, ReplayPoints};

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
    #[error("criterion: image {image} has {got} targets, the device matcher was built for at most {max}")]
    TooManyTargets {
        image: usize,
        got: usize,
        max: usize,
    },
    #[error("criterion: image {image}: target {target}'s mask holds {value}, the device criterion needs binary masks (0 or 1)")]
    NonBinaryTarget {
        image: usize,
        target: usize,
        value: f32,
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

/// What a batch's losses are divided by: the mask losses by the number of target masks (at
/// least 1), the class loss (a weighted mean over every query) by the sum of its weights.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Normalisers {
    pub num_masks: f64,
    pub class_weight: f64,
}

impl Normalisers {
    /// The unclamped sums of one batch: its target count, and its class-loss weight sum (a
    /// matched query weighs 1 and the rest `no_object_weight`; the matcher pairs
    /// `min(targets, queries)` queries per image). Data-parallel ranks sum these, then clamp.
    pub fn of_batch(cfg: &CriterionConfig, queries: usize, targets: &[ImageTargets]) -> Self {
        let mut out = Self {
            num_masks: 0.0,
            class_weight: 0.0,
        };
        for t in targets {
            let matched = t.len().min(queries);
            out.num_masks += t.len() as f64;
            out.class_weight += matched as f64 + cfg.no_object_weight * (queries - matched) as f64;
        }
        out
    }

    /// The normalisers of a global batch of `ranks` equal shares from the sums over ranks:
    /// divided by the number of ranks (the averaged gradient restores the global sum), the mask
    /// count clamped to at least 1 (Mask2Former's `clamp(num_masks / world_size, min=1)`).
    pub fn per_rank(sum: Self, ranks: usize) -> Self {
        Self {
            num_masks: (sum.num_masks / ranks as f64).max(1.0),
            class_weight: sum.class_weight / ranks as f64,
        }
    }
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
        self.compute_normalised(shape, predictions, targets, points, None)
    }

    /// [`Criterion::compute`] with the loss normalisers given (data-parallel training: the
    /// ranks' [`Normalisers::of_batch`] summed and divided by the number of ranks, so the
    /// averaged gradients are those of the global batch); `None`: the batch's own.
    pub fn compute_normalised(
        &self,
        shape: PredictionShape,
        predictions: &[Logits<'_>],
        targets: &[ImageTargets],
        points: &mut dyn PointSource,
        norm: Option<Normalisers>,
    ) -> Result<LossOutput> {
        self.check(shape, predictions, targets)?;
        let num_masks = match norm {
            Some(n) => n.num_masks.max(f64::MIN_POSITIVE),
            None => (targets.iter().map(|t| t.len()).sum::<usize>() as f64).max(1.0),
        };
        let class_weight = norm.map(|n| n.class_weight);
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
            let ce = self.class_loss(
                shape,
                pred,
                targets,
                &matches,
                class_weight,
                &mut grads[k].class_logits,
            );
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
}

/// Graph input names of the logit-gradient seeds of prediction `k`.
pub fn seed_names(k: usize) -> (String, String) {
    (
        format!("loss_seed.{k}.class_logits"),
        format!("loss_seed.{k}.mask_logits"),
    )
}

/// Adds inputs `loss_seed.{k}.{class,mask}_logits` (shaped like each prediction) and the
/// backward from them: the parameter gradients of the real loss when the seeds are
/// [`LogitGrads`] from [`Criterion::compute`] (the gradient of the total loss with respect to
/// every logit). Read them with `g.grads()`.
pub fn attach_logit_gradients(g: &mut Graph, predictions: &[Prediction]) -> GraphResult<()> {
    let mut seeds = Vec::new();
    for (k, p) in predictions.iter().enumerate() {
        let (cn, mn) = seed_names(k);
        for (name, v) in [(cn, p.class_logits), (mn, p.mask_logits)] {
            let shape = g.shape(v).to_vec();
            seeds.push((v, g.input(&name, &shape)?));
        }
    }
    g.backward_from(&seeds)
}

#[cfg(test)]
mod device_tests;
#[cfg(test)]
mod tests;
