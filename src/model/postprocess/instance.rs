//! Instance segmentation: the top-k (query, class) pairs with binary masks.

use super::{bbox_of, class_probs, sigmoid, PostprocessConfig, RawOutputs};

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
    let pairs = selected_pairs(raw.class_logits, raw.num_classes_with_void, cfg, is_thing);
    let mut cache: std::collections::HashMap<usize, Vec<f32>> = Default::default();
    let mut instances = Vec::new();
    for (score, q, c) in pairs {
        let logits = cache.entry(q).or_insert_with(|| raw.mask_logits_full(q));
        let mask: Vec<bool> = logits.iter().map(|&l| l > 0.0).collect();
        let (bbox, area) = bbox_of(mask.iter().copied(), ow);
        let inside: f64 = logits
            .iter()
            .zip(&mask)
            .filter(|(_, &m)| m)
            .map(|(&l, _)| sigmoid(l) as f64)
            .sum();
        let final_score = instance_score(score, inside, area);
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

/// The (class probability, query, class) pairs that get a mask, in result order: the top-k
/// pairs by class probability (descending; ties by flat index, like torch.topk on CPU), then,
/// with `is_thing`, those of thing classes. Shared with the device path.
pub(super) fn selected_pairs(
    class_logits: &[f32],
    num_classes_with_void: usize,
    cfg: &PostprocessConfig,
    is_thing: Option<&dyn Fn(u32) -> bool>,
) -> Vec<(f32, usize, usize)> {
    let k = num_classes_with_void - 1;
    let probs = class_probs(class_logits, num_classes_with_void);
    let mut pairs: Vec<(f32, usize, usize)> = probs
        .iter()
        .enumerate()
        .flat_map(|(q, p)| p[..k].iter().enumerate().map(move |(c, &s)| (s, q, c)))
        .collect();
    pairs.sort_by(|a, b| {
        b.0.total_cmp(&a.0)
            .then((a.1 * k + a.2).cmp(&(b.1 * k + b.2)))
    });
    pairs.truncate(cfg.top_k);
    if let Some(f) = is_thing {
        pairs.retain(|p| f(p.2 as u32));
    }
    pairs
}

/// An instance's score: class probability × mean mask probability inside the mask, from the
/// f64 sum of the mask probabilities over its `area` pixels (0 for an empty mask).
pub(super) fn instance_score(class_prob: f32, sigmoid_sum: f64, area: u64) -> f32 {
    let mask_score = sigmoid_sum / (area as f64 + 1e-6);
    (class_prob as f64 * mask_score) as f32
}
