//! The embedded synthetic panoptic dataset (no download).
//!
//! Each image is generated from `(seed, split, index)` alone, so any item can be produced in any
//! order, on any thread, and again identically. A scene has 1–3 horizontal bands of "stuff"
//! (sky / grass / water textures, with wavy boundaries; bands of the same class form one segment)
//! and up to `max_objects` "things" (circle, square, triangle, star, ring) with jittered colours,
//! sizes and rotations, painted in order so later ones occlude earlier ones. Thing remnants smaller
//! than `min_thing_area` become VOID, some images get an unlabelled grey object (VOID) and some
//! a crowd segment (a cluster of small
//! objects of one class), so the readers and evaluators meet VOID and crowd too.

use image::{Rgb, RgbImage};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::coco_panoptic::{write_coco_panoptic, ImageInfo, PanopticItem};
use super::{
    panoptic_targets, Categories, Category, DataError, GroundTruth, Panoptic, Sample, SegmentInfo,
};

/// Dataset split; each split draws from its own random stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    Train,
    Val,
}

impl Split {
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
        }
    }
}

/// Generation parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub height: usize,
    pub width: usize,
    /// Things per image are drawn from `1..=max_objects`.
    pub max_objects: usize,
    /// Visible thing parts smaller than this (pixels) become VOID.
    pub min_thing_area: u64,
    /// Probability that an image has a crowd segment.
    pub crowd_probability: f64,
    /// Probability that an image has an unlabelled grey object (VOID pixels).
    pub void_probability: f64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            height: 128,
            width: 128,
            max_objects: 6,
            min_thing_area: 12,
            crowd_probability: 0.1,
            void_probability: 0.25,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    Circle,
    Square,
    Triangle,
    Star,
    Ring,
}

