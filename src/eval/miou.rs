//! Semantic segmentation metrics (mIoU, fwIoU, mean class accuracy, pixel accuracy) as
//! detectron2's `SemSegEvaluator` defines them, on `hotcoco`'s confusion matrix
//! ([`hotcoco::metrics::semantic::PixelConfusion`]).
//!
//! Ground-truth pixels with the ignore label are left out. A prediction may also carry the
//! ignore value, meaning "no class" (a VOID pixel of a panoptic prediction): such a pixel is a
//! miss for its ground-truth class and no class's prediction (hotcoco's unlabeled column).
//! One departure from hotcoco (which follows mmsegmentation): detectron2 — and so Mask2Former's
//! reported mIoU — averages IoU over the classes present in the ground truth only, while hotcoco
//! also counts a class that is only predicted (IoU 0). The mean is therefore taken here from
//! hotcoco's per-class numbers (docs/PERFORMANCE.md, "hotcoco against our fixtures").

use hotcoco::metrics::semantic::PixelConfusion;
use serde::Serialize;

use super::EvalError;
use crate::data::{LabelMap, IGNORE};

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
    /// Class names, by class index (empty when the dataset names none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub class_names: Vec<String>,
    pub per_class_iou: Vec<Option<f64>>,
    pub per_class_acc: Vec<Option<f64>>,
}

/// Accumulates a `[K, K + 1]` confusion matrix (`[gt][pred]`, the last column "no class") over
/// images. Labels are 8-bit with [`IGNORE`] as the ignore value.
#[derive(Clone, Debug)]
pub struct ConfusionMatrix {
    counts: PixelConfusion,
}

impl ConfusionMatrix {
    pub fn new(num_classes: usize) -> Self {
        ConfusionMatrix {
            counts: PixelConfusion::with_unlabeled_pred(num_classes),
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
        let k = self.counts.num_classes();
        let bad = |side: &str, i: usize, v: u8| {
            EvalError::Mismatch(format!(
                "image {image}: {side} label {v} at pixel {i} is not below {k} classes nor the ignore value {IGNORE}"
            ))
        };
        if !pred.labels.contains(&IGNORE) {
            let ignore = Some(u64::from(IGNORE));
            return self
                .counts
                .update(&gt.labels, &pred.labels, ignore)
                .map_err(|e| EvalError::Mismatch(format!("image {image}: {e}")));
        }
        // "no class" predictions cannot go through a label map (hotcoco refuses labels >= K):
        // those pixels go to the unlabeled column, the others through the matrix.
        let mut missed = vec![0u64; k];
        let (mut g_kept, mut p_kept) = (Vec::new(), Vec::new());
        for (i, (&g, &p)) in gt.labels.iter().zip(&pred.labels).enumerate() {
            if g == IGNORE {
                continue;
            }
            if usize::from(g) >= k {
                return Err(bad("ground truth", i, g));
            }
            if p == IGNORE {
                missed[usize::from(g)] += 1;
            } else if usize::from(p) >= k {
                return Err(bad("predicted", i, p));
            } else {
                g_kept.push(g);
                p_kept.push(p);
            }
        }
        self.counts
            .update(&g_kept, &p_kept, None)
            .map_err(|e| EvalError::Mismatch(format!("image {image}: {e}")))?;
        for (g, n) in missed.into_iter().enumerate() {
            self.add_count(g, None, n);
        }
        Ok(())
    }

    /// Adds `n` pixels of ground-truth class `gt` predicted as `pred` (`None`: no class).
    /// Panics on a class index out of range (callers index their own category lists).
    pub fn add_count(&mut self, gt: usize, pred: Option<usize>, n: u64) {
        let column = pred.unwrap_or(self.counts.num_classes());
        self.counts.add_count(gt, column, n);
    }

    /// `counts[gt][pred]`.
    pub fn get(&self, gt: usize, pred: usize) -> u64 {
        self.counts.get(gt, pred)
    }

    pub fn finish(&self) -> SemSegResult {
        let scores = self.counts.scores();
        let classes = self.counts.all_class_counts();
        // detectron2's average: classes present in the ground truth (see the module comment)
        let present: Vec<f64> = classes
            .iter()
            .filter_map(|c| c.acc().and(c.iou()))
            .collect();
        let some = |v: f64| (v >= 0.0).then_some(v);
        SemSegResult {
            miou: if present.is_empty() {
                0.0
            } else {
                present.iter().sum::<f64>() / present.len() as f64
            },
            fwiou: some(scores.fwiou).unwrap_or(0.0),
            macc: some(scores.macc).unwrap_or(0.0),
            pacc: some(scores.aacc).unwrap_or(0.0),
            class_names: Vec::new(),
            per_class_iou: classes.iter().map(|c| c.acc().and(c.iou())).collect(),
            per_class_acc: classes.iter().map(|c| c.acc()).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(labels: Vec<u8>) -> LabelMap {
        LabelMap {
            height: 1,
            width: labels.len(),
            labels,
        }
    }

    #[test]
    fn hand_sized_example() {
        let gt = map(vec![0, 0, 1, 1, 255, 2]);
        let pred = map(vec![0, 1, 1, 1, 0, 1]);
        let mut cm = ConfusionMatrix::new(4);
        cm.add("a", &gt, &pred).unwrap();
        let r = cm.finish();
        // class 0: tp 1, gt 2, pred 1 → IoU 1/2; class 1: tp 2, gt 2, pred 4 → 1/2; class 2: 0; class 3 absent
        assert_eq!(r.per_class_iou, vec![Some(0.5), Some(0.5), Some(0.0), None]);
        assert!((r.miou - 1.0 / 3.0).abs() < 1e-12);
        assert!((r.pacc - 0.6).abs() < 1e-12);
        let bad = map(vec![0, 0, 7, 1, 255, 2]);
        let err = cm.add("b", &bad, &pred).unwrap_err().to_string();
        assert!(err.contains("label 7") && err.contains("image b"), "{err}");
    }

    #[test]
    fn no_class_prediction_is_a_miss_and_only_predicted_classes_stay_out_of_the_mean() {
        // class 0: 3 gt px: one hit, one "no class", one predicted as class 1; class 1 is only
        // predicted (its prediction on the ignored pixel is left out)
        let gt = map(vec![0, 0, 0, 255]);
        let pred = map(vec![0, 255, 1, 1]);
        let mut cm = ConfusionMatrix::new(2);
        cm.add("c", &gt, &pred).unwrap();
        assert_eq!((cm.get(0, 0), cm.get(0, 1), cm.get(0, 2)), (1, 1, 1));
        let r = cm.finish();
        // class 0: tp 1, gt 3, pred 1 → 1/3; class 1 absent from the ground truth → not averaged
        assert_eq!(r.per_class_iou, vec![Some(1.0 / 3.0), None]);
        assert!((r.miou - 1.0 / 3.0).abs() < 1e-12);
        assert!((r.pacc - 1.0 / 3.0).abs() < 1e-12);
        let bad = map(vec![0, 255, 9, 1]);
        let err = cm.add("d", &gt, &bad).unwrap_err().to_string();
        assert!(err.contains("label 9") && err.contains("pixel 2"), "{err}");
    }
}
