//! Image pre-processing as the transformers Mask2Former image processor does it: RGB, resize so
//! the shortest edge is 800 and the longest at most 1333, stretch each side up to a multiple of
//! 32, scale to [0, 1], normalise with the ImageNet mean and std, layout CHW.
//!
//! Where we differ from PIL: the resize uses the `image` crate's triangle (bilinear) filter, which
//! widens its support when downscaling (antialiasing) like PIL's bilinear, but the two round
//! differently: expect differences of about one grey level per pixel, not bit-exact pixels.
//! Parity tests therefore feed the same `pixel_values` to both implementations.

#[cfg(not(target_arch = "wasm32"))]
use std::path::Path;

use image::{imageops::FilterType, DynamicImage};

/// Resize and normalisation settings (defaults are the transformers processor's).
#[derive(Clone, Debug, PartialEq)]
pub struct PreprocessConfig {
    /// Target length of the shorter side.
    pub shortest_edge: u32,
    /// Upper bound of the longer side (the shorter side shrinks to keep the aspect ratio).
    pub longest_edge: Option<u32>,
    /// Each side is stretched up to a multiple of this (0 = no stretch).
    pub size_divisor: u32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Default for PreprocessConfig {
    fn default() -> Self {
        Self {
            shortest_edge: 800,
            longest_edge: Some(1333),
            size_divisor: 32,
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
        }
    }
}

/// The file a checkpoint folder keeps its image-processor settings in (the hub layout).
pub const PREPROCESSOR_FILE: &str = "preprocessor_config.json";

impl PreprocessConfig {
    #[cfg(not(target_arch = "wasm32"))]
    /// The settings of a checkpoint folder: its `preprocessor_config.json` when present (as the
    /// hub's `facebook/mask2former-*` folders and our `train` runs have it), else the defaults.
    pub fn for_model_dir(dir: &Path) -> Result<Self, String> {
        let path = dir.join(PREPROCESSOR_FILE);
        if !path.is_file() {
            return Ok(Self::default());
        }
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::from_json(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Reads the transformers image-processor JSON: `size` as a number (shortest edge) or as
    /// `{"shortest_edge", "longest_edge"}`, the older `max_size`, `size_divisor`, `image_mean`,
    /// `image_std`. Fields it does not name keep their defaults; a form we cannot honour
    /// (a fixed `height`/`width`, resizing or normalising switched off) is an error.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let mut cfg = Self::default();
        let uint = |key: &str, x: &serde_json::Value| -> Result<u32, String> {
            x.as_u64()
                .filter(|&n| n > 0 && n <= u32::MAX as u64)
                .map(|n| n as u32)
                .ok_or_else(|| format!("`{key}` must be a positive integer, found {x}"))
        };
        for flag in ["do_resize", "do_normalize", "do_rescale"] {
            if v.get(flag) == Some(&serde_json::Value::Bool(false)) {
                return Err(format!("`{flag}: false` is not supported"));
            }
        }
        if let Some(f) = v.get("rescale_factor").and_then(|f| f.as_f64()) {
            if (f - 1.0 / 255.0).abs() > 1e-9 {
                return Err(format!(
                    "`rescale_factor` {f} is not supported (only 1/255)"
                ));
            }
        }
        for key in ["max_size", "_max_size"] {
            if let Some(x) = v.get(key) {
                cfg.longest_edge = Some(uint(key, x)?);
            }
        }
        match v.get("size") {
            None | Some(serde_json::Value::Null) => {}
            Some(x) if x.is_number() => cfg.shortest_edge = uint("size", x)?,
            Some(serde_json::Value::Object(m)) => {
                if m.contains_key("height") || m.contains_key("width") {
                    return Err("`size` with a fixed height/width is not supported \
                                (give shortest_edge and longest_edge)"
                        .into());
                }
                let se = m
                    .get("shortest_edge")
                    .ok_or("`size` has no `shortest_edge`")?;
                cfg.shortest_edge = uint("size.shortest_edge", se)?;
                // In this form a missing longest_edge means no cap (transformers' semantics).
                cfg.longest_edge = match m.get("longest_edge") {
                    None | Some(serde_json::Value::Null) => None,
                    Some(le) => Some(uint("size.longest_edge", le)?),
                };
            }
            Some(x) => return Err(format!("`size` must be a number or an object, found {x}")),
        }
        for key in ["size_divisor", "size_divisibility"] {
            if let Some(x) = v.get(key) {
                cfg.size_divisor = x
                    .as_u64()
                    .filter(|&n| n <= 1024)
                    .ok_or_else(|| format!("`{key}` must be an integer ≤ 1024, found {x}"))?
                    as u32;
            }
        }
        for (key, dst) in [("image_mean", &mut cfg.mean), ("image_std", &mut cfg.std)] {
            if let Some(x) = v.get(key) {
                let vals: Vec<f32> = x
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|e| e.as_f64())
                            .map(|e| e as f32)
                            .collect()
                    })
                    .unwrap_or_default();
                if vals.len() != 3 || (key == "image_std" && vals.iter().any(|&s| s <= 0.0)) {
                    return Err(format!(
                        "`{key}` must be three numbers (std positive), found {x}"
                    ));
                }
                dst.copy_from_slice(&vals);
            }
        }
        Ok(cfg)
    }

    /// The transformers image-processor JSON for these settings (what `from_json` reads).
    pub fn to_json(&self) -> serde_json::Value {
        let mut size = serde_json::json!({ "shortest_edge": self.shortest_edge });
        if let Some(le) = self.longest_edge {
            size["longest_edge"] = le.into();
        }
        serde_json::json!({
            "image_processor_type": "Mask2FormerImageProcessor",
            "do_resize": true,
            "do_rescale": true,
            "rescale_factor": 1.0 / 255.0,
            "do_normalize": true,
            "resample": 2,
            "size": size,
            "size_divisor": self.size_divisor,
            "image_mean": self.mean,
            "image_std": self.std,
            "ignore_index": 255,
        })
    }
}

