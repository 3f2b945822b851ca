//! Training augmentation: horizontal flip and large-scale jitter (LSJ), as in Mask2Former's
//! `coco_panoptic_lsj` mapper (detectron2 `RandomFlip` → `ResizeScale` → `FixedSizeCrop`).
//!
//! The image is resized bilinearly so that it fits `scale × output size` for a random scale in
//! `[min_scale, max_scale]`, then randomly cropped to the output size where it is larger and padded
//! at the bottom/right where it is smaller. Masks go through the same geometry with
//! nearest-neighbour sampling, all from one source-pixel map, so they stay binary and disjoint (no
//! class bleeds into a neighbour); masks left empty by the crop are dropped with their class.
//! Everything random comes from the caller's RNG, so a seeded RNG gives a reproducible sample.

use image::{imageops, RgbImage};
use rand::Rng;

use super::{Mask, Sample};

/// LSJ parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct AugmentConfig {
    /// Output `(height, width)`.
    pub output: (usize, usize),
    pub min_scale: f64,
    pub max_scale: f64,
    pub flip_probability: f64,
    /// Image value of padded pixels (detectron2 pads with 128).
    pub pad_value: [u8; 3],
}

impl AugmentConfig {
    /// Mask2Former's COCO settings at the given square size (1024 upstream): scale 0.1–2.0, flip ½.
    pub fn lsj(size: usize) -> Self {
        AugmentConfig {
            output: (size, size),
            min_scale: 0.1,
            max_scale: 2.0,
            flip_probability: 0.5,
            pad_value: [128; 3],
        }
    }
}

/// Flips an image and its masks horizontally.
pub fn flip_horizontal(image: &RgbImage, masks: &[Mask]) -> (RgbImage, Vec<Mask>) {
    let image = imageops::flip_horizontal(image);
    let masks = masks
        .iter()
        .map(|m| {
            let (h, w) = (m.height(), m.width());
            let mut out = Mask::zeros(h, w);
            for y in 0..h {
                for x in 0..w {
                    out.set(y, x, m.get(y, w - 1 - x));
                }
            }
            out
        })
        .collect();
    (image, masks)
}

/// Nearest-neighbour source index of output pixel `o` when resizing `n_in` → `n_out`
/// (pixel centres, like PIL's NEAREST).
fn nearest(o: usize, n_in: usize, n_out: usize) -> usize {
    (((o as f64 + 0.5) * n_in as f64 / n_out as f64) as usize).min(n_in - 1)
}

/// Resizes masks to `(h, w)` with nearest-neighbour sampling.
pub fn resize_masks(masks: &[Mask], h: usize, w: usize) -> Vec<Mask> {
    let Some(first) = masks.first() else {
        return Vec::new();
    };
    let (h_in, w_in) = (first.height(), first.width());
    let ys: Vec<usize> = (0..h).map(|y| nearest(y, h_in, h)).collect();
    let xs: Vec<usize> = (0..w).map(|x| nearest(x, w_in, w)).collect();
    masks
        .iter()
        .map(|m| {
            let mut out = Mask::zeros(h, w);
            for (y, &sy) in ys.iter().enumerate() {
                for (x, &sx) in xs.iter().enumerate() {
                    if m.get(sy, sx) {
                        out.set(y, x, true);
                    }
                }
            }
            out
        })
        .collect()
}

/// Copies the window `[y0, y0 + h) × [x0, x0 + w)` of `img` into an `(out_h, out_w)` canvas
/// filled with `pad` (the window may be smaller than the canvas).
fn crop_pad_image(
    img: &RgbImage,
    y0: usize,
    x0: usize,
    h: usize,
    w: usize,
    out: (usize, usize),
    pad: [u8; 3],
) -> RgbImage {
    let mut canvas = RgbImage::from_pixel(out.1 as u32, out.0 as u32, image::Rgb(pad));
    for y in 0..h {
        for x in 0..w {
            canvas.put_pixel(
                x as u32,
                y as u32,
                *img.get_pixel((x0 + x) as u32, (y0 + y) as u32),
            );
        }
    }
    canvas
}

fn crop_pad_mask(m: &Mask, y0: usize, x0: usize, h: usize, w: usize, out: (usize, usize)) -> Mask {
    let mut canvas = Mask::zeros(out.0, out.1);
    for y in 0..h {
        for x in 0..w {
            if m.get(y0 + y, x0 + x) {
                canvas.set(y, x, true);
            }
        }
    }
    canvas
}

