//! Panoptic quality, following the panopticapi definition (`panopticapi/evaluation.py`).
//!
//! Per image: a predicted and a ground-truth segment of the same category match when their IoU
//! is above 0.5, where the union leaves out the predicted pixels that fall on VOID. Crowd
//! segments are never matched; unmatched crowd segments are not false negatives. An unmatched
//! prediction is not a false positive when more than half of it lies on VOID plus the crowd region
//! of its category. Ground-truth areas are those written in the annotation file, predicted areas
//! are counted from the PNG. PQ = Σ IoU / (TP + FP/2 + FN/2), SQ = Σ IoU / TP, RQ = PQ / SQ,
//! averaged over the categories that appear (TP + FP + FN > 0).

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use super::EvalError;
use crate::data::{Categories, Panoptic};

/// Matching statistics of one category.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PqStat {
    pub iou: f64,
    pub tp: u64,
    pub fp: u64,
    pub fn_: u64,
}

/// PQ / SQ / RQ averaged over `n` categories.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct PqSummary {
    pub pq: f64,
    pub sq: f64,
    pub rq: f64,
    pub n: usize,
}

/// PQ for all categories, things and stuff, plus per category.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PqResult {
    pub all: PqSummary,
    pub things: PqSummary,
    pub stuff: PqSummary,
    /// Dataset category id → (pq, sq, rq).
    pub per_class: BTreeMap<u32, [f64; 3]>,
}

/// Accumulates panoptic matching statistics over images.
#[derive(Clone, Debug, Default)]
pub struct PqAccumulator {
    stats: HashMap<u32, PqStat>,
}

const VOID: u32 = 0;

