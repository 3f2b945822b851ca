//! Image pre-processing as the transformers Mask2Former image processor does it: RGB, resize so
//! the shortest edge is 800 and the longest at most 1333, stretch each side up to a multiple of
//! 32, scale to [0, 1], normalise with the ImageNet mean and std, layout CHW.
//!
//! Where we differ from PIL: the resize uses the `image` crate's triangle (bilinear) filter, which
//! widens its support when downscaling (antialiasing) like PIL's bilinear, but the two round
//! differently: expect differences of about one grey level per pixel, not bit-exact pixels.
//! Parity tests therefore feed the same `pixel_values` to both implementations.

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
