//! The Hungarian matcher (mask2former/modeling/matcher.py): per image, the cost of assigning
//! each query to each target (class probability, BCE and dice on points shared by all pairs),
//! solved exactly.

use super::losses::{bce, sigmoid, softmax_row};
use super::parallel::map_items;
use super::points::{sample, PointSource};
use super::{Criterion, CriterionError, ImageTargets, Logits, PredictionShape, Result};

impl Criterion {
    /// Per image: cost = cost_mask·BCE + cost_class·(−p(class)) + cost_dice·dice on P uniform
    /// points shared by all queries and targets; solved exactly (scipy's algorithm).
    pub(super) fn match_batch(
        &self,
        shape: PredictionShape,
        pred: Logits<'_>,
        targets: &[ImageTargets],
        points: &mut dyn PointSource,
    ) -> Result<Vec<Vec<(usize, usize)>>> {
        let q = shape.queries;
        let np = self.cfg.num_points;
        // Every image's points first, in the serial order; then the images on the cores.
        let draws = (0..targets.len())
            .map(|b| points.draw_images(&[b], np))
            .collect::<Result<Vec<_>>>()?;
        let images: Vec<_> = targets.iter().zip(draws).enumerate().collect();
        map_items(images, |(b, (tgt, pts))| {
            let n = tgt.len();
            if n == 0 {
                return Ok(Vec::new());
            }
            let cost = self.cost_matrix(shape, pred, tgt, b, &pts);
            assign(b, q, n, &cost)
        })
        .into_iter()
        .collect()
    }

    /// Image `b`'s cost matrix [Q, n] (row-major) on the points `pts`: cost_mask·BCE +
    /// cost_class·(−p(class)) + cost_dice·dice, NaN set to 0 and clamped to ±1e10.
    pub(super) fn cost_matrix(
        &self,
        shape: PredictionShape,
        pred: Logits<'_>,
        tgt: &ImageTargets,
        b: usize,
        pts: &[[f32; 2]],
    ) -> Vec<f64> {
        let (q, c, h, w) = (shape.queries, shape.classes, shape.height, shape.width);
        let np = pts.len();
        let n = tgt.len();
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
            let probs = softmax_row(row);
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
        cost
    }
}

/// Image `b`'s minimum-cost assignment of a `[q, n]` cost matrix (row-major): (query, target)
/// pairs sorted by query.
pub(super) fn assign(b: usize, q: usize, n: usize, cost: &Vec<f64>) -> Result<Vec<(usize, usize)>> {
    let (rows, cols) = lsap::solve(q, n, cost, false).map_err(|e| CriterionError::Assignment {
        image: b,
        rows: q,
        cols: n,
        reason: e.to_string(),
    })?;
    let mut pairs: Vec<(usize, usize)> = rows.into_iter().zip(cols).collect();
    pairs.sort_unstable();
    Ok(pairs)
}
