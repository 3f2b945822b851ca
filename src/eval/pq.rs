//! Panoptic quality on `hotcoco`'s port of panopticapi (`panopticapi/evaluation.py`).
//!
//! Each image is scored in memory, as it is read or as the model produces it: the overlap
//! histogram of the two id maps, the segment matching (IoU > 0.5 with the predicted pixels on
//! VOID left out of the union; crowd segments never matched and absorbing unmatched predictions
//! of their category) and the PQ/SQ/RQ formulas are `hotcoco`'s
//! ([`hotcoco::primitives::panoptic`], [`hotcoco::metrics::panoptic`]); this module checks the
//! input (sizes, ids, categories) with errors that name the image, and accumulates. Going through
//! `PanopticEval` instead would need every prediction written as PNG files first.
//! Ground-truth areas are those of the annotation file, predicted areas are counted from the map.
//! The same overlaps also give the semantic view of the predictions ([`super::miou`]).

use std::collections::{BTreeMap, HashMap};

use hotcoco::metrics::panoptic::{pq_average, PqCounts};
use hotcoco::primitives::panoptic::{match_segments, Overlaps, Segment, VOID};
use serde::Serialize;

use super::miou::ConfusionMatrix;
use super::EvalError;
use crate::data::{Categories, Panoptic};

/// PQ / SQ / RQ averaged over `n` categories (all zero when `n == 0`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct PqSummary {
    pub pq: f64,
    pub sq: f64,
    pub rq: f64,
    pub n: usize,
}

/// The scores of one category and the counts they come from. A category with no segment on
/// either side (`tp + fp + fn == 0`) scores 0 and is left out of the averages, as in panopticapi.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PqClass {
    pub name: String,
    pub isthing: bool,
    pub pq: f64,
    pub sq: f64,
    pub rq: f64,
    pub tp: u64,
    pub fp: u64,
    #[serde(rename = "fn")]
    pub fn_: u64,
}

/// PQ for all categories, things and stuff, plus per category.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PqResult {
    pub all: PqSummary,
    pub things: PqSummary,
    pub stuff: PqSummary,
    /// Dataset category id → its scores.
    pub per_class: BTreeMap<u32, PqClass>,
}

/// Accumulates panoptic matching statistics (and the pixel confusion of the semantic view) over
/// images.
#[derive(Clone, Debug)]
pub struct PqAccumulator {
    counts: HashMap<u32, PqCounts>,
    pixels: ConfusionMatrix,
}

impl PqAccumulator {
    /// An accumulator for the dataset's categories.
    pub fn new(categories: &Categories) -> Self {
        PqAccumulator {
            counts: HashMap::new(),
            pixels: ConfusionMatrix::new(categories.len()),
        }
    }

    /// Adds one image; `image` names it in errors. Both segmentations must have the same size,
    /// every non-VOID id in a map must be listed in its segments and vice versa.
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
        let overlaps = Overlaps::compute(&gt.ids, &pred.ids);
        let pred_segments = predicted_segments(image, pred, &overlaps, categories)?;
        let gt_segments = gt
            .segments
            .iter()
            .map(|s| {
                Ok(Segment {
                    label: s.id,
                    category_id: u64::from(s.category_id),
                    area: whole_area(image, s.id, s.area)?,
                    iscrowd: s.iscrowd,
                })
            })
            .collect::<Result<Vec<_>, EvalError>>()?;