/// A pre-processed image: `pixel_values` is `[3, height, width]`, row-major.
#[derive(Clone, Debug)]
pub struct Preprocessed {
    pub pixel_values: Vec<f32>,
    pub height: usize,
    pub width: usize,
    /// Size of the image before resizing (height, width): post-processing returns to it.
    pub original_size: (usize, usize),
}

/// Output size (height, width) before the size-divisor stretch, following transformers'
/// `get_size_with_aspect_ratio` (rounding included).
pub fn resize_output_size(
    height: u32,
    width: u32,
    shortest: u32,
    longest: Option<u32>,
) -> (u32, u32) {
    let (h, w) = (height as f64, width as f64);
    let mut size = shortest as f64;
    let mut raw_size = None;
    if let Some(max) = longest {
        let (mn, mx) = (h.min(w), h.max(w));
        if mx / mn * size > max as f64 {
            let r = max as f64 * mn / mx;
            raw_size = Some(r);
            size = r.round();
        }
    }
    let s = size as u32;
    if (height <= width && height == s) || (width <= height && width == s) {
        return (height, width);
    }
    let scale = raw_size.unwrap_or(size);
    if width < height {
        (((scale * h / w) as u32).max(1), s.max(1))
    } else {
        (s.max(1), ((scale * w / h) as u32).max(1))
    }
}

/// Stretches `n` up to the next multiple of `divisor`.
pub fn stretch_to_multiple(n: u32, divisor: u32) -> u32 {
    if divisor == 0 {
        n
    } else {
        n.div_ceil(divisor) * divisor
    }
}

/// Converts any image (grey, grey+alpha, RGBA, 16-bit) to RGB, resizes and normalises it.
pub fn preprocess(image: &DynamicImage, cfg: &PreprocessConfig) -> Preprocessed {
    // `to_rgb8` drops alpha, replicates grey and maps 16-bit channels to 8 bits (x/257), as PIL
    // does when the processor converts to RGB.
    let rgb = image.to_rgb8();
    let (w0, h0) = rgb.dimensions();
    let (h1, w1) = resize_output_size(h0, w0, cfg.shortest_edge, cfg.longest_edge);
    let (h2, w2) = (
        stretch_to_multiple(h1, cfg.size_divisor),
        stretch_to_multiple(w1, cfg.size_divisor),
    );
    let resized = if (h2, w2) == (h0, w0) {
        rgb
    } else {
        image::imageops::resize(&rgb, w2, h2, FilterType::Triangle)
    };
    Preprocessed {
        pixel_values: normalize_chw(&resized, cfg),
        height: h2 as usize,
        width: w2 as usize,
        original_size: (h0 as usize, w0 as usize),
    }
}

