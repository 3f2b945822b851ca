//! COCO mask AP, following pycocotools `COCOeval` with `iouType="segm"`.
//!
//! Per image and category, detections (sorted by score, at most 100) are greedily matched to
//! ground truth at each IoU threshold 0.50:0.05:0.95; crowd ground truth can absorb many
//! detections (IoU = intersection / detection area) and, like ground truth outside the area range,
//! only makes its matches ignored. Precision is made monotone and sampled at 101 recall points;
//! categories with no non-ignored ground truth are left out of the averages.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use serde::Serialize;

use serde::Deserialize;

use super::EvalError;
use crate::data::coco_instance::segmentation_to_rle;
use crate::data::{read_json, DataError, Rle};

/// A ground truth instance.
#[derive(Clone, Debug)]
pub struct GtInstance {
    pub image_id: u64,
    pub category_id: u32,
    pub rle: Rle,
    /// Area from the annotation file (selects the area range).
    pub area: f64,
    pub iscrowd: bool,
}

/// A predicted instance.
#[derive(Clone, Debug)]
pub struct Detection {
    pub image_id: u64,
    pub category_id: u32,
    pub rle: Rle,
    pub score: f64,
}

/// The twelve COCO numbers (−1 where nothing could be evaluated, as pycocotools prints).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct ApResult {
    #[serde(rename = "AP")]
    pub ap: f64,
    #[serde(rename = "AP50")]
    pub ap50: f64,
    #[serde(rename = "AP75")]
    pub ap75: f64,
    #[serde(rename = "APs")]
    pub ap_small: f64,
    #[serde(rename = "APm")]
    pub ap_medium: f64,
    #[serde(rename = "APl")]
    pub ap_large: f64,
    #[serde(rename = "AR1")]
    pub ar1: f64,
    #[serde(rename = "AR10")]
    pub ar10: f64,
    #[serde(rename = "AR100")]
    pub ar100: f64,
    #[serde(rename = "ARs")]
    pub ar_small: f64,
    #[serde(rename = "ARm")]
    pub ar_medium: f64,
    #[serde(rename = "ARl")]
    pub ar_large: f64,
}

impl ApResult {
    /// In pycocotools `stats` order.
    pub fn stats(&self) -> [f64; 12] {
        [
            self.ap,
            self.ap50,
            self.ap75,
            self.ap_small,
            self.ap_medium,
            self.ap_large,
            self.ar1,
            self.ar10,
            self.ar100,
            self.ar_small,
            self.ar_medium,
            self.ar_large,
        ]
    }
}

/// `np.linspace(start, stop, num)`, reproduced bit for bit (thresholds are compared exactly).
fn linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    let step = (stop - start) / (num - 1) as f64;
    (0..num)
        .map(|i| {
            if i == num - 1 {
                stop
            } else {
                i as f64 * step + start
            }
        })
        .collect()
}

const MAX_DETS: [usize; 3] = [1, 10, 100];
const AREA_RANGES: [(f64, f64); 4] = [
    (0.0, 1e10),
    (0.0, 32.0 * 32.0),
    (32.0 * 32.0, 96.0 * 96.0),
    (96.0 * 96.0, 1e10),
];

struct ImageEval {
    /// Scores of the (sorted, truncated) detections.
    scores: Vec<f64>,
    /// `[T][D]` matched to a ground truth.
    matched: Vec<Vec<bool>>,
    /// `[T][D]` ignored.
    ignored: Vec<Vec<bool>>,
    /// Per ground truth: ignored.
    gt_ignored: Vec<bool>,
}

