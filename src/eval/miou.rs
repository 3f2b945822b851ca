//! Semantic segmentation metrics (mIoU, pixel accuracy), following detectron2's
//! `SemSegEvaluator`: a confusion matrix over `K` classes, ground-truth pixels with the ignore
//! label left out; a class enters the means only when it occurs in the ground truth.
//! A prediction may also carry the ignore value, meaning "no class" (a VOID pixel of a panoptic
//! prediction): such a pixel counts as a miss for its ground-truth class and as no class's
//! prediction.

use serde::Serialize;

use super::EvalError;
use crate::data::LabelMap;

/// mIoU and friends; per-class entries are `None` for classes absent from the ground truth.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SemSegResult {
    #[serde(rename = "mIoU")]
    pub miou: f64,
    /// Frequency-weighted IoU.
    #[serde(rename = "fwIoU")]
    pub fwiou: f64,
    /// Mean class accuracy.
    #[serde(rename = "mACC")]
    pub macc: f64,
    /// Pixel accuracy.
    #[serde(rename = "pACC")]
    pub pacc: f64,
    pub per_class_iou: Vec<Option<f64>>,
    pub per_class_acc: Vec<Option<f64>>,
}

/// Accumulates a `[K, K]` confusion matrix (`[gt][pred]`) over images.
#[derive(Clone, Debug)]
pub struct ConfusionMatrix {
    num_classes: usize,
    ignore: u8,
    counts: Vec<u64>,
    /// Per ground-truth class: pixels predicted as "no class".
    missed: Vec<u64>,
}

impl ConfusionMatrix {
    pub fn new(num_classes: usize, ignore: u8) -> Self {
        ConfusionMatrix {
            num_classes,
            ignore,
            counts: vec![0; num_classes * num_classes],
            missed: vec![0; num_classes],
        }
    }

    /// Adds one image; `image` names it in errors. Ground truth values must be `< K` or the
    /// ignore label; predictions must be `< K` or the ignore label ("no class").
    pub fn add(&mut self, image: &str, gt: &LabelMap, pred: &LabelMap) -> Result<(), EvalError> {
        if (gt.height, gt.width) != (pred.height, pred.width) {
            return Err(EvalError::Mismatch(format!(
                "image {image}: ground truth is {}x{}, prediction is {}x{}",
                gt.height, gt.width, pred.height, pred.width
            )));
        }
        let k = self.num_classes;
        for (i, (&g, &p)) in gt.labels.iter().zip(&pred.labels).enumerate() {
            if g == self.ignore {
                continue;
            }
            if g as usize >= k {
                return Err(EvalError::Mismatch(format!(
                    "image {image}: ground truth label {g} at pixel {i} is not below {k} classes nor the ignore value {}",
                    self.ignore
                )));
            }
            if p == self.ignore {
                self.missed[g as usize] += 1;
                continue;
            }
            if p as usize >= k {
                return Err(EvalError::Mismatch(format!(
                    "image {image}: predicted label {p} at pixel {i} is not below {k} classes nor the ignore value {}",
                    self.ignore
                )));
            }
            self.counts[g as usize * k + p as usize] += 1;
        }
        Ok(())
    }

    /// `counts[gt][pred]`.
    pub fn get(&self, gt: usize, pred: usize) -> u64 {
        self.counts[gt * self.num_classes + pred]
    }

    pub fn finish(&self) -> SemSegResult {
        let k = self.num_classes;
        let tp: Vec<f64> = (0..k).map(|c| self.get(c, c) as f64).collect();
        let pos_gt: Vec<f64> = (0..k)
            .map(|c| (0..k).map(|p| self.get(c, p)).sum::<u64>() as f64 + self.missed[c] as f64)
            .collect();
        let pos_pred: Vec<f64> = (0..k)
            .map(|c| (0..k).map(|g| self.get(g, c)).sum::<u64>() as f64)
            .collect();
        let total: f64 = pos_gt.iter().sum();
        let mut per_class_iou = vec![None; k];
        let mut per_class_acc = vec![None; k];
        let (mut acc_sum, mut acc_n, mut iou_sum, mut iou_n, mut fw) =
            (0.0, 0usize, 0.0, 0usize, 0.0);
        for c in 0..k {
            if pos_gt[c] <= 0.0 {
                continue;
            }
            let acc = tp[c] / pos_gt[c];
            per_class_acc[c] = Some(acc);
            acc_sum += acc;
            acc_n += 1;
            let union = pos_gt[c] + pos_pred[c] - tp[c];
            if union > 0.0 {
                let iou = tp[c] / union;
                per_class_iou[c] = Some(iou);
                iou_sum += iou;
                iou_n += 1;
                fw += iou * pos_gt[c] / total;
            }
        }
        let div = |s: f64, n: usize| if n == 0 { 0.0 } else { s / n as f64 };
        SemSegResult {
            miou: div(iou_sum, iou_n),
            fwiou: fw,
            macc: div(acc_sum, acc_n),
            pacc: if total > 0.0 {
                tp.iter().sum::<f64>() / total
            } else {
                0.0
            },
            per_class_iou,
            per_class_acc,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_sized_example() {
        let gt = LabelMap {
            height: 1,
            width: 6,
            labels: vec![0, 0, 1, 1, 255, 2],
        };
        let pred = LabelMap {
            height: 1,
            width: 6,
            labels: vec![0, 1, 1, 1, 0, 1],
        };
        let mut cm = ConfusionMatrix::new(4, 255);
        cm.add("a", &gt, &pred).unwrap();
        let r = cm.finish();
        // class 0: tp 1, gt 2, pred 1 → IoU 1/2; class 1: tp 2, gt 2, pred 4 → 1/2; class 2: 0; class 3 absent
        assert_eq!(r.per_class_iou, vec![Some(0.5), Some(0.5), Some(0.0), None]);
        assert!((r.miou - 1.0 / 3.0).abs() < 1e-12);
        assert!((r.pacc - 0.6).abs() < 1e-12);
        let bad = LabelMap {
            height: 1,
            width: 6,
            labels: vec![0, 0, 7, 1, 255, 2],
        };
        assert!(cm
            .add("b", &bad, &pred)
            .unwrap_err()
            .to_string()
            .contains("label 7"));
    }
}
