//! Panoptic segmentation: one segment id per pixel, stuff segments of one class merged.

use std::collections::HashMap;

use super::{bbox_of, class_probs, sigmoid, PostprocessConfig, RawOutputs};
use crate::ops::mask_argmax::PROB_FLAG;

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
    let kept = confident_queries(raw.class_logits, raw.num_classes_with_void, cfg);
    let masks: Vec<Vec<f32>> = kept
        .iter()
        .map(|k| {
            raw.mask_logits_full(k.query)
                .into_iter()
                .map(sigmoid)
                .collect()
        })
        .collect();
    let owners = pixel_owners(&kept, &masks, oh * ow);
    let original_area: Vec<u64> = masks
        .iter()
        .map(|m| m.iter().filter(|&&p| p >= 0.5).count() as u64)
        .collect();
    assemble(
        &kept,
        &owners,
        &original_area,
        cfg,
        is_thing,
        raw.output_size,
    )
}

/// The panoptic result from the per-pixel owners (kept index | [`PROB_FLAG`] when the owner's
/// probability is ≥ 0.5) and each kept query's count of pixels with probability ≥ 0.5: a query's
/// segment is its owned pixels with the flag, kept when it is not empty and at least
/// `overlap_threshold` of its own mask stays visible; stuff segments of one class merge. Shared
/// by the host path and the device path (`on_device.rs`), which computes the inputs on the GPU.
pub(super) fn assemble(
    kept: &[Kept],
    owners: &[u32],
    original_area: &[u64],
    cfg: &PostprocessConfig,
    is_thing: &dyn Fn(u32) -> bool,
    (oh, ow): (usize, usize),
) -> Panoptic {
    let mut ids = vec![0u32; oh * ow];
    let mut segments = Vec::new();
    if !kept.is_empty() {
        // Per kept query: owned pixels ("mask area") and owned pixels with the flag (visible).
        let (mut owned, mut visible) = (vec![0u64; kept.len()], vec![0u64; kept.len()]);
        for &o in owners {
            let j = (o & !PROB_FLAG) as usize;
            owned[j] += 1;
            visible[j] += (o & PROB_FLAG != 0) as u64;
        }
        let mut stuff_ids: HashMap<u32, u32> = Default::default();
        let mut id_of = vec![0u32; kept.len()];
        for (j, k) in kept.iter().enumerate() {
            if owned[j] == 0 || original_area[j] == 0 || visible[j] == 0 {
                continue;
            }
            if (owned[j] as f32 / original_area[j] as f32) < cfg.overlap_threshold {
                continue;
            }
            id_of[j] = segment_id(&mut segments, &mut stuff_ids, k, is_thing(k.label));
        }
        for (id, &o) in ids.iter_mut().zip(owners) {
            if o & PROB_FLAG != 0 {
                *id = id_of[(o & !PROB_FLAG) as usize];
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
pub(super) struct Kept {
    pub query: usize,
    pub label: u32,
    pub score: f32,
}

/// Queries whose best class is an object class scoring above `object_mask_threshold`.
pub(super) fn confident_queries(
    class_logits: &[f32],
    num_classes_with_void: usize,
    cfg: &PostprocessConfig,
) -> Vec<Kept> {
    let k = num_classes_with_void - 1;
    let mut kept = Vec::new();
    for (query, p) in class_probs(class_logits, num_classes_with_void)
        .iter()
        .enumerate()
    {
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

/// Pixel owner: argmax over kept queries of score · prob (first wins ties, like torch.argmax),
/// with [`PROB_FLAG`] set where the owner's probability is ≥ 0.5.
fn pixel_owners(kept: &[Kept], masks: &[Vec<f32>], n: usize) -> Vec<u32> {
    let mut owner = vec![0u32; n];
    for (i, o) in owner.iter_mut().enumerate() {
        let mut best = f32::NEG_INFINITY;
        for (j, m) in masks.iter().enumerate() {
            let v = kept[j].score * m[i];
            if v > best {
                best = v;
                *o = j as u32;
            }
        }
        if !masks.is_empty() && masks[*o as usize][i] >= 0.5 {
            *o |= PROB_FLAG;
        }
    }
    owner
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
