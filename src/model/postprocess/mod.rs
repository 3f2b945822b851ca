//! Post-processing of raw Mask2Former outputs into semantic, instance and panoptic results, as
//! the original Mask2Former inference does it (`maskformer_model.py`): mask logits are upsampled
//! bilinearly (align_corners=False) to the network input size, then to the original image size.
//!
//! Inputs per image: class logits `[Q, K+1]` (the last class is "no object") and mask logits
//! `[Q, h, w]` at stride 4 of the network input.

//!
//! One file per task: [`semantic()`] (`semantic.rs`), [`instance()`] (`instance.rs`),
//! [`panoptic()`] (`panoptic.rs`); this file holds the settings, the raw outputs and the
//! resizing they share.

#[cfg(test)]
mod device_tests;
mod instance;
mod on_device;
mod panoptic;
mod semantic;

use crate::ops::mask_argmax::linear_taps;

pub use instance::{instance, Instance, Instances};
pub use on_device::{instance_on_device, panoptic_on_device, semantic_on_device, DeviceOutputs};
pub use panoptic::{panoptic, Panoptic, Segment};
pub use semantic::{semantic, Semantic};

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

/// Bilinear resize of one plane with PyTorch's `interpolate(mode="bilinear", align_corners=False)`.
pub fn resize_bilinear(src: &[f32], (h, w): (usize, usize), (oh, ow): (usize, usize)) -> Vec<f32> {
    assert_eq!(src.len(), h * w, "plane size");
    if (h, w) == (oh, ow) {
        return src.to_vec();
    }
    // The taps the device kernels use too (`ops::mask_argmax`), so both paths round alike.
    let (ty, tx) = (linear_taps(h, oh), linear_taps(w, ow));
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

pub(super) fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Class probabilities `[Q][K+1]` (softmax of each query's logits).
pub(super) fn class_probs(class_logits: &[f32], num_classes_with_void: usize) -> Vec<Vec<f32>> {
    class_logits
        .chunks(num_classes_with_void)
        .map(softmax_row)
        .collect()
}

fn softmax_row(row: &[f32]) -> Vec<f32> {
    let m = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = row.iter().map(|&x| (x - m).exp()).collect();
    let s: f32 = e.iter().sum();
    e.into_iter().map(|x| x / s).collect()
}

pub(super) fn bbox_of(mask: impl Iterator<Item = bool>, width: usize) -> ([u32; 4], u64) {
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
    pub(super) fn classes(&self) -> usize {
        self.num_classes_with_void - 1
    }

    /// Class probabilities `[Q, K+1]`.
    pub(super) fn class_probs(&self) -> Vec<Vec<f32>> {
        class_probs(self.class_logits, self.num_classes_with_void)
    }

    /// Mask logits of query `q` at the original size (two bilinear steps, as the original).
    pub fn mask_logits_full(&self, q: usize) -> Vec<f32> {
        let (h, w) = self.mask_size;
        let plane = &self.mask_logits[q * h * w..(q + 1) * h * w];
        let at_input = resize_bilinear(plane, self.mask_size, self.input_size);
        resize_bilinear(&at_input, self.input_size, self.output_size)
    }

    pub(super) fn check(&self) {
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

#[cfg(test)]
mod tests;
