//! Post-processing of raw Mask2Former outputs into semantic, instance and panoptic results, as
//! the original Mask2Former inference does it (`maskformer_model.py`): mask logits are upsampled
//! bilinearly (align_corners=False) to the network input size, then to the original image size.
//!
//! Inputs per image: class logits `[Q, K+1]` (the last class is "no object") and mask logits
//! `[Q, h, w]` at stride 4 of the network input.

/// Thresholds and limits (defaults: the original Mask2Former test settings).
#[derive(Clone, Debug, PartialEq)]
pub struct PostprocessConfig {
    /// Panoptic: queries whose class score is at most this are dropped (original: 0.8).
    pub object_mask_threshold: f32,
    /// Panoptic: a segment is kept when its visible area is at least this share of its mask.
    pub overlap_threshold: f32,
    /// Instance: number of (query, class) pairs kept (original: 100).
    pub top_k: usize,
    /// Instance: drop instances scoring below this (0 keeps all top-k, as the original).
    pub instance_score_threshold: f32,
    /// Semantic: upsample each query's mask to the original size before combining the queries
    /// (what the original does when panoptic or instance inference is on); when false, combine
    /// at the network input size and upsample the class scores (the original's semantic-only
    /// models, `sem_seg_postprocess_before_inference = False`).
    pub semantic_resize_masks_first: bool,
}

impl Default for PostprocessConfig {
    fn default() -> Self {
        Self {
            object_mask_threshold: 0.8,
            overlap_threshold: 0.8,
            top_k: 100,
            instance_score_threshold: 0.0,
            semantic_resize_masks_first: true,
        }
    }
}

/// Raw outputs for one image.
#[derive(Clone, Debug)]
pub struct RawOutputs<'a> {
    /// `[Q, K+1]` class logits.
    pub class_logits: &'a [f32],
    /// `[Q, h, w]` mask logits.
    pub mask_logits: &'a [f32],
    pub num_queries: usize,
    /// K + 1 (classes plus "no object").
    pub num_classes_with_void: usize,
    pub mask_size: (usize, usize),
    /// Network input size (the pre-processed image), which the masks are first upsampled to.
    pub input_size: (usize, usize),
    /// Original image size, the size of every result.
    pub output_size: (usize, usize),
}

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

/// One detected instance with a full-size binary mask.
#[derive(Clone, Debug)]
pub struct Instance {
    pub label_id: u32,
    pub score: f32,
    pub query: usize,
    pub mask: Vec<bool>,
    pub area: u64,
    pub bbox: [u32; 4],
}

/// Instance result at the original size.
#[derive(Clone, Debug)]
pub struct Instances {
    pub height: usize,
    pub width: usize,
    pub instances: Vec<Instance>,
}

/// Semantic result: a class per pixel.
#[derive(Clone, Debug)]
pub struct Semantic {
    pub height: usize,
    pub width: usize,
    pub labels: Vec<u32>,
}