/// Applies flip + LSJ to a sample. The ground truth in `sample.ground_truth` stays the original.
pub fn augment(sample: &Sample, cfg: &AugmentConfig, rng: &mut impl Rng) -> Sample {
    let (mut image, mut masks) = (sample.image.clone(), sample.masks.clone());
    if rng.random::<f64>() < cfg.flip_probability {
        (image, masks) = flip_horizontal(&image, &masks);
    }
    // ResizeScale: fit the image into scale × output size, keeping the aspect ratio
    let (h, w) = (image.height() as usize, image.width() as usize);
    let scale = rng.random_range(cfg.min_scale..=cfg.max_scale);
    let factor =
        (cfg.output.0 as f64 * scale / h as f64).min(cfg.output.1 as f64 * scale / w as f64);
    let rh = ((h as f64 * factor).round() as usize).max(1);
    let rw = ((w as f64 * factor).round() as usize).max(1);
    let image = imageops::resize(&image, rw as u32, rh as u32, imageops::FilterType::Triangle);
    // FixedSizeCrop: random crop where larger than the output, pad bottom/right where smaller
    let (ch, cw) = (rh.min(cfg.output.0), rw.min(cfg.output.1));
    // one draw for both axes, as detectron2's FixedSizeCrop does
    let t = rng.random::<f64>();
    let y0 = ((rh - ch) as f64 * t).round() as usize;
    let x0 = ((rw - cw) as f64 * t).round() as usize;
    let image = crop_pad_image(&image, y0, x0, ch, cw, cfg.output, cfg.pad_value);
    // resize only the window the crop keeps: same source map as resizing everything, less work
    let ys: Vec<usize> = (y0..y0 + ch).map(|y| nearest(y, h, rh)).collect();
    let xs: Vec<usize> = (x0..x0 + cw).map(|x| nearest(x, w, rw)).collect();
    let mut out_masks = Vec::new();
    let mut class_ids = Vec::new();
    for (m, &c) in masks.iter().zip(&sample.class_ids) {
        let mut canvas = Mask::zeros(cfg.output.0, cfg.output.1);
        let mut any = false;
        for (y, &sy) in ys.iter().enumerate() {
            for (x, &sx) in xs.iter().enumerate() {
                if m.get(sy, sx) {
                    canvas.set(y, x, true);
                    any = true;
                }
            }
        }
        if any {
            out_masks.push(canvas);
            class_ids.push(c);
        }
    }
    Sample {
        image_id: sample.image_id,
        file_name: sample.file_name.clone(),
        image,
        masks: out_masks,
        class_ids,
        valid: (ch, cw),
        ground_truth: sample.ground_truth.clone(),
    }
}

/// Pads a sample (image with `pad`, masks with 0) at the bottom/right to `(h, w)`.
pub fn pad_to(sample: &Sample, h: usize, w: usize, pad: [u8; 3]) -> Sample {
    let (sh, sw) = (
        sample.image.height() as usize,
        sample.image.width() as usize,
    );
    assert!(
        sh <= h && sw <= w,
        "pad_to {h}x{w} smaller than the {sh}x{sw} sample"
    );
    Sample {
        image: crop_pad_image(&sample.image, 0, 0, sh, sw, (h, w), pad),
        masks: sample
            .masks
            .iter()
            .map(|m| crop_pad_mask(m, 0, 0, sh, sw, (h, w)))
            .collect(),
        ..sample.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::GroundTruth;
    use crate::data::LabelMap;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// A 20x30 sample with two disjoint masks: left half class 3, right half class 5.
    fn sample() -> Sample {
        let (h, w) = (20, 30);
        let left = Mask::from_map(h, w, &(0..h * w).collect::<Vec<_>>(), |i| i % w < 15);
        let right = Mask::from_map(h, w, &(0..h * w).collect::<Vec<_>>(), |i| i % w >= 15);
        let image = RgbImage::from_fn(w as u32, h as u32, |x, _| {
            image::Rgb(if x < 15 { [255, 0, 0] } else { [0, 0, 255] })
        });
        Sample {
            image_id: 1,
            file_name: String::new(),
            image,
            masks: vec![left, right],
            class_ids: vec![3, 5],
            valid: (h, w),
            ground_truth: GroundTruth::Semantic(LabelMap {
                height: h,
                width: w,
                labels: vec![0; h * w],
            }),
        }
    }

    #[test]
    fn lsj_output_shape_masks_disjoint_and_deterministic() {
        let cfg = AugmentConfig::lsj(32);
        let s = sample();
        for seed in 0..20 {
            let a = augment(&s, &cfg, &mut ChaCha8Rng::seed_from_u64(seed));
            let b = augment(&s, &cfg, &mut ChaCha8Rng::seed_from_u64(seed));
            assert_eq!(a.image, b.image);
            assert_eq!(a.masks, b.masks);
            assert_eq!((a.image.height(), a.image.width()), (32, 32));
            assert_eq!(a.masks.len(), a.class_ids.len());
            let (vh, vw) = a.valid;
            let mut covered = 0;
            for y in 0..32 {
                for x in 0..32 {
                    let n = a.masks.iter().filter(|m| m.get(y, x)).count();
                    assert!(n <= 1, "seed {seed}: masks overlap at {y},{x}");
                    let inside = y < vh && x < vw;
                    assert_eq!(
                        n == 1,
                        inside,
                        "seed {seed}: mask coverage at {y},{x} (valid {vh}x{vw})"
                    );
                    covered += n;
                    if !inside {
                        assert_eq!(a.image.get_pixel(x as u32, y as u32).0, [128; 3]);
                    }
                }
            }
            assert_eq!(covered, vh * vw);
            // the class follows its colour: red pixels belong to class 3 (away from the blend seam)
            for (m, &c) in a.masks.iter().zip(&a.class_ids) {
                for y in 0..vh {
                    for x in 0..vw {
                        let p = a.image.get_pixel(x as u32, y as u32).0;
                        if m.get(y, x) && (p[0] == 255 || p[2] == 255) {
                            assert_eq!(p[0] == 255, c == 3, "seed {seed} at {y},{x}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn flip_mirrors_masks() {
        let s = sample();
        let (img, masks) = flip_horizontal(&s.image, &s.masks);
        assert_eq!(img.get_pixel(0, 0).0, [0, 0, 255]);
        assert!(masks[1].get(0, 0) && !masks[0].get(0, 0));
    }
}
