//! Writes a COCO-val-sized synthetic instance dataset in the COCO 2017 layout, with predictions,
//! to time `evaluate` (docs/PERFORMANCE.md):
//!
//! ```text
//! cargo run --release --example coco_val_synthetic -- OUT [IMAGES=5000] [SEED=0]
//! cargo run --release --bin evaluate -- --data coco-instance:OUT --predictions OUT/results.json
//! ```
//! `OUT/annotations/instances_val2017.json` (polygon ground truth, ~7.5 objects an image like
//! COCO val2017's 36k on 5000 images, 80 categories with COCO's ids, 1% crowd), `OUT/val2017/`
//! (blank JPEGs of COCO's usual sizes) and `OUT/results.json` (compressed-RLE detections: most
//! objects found with a jittered outline, plus false positives).

use std::path::PathBuf;

use mask2former::data::Rle;
use rand::{Rng, SeedableRng};
use serde_json::json;

/// An ellipse as a 16-vertex polygon `[x0, y0, x1, y1, ...]`, clipped to the image.
fn ellipse(cx: f64, cy: f64, rx: f64, ry: f64, w: f64, h: f64) -> Vec<f64> {
    (0..16)
        .flat_map(|k| {
            let t = k as f64 * std::f64::consts::TAU / 16.0;
            [
                (cx + rx * t.cos()).clamp(0.0, w),
                (cy + ry * t.sin()).clamp(0.0, h),
            ]
        })
        .collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out = PathBuf::from(
        args.first()
            .ok_or("usage: coco_val_synthetic OUT [IMAGES] [SEED]")?,
    );
    let images: usize = args.get(1).map_or(Ok(5000), |s| s.parse())?;
    let seed: u64 = args.get(2).map_or(Ok(0), |s| s.parse())?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    std::fs::create_dir_all(out.join("annotations"))?;
    std::fs::create_dir_all(out.join("val2017"))?;
    // COCO's 80 thing ids (1..=90 with gaps)
    let cat_ids: Vec<u32> = (1..=90)
        .filter(|i| ![12, 26, 29, 30, 45, 66, 68, 69, 71, 83].contains(i))
        .collect();
    let sizes = [(480usize, 640usize), (427, 640), (640, 480)];
    let mut jpeg = Vec::new();
    for &(h, w) in &sizes {
        let mut bytes = std::io::Cursor::new(Vec::new());
        image::RgbImage::from_pixel(w as u32, h as u32, image::Rgb([90, 120, 150]))
            .write_to(&mut bytes, image::ImageFormat::Jpeg)?;
        jpeg.push(bytes.into_inner());
    }
    let (mut infos, mut anns, mut results) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..images {
        let id = 100_000 + i as u64;
        let s = rng.random_range(0..sizes.len());
        let (h, w) = sizes[s];
        let file_name = format!("{id:012}.jpg");
        std::fs::write(out.join("val2017").join(&file_name), &jpeg[s])?;
        infos.push(json!({"id": id, "file_name": file_name, "height": h, "width": w}));
        let (hf, wf) = (h as f64, w as f64);
        let objects = rng.random_range(1..=14);
        for _ in 0..objects {
            let cat = cat_ids[rng.random_range(0..cat_ids.len())];
            // radii spanning COCO's small / medium / large areas
            let r = 3.0 * 2f64.powf(rng.random_range(0.0..5.5));
            let (rx, ry) = (
                r * rng.random_range(0.6..1.4),
                r * rng.random_range(0.6..1.4),
            );
            let (cx, cy) = (rng.random_range(0.0..wf), rng.random_range(0.0..hf));
            let poly = ellipse(cx, cy, rx, ry, wf, hf);
            let gt = Rle::from_polygon(&poly, h, w)?;
            if gt.area() == 0 {
                continue;
            }
            let crowd = rng.random_bool(0.01);
            anns.push(
                json!({"id": anns.len() + 1, "image_id": id, "category_id": cat,
                "iscrowd": u8::from(crowd), "area": gt.area(), "bbox": gt.to_bbox(),
                "segmentation": [poly]}),
            );
            if rng.random_bool(0.8) {
                let j = r * 0.15;
                let poly = ellipse(
                    cx + rng.random_range(-j..=j),
                    cy + rng.random_range(-j..=j),
                    rx * rng.random_range(0.85..1.15),
                    ry * rng.random_range(0.85..1.15),
                    wf,
                    hf,
                );
                let rle = Rle::from_polygon(&poly, h, w)?;
                let cat = if rng.random_bool(0.9) {
                    cat
                } else {
                    cat_ids[rng.random_range(0..cat_ids.len())]
                };
                results.push(
                    json!({"image_id": id, "category_id": cat, "score": rng.random_range(0.05..1.0),
                    "segmentation": {"size": [h, w], "counts": rle.to_compressed()}}),
                );
            }
        }
        for _ in 0..rng.random_range(0..4) {
            let r = 3.0 * 2f64.powf(rng.random_range(0.0..5.0));
            let poly = ellipse(
                rng.random_range(0.0..wf),
                rng.random_range(0.0..hf),
                r,
                r,
                wf,
                hf,
            );
            let rle = Rle::from_polygon(&poly, h, w)?;
            results.push(
                json!({"image_id": id, "category_id": cat_ids[rng.random_range(0..cat_ids.len())],
                "score": rng.random_range(0.01..0.6),
                "segmentation": {"size": [h, w], "counts": rle.to_compressed()}}),
            );
        }
    }
    let cats: Vec<_> = cat_ids
        .iter()
        .map(|&c| json!({"id": c, "name": format!("class{c}"), "supercategory": "thing"}))
        .collect();
    let n = (anns.len(), results.len());
    let gt = json!({"info": {}, "licenses": [], "images": infos, "annotations": anns, "categories": cats});
    std::fs::write(
        out.join("annotations/instances_val2017.json"),
        gt.to_string(),
    )?;
    std::fs::write(
        out.join("results.json"),
        serde_json::Value::from(results).to_string(),
    )?;
    println!(
        "{}: {images} images, {} annotations, {} detections",
        out.display(),
        n.0,
        n.1
    );
    Ok(())
}
