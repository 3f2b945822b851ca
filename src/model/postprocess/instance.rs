//! Instance segmentation: the top-k (query, class) pairs with binary masks.

use super::{bbox_of, sigmoid, PostprocessConfig, RawOutputs};

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