/// Evaluates detections against ground truth over the given images and categories
/// (pycocotools uses every image and category of the ground-truth file).
pub fn evaluate(
    gts: &[GtInstance],
    dts: &[Detection],
    image_ids: &[u64],
    category_ids: &[u32],
) -> Result<ApResult, EvalError> {
    let img_ids: Vec<u64> = image_ids
        .iter()
        .copied()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let cat_ids: Vec<u32> = category_ids
        .iter()
        .copied()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let known: BTreeSet<u64> = img_ids.iter().copied().collect();
    if let Some(d) = dts.iter().find(|d| !known.contains(&d.image_id)) {
        return Err(EvalError::Mismatch(format!(
            "a prediction refers to image_id {} which is not in the ground truth",
            d.image_id
        )));
    }
    // pycocotools silently drops detections of unknown categories (AP 0 for a shifted label
    // space); a mismatch is reported instead.
    let known_cats: BTreeSet<u32> = cat_ids.iter().copied().collect();
    if let Some(d) = dts.iter().find(|d| !known_cats.contains(&d.category_id)) {
        return Err(EvalError::Mismatch(format!(
            "a prediction has category_id {} but the ground truth's categories are {:?}",
            d.category_id, cat_ids
        )));
    }
    let mut gt_by: HashMap<(u64, u32), Vec<&GtInstance>> = HashMap::new();
    for g in gts {
        gt_by
            .entry((g.image_id, g.category_id))
            .or_default()
            .push(g);
    }
    let mut dt_by: HashMap<(u64, u32), Vec<&Detection>> = HashMap::new();
    for d in dts {
        dt_by
            .entry((d.image_id, d.category_id))
            .or_default()
            .push(d);
    }
    for list in dt_by.values_mut() {
        // stable, like numpy's mergesort on -score
        list.sort_by(|a, b| b.score.total_cmp(&a.score));
        list.truncate(MAX_DETS[2]);
    }

    let iou_thrs = linspace(0.5, 0.95, 10);
    let rec_thrs = linspace(0.0, 1.0, 101);
    let (t_n, r_n, k_n, a_n, m_n) = (iou_thrs.len(), rec_thrs.len(), cat_ids.len(), 4, 3);
    // precision[t][r][k][a][m], recall[t][k][a][m]; -1 = not evaluated
    let mut precision = vec![-1.0f64; t_n * r_n * k_n * a_n * m_n];
    let mut recall = vec![-1.0f64; t_n * k_n * a_n * m_n];
    let p_idx = |t: usize, r: usize, k: usize, a: usize, m: usize| {
        (((t * r_n + r) * k_n + k) * a_n + a) * m_n + m
    };
    let r_idx = |t: usize, k: usize, a: usize, m: usize| ((t * k_n + k) * a_n + a) * m_n + m;

    let empty_g: Vec<&GtInstance> = Vec::new();
    let empty_d: Vec<&Detection> = Vec::new();
    for (k, &cat) in cat_ids.iter().enumerate() {
        // IoUs per image: [D][G] with detections sorted, ground truth in file order
        let mut per_image = Vec::with_capacity(img_ids.len());
        for &img in &img_ids {
            let g = gt_by.get(&(img, cat)).unwrap_or(&empty_g);
            let d = dt_by.get(&(img, cat)).unwrap_or(&empty_d);
            let ious: Vec<Vec<f64>> = d
                .iter()
                .map(|dt| {
                    g.iter()
                        .map(|gt| Rle::iou(&dt.rle, &gt.rle, gt.iscrowd))
                        .collect()
                })
                .collect();
            per_image.push((g, d, ious));
        }
        for (a, &range) in AREA_RANGES.iter().enumerate() {
            let evals: Vec<ImageEval> = per_image
                .iter()
                .filter_map(|(g, d, ious)| evaluate_image(g, d, ious, range, &iou_thrs))
                .collect();
            if evals.is_empty() {
                continue;
            }
            for (m, &max_det) in MAX_DETS.iter().enumerate() {
                let Some((rc_last, q)) = accumulate(&evals, max_det, &rec_thrs, t_n) else {
                    continue;
                };
                for t in 0..t_n {
                    recall[r_idx(t, k, a, m)] = rc_last[t];
                    for r in 0..r_n {
                        precision[p_idx(t, r, k, a, m)] = q[t][r];
                    }
                }
            }
        }
    }

    let mean_valid = |vals: &mut dyn Iterator<Item = f64>| {
        let (sum, n) = vals
            .filter(|&v| v > -1.0)
            .fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
        if n == 0 {
            -1.0
        } else {
            sum / n as f64
        }
    };
    let ap = |t: Option<usize>, a: usize, m: usize| {
        let ts: Vec<usize> = t.map_or((0..t_n).collect(), |t| vec![t]);
        let mut it = ts
            .iter()
            .flat_map(|&t| (0..r_n).flat_map(move |r| (0..k_n).map(move |k| (t, r, k))))
            .map(|(t, r, k)| precision[p_idx(t, r, k, a, m)]);
        mean_valid(&mut it)
    };
    let ar = |a: usize, m: usize| {
        let mut it = (0..t_n)
            .flat_map(|t| (0..k_n).map(move |k| (t, k)))
            .map(|(t, k)| recall[r_idx(t, k, a, m)]);
        mean_valid(&mut it)
    };
    // thresholds 0.5 and 0.75 are entries 0 and 5 of iou_thrs
    Ok(ApResult {
        ap: ap(None, 0, 2),
        ap50: ap(Some(0), 0, 2),
        ap75: ap(Some(5), 0, 2),
        ap_small: ap(None, 1, 2),
        ap_medium: ap(None, 2, 2),
        ap_large: ap(None, 3, 2),
        ar1: ar(0, 0),
        ar10: ar(0, 1),
        ar100: ar(0, 2),
        ar_small: ar(1, 2),
        ar_medium: ar(2, 2),
        ar_large: ar(3, 2),
    })
}