/// `[3, H, W]` floats: (x / 255 − mean) / std per channel.
pub fn normalize_chw(rgb: &image::RgbImage, cfg: &PreprocessConfig) -> Vec<f32> {
    let (w, h) = rgb.dimensions();
    let plane = (w * h) as usize;
    let mut out = vec![0.0f32; 3 * plane];
    for (i, px) in rgb.pixels().enumerate() {
        for c in 0..3 {
            out[c * plane + i] = (px[c] as f32 / 255.0 - cfg.mean[c]) / cfg.std[c];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preprocessor_json_round_trips_and_reads_hub_forms() {
        let cfg = PreprocessConfig {
            shortest_edge: 128,
            longest_edge: None,
            ..PreprocessConfig::default()
        };
        assert_eq!(
            PreprocessConfig::from_json(&cfg.to_json().to_string()).unwrap(),
            cfg
        );
        // The two spellings seen on the hub.
        let a = PreprocessConfig::from_json(
            r#"{"size": {"shortest_edge": 384, "longest_edge": 1333}, "size_divisor": 32}"#,
        )
        .unwrap();
        let b = PreprocessConfig::from_json(r#"{"size": 384, "max_size": 1333}"#).unwrap();
        assert_eq!(a, b);
        assert_eq!((a.shortest_edge, a.longest_edge), (384, Some(1333)));
        for (bad, says) in [
            (r#"{"size": {"height": 512, "width": 512}}"#, "height/width"),
            (r#"{"size": -3}"#, "positive integer"),
            (r#"{"image_std": [0.2, 0.0, 0.2]}"#, "image_std"),
            (r#"{"do_normalize": false}"#, "do_normalize"),
            ("{", "EOF"),
        ] {
            let e = PreprocessConfig::from_json(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn sizes_match_transformers() {
        // 480x640 -> 800x1066 -> stretched 800x1088 (seen running transformers).
        assert_eq!(resize_output_size(480, 640, 800, Some(1333)), (800, 1066));
        assert_eq!(stretch_to_multiple(1066, 32), 1088);
        // Portrait.
        assert_eq!(resize_output_size(640, 480, 800, Some(1333)), (1066, 800));
        // Very wide: the long side caps at 1333 and the short side follows the raw (unrounded) size.
        assert_eq!(resize_output_size(100, 1000, 800, Some(1333)), (133, 1333));
        // Already at the target size.
        assert_eq!(resize_output_size(800, 1200, 800, Some(1333)), (800, 1200));
    }

    #[test]
    fn grey_rgba_and_16bit_images_become_rgb() {
        let cfg = PreprocessConfig {
            shortest_edge: 32,
            longest_edge: None,
            ..Default::default()
        };
        let grey =
            DynamicImage::ImageLuma8(image::GrayImage::from_pixel(40, 32, image::Luma([255])));
        let p = preprocess(&grey, &cfg);
        assert_eq!((p.height, p.width), (32, 64)); // 40 -> 40 stretched to 64
        let want = (1.0 - 0.485) / 0.229;
        assert!((p.pixel_values[0] - want).abs() < 1e-6);
        let rgba = DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(
            32,
            32,
            image::Rgba([0, 255, 0, 7]),
        ));
        let p = preprocess(&rgba, &cfg);
        assert!((p.pixel_values[32 * 32] - (1.0 - 0.456) / 0.224).abs() < 1e-6);
        let deep = DynamicImage::ImageRgb16(image::ImageBuffer::from_pixel(
            32,
            32,
            image::Rgb([65535u16, 0, 0]),
        ));
        let p = preprocess(&deep, &cfg);
        assert!((p.pixel_values[0] - want).abs() < 1e-6);
        assert_eq!(p.original_size, (32, 32));
    }
}