        let matches = match_segments(&gt_segments, &pred_segments, &overlaps);
        for &(gi, _, iou) in &matches.matched {
            if !iou.is_finite() {
                return Err(EvalError::Mismatch(format!(
                    "image {image}: ground-truth segment {} states an area ({}) smaller than its \
                     overlap with a prediction",
                    gt_segments[gi].label, gt_segments[gi].area
                )));
            }
            let c = self.entry(gt_segments[gi].category_id);
            c.tp += 1;
            c.iou += iou;
        }
        for &gi in &matches.missed {
            self.entry(gt_segments[gi].category_id).fn_ += 1;
        }
        for &pi in &matches.false_positives {
            self.entry(pred_segments[pi].category_id).fp += 1;
        }
        self.add_pixels(&overlaps, &gt_segments, &pred_segments, categories);
        Ok(())
    }

    fn entry(&mut self, category_id: u64) -> &mut PqCounts {
        // category ids come from u32 segment records
        self.counts.entry(category_id as u32).or_default()
    }

    /// The semantic view: every pixel of a segment (crowd included) is its category; ground-truth
    /// VOID and unknown categories are left out, a predicted VOID is a miss.
    fn add_pixels(
        &mut self,
        overlaps: &Overlaps,
        gt: &[Segment],
        pred: &[Segment],
        categories: &Categories,
    ) {
        let class_of = |segs: &[Segment]| -> HashMap<u32, usize> {
            segs.iter()
                .filter_map(|s| {
                    let index = categories.index_of(s.category_id as u32)?;
                    Some((s.label, index as usize))
                })
                .collect()
        };
        let (gt_class, pred_class) = (class_of(gt), class_of(pred));
        for (g, p, n) in overlaps.iter() {
            let Some(&gc) = gt_class.get(&g) else {
                continue;
            };
            // every non-VOID predicted id was checked to be listed with a known category
            self.pixels.add_count(gc, pred_class.get(&p).copied(), n);
        }
    }

    /// Counts of one category so far.
    pub fn counts(&self, category_id: u32) -> PqCounts {
        self.counts.get(&category_id).copied().unwrap_or_default()
    }

    /// The semantic view of the images added so far.
    pub fn pixels(&self) -> &ConfusionMatrix {
        &self.pixels
    }

    /// Averages over the dataset's categories (all / things / stuff).
    pub fn finish(&self, categories: &Categories) -> PqResult {
        let split = |isthing: Option<bool>| {
            let counts: Vec<PqCounts> = categories
                .list()
                .iter()
                .filter(|c| isthing.is_none_or(|t| t == c.isthing))
                .map(|c| self.counts(c.id))
                .collect();
            let (s, n) = pq_average(&counts);
            // hotcoco marks "nothing to average" with -1; our reports keep 0 with n == 0
            let or_zero = |v: f64| if n == 0 { 0.0 } else { v };
            PqSummary {
                pq: or_zero(s.pq),
                sq: or_zero(s.sq),
                rq: or_zero(s.rq),
                n,
            }
        };
        let per_class = categories
            .list()
            .iter()
            .map(|c| {
                let k = self.counts(c.id);
                let s = k.scores();
                let class = PqClass {
                    name: c.name.clone(),
                    isthing: c.isthing,
                    pq: s.map_or(0.0, |s| s.pq),
                    sq: s.map_or(0.0, |s| s.sq),
                    rq: s.map_or(0.0, |s| s.rq),
                    tp: k.tp,
                    fp: k.fp,
                    fn_: k.fn_,
                };
                (c.id, class)
            })
            .collect();
        PqResult {
            all: split(None),
            things: split(Some(true)),
            stuff: split(Some(false)),
            per_class,
        }
    }
}

/// A ground-truth area as the whole pixel count the matching needs.
fn whole_area(image: &str, id: u32, area: f64) -> Result<u64, EvalError> {
    if area.is_finite() && area >= 0.0 && area.fract() == 0.0 {
        return Ok(area as u64);
    }
    Err(EvalError::Mismatch(format!(
        "image {image}: ground-truth segment {id} has area {area}, not a whole pixel count"
    )))
}