/// Bilinear resize of one plane with PyTorch's `interpolate(mode="bilinear", align_corners=False)`.
pub fn resize_bilinear(src: &[f32], (h, w): (usize, usize), (oh, ow): (usize, usize)) -> Vec<f32> {
    assert_eq!(src.len(), h * w, "plane size");
    if (h, w) == (oh, ow) {
        return src.to_vec();
    }
    let taps = |n_in: usize, n_out: usize| -> Vec<(usize, usize, f32)> {
        let scale = n_in as f64 / n_out as f64;
        (0..n_out)
            .map(|o| {
                let s = ((o as f64 + 0.5) * scale - 0.5).max(0.0);
                let i0 = (s.floor() as usize).min(n_in - 1);
                let i1 = (i0 + 1).min(n_in - 1);
                (i0, i1, (s - i0 as f64) as f32)
            })
            .collect()
    };
    let (ty, tx) = (taps(h, oh), taps(w, ow));
    let mut out = vec![0.0f32; oh * ow];
    for (oy, &(y0, y1, ly)) in ty.iter().enumerate() {
        let (r0, r1) = (&src[y0 * w..(y0 + 1) * w], &src[y1 * w..(y1 + 1) * w]);
        let row = &mut out[oy * ow..(oy + 1) * ow];
        for (ox, &(x0, x1, lx)) in tx.iter().enumerate() {
            let top = r0[x0] * (1.0 - lx) + r0[x1] * lx;
            let bot = r1[x0] * (1.0 - lx) + r1[x1] * lx;
            row[ox] = top * (1.0 - ly) + bot * ly;
        }
    }
    out
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

fn softmax_row(row: &[f32]) -> Vec<f32> {
    let m = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = row.iter().map(|&x| (x - m).exp()).collect();
    let s: f32 = e.iter().sum();
    e.into_iter().map(|x| x / s).collect()
}

fn bbox_of(mask: impl Iterator<Item = bool>, width: usize) -> ([u32; 4], u64) {
    let (mut x0, mut y0, mut x1, mut y1, mut area) = (usize::MAX, usize::MAX, 0, 0, 0u64);
    for (i, on) in mask.enumerate() {
        if on {
            let (y, x) = (i / width, i % width);
            x0 = x0.min(x);
            y0 = y0.min(y);
            x1 = x1.max(x);
            y1 = y1.max(y);
            area += 1;
        }
    }
    if area == 0 {
        return ([0; 4], 0);
    }
    (
        [
            x0 as u32,
            y0 as u32,
            (x1 - x0 + 1) as u32,
            (y1 - y0 + 1) as u32,
        ],
        area,
    )
}

impl RawOutputs<'_> {
    fn classes(&self) -> usize {
        self.num_classes_with_void - 1
    }

    /// Class probabilities `[Q, K+1]`.
    fn class_probs(&self) -> Vec<Vec<f32>> {
        self.class_logits
            .chunks(self.num_classes_with_void)
            .map(softmax_row)
            .collect()
    }

    /// Mask logits of query `q` at the original size (two bilinear steps, as the original).
    pub fn mask_logits_full(&self, q: usize) -> Vec<f32> {
        let (h, w) = self.mask_size;
        let plane = &self.mask_logits[q * h * w..(q + 1) * h * w];
        let at_input = resize_bilinear(plane, self.mask_size, self.input_size);
        resize_bilinear(&at_input, self.input_size, self.output_size)
    }

    fn check(&self) {
        let (h, w) = self.mask_size;
        assert_eq!(
            self.class_logits.len(),
            self.num_queries * self.num_classes_with_void,
            "class logits size"
        );
        assert_eq!(
            self.mask_logits.len(),
            self.num_queries * h * w,
            "mask logits size"
        );
    }
}

/// Semantic segmentation: argmax over classes of Σ_q softmax(class)[q, c] · sigmoid(mask)[q],
/// combined at the original size or at the input size (see
/// [`PostprocessConfig::semantic_resize_masks_first`]).
pub fn semantic(raw: &RawOutputs, cfg: &PostprocessConfig) -> Semantic {
    raw.check();
    let (oh, ow) = raw.output_size;
    let (sh, sw) = if cfg.semantic_resize_masks_first {
        raw.output_size
    } else {
        raw.input_size
    };
    let k = raw.classes();
    let probs = raw.class_probs();
    let mut scores = vec![0.0f32; k * sh * sw];
    for (q, p) in probs.iter().enumerate() {
        let (h, w) = raw.mask_size;
        let plane = &raw.mask_logits[q * h * w..(q + 1) * h * w];
        let mut m = resize_bilinear(plane, raw.mask_size, raw.input_size);
        if cfg.semantic_resize_masks_first {
            m = resize_bilinear(&m, raw.input_size, raw.output_size);
        }
        m.iter_mut().for_each(|v| *v = sigmoid(*v));
        for (c, &pc) in p[..k].iter().enumerate() {
            let plane = &mut scores[c * sh * sw..(c + 1) * sh * sw];
            for (s, &mv) in plane.iter_mut().zip(&m) {
                *s += pc * mv;
            }
        }
    }
    if !cfg.semantic_resize_masks_first {
        scores = scores
            .chunks(sh * sw)
            .flat_map(|plane| resize_bilinear(plane, (sh, sw), (oh, ow)))
            .collect();
    }
    let labels = (0..oh * ow)
        .map(|i| {
            let mut best = 0;
            for c in 1..k {
                if scores[c * oh * ow + i] > scores[best * oh * ow + i] {
                    best = c;
                }
            }
            best as u32
        })
        .collect();
    Semantic {
        height: oh,
        width: ow,
        labels,
    }
}

