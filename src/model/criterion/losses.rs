//! The losses of matched predictions (mask2former/modeling/criterion.py): weighted
//! cross-entropy over all queries, and BCE and dice on importance-sampled points of each
//! matched mask, each with its exact gradient with respect to the logits.

use super::parallel::map_items;
use super::points::{sample, taps, PointSource};
use super::{Criterion, CriterionError, ImageTargets, Logits, PredictionShape, Result};

/// `BCEWithLogits(x, t)`, the numerically stable form torch uses.
pub(super) fn bce(x: f64, t: f64) -> f64 {
    x.max(0.0) - x * t + (-x.abs()).exp().ln_1p()
}

pub(super) fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Softmax of one row of logits, in f64.
pub(super) fn softmax_row(row: &[f32]) -> Vec<f64> {
    let m = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
    let e: Vec<f64> = row.iter().map(|&v| (v as f64 - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.into_iter().map(|v| v / s).collect()
}

impl Criterion {
    /// Weighted cross-entropy over K + 1 classes (unmatched queries → no-object, weight 0.1),
    /// averaged by the sum of weights as torch's `CrossEntropyLoss(weight=...)` does. Adds
    /// `weight_class · ∂CE/∂logits` to `grad`.
    pub(super) fn class_loss(
        &self,
        shape: PredictionShape,
        pred: Logits<'_>,
        targets: &[ImageTargets],
        matches: &[Vec<(usize, usize)>],
        weight_sum: Option<f64>,
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
        let wsum: f64 = weight_sum.unwrap_or_else(|| target_class.iter().map(|&k| weight(k)).sum());
        let mut loss = 0.0;
        for (r, &k) in target_class.iter().enumerate() {
            let probs = softmax_row(&pred.class_logits[r * c..(r + 1) * c]);
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
    pub(super) fn mask_losses(
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
        let over = self.cfg.oversampled();
        let keep = self.cfg.uncertain();
        let random = np - keep;
        let images: Vec<usize> = pairs.iter().map(|&(b, _, _)| b).collect();
        let drawn = points.draw_images(&images, over)?;
        let extra = if random > 0 {
            points.draw_images(&images, random)?
        } else {
            Vec::new()
        };
        // Each pair writes only its own query's gradient plane: the pairs run on the cores, each
        // with its plane, and their losses are summed in the serial order.
        let mut planes: Vec<Option<&mut [f32]>> = grad.chunks_mut(h * w).map(Some).collect();
        let mut work = Vec::with_capacity(pairs.len());
        for (i, &(b, qi, t)) in pairs.iter().enumerate() {
            let plane = planes[b * q + qi]
                .take()
                .ok_or_else(|| CriterionError::Assignment {
                    image: b,
                    rows: q,
                    cols: targets[b].len(),
                    reason: format!("query {qi} matched twice"),
                })?;
            work.push((i, (b, qi, t), plane));
        }
        let losses = map_items(work, |(i, (b, qi, t), grad)| {
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
            let inter: f64 = s.iter().zip(&lab).map(|(a, b)| a * b).sum();
            let num = 2.0 * inter + 1.0;
            let den = s.iter().sum::<f64>() + lab.iter().sum::<f64>() + 1.0;

            let gm = self.cfg.weight_mask / (np as f64 * num_masks);
            let gd = self.cfg.weight_dice / num_masks;
            for (p, &pt) in pts.iter().enumerate() {
                let d_bce = (s[p] - lab[p]) * gm;
                // d(1 − N/D)/ds = −(2t·D − N)/D²; ds/dx = s(1 − s).
                let d_dice = -(2.0 * lab[p] * den - num) / (den * den) * s[p] * (1.0 - s[p]) * gd;
                let dx = d_bce + d_dice;
                let (tp, nt) = taps(h, w, pt);
                for &(j, wt) in &tp[..nt] {
                    grad[j] += (dx * wt as f64) as f32;
                }
            }
            (bce_mean / num_masks, (1.0 - num / den) / num_masks)
        });
        let (mut loss_mask, mut loss_dice) = (0.0, 0.0);
        for (m, d) in losses {
            loss_mask += m;
            loss_dice += d;
        }
        Ok((loss_mask, loss_dice))
    }
}