impl PqAccumulator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one image; `image` names it in errors. Both segmentations must have the same size,
    /// every non-VOID id in a PNG must be listed in its segments and vice versa.
    pub fn add(
        &mut self,
        image: &str,
        gt: &Panoptic,
        pred: &Panoptic,
        categories: &Categories,
    ) -> Result<(), EvalError> {
        if (gt.height, gt.width) != (pred.height, pred.width) {
            return Err(EvalError::Mismatch(format!(
                "image {image}: ground truth is {}x{}, prediction is {}x{}",
                gt.height, gt.width, pred.height, pred.width
            )));
        }
        let gt_segs: HashMap<u32, _> = gt.segments.iter().map(|s| (s.id, s)).collect();
        let pred_segs: HashMap<u32, _> = pred.segments.iter().map(|s| (s.id, s)).collect();

        // confusion between gt and predicted ids; runs of equal pairs are counted before one
        // map update, since segments are mostly long horizontal runs
        let mut inter: HashMap<(u32, u32), u64> = HashMap::new();
        let mut run = ((0u32, 0u32), 0u64);
        for pair in gt.ids.iter().copied().zip(pred.ids.iter().copied()) {
            if pair != run.0 {
                if run.1 > 0 {
                    *inter.entry(run.0).or_default() += run.1;
                }
                run = (pair, 0);
            }
            run.1 += 1;
        }
        if run.1 > 0 {
            *inter.entry(run.0).or_default() += run.1;
        }

        // predicted areas and sanity checks
        let mut pred_area: HashMap<u32, u64> = HashMap::new();
        for (&(_, p), &n) in &inter {
            *pred_area.entry(p).or_default() += n;
        }
        for &id in pred_area.keys() {
            match pred_segs.get(&id) {
                None if id == VOID => {}
                None => {
                    return Err(EvalError::Mismatch(format!(
                    "image {image}: segment id {id} is in the prediction PNG but not in its JSON"
                )))
                }
                Some(seg) if categories.get(seg.category_id).is_none() => {
                    return Err(EvalError::Mismatch(format!(
                        "image {image}: predicted segment {id} has unknown category_id {}",
                        seg.category_id
                    )))
                }
                Some(_) => {}
            }
        }
        let missing: Vec<u32> = pred_segs
            .keys()
            .filter(|id| !pred_area.contains_key(id))
            .copied()
            .collect();
        if !missing.is_empty() {
            return Err(EvalError::Mismatch(format!(
                "image {image}: predicted segment ids {missing:?} are in the JSON but not in the PNG"
            )));
        }

        let mut gt_matched = HashSet::new();
        let mut pred_matched = HashSet::new();
        for (&(g, p), &i) in &inter {
            let (Some(gs), Some(ps)) = (gt_segs.get(&g), pred_segs.get(&p)) else {
                continue;
            };
            if gs.iscrowd || gs.category_id != ps.category_id {
                continue;
            }
            let void = inter.get(&(VOID, p)).copied().unwrap_or(0);
            let union = pred_area[&p] as f64 + gs.area - i as f64 - void as f64;
            let iou = i as f64 / union;
            if iou > 0.5 {
                let st = self.stats.entry(gs.category_id).or_default();
                st.tp += 1;
                st.iou += iou;
                gt_matched.insert(g);
                pred_matched.insert(p);
            }
        }

        // false negatives; crowd segments are ignored (the last crowd per category is its region)
        let mut crowd_of: HashMap<u32, u32> = HashMap::new();
        for gs in &gt.segments {
            if gt_matched.contains(&gs.id) {
                continue;
            }
            if gs.iscrowd {
                crowd_of.insert(gs.category_id, gs.id);
                continue;
            }
            self.stats.entry(gs.category_id).or_default().fn_ += 1;
        }

        // false positives, unless mostly on VOID or on the crowd region of the category
        for ps in pred_segs.values() {
            if pred_matched.contains(&ps.id) {
                continue;
            }
            let mut ignored = inter.get(&(VOID, ps.id)).copied().unwrap_or(0);
            if let Some(&crowd) = crowd_of.get(&ps.category_id) {
                ignored += inter.get(&(crowd, ps.id)).copied().unwrap_or(0);
            }
            if ignored as f64 / pred_area[&ps.id] as f64 > 0.5 {
                continue;
            }
            self.stats.entry(ps.category_id).or_default().fp += 1;
        }
        Ok(())
    }

    /// Statistics of one category so far.
    pub fn stat(&self, category_id: u32) -> PqStat {
        self.stats.get(&category_id).copied().unwrap_or_default()
    }

    /// Averages over the dataset's categories (all / things / stuff).
    pub fn finish(&self, categories: &Categories) -> PqResult {
        let mut per_class = BTreeMap::new();
        let mut average = |isthing: Option<bool>| {
            let mut sum = PqSummary::default();
            for cat in categories.list() {
                if isthing.is_some_and(|t| t != cat.isthing) {
                    continue;
                }
                let st = self.stat(cat.id);
                if st.tp + st.fp + st.fn_ == 0 {
                    per_class.insert(cat.id, [0.0; 3]);
                    continue;
                }
                let denom = st.tp as f64 + 0.5 * st.fp as f64 + 0.5 * st.fn_ as f64;
                let pq = st.iou / denom;
                let sq = if st.tp != 0 {
                    st.iou / st.tp as f64
                } else {
                    0.0
                };
                let rq = st.tp as f64 / denom;
                per_class.insert(cat.id, [pq, sq, rq]);
                sum.pq += pq;
                sum.sq += sq;
                sum.rq += rq;
                sum.n += 1;
            }
            // panopticapi divides by n unguarded; with no category present every average is 0
            if sum.n > 0 {
                let n = sum.n as f64;
                sum.pq /= n;
                sum.sq /= n;
                sum.rq /= n;
            }
            sum
        };
        let things = average(Some(true));
        let stuff = average(Some(false));
        let all = average(None);
        PqResult {
            all,
            things,
            stuff,
            per_class,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Category, SegmentInfo};

    fn seg(id: u32, category_id: u32, iscrowd: bool, area: f64) -> SegmentInfo {
        SegmentInfo {
            id,
            category_id,
            iscrowd,
            area,
            bbox: None,
        }
    }

    fn cats() -> Categories {
        let c = |id, isthing| Category {
            id,
            name: format!("c{id}"),
            isthing,
            color: None,
        };
        Categories::new(vec![c(1, true), c(2, false)]).unwrap()
    }

    #[test]
    fn hand_sized_example() {
        // 1x10 strip. gt: thing 1 on px 0..4, stuff 2 on 4..8, VOID 8..10.
        // pred: thing 10 on 0..3 plus one VOID px (8); stuff 20 on 3..8; 30 (thing) on px 9 (all VOID).
        let gt = Panoptic {
            height: 1,
            width: 10,
            ids: vec![1, 1, 1, 1, 2, 2, 2, 2, 0, 0],
            segments: vec![seg(1, 1, false, 4.0), seg(2, 2, false, 4.0)],
        };
        let pred = Panoptic {
            height: 1,
            width: 10,
            ids: vec![10, 10, 10, 20, 20, 20, 20, 20, 10, 30],
            segments: vec![
                seg(10, 1, false, 0.0),
                seg(20, 2, false, 0.0),
                seg(30, 1, false, 0.0),
            ],
        };
        let mut acc = PqAccumulator::new();
        acc.add("strip", &gt, &pred, &cats()).unwrap();
        // thing: inter 3, union 4 + 4 - 3 - 1(void) = 4 → 0.75; the VOID-only segment is ignored.
        assert_eq!(
            acc.stat(1),
            PqStat {
                iou: 0.75,
                tp: 1,
                fp: 0,
                fn_: 0
            }
        );
        // stuff: inter 4, union 5 + 4 - 4 = 5 → 0.8
        assert_eq!(
            acc.stat(2),
            PqStat {
                iou: 0.8,
                tp: 1,
                fp: 0,
                fn_: 0
            }
        );
        let r = acc.finish(&cats());
        assert!((r.all.pq - 0.775).abs() < 1e-12);
        assert_eq!(r.things.n, 1);
    }

    #[test]
    fn unlisted_png_id_is_an_error() {
        let gt = Panoptic {
            height: 1,
            width: 2,
            ids: vec![0, 0],
            segments: vec![],
        };
        let pred = Panoptic {
            height: 1,
            width: 2,
            ids: vec![0, 5],
            segments: vec![],
        };
        let err = PqAccumulator::new()
            .add("img7", &gt, &pred, &cats())
            .unwrap_err();
        assert!(err.to_string().contains("img7") && err.to_string().contains('5'));
    }
}
