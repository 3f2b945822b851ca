//! COCO mask AP: pycocotools' `COCOeval` with `iouType="segm"`, computed by the `hotcoco`
//! crate (which reproduces pycocotools bit for bit, see docs/PERFORMANCE.md). This module
//! reads results files, checks predictions against the ground truth's images and categories
//! (pycocotools would silently drop unknown ones) and maps the twelve numbers.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use hotcoco::{COCOeval, COCO};
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

/// The AP of one category (−1 when it has no ground truth).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ApClass {
    pub name: String,
    #[serde(rename = "AP")]
    pub ap: f64,
}

/// The twelve COCO numbers (−1 where nothing could be evaluated, as pycocotools prints) and the
/// AP of each category.
#[derive(Clone, Debug, PartialEq, Serialize)]
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
    /// Category id → its AP (IoU 0.50:0.95, all areas, 100 detections).
    pub per_category: BTreeMap<u32, ApClass>,
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

    /// Names the categories of `per_category` (the evaluation knows only their ids).
    pub fn with_names(mut self, categories: &crate::data::Categories) -> Self {
        for (id, class) in &mut self.per_category {
            if let Some(c) = categories.get(*id) {
                class.name.clone_from(&c.name);
            }
        }
        self
    }
}

/// Evaluates detections against ground truth over the given images and categories
/// (pycocotools uses every image and category of the ground-truth file), with
/// `hotcoco`'s `COCOeval` (segm).
pub fn evaluate(
    gts: &[GtInstance],
    dts: &[Detection],
    image_ids: &[u64],
    category_ids: &[u32],
) -> Result<ApResult, EvalError> {
    let ev = run_cocoeval(gts, dts, image_ids, category_ids)?;
    let s = ev
        .stats()
        .ok_or_else(|| EvalError::Invalid("COCOeval produced no statistics".into()))?;
    if s.len() < 12 {
        return Err(EvalError::Invalid(format!(
            "COCOeval produced {} statistics, expected 12",
            s.len()
        )));
    }
    Ok(ApResult {
        ap: s[0],
        ap50: s[1],
        ap75: s[2],
        ap_small: s[3],
        ap_medium: s[4],
        ap_large: s[5],
        ar1: s[6],
        ar10: s[7],
        ar100: s[8],
        ar_small: s[9],
        ar_medium: s[10],
        ar_large: s[11],
        per_category: per_category_ap(&ev, category_ids)?,
    })
}

/// AP per category from hotcoco's report, where categories are named by their ids.
fn per_category_ap(
    ev: &COCOeval,
    category_ids: &[u32],
) -> Result<BTreeMap<u32, ApClass>, EvalError> {
    let report = ev
        .report()
        .map_err(|e| EvalError::Invalid(format!("COCO evaluation: {e}")))?;
    Ok(category_ids
        .iter()
        .map(|&id| {
            let ap = report
                .per_class
                .get(&id.to_string())
                .and_then(|m| m.get("AP"))
                .copied()
                .unwrap_or(-1.0);
            let name = String::new();
            (id, ApClass { name, ap })
        })
        .collect())
}

/// Checks the predictions against the ground truth's images and categories, then runs
/// `COCOeval` (evaluate, accumulate, summarize).
fn run_cocoeval(
    gts: &[GtInstance],
    dts: &[Detection],
    image_ids: &[u64],
    category_ids: &[u32],
) -> Result<COCOeval, EvalError> {
    let img_ids: BTreeSet<u64> = image_ids.iter().copied().collect();
    let cat_ids: BTreeSet<u32> = category_ids.iter().copied().collect();
    if let Some(d) = dts.iter().find(|d| !img_ids.contains(&d.image_id)) {
        return Err(EvalError::Mismatch(format!(
            "a prediction refers to image_id {} which is not in the ground truth",
            d.image_id
        )));
    }
    // pycocotools (and hotcoco, with a warning) drop detections of unknown categories (AP 0
    // for a shifted label space); a mismatch is reported instead.
    if let Some(d) = dts.iter().find(|d| !cat_ids.contains(&d.category_id)) {
        return Err(EvalError::Mismatch(format!(
            "a prediction has category_id {} but the ground truth's categories are {:?}",
            d.category_id,
            cat_ids.iter().collect::<Vec<_>>()
        )));
    }
    let gt = ground_truth(gts, dts, &img_ids, &cat_ids);
    let results = dts
        .iter()
        .map(|d| hotcoco::Annotation {
            image_id: d.image_id,
            category_id: d.category_id as u64,
            segmentation: Some(segmentation(&d.rle)),
            score: Some(d.score),
            ..Default::default()
        })
        .collect();
    let hc = |e: hotcoco::Error| EvalError::Invalid(format!("COCO evaluation: {e}"));
    let dt = gt.load_res_anns(results).map_err(hc)?;
    let mut ev = COCOeval::new(gt, dt, hotcoco::IouType::Segm);
    ev.evaluate().map_err(hc)?;
    ev.accumulate();
    ev.summarize_lines();
    Ok(ev)
}

/// The ground truth as hotcoco's dataset: the images (sizes from the masks), the categories
/// named by their ids, the instances.
fn ground_truth(
    gts: &[GtInstance],
    dts: &[Detection],
    img_ids: &BTreeSet<u64>,
    cat_ids: &BTreeSet<u32>,
) -> COCO {
    // image sizes only label the images; masks carry their own
    let mut sizes: HashMap<u64, (usize, usize)> = HashMap::new();
    for (id, r) in gts
        .iter()
        .map(|g| (g.image_id, &g.rle))
        .chain(dts.iter().map(|d| (d.image_id, &d.rle)))
    {
        sizes.entry(id).or_insert((r.height, r.width));
    }
    let images = img_ids
        .iter()
        .map(|&id| {
            let (h, w) = sizes.get(&id).copied().unwrap_or((0, 0));
            hotcoco::Image {
                id,
                height: h as u32,
                width: w as u32,
                ..Default::default()
            }
        })
        .collect();
    // names are the ids, so per-category results map back to ids
    let categories = cat_ids
        .iter()
        .map(|&id| hotcoco::Category {
            id: id as u64,
            name: id.to_string(),
            ..Default::default()
        })
        .collect();
    let annotations = gts
        .iter()
        .enumerate()
        .map(|(i, g)| hotcoco::Annotation {
            id: i as u64 + 1,
            image_id: g.image_id,
            category_id: g.category_id as u64,
            area: Some(g.area),
            segmentation: Some(segmentation(&g.rle)),
            iscrowd: g.iscrowd,
            ..Default::default()
        })
        .collect();
    COCO::from_dataset(hotcoco::Dataset {
        images,
        annotations,
        categories,
        ..Default::default()
    })
}

fn segmentation(rle: &Rle) -> hotcoco::Segmentation {
    hotcoco::Segmentation::UncompressedRle {
        size: [rle.height as u32, rle.width as u32],
        counts: rle.counts.clone(),
    }
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
        assert_eq!(r.per_category[&3].ap, r.ap);
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