/// `COCOeval.evaluateImg` for one image, category and area range (max 100 detections).
fn evaluate_image(
    gts: &[&GtInstance],
    dts: &[&Detection],
    ious: &[Vec<f64>],
    (lo, hi): (f64, f64),
    iou_thrs: &[f64],
) -> Option<ImageEval> {
    if gts.is_empty() && dts.is_empty() {
        return None;
    }
    let out_of_range = |area: f64| area < lo || area > hi;
    let g_ignore: Vec<bool> = gts
        .iter()
        .map(|g| g.iscrowd || out_of_range(g.area))
        .collect();
    // stable sort: non-ignored ground truth first
    let mut order: Vec<usize> = (0..gts.len()).collect();
    order.sort_by_key(|&i| g_ignore[i]);
    let gt_ignored: Vec<bool> = order.iter().map(|&i| g_ignore[i]).collect();
    let crowd: Vec<bool> = order.iter().map(|&i| gts[i].iscrowd).collect();

    let (t_n, d_n, g_n) = (iou_thrs.len(), dts.len(), gts.len());
    let mut gt_match = vec![vec![false; g_n]; t_n];
    let mut matched = vec![vec![false; d_n]; t_n];
    let mut ignored = vec![vec![false; d_n]; t_n];
    for (t, &thr) in iou_thrs.iter().enumerate() {
        for d in 0..d_n {
            let mut best = thr.min(1.0 - 1e-10);
            let mut m: Option<usize> = None;
            for gi in 0..g_n {
                // a matched non-crowd ground truth is taken
                if gt_match[t][gi] && !crowd[gi] {
                    continue;
                }
                // once matched to a real ground truth, ignored ones (sorted last) cannot win
                if m.is_some_and(|m| !gt_ignored[m]) && gt_ignored[gi] {
                    break;
                }
                let iou = ious[d][order[gi]];
                if iou < best {
                    continue;
                }
                best = iou;
                m = Some(gi);
            }
            if let Some(m) = m {
                ignored[t][d] = gt_ignored[m];
                matched[t][d] = true;
                gt_match[t][m] = true;
            }
        }
    }
    // unmatched detections outside the area range are ignored
    for d in 0..d_n {
        if out_of_range(dts[d].rle.area() as f64) {
            for t in 0..t_n {
                if !matched[t][d] {
                    ignored[t][d] = true;
                }
            }
        }
    }
    Some(ImageEval {
        scores: dts.iter().map(|d| d.score).collect(),
        matched,
        ignored,
        gt_ignored,
    })
}

/// `COCOeval.accumulate` for one category, area range and detection limit: the last recall per
/// threshold and the interpolated precision `[T][R]`. `None` when there is no non-ignored ground truth.
fn accumulate(
    evals: &[ImageEval],
    max_det: usize,
    rec_thrs: &[f64],
    t_n: usize,
) -> Option<(Vec<f64>, Vec<Vec<f64>>)> {
    // (score, image, detection) in image order, then a stable sort by descending score
    let mut dets: Vec<(f64, usize, usize)> = Vec::new();
    for (e, ev) in evals.iter().enumerate() {
        for d in 0..ev.scores.len().min(max_det) {
            dets.push((ev.scores[d], e, d));
        }
    }
    dets.sort_by(|a, b| b.0.total_cmp(&a.0));
    let npig = evals
        .iter()
        .map(|e| e.gt_ignored.iter().filter(|&&i| !i).count())
        .sum::<usize>();
    if npig == 0 {
        return None;
    }
    let mut rc_last = vec![0.0; t_n];
    let mut q_all = Vec::with_capacity(t_n);
    for (t, rc_slot) in rc_last.iter_mut().enumerate() {
        let (mut tp, mut fp) = (0.0f64, 0.0f64);
        let mut rc = Vec::with_capacity(dets.len());
        let mut pr = Vec::with_capacity(dets.len());
        for &(_, e, d) in &dets {
            let ev = &evals[e];
            if ev.ignored[t][d] {
                // neither tp nor fp, but still a point of the curve
            } else if ev.matched[t][d] {
                tp += 1.0;
            } else {
                fp += 1.0;
            }
            rc.push(tp / npig as f64);
            pr.push(tp / (fp + tp + f64::EPSILON));
        }
        if let Some(&last) = rc.last() {
            *rc_slot = last;
        }
        for i in (1..pr.len()).rev() {
            if pr[i] > pr[i - 1] {
                pr[i - 1] = pr[i];
            }
        }
        let mut q = vec![0.0; rec_thrs.len()];
        for (r, &thr) in rec_thrs.iter().enumerate() {
            // searchsorted(rc, thr, side='left'); past the end the rest stay 0
            let i = rc.partition_point(|&x| x < thr);
            if i >= pr.len() {
                break;
            }
            q[r] = pr[i];
        }
        q_all.push(q);
    }
    Some((rc_last, q_all))
}