/// Instance segmentation: top-k (query, class) pairs by class probability; mask = logit > 0;
/// score = class probability × mean mask probability inside the mask (summed in f64: large
/// masks would otherwise drift from the original's result). `is_thing` (if given) keeps thing
/// classes only, as the original does in panoptic models; the filter runs after the top-k, as
/// there.
pub fn instance(
    raw: &RawOutputs,
    cfg: &PostprocessConfig,
    is_thing: Option<&dyn Fn(u32) -> bool>,
) -> Instances {
    raw.check();
    let (oh, ow) = raw.output_size;
    let k = raw.classes();
    let probs = raw.class_probs();
    let mut pairs: Vec<(f32, usize, usize)> = probs
        .iter()
        .enumerate()
        .flat_map(|(q, p)| p[..k].iter().enumerate().map(move |(c, &s)| (s, q, c)))
        .collect();
    // Descending score; ties by flat index, like torch.topk on CPU.
    pairs.sort_by(|a, b| {
        b.0.total_cmp(&a.0)
            .then((a.1 * k + a.2).cmp(&(b.1 * k + b.2)))
    });
    pairs.truncate(cfg.top_k);
    let mut cache: std::collections::HashMap<usize, Vec<f32>> = Default::default();
    let mut instances = Vec::new();
    for (score, q, c) in pairs {
        if let Some(f) = is_thing {
            if !f(c as u32) {
                continue;
            }
        }
        let logits = cache.entry(q).or_insert_with(|| raw.mask_logits_full(q));
        let mask: Vec<bool> = logits.iter().map(|&l| l > 0.0).collect();
        let (bbox, area) = bbox_of(mask.iter().copied(), ow);
        let inside: f64 = logits
            .iter()
            .zip(&mask)
            .filter(|(_, &m)| m)
            .map(|(&l, _)| sigmoid(l) as f64)
            .sum();
        let mask_score = inside / (area as f64 + 1e-6);
        let final_score = (score as f64 * mask_score) as f32;
        if final_score < cfg.instance_score_threshold {
            continue;
        }
        instances.push(Instance {
            label_id: c as u32,
            score: final_score,
            query: q,
            mask,
            area,
            bbox,
        });
    }
    Instances {
        height: oh,
        width: ow,
        instances,
    }
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
    let k = raw.classes();
    let n = oh * ow;
    let mut kept: Vec<(usize, u32, f32)> = Vec::new(); // (query, label, score)
    for (q, p) in raw.class_probs().iter().enumerate() {
        let (label, &score) = p
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(&a.0)))
            .unwrap();
        if label != k && score > cfg.object_mask_threshold {
            kept.push((q, label as u32, score));
        }
    }
    let mut ids = vec![0u32; n];
    let mut segments = Vec::new();
    if kept.is_empty() {
        return Panoptic {
            height: oh,
            width: ow,
            ids,
            segments,
        };
    }
    let masks: Vec<Vec<f32>> = kept
        .iter()
        .map(|&(q, _, _)| raw.mask_logits_full(q).into_iter().map(sigmoid).collect())
        .collect();
    // Pixel owner: argmax over kept queries of score · prob (first wins ties, like torch.argmax).
    let mut owner = vec![0usize; n];
    for (i, o) in owner.iter_mut().enumerate() {
        let mut best = f32::NEG_INFINITY;
        for (j, m) in masks.iter().enumerate() {
            let v = kept[j].2 * m[i];
            if v > best {
                best = v;
                *o = j;
            }
        }
    }
    let mut stuff_ids: std::collections::HashMap<u32, u32> = Default::default();
    for (j, &(_, label, score)) in kept.iter().enumerate() {
        let thing = is_thing(label);
        let mask_area = owner.iter().filter(|&&o| o == j).count();
        let original_area = masks[j].iter().filter(|&&p| p >= 0.5).count();
        let visible: Vec<usize> = (0..n)
            .filter(|&i| owner[i] == j && masks[j][i] >= 0.5)
            .collect();
        if mask_area == 0 || original_area == 0 || visible.is_empty() {
            continue;
        }
        if (mask_area as f32 / original_area as f32) < cfg.overlap_threshold {
            continue;
        }
        let id = if !thing {
            if let Some(&id) = stuff_ids.get(&label) {
                id
            } else {
                let id = segments.len() as u32 + 1;
                stuff_ids.insert(label, id);
                segments.push(Segment {
                    id,
                    label_id: label,
                    is_thing: false,
                    score,
                    area: 0,
                    bbox: [0; 4],
                });
                id
            }
        } else {
            let id = segments.len() as u32 + 1;
            segments.push(Segment {
                id,
                label_id: label,
                is_thing: true,
                score,
                area: 0,
                bbox: [0; 4],
            });
            id
        };
        for i in visible {
            ids[i] = id;
        }
    }
    for s in &mut segments {
        let (bbox, area) = bbox_of(ids.iter().map(|&v| v == s.id), ow);
        s.bbox = bbox;
        s.area = area;
    }
    Panoptic {
        height: oh,
        width: ow,
        ids,
        segments,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bilinear_matches_pytorch() {
        // F.interpolate([[0,1],[2,3]], size=(4,4), mode="bilinear", align_corners=False)
        let out = resize_bilinear(&[0.0, 1.0, 2.0, 3.0], (2, 2), (4, 4));
        let want = [
            0.0, 0.25, 0.75, 1.0, 0.5, 0.75, 1.25, 1.5, 1.5, 1.75, 2.25, 2.5, 2.0, 2.25, 2.75, 3.0,
        ];
        assert_eq!(out, want);
        // Downscaling 4 -> 2 averages the middle pair of each 2-wide cell (no antialiasing).
        let down = resize_bilinear(
            &(0..16).map(|v| v as f32).collect::<Vec<_>>(),
            (4, 4),
            (2, 2),
        );
        assert_eq!(down, vec![2.5, 4.5, 10.5, 12.5]);
    }

    /// Three classes (0: thing, 1: stuff, 2: stuff) + no-object, 4x4 masks.
    fn toy() -> (Vec<f32>, Vec<f32>) {
        let big = 10.0;
        // q0: thing 0, left half; q1: stuff 1, top-right; q2: stuff 1, bottom-right (merges with q1);
        // q3: no-object; q4: class 2 but low confidence.
        let class = vec![
            big, 0.0, 0.0, 0.0, //
            0.0, big, 0.0, 0.0, //
            0.0, big, 0.0, 0.0, //
            0.0, 0.0, 0.0, big, //
            0.0, 0.0, 0.5, 0.0,
        ];
        let mut masks = vec![-big; 5 * 16];
        for y in 0..4 {
            for x in 0..4 {
                let i = y * 4 + x;
                masks[i] = if x < 2 { big } else { -big };
                masks[16 + i] = if x >= 2 && y < 2 { big } else { -big };
                masks[32 + i] = if x >= 2 && y >= 2 { big } else { -big };
                masks[48 + i] = big;
                masks[64 + i] = big;
            }
        }
        (class, masks)
    }

    fn raw<'a>(class: &'a [f32], masks: &'a [f32]) -> RawOutputs<'a> {
        RawOutputs {
            class_logits: class,
            mask_logits: masks,
            num_queries: 5,
            num_classes_with_void: 4,
            mask_size: (4, 4),
            input_size: (4, 4),
            output_size: (4, 4),
        }
    }

    #[test]
    fn panoptic_keeps_confident_queries_and_merges_stuff() {
        let (class, masks) = toy();
        let p = panoptic(&raw(&class, &masks), &PostprocessConfig::default(), &|l| {
            l == 0
        });
        assert_eq!(p.segments.len(), 2, "{:?}", p.segments);
        let thing = &p.segments[0];
        assert_eq!(
            (thing.label_id, thing.is_thing, thing.area, thing.bbox),
            (0, true, 8, [0, 0, 2, 4])
        );
        let stuff = &p.segments[1];
        assert_eq!(
            (stuff.label_id, stuff.is_thing, stuff.area, stuff.bbox),
            (1, false, 8, [2, 0, 2, 4])
        );
        assert_eq!(p.ids[0], 1);
        assert_eq!(p.ids[3], 2);
        assert_eq!(p.ids[15], 2);
    }

    #[test]
    fn panoptic_with_nothing_confident_is_all_void() {
        let (class, masks) = toy();
        let cfg = PostprocessConfig {
            object_mask_threshold: 0.9999,
            ..Default::default()
        };
        let p = panoptic(&raw(&class, &masks), &cfg, &|l| l == 0);
        assert!(p.segments.is_empty());
        assert!(p.ids.iter().all(|&v| v == 0));
    }

    #[test]
    fn instance_ranks_pairs_and_scores_masks() {
        let (class, masks) = toy();
        let cfg = PostprocessConfig {
            top_k: 3,
            ..Default::default()
        };
        let r = instance(&raw(&class, &masks), &cfg, None);
        assert_eq!(r.instances.len(), 3);
        let labels: Vec<u32> = r.instances.iter().map(|i| i.label_id).collect();
        assert_eq!(labels, vec![0, 1, 1]);
        let first = &r.instances[0];
        assert_eq!((first.query, first.area, first.bbox), (0, 8, [0, 0, 2, 4]));
        let p0 = 1.0 / (1.0 + 3.0 * (-10f32).exp());
        let m0 = 1.0 / (1.0 + (-10f32).exp());
        assert!((first.score - p0 * m0).abs() < 1e-5);
        let only_things = instance(&raw(&class, &masks), &cfg, Some(&|l| l == 0));
        assert_eq!(only_things.instances.len(), 1);
    }

    #[test]
    fn semantic_takes_the_best_weighted_class() {
        let (class, masks) = toy();
        let s = semantic(&raw(&class, &masks), &PostprocessConfig::default());
        assert_eq!(s.labels[0], 0);
        assert_eq!(s.labels[3], 1);
        assert_eq!(s.labels[15], 1);
    }

    #[test]
    fn masks_are_resized_to_the_original_size() {
        let (class, masks) = toy();
        let mut r = raw(&class, &masks);
        r.input_size = (16, 16);
        r.output_size = (6, 10);
        let p = panoptic(&r, &PostprocessConfig::default(), &|l| l == 0);
        assert_eq!(p.ids.len(), 60);
        assert_eq!(p.ids[0], 1);
        assert_eq!(p.ids[9], 2);
    }

    #[test]
    fn instance_scores_of_large_masks_are_summed_exactly() {
        // 1.5M mask pixels with varied probabilities: an f32 running sum drifts by ~1e-4.
        let (h, w) = (1024, 1536);
        let masks: Vec<f32> = (0..h * w)
            .map(|i| 0.05 + (i % 977) as f32 * 0.004)
            .collect();
        let class = [3.0f32, 0.0];
        let r = RawOutputs {
            class_logits: &class,
            mask_logits: &masks,
            num_queries: 1,
            num_classes_with_void: 2,
            mask_size: (h, w),
            input_size: (h, w),
            output_size: (h, w),
        };
        let got = instance(&r, &PostprocessConfig::default(), None).instances[0].score;
        let p = 1.0 / (1.0 + (-3.0f64).exp());
        let sum: f64 = masks
            .iter()
            .map(|&l| 1.0 / (1.0 + (-(l as f64)).exp()))
            .sum();
        let want = p * sum / (masks.len() as f64 + 1e-6);
        assert!(((got as f64 - want) / want).abs() < 1e-6, "{got} vs {want}");
    }

    #[test]
    fn semantic_only_models_combine_queries_before_resizing() {
        // Two queries, two classes, masks 2x2 -> input 4x4 -> output 3x5. Combining at the input
        // size and resizing the scores is not the same as resizing each mask first.
        let class = [2.0f32, -1.0, 0.0, -1.0, 1.5, 0.0];
        let masks = [
            4.0f32, -4.0, -2.0, 3.0, //
            -3.0, 2.0, 5.0, -1.0,
        ];
        let r = RawOutputs {
            class_logits: &class,
            mask_logits: &masks,
            num_queries: 2,
            num_classes_with_void: 3,
            mask_size: (2, 2),
            input_size: (4, 4),
            output_size: (3, 5),
        };
        // Reference in f64: scores at the input size, then bilinear to the output size.
        let probs: Vec<Vec<f32>> = class.chunks(3).map(softmax_row).collect();
        let mut scores = vec![vec![0.0f32; 16]; 2];
        for (q, p) in probs.iter().enumerate() {
            let m = resize_bilinear(&masks[q * 4..(q + 1) * 4], (2, 2), (4, 4));
            for c in 0..2 {
                for (s, &v) in scores[c].iter_mut().zip(&m) {
                    *s += p[c] * sigmoid(v);
                }
            }
        }
        let up: Vec<Vec<f32>> = scores
            .iter()
            .map(|s| resize_bilinear(s, (4, 4), (3, 5)))
            .collect();
        let want: Vec<u32> = (0..15).map(|i| (up[1][i] > up[0][i]) as u32).collect();
        let cfg = PostprocessConfig {
            semantic_resize_masks_first: false,
            ..Default::default()
        };
        assert_eq!(semantic(&r, &cfg).labels, want);
        let first = semantic(&r, &PostprocessConfig::default()).labels;
        assert_eq!(first.len(), 15);
    }
}
