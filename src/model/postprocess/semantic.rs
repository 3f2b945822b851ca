//! Semantic segmentation: one class per pixel.

use super::{resize_bilinear, sigmoid, PostprocessConfig, RawOutputs};

/// Semantic result: a class per pixel.
#[derive(Clone, Debug)]
pub struct Semantic {
    pub height: usize,
    pub width: usize,
    pub labels: Vec<u32>,
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