/// Per-category AP averaged over IoU thresholds (area all, 100 detections), for reports.
pub fn per_category_ap(
    gts: &[GtInstance],
    dts: &[Detection],
    image_ids: &[u64],
    category_ids: &[u32],
) -> Result<BTreeMap<u32, f64>, EvalError> {
    let mut out = BTreeMap::new();
    for &c in category_ids {
        let g: Vec<GtInstance> = gts.iter().filter(|x| x.category_id == c).cloned().collect();
        let d: Vec<Detection> = dts.iter().filter(|x| x.category_id == c).cloned().collect();
        out.insert(c, evaluate(&g, &d, image_ids, &[c])?.ap);
    }
    Ok(out)
}

#[derive(Deserialize)]
struct ResultJson {
    image_id: u64,
    category_id: u32,
    segmentation: serde_json::Value,
    score: f64,
}

/// Reads a COCO results JSON (a list of `{image_id, category_id, segmentation, score}`).
/// `sizes` gives `(height, width)` per image id, needed for polygon results.
pub fn read_results(
    path: &Path,
    sizes: &HashMap<u64, (usize, usize)>,
) -> Result<Vec<Detection>, DataError> {
    let list: Vec<ResultJson> = read_json(path)?;
    list.into_iter()
        .enumerate()
        .map(|(i, r)| {
            let rec = format!("result #{i} (image_id {})", r.image_id);
            let &(h, w) = sizes
                .get(&r.image_id)
                .ok_or_else(|| DataError::record(path, &rec, "image_id not in the ground truth"))?;
            let rle = segmentation_to_rle(&r.segmentation, h, w)
                .map_err(|m| DataError::record(path, &rec, m))?;
            if (rle.height, rle.width) != (h, w) {
                return Err(DataError::record(
                    path,
                    &rec,
                    format!("mask is {}x{}, the image is {h}x{w}", rle.height, rle.width),
                ));
            }
            Ok(Detection {
                image_id: r.image_id,
                category_id: r.category_id,
                rle,
                score: r.score,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Mask;

    fn rect(h: usize, w: usize, y0: usize, x0: usize, y1: usize, x1: usize) -> Rle {
        let mut m = Mask::zeros(h, w);
        for y in y0..y1 {
            for x in x0..x1 {
                m.set(y, x, true);
            }
        }
        Rle::encode(&m)
    }

    #[test]
    fn linspace_matches_numpy() {
        let t = linspace(0.5, 0.95, 10);
        assert_eq!(t[1], 0.55);
        assert_eq!(t[5], 0.75);
        assert_eq!(t[9], 0.95);
        assert_eq!(linspace(0.0, 1.0, 101)[100], 1.0);
    }

    #[test]
    fn perfect_and_half_detections() {
        let g = rect(20, 20, 0, 0, 10, 10);
        let gts = vec![GtInstance {
            image_id: 1,
            category_id: 3,
            rle: g.clone(),
            area: 100.0,
            iscrowd: false,
        }];
        let dts = vec![Detection {
            image_id: 1,
            category_id: 3,
            rle: g,
            score: 0.9,
        }];
        let r = evaluate(&gts, &dts, &[1], &[3]).unwrap();
        assert!((r.ap - 1.0).abs() < 1e-9 && (r.ap_small - 1.0).abs() < 1e-9);
        assert_eq!(r.ap_medium, -1.0);
        // IoU 0.6: matched at 0.50, 0.55 and 0.60 (a tie matches) → AP = 3/10
        let d = rect(20, 20, 0, 0, 6, 10);
        let dts = vec![Detection {
            image_id: 1,
            category_id: 3,
            rle: d,
            score: 0.9,
        }];
        let r = evaluate(&gts, &dts, &[1], &[3]).unwrap();
        assert!((r.ap - 0.3).abs() < 1e-9, "{r:?}");
        assert!((r.ap50 - 1.0).abs() < 1e-9 && r.ap75 == 0.0);
    }

    #[test]
    fn unknown_image_is_an_error() {
        let dts = vec![Detection {
            image_id: 9,
            category_id: 3,
            rle: rect(2, 2, 0, 0, 1, 1),
            score: 0.9,
        }];
        assert!(evaluate(&[], &dts, &[1], &[3]).is_err());
    }
}
