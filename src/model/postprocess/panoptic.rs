//! Panoptic segmentation: one segment id per pixel, stuff segments of one class merged.

use std::collections::HashMap;

use super::{bbox_of, sigmoid, PostprocessConfig, RawOutputs};

/// A panoptic segment (COCO panoptic `segments_info` plus the score).
#[derive(Clone, Debug, PartialEq)]
pub struct Segment {
    /// Segment id as written in the id map (1-based; 0 is void).
    pub id: u32,
    pub label_id: u32,
    pub is_thing: bool,
    pub score: f32,
    pub area: u64,
    /// [x, y, width, height] of the segment's pixels.
    pub bbox: [u32; 4],
}

/// Panoptic result: an id per pixel (0 = void) and the segments.
#[derive(Clone, Debug)]
pub struct Panoptic {
    pub height: usize,
    pub width: usize,
    pub ids: Vec<u32>,
    pub segments: Vec<Segment>,
}

/// Panoptic segmentation (original Mask2Former rules): keep queries whose best class is not
/// "no object" and scores above `object_mask_threshold`; each pixel goes to the kept query with
/// the highest score × mask probability; a query's segment is its pixels that also have mask
/// probability ≥ 0.5, kept when at least `overlap_threshold` of its own mask stays visible;
/// stuff segments of one class merge into one segment.
pub fn panoptic(
    raw: &RawOutputs,
    cfg: &PostprocessConfig,
    is_thing: &dyn Fn(u32) -> bool,
) -> Panoptic {
    raw.check();
    let (oh, ow) = raw.output_size;
    let n = oh * ow;
    let kept = confident_queries(raw, cfg);
    let mut ids = vec![0u32; n];
    let mut segments = Vec::new();
    if !kept.is_empty() {
        let masks: Vec<Vec<f32>> = kept
            .iter()
            .map(|k| {
                raw.mask_logits_full(k.query)
                    .into_iter()
                    .map(sigmoid)
                    .collect()
            })
            .collect();
        let owner = pixel_owners(&kept, &masks, n);
        let mut stuff_ids: HashMap<u32, u32> = Default::default();
        for (j, k) in kept.iter().enumerate() {
            let Some(visible) = visible_pixels(j, &owner, &masks[j], cfg) else {
                continue;
            };
            let id = segment_id(&mut segments, &mut stuff_ids, k, is_thing(k.label));
            for i in visible {
                ids[i] = id;
            }
        }
        for s in &mut segments {
            let (bbox, area) = bbox_of(ids.iter().map(|&v| v == s.id), ow);
            s.bbox = bbox;
            s.area = area;
        }
    }
    Panoptic {
        height: oh,
        width: ow,
        ids,
        segments,
    }
}

/// A query kept for the panoptic result: its best class and that class's probability.
struct Kept {
    query: usize,
    label: u32,
    score: f32,
}

/// Queries whose best class is an object class scoring above `object_mask_threshold`.
fn confident_queries(raw: &RawOutputs, cfg: &PostprocessConfig) -> Vec<Kept> {
    let k = raw.classes();
    let mut kept = Vec::new();
    for (query, p) in raw.class_probs().iter().enumerate() {
        let (label, &score) = p
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(&a.0)))
            .expect("K + 1 >= 1 classes");
        if label != k && score > cfg.object_mask_threshold {
            kept.push(Kept {
                query,
                label: label as u32,
                score,
            });
        }
    }
    kept
}

/// Pixel owner: argmax over kept queries of score · prob (first wins ties, like torch.argmax).
fn pixel_owners(kept: &[Kept], masks: &[Vec<f32>], n: usize) -> Vec<usize> {
    let mut owner = vec![0usize; n];
    for (i, o) in owner.iter_mut().enumerate() {
        let mut best = f32::NEG_INFINITY;
        for (j, m) in masks.iter().enumerate() {
            let v = kept[j].score * m[i];
            if v > best {
                best = v;
                *o = j;
            }
        }
    }
    owner
}

/// The pixels of kept query `j`'s segment (owned and mask probability ≥ 0.5), or `None` when
/// it is empty or less than `overlap_threshold` of the query's own mask stays visible.
fn visible_pixels(
    j: usize,
    owner: &[usize],
    mask: &[f32],
    cfg: &PostprocessConfig,
) -> Option<Vec<usize>> {
    let mask_area = owner.iter().filter(|&&o| o == j).count();
    let original_area = mask.iter().filter(|&&p| p >= 0.5).count();
    let visible: Vec<usize> = (0..owner.len())
        .filter(|&i| owner[i] == j && mask[i] >= 0.5)
        .collect();
    if mask_area == 0 || original_area == 0 || visible.is_empty() {
        return None;
    }
    if (mask_area as f32 / original_area as f32) < cfg.overlap_threshold {
        return None;
    }
    Some(visible)
}

/// The id of `kept`'s segment: a new segment for a thing, the class's one segment for stuff
/// (area and box are filled in once every pixel is assigned).
fn segment_id(
    segments: &mut Vec<Segment>,
    stuff_ids: &mut HashMap<u32, u32>,
    kept: &Kept,
    thing: bool,
) -> u32 {
    if !thing {
        if let Some(&id) = stuff_ids.get(&kept.label) {
            return id;
        }
    }
    let id = segments.len() as u32 + 1;
    if !thing {
        stuff_ids.insert(kept.label, id);
    }
    segments.push(Segment {
        id,
        label_id: kept.label,
        is_thing: thing,
        score: kept.score,
        area: 0,
        bbox: [0; 4],
    });
    id
}