const THINGS: [(u32, &str, Shape, [u8; 3]); 5] = [
    (1, "circle", Shape::Circle, [220, 60, 50]),
    (2, "square", Shape::Square, [230, 200, 40]),
    (3, "triangle", Shape::Triangle, [150, 60, 200]),
    (4, "star", Shape::Star, [240, 130, 30]),
    (5, "ring", Shape::Ring, [40, 200, 210]),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stuff {
    Sky,
    Grass,
    Water,
}

const STUFF: [(u32, &str, Stuff, [u8; 3]); 3] = [
    (6, "sky", Stuff::Sky, [135, 190, 235]),
    (7, "grass", Stuff::Grass, [70, 150, 60]),
    (8, "water", Stuff::Water, [30, 90, 150]),
];

/// The categories: things 1–5, stuff 6–8 (contiguous indices 0–7).
pub fn categories() -> Categories {
    let things = THINGS
        .iter()
        .map(|&(id, name, _, color)| (id, name, true, color));
    let stuff = STUFF
        .iter()
        .map(|&(id, name, _, color)| (id, name, false, color));
    Categories::new(
        things
            .chain(stuff)
            .map(|(id, name, isthing, color)| Category {
                id,
                name: name.to_string(),
                isthing,
                color: Some(color),
            })
            .collect(),
    )
    .expect("distinct ids")
}

/// One generated image with its panoptic ground truth.
#[derive(Clone, Debug)]
pub struct Generated {
    pub info: ImageInfo,
    /// `[H, W, 3]`.
    pub image: RgbImage,
    pub panoptic: Panoptic,
}

/// A deterministic synthetic panoptic dataset of `len` images.
#[derive(Clone, Debug)]
pub struct Dataset {
    seed: u64,
    split: Split,
    len: usize,
    config: Config,
}

/// SplitMix64 finaliser: decorrelates nearby seeds.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Dataset {
    pub fn new(seed: u64, split: Split, len: usize) -> Self {
        Self::with_config(seed, split, len, Config::default())
    }

    pub fn with_config(seed: u64, split: Split, len: usize, config: Config) -> Self {
        Dataset {
            seed,
            split,
            len,
            config,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn split(&self) -> Split {
        self.split
    }
    pub fn config(&self) -> &Config {
        &self.config
    }
    pub fn categories(&self) -> Categories {
        categories()
    }

    fn rng(&self, i: usize) -> ChaCha8Rng {
        let split = match self.split {
            Split::Train => 1,
            Split::Val => 2,
        };
        ChaCha8Rng::seed_from_u64(mix(mix(mix(self.seed) ^ split) ^ i as u64))
    }

    /// Generates image `i` (`image_id = i + 1`).
    pub fn generate(&self, i: usize) -> Generated {
        // Long: one RNG stream drawn in a fixed order (images are a pure function of seed and i).
        assert!(i < self.len, "index {i} out of {} images", self.len);
        let mut rng = self.rng(i);
        let (h, w) = (self.config.height, self.config.width);
        let mut img = RgbImage::new(w as u32, h as u32);
        let mut ids = vec![0u32; h * w];
        let mut segments: Vec<SegmentInfo> = Vec::new();
        let mut new_segment = |category_id: u32, iscrowd: bool| {
            let id = segments.len() as u32 + 1;
            segments.push(SegmentInfo {
                id,
                category_id,
                iscrowd,
                area: 0.0,
                bbox: None,
            });
            id
        };

        paint_stuff(&mut rng, &mut img, &mut ids, &mut new_segment);

        let minside = h.min(w) as f64;
        if rng.random::<f64>() < self.config.crowd_probability {
            let (cat, _, shape, color) = THINGS[rng.random_range(0..THINGS.len())];
            let id = new_segment(cat, true);
            let (cy, cx) = (
                rng.random_range(0.0..h as f64),
                rng.random_range(0.0..w as f64),
            );
            for _ in 0..rng.random_range(4..=8) {
                let obj = Object {
                    shape,
                    cy: cy + rng.random_range(-0.08..0.08) * minside,
                    cx: cx + rng.random_range(-0.08..0.08) * minside,
                    r: rng.random_range(0.025..0.04) * minside,
                    angle: rng.random_range(0.0..std::f64::consts::TAU),
                    color: jitter(&mut rng, color),
                };
                obj.paint(&mut img, &mut ids, id);
            }
        }
        if rng.random::<f64>() < self.config.void_probability {
            let grey = rng.random_range(60..200u8);
            let obj = Object {
                shape: THINGS[rng.random_range(0..THINGS.len())].2,
                cy: rng.random_range(0.0..1.0) * h as f64,
                cx: rng.random_range(0.0..1.0) * w as f64,
                r: rng.random_range(0.06..0.2) * minside,
                angle: rng.random_range(0.0..std::f64::consts::TAU),
                color: [grey; 3],
            };
            obj.paint(&mut img, &mut ids, 0);
        }
        let n = rng.random_range(1..=self.config.max_objects.max(1));
        for _ in 0..n {
            let (cat, _, shape, color) = THINGS[rng.random_range(0..THINGS.len())];
            let id = new_segment(cat, false);
            let obj = Object {
                shape,
                cy: rng.random_range(-0.05..1.05) * h as f64,
                cx: rng.random_range(-0.05..1.05) * w as f64,
                r: rng.random_range(0.06..0.25) * minside,
                angle: rng.random_range(0.0..std::f64::consts::TAU),
                color: jitter(&mut rng, color),
            };
            obj.paint(&mut img, &mut ids, id);
        }

        // sensor noise over the whole image
        for p in img.pixels_mut() {
            for c in p.0.iter_mut() {
                *c = (*c as i32 + rng.random_range(-6..=6)).clamp(0, 255) as u8;
            }
        }

        let segments = finish_segments(segments, &mut ids, h, w, self.config.min_thing_area);
        let id = i as u64 + 1;
        Generated {
            info: ImageInfo {
                id,
                file_name: format!("{}_{id:06}.png", self.split.name()),
                height: h,
                width: w,
            },
            image: img,
            panoptic: Panoptic {
                height: h,
                width: w,
                ids,
                segments,
            },
        }
    }

    /// Image `i` as a training sample.
    pub fn sample(&self, i: usize) -> Result<Sample, DataError> {
        let g = self.generate(i);
        let (masks, class_ids) = panoptic_targets(
            &g.panoptic,
            &categories(),
            std::path::Path::new("<synthetic>"),
        )?;
        Ok(Sample {
            image_id: g.info.id,
            file_name: g.info.file_name,
            image: g.image,
            masks,
            class_ids,
            valid: (g.panoptic.height, g.panoptic.width),
            ground_truth: GroundTruth::Panoptic(g.panoptic),
        })
    }

    /// Writes the whole split in COCO panoptic format: `dir/panoptic.json`, `dir/panoptic/`,
    /// `dir/images/` (readable with `CocoPanoptic::open_dir`).
    pub fn write_coco_panoptic(&self, dir: &std::path::Path) -> Result<(), DataError> {
        let items = (0..self.len).map(|i| {
            let g = self.generate(i);
            Ok(PanopticItem {
                info: g.info,
                image: g.image,
                panoptic: g.panoptic,
            })
        });
        write_coco_panoptic(dir, &categories(), items)
    }
}

/// Writes a train and a val split in COCO panoptic format to `root/train` and `root/val`.
pub fn write_splits(
    root: &std::path::Path,
    seed: u64,
    train: usize,
    val: usize,
    config: &Config,
) -> Result<(), DataError> {
    Dataset::with_config(seed, Split::Train, train, config.clone())
        .write_coco_panoptic(&root.join("train"))?;
    Dataset::with_config(seed, Split::Val, val, config.clone())
        .write_coco_panoptic(&root.join("val"))
}

fn jitter(rng: &mut ChaCha8Rng, c: [u8; 3]) -> [u8; 3] {
    c.map(|v| (v as i32 + rng.random_range(-30..=30)).clamp(0, 255) as u8)
}

/// Paints 1–3 horizontal stuff bands with wavy boundaries; one segment per stuff class.
fn paint_stuff(
    rng: &mut ChaCha8Rng,
    img: &mut RgbImage,
    ids: &mut [u32],
    new_segment: &mut impl FnMut(u32, bool) -> u32,
) {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let bands = rng.random_range(1..=3usize);
    let mut classes: Vec<usize> = (0..bands)
        .map(|_| rng.random_range(0..STUFF.len()))
        .collect();
    // sky, when present, goes on top so scenes look like scenes
    classes.sort_by_key(|&c| c != 0);
    let mut cuts: Vec<f64> = (1..bands)
        .map(|_| rng.random_range(0.2..0.8) * h as f64)
        .collect();
    cuts.sort_by(f64::total_cmp);
    let waves: Vec<(f64, f64, f64)> = cuts
        .iter()
        .map(|_| {
            (
                rng.random_range(1.0..0.08 * h as f64 + 1.0),
                rng.random_range(0.03..0.15),
                rng.random_range(0.0..std::f64::consts::TAU),
            )
        })
        .collect();
    let mut seg_of = [0u32; STUFF.len()];
    for &c in &classes {
        if seg_of[c] == 0 {
            seg_of[c] = new_segment(STUFF[c].0, false);
        }
    }
    let tints: Vec<[u8; 3]> = STUFF.iter().map(|s| jitter(rng, s.3)).collect();
    for x in 0..w {
        let boundaries: Vec<f64> = cuts
            .iter()
            .zip(&waves)
            .map(|(&c, &(amp, freq, phase))| c + amp * (freq * x as f64 + phase).sin())
            .collect();
        for y in 0..h {
            let band = boundaries.iter().filter(|&&b| (y as f64) >= b).count();
            let c = classes[band];
            ids[y * w + x] = seg_of[c];
            let color = texture(STUFF[c].2, tints[c], x, y, h);
            img.put_pixel(x as u32, y as u32, Rgb(color));
        }
    }
}

/// Deterministic per-pixel hash in [0, 1).
fn hash01(x: usize, y: usize) -> f64 {
    (mix((x as u64) << 32 | y as u64) >> 11) as f64 / (1u64 << 53) as f64
}

fn texture(kind: Stuff, tint: [u8; 3], x: usize, y: usize, h: usize) -> [u8; 3] {
    let (xf, yf) = (x as f64, y as f64);
    let factor = match kind {
        // brighter towards the horizon
        Stuff::Sky => 0.85 + 0.3 * yf / h as f64,
        // vertical blades: per-column streaks plus fine grain
        Stuff::Grass => {
            0.75 + 0.35 * hash01(x, 0) * (0.5 + 0.5 * (yf * 0.7).sin()) + 0.1 * hash01(x, y)
        }
        // horizontal ripples
        Stuff::Water => 0.8 + 0.25 * (0.9 * yf + 1.5 * (0.15 * xf).sin()).sin(),
    };
    tint.map(|v| (v as f64 * factor).clamp(0.0, 255.0) as u8)
}

struct Object {
    shape: Shape,
    cy: f64,
    cx: f64,
    r: f64,
    angle: f64,
    color: [u8; 3],
}

impl Object {
    /// Whether the offset `(dx, dy)` from the centre is inside the shape.
    fn contains(&self, dx: f64, dy: f64) -> bool {
        let (s, c) = self.angle.sin_cos();
        let (u, v) = (c * dx + s * dy, -s * dx + c * dy);
        let d = (u * u + v * v).sqrt();
        let r = self.r;
        match self.shape {
            Shape::Circle => d <= r,
            Shape::Square => u.abs() <= 0.8 * r && v.abs() <= 0.8 * r,
            Shape::Triangle => (0..3).all(|k| {
                let a = std::f64::consts::FRAC_PI_2 + k as f64 * std::f64::consts::TAU / 3.0;
                u * a.cos() + v * a.sin() <= 0.5 * r
            }),
            Shape::Star => {
                let phi = v.atan2(u).rem_euclid(std::f64::consts::TAU);
                let frac = (phi * 5.0 / std::f64::consts::TAU).fract();
                let tip = (frac - 0.5).abs() * 2.0;
                d <= r * (0.45 + 0.55 * tip)
            }
            Shape::Ring => d <= r && d >= 0.55 * r,
        }
    }

    fn paint(&self, img: &mut RgbImage, ids: &mut [u32], id: u32) {
        let (w, h) = (img.width() as i64, img.height() as i64);
        let x0 = ((self.cx - self.r).floor() as i64).max(0);
        let x1 = ((self.cx + self.r).ceil() as i64).min(w - 1);
        let y0 = ((self.cy - self.r).floor() as i64).max(0);
        let y1 = ((self.cy + self.r).ceil() as i64).min(h - 1);
        for y in y0..=y1 {
            for x in x0..=x1 {
                let (dx, dy) = (x as f64 + 0.5 - self.cx, y as f64 + 0.5 - self.cy);
                if !self.contains(dx, dy) {
                    continue;
                }
                // light from the top-left
                let shade = 0.85 + 0.15 * (-(dx + dy) / (2.0 * self.r)).clamp(-1.0, 1.0);
                let color = self
                    .color
                    .map(|v| (v as f64 * shade).clamp(0.0, 255.0) as u8);
                img.put_pixel(x as u32, y as u32, Rgb(color));
                ids[(y * w + x) as usize] = id;
            }
        }
    }
}

/// Computes areas and boxes, turns small thing remnants into VOID, drops empty segments.
fn finish_segments(
    mut segments: Vec<SegmentInfo>,
    ids: &mut [u32],
    h: usize,
    w: usize,
    min_thing_area: u64,
) -> Vec<SegmentInfo> {
    let n = segments.len() + 1;
    let mut area = vec![0u64; n];
    for &id in ids.iter() {
        area[id as usize] += 1;
    }
    let things: Vec<u32> = THINGS.iter().map(|t| t.0).collect();
    let mut void = vec![false; n];
    for s in &segments {
        let a = area[s.id as usize];
        void[s.id as usize] =
            a == 0 || (things.contains(&s.category_id) && !s.iscrowd && a < min_thing_area);
    }
    for id in ids.iter_mut() {
        if void[*id as usize] {
            *id = 0;
        }
    }
    let mut bbox = vec![[usize::MAX, usize::MAX, 0usize, 0usize]; n];
    for y in 0..h {
        for x in 0..w {
            let b = &mut bbox[ids[y * w + x] as usize];
            b[0] = b[0].min(x);
            b[1] = b[1].min(y);
            b[2] = b[2].max(x);
            b[3] = b[3].max(y);
        }
    }
    segments.retain(|s| !void[s.id as usize]);
    for s in &mut segments {
        let b = bbox[s.id as usize];
        s.area = area[s.id as usize] as f64;
        s.bbox = Some([
            b[0] as f64,
            b[1] as f64,
            (b[2] - b[0] + 1) as f64,
            (b[3] - b[1] + 1) as f64,
        ]);
    }
    segments
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_splits_differ() {
        let a = Dataset::new(7, Split::Train, 4);
        let b = Dataset::new(7, Split::Train, 4);
        let v = Dataset::new(7, Split::Val, 4);
        let (ga, gb, gv) = (a.generate(2), b.generate(2), v.generate(2));
        assert_eq!(ga.image, gb.image);
        assert_eq!(ga.panoptic, gb.panoptic);
        assert_ne!(ga.image, gv.image);
        assert_ne!(a.generate(1).image, ga.image);
    }

    #[test]
    fn segments_match_the_id_map() {
        let ds = Dataset::new(3, Split::Val, 30);
        let mut crowd = 0;
        let mut void = 0;
        for i in 0..ds.len() {
            let g = ds.generate(i);
            for s in &g.panoptic.segments {
                let a = g.panoptic.ids.iter().filter(|&&v| v == s.id).count();
                assert_eq!(a as f64, s.area, "image {i} segment {}", s.id);
                assert!(a > 0);
                crowd += usize::from(s.iscrowd);
            }
            void += g.panoptic.ids.iter().filter(|&&v| v == 0).count();
            let listed: std::collections::HashSet<u32> =
                g.panoptic.segments.iter().map(|s| s.id).collect();
            assert!(g.panoptic.ids.iter().all(|v| *v == 0 || listed.contains(v)));
        }
        assert!(crowd > 0, "some crowd segments in 30 images");
        assert!(void > 0, "some VOID pixels in 30 images");
    }
}