/// The predicted segments with their areas counted from the map, after panopticapi's checks:
/// every non-VOID id of the map is listed, every listed id is in the map, every category known.
fn predicted_segments(
    image: &str,
    pred: &Panoptic,
    overlaps: &Overlaps,
    categories: &Categories,
) -> Result<Vec<Segment>, EvalError> {
    let areas: HashMap<u32, u64> = overlaps.pred_areas().into_iter().collect();
    let listed: HashMap<u32, u32> = pred
        .segments
        .iter()
        .map(|s| (s.id, s.category_id))
        .collect();
    if let Some(id) = areas
        .keys()
        .filter(|&&id| id != VOID && !listed.contains_key(&id))
        .min()
    {
        return Err(EvalError::Mismatch(format!(
            "image {image}: segment id {id} is in the prediction PNG but not in its JSON"
        )));
    }
    let mut missing: Vec<u32> = listed
        .keys()
        .filter(|id| !areas.contains_key(id))
        .copied()
        .collect();
    if !missing.is_empty() {
        missing.sort_unstable();
        return Err(EvalError::Mismatch(format!(
            "image {image}: predicted segment ids {missing:?} are in the JSON but not in the PNG"
        )));
    }
    let mut segments = Vec::with_capacity(pred.segments.len());
    for s in &pred.segments {
        if categories.get(s.category_id).is_none() {
            return Err(EvalError::Mismatch(format!(
                "image {image}: predicted segment {} has unknown category_id {}",
                s.id, s.category_id
            )));
        }
        segments.push(Segment {
            label: s.id,
            category_id: u64::from(s.category_id),
            area: areas[&s.id],
            iscrowd: false,
        });
    }
    Ok(segments)
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

    fn strip(ids: Vec<u32>, segments: Vec<SegmentInfo>) -> Panoptic {
        Panoptic {
            height: 1,
            width: ids.len(),
            ids,
            segments,
        }
    }

    #[test]
    fn hand_sized_example() {
        // 1x10 strip. gt: thing 1 on px 0..4, stuff 2 on 4..8, VOID 8..10.
        // pred: thing 10 on 0..3 plus one VOID px (8); stuff 20 on 3..8; 30 (thing) on px 9 (all VOID).
        let gt = strip(
            vec![1, 1, 1, 1, 2, 2, 2, 2, 0, 0],
            vec![seg(1, 1, false, 4.0), seg(2, 2, false, 4.0)],
        );
        let pred = strip(
            vec![10, 10, 10, 20, 20, 20, 20, 20, 10, 30],
            vec![
                seg(10, 1, false, 0.0),
                seg(20, 2, false, 0.0),
                seg(30, 1, false, 0.0),
            ],
        );
        let mut acc = PqAccumulator::new(&cats());
        acc.add("strip", &gt, &pred, &cats()).unwrap();
        // thing: inter 3, union 4 + 4 - 3 - 1(void) = 4 → 0.75; the VOID-only segment is ignored.
        let c1 = acc.counts(1);
        assert_eq!((c1.iou, c1.tp, c1.fp, c1.fn_), (0.75, 1, 0, 0));
        // stuff: inter 4, union 5 + 4 - 4 = 5 → 0.8
        let c2 = acc.counts(2);
        assert_eq!((c2.iou, c2.tp, c2.fp, c2.fn_), (0.8, 1, 0, 0));
        let r = acc.finish(&cats());
        assert!((r.all.pq - 0.775).abs() < 1e-12);
        assert_eq!(r.things.n, 1);
        assert_eq!(r.per_class[&2].name, "c2");
        // semantic view: class 0 (id 1) has 3 hits and one pixel lost to stuff
        let m = acc.pixels().finish();
        assert_eq!(m.per_class_iou[0], Some(0.75));
    }

    #[test]
    fn unlisted_png_id_is_an_error() {
        let gt = strip(vec![0, 0], vec![]);
        let pred = strip(vec![0, 5], vec![]);
        let err = PqAccumulator::new(&cats())
            .add("img7", &gt, &pred, &cats())
            .unwrap_err();
        assert!(err.to_string().contains("img7") && err.to_string().contains('5'));
    }

    #[test]
    fn fractional_ground_truth_area_is_an_error() {
        let gt = strip(vec![1, 1], vec![seg(1, 1, false, 1.5)]);
        let pred = strip(vec![3, 3], vec![seg(3, 1, false, 0.0)]);
        let err = PqAccumulator::new(&cats())
            .add("img8", &gt, &pred, &cats())
            .unwrap_err()
            .to_string();
        assert!(err.contains("img8") && err.contains("1.5"), "{err}");
    }

    #[test]
    fn nothing_to_average_reports_zero_with_n_zero() {
        let r = PqAccumulator::new(&cats()).finish(&cats());
        assert_eq!(r.all, PqSummary::default());
        assert_eq!((r.per_class[&1].pq, r.per_class[&1].tp), (0.0, 0));
    }
}
