//! Pictures of results: colour overlays with outlines and labels, COCO-panoptic id PNGs and
//! semantic label PNGs.

use image::{GrayImage, ImageBuffer, Luma, Rgb, RgbImage};

/// A stable, distinct colour for an id (golden-ratio hue steps, bright and saturated).
pub fn color(id: u32) -> [u8; 3] {
    let h = (id as f64 * 0.618_033_988_75).fract() * 6.0;
    let (s, v) = (0.65, 0.95);
    let c = v * s;
    let x = c * (1.0 - ((h % 2.0) - 1.0).abs());
    let (r, g, b) = match h as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = v - c;
    [
        ((r + m) * 255.0) as u8,
        ((g + m) * 255.0) as u8,
        ((b + m) * 255.0) as u8,
    ]
}

/// One region to draw: its id in the id map, its colour and its caption.
pub struct Region {
    pub id: u32,
    pub color: [u8; 3],
    pub caption: String,
}

/// Blends each region's colour over the image (alpha 0.5), draws white outlines where the id
/// changes, and writes each caption at the top-left of its region's bounding box.
/// `ids` is `[H, W]` with 0 meaning "no region".
pub fn overlay(image: &RgbImage, ids: &[u32], regions: &[Region]) -> RgbImage {
    let (w, h) = image.dimensions();
    let (wu, hu) = (w as usize, h as usize);
    assert_eq!(ids.len(), wu * hu, "id map size must match the image");
    let colors: std::collections::HashMap<u32, [u8; 3]> =
        regions.iter().map(|r| (r.id, r.color)).collect();
    let mut out = image.clone();
    for (i, px) in out.pixels_mut().enumerate() {
        let id = ids[i];
        if id == 0 {
            continue;
        }
        let (x, y) = (i % wu, i / wu);
        let edge = (x > 0 && ids[i - 1] != id)
            || (x + 1 < wu && ids[i + 1] != id)
            || (y > 0 && ids[i - wu] != id)
            || (y + 1 < hu && ids[i + wu] != id);
        if edge {
            *px = Rgb([255, 255, 255]);
        } else if let Some(c) = colors.get(&id) {
            for k in 0..3 {
                px[k] = ((px[k] as u16 + c[k] as u16) / 2) as u8;
            }
        }
    }
    for r in regions {
        if let Some((x, y)) = top_left(ids, wu, r.id) {
            draw_text(&mut out, x as i64 + 1, y as i64 + 1, &r.caption, r.color);
        }
    }
    out
}

fn top_left(ids: &[u32], w: usize, id: u32) -> Option<(usize, usize)> {
    let (mut x0, mut y0, mut found) = (usize::MAX, usize::MAX, false);
    for (i, &v) in ids.iter().enumerate() {
        if v == id {
            x0 = x0.min(i % w);
            y0 = y0.min(i / w);
            found = true;
        }
    }
    found.then_some((x0, y0))
}

/// Draws `text` with the public-domain 8x8 bitmap font on a dark box, clipped to the image.
pub fn draw_text(img: &mut RgbImage, x: i64, y: i64, text: &str, color: [u8; 3]) {
    let (w, h) = (img.width() as i64, img.height() as i64);
    let n = text.chars().count() as i64;
    for yy in y - 1..y + 9 {
        for xx in x - 1..x + 8 * n + 1 {
            if (0..w).contains(&xx) && (0..h).contains(&yy) {
                let p = img.get_pixel_mut(xx as u32, yy as u32);
                for k in 0..3 {
                    p[k] /= 4;
                }
            }
        }
    }
    for (ci, ch) in text.chars().enumerate() {
        let glyph = font8x8::legacy::BASIC_LEGACY[if (ch as u32) < 128 {
            ch as usize
        } else {
            b'?' as usize
        }];
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..8 {
                // Bit 0 is the leftmost pixel in this font.
                if bits >> col & 1 == 1 {
                    let (px, py) = (x + ci as i64 * 8 + col, y + row as i64);
                    if (0..w).contains(&px) && (0..h).contains(&py) {
                        img.put_pixel(px as u32, py as u32, Rgb(color));
                    }
                }
            }
        }
    }
}

/// COCO panoptic PNG: segment id `id` is stored as RGB (id % 256, id / 256 % 256, id / 65536).
pub fn panoptic_png(ids: &[u32], width: u32, height: u32) -> RgbImage {
    ImageBuffer::from_fn(width, height, |x, y| {
        let id = ids[(y * width + x) as usize];
        Rgb([
            (id & 255) as u8,
            (id >> 8 & 255) as u8,
            (id >> 16 & 255) as u8,
        ])
    })
}

/// Semantic label PNG: 8-bit grey when every label fits, else 16-bit.
pub enum LabelPng {
    Gray8(GrayImage),
    Gray16(ImageBuffer<Luma<u16>, Vec<u16>>),
}

impl LabelPng {
    pub fn new(labels: &[u32], width: u32, height: u32) -> Self {
        if labels.iter().all(|&l| l < 256) {
            Self::Gray8(ImageBuffer::from_fn(width, height, |x, y| {
                Luma([labels[(y * width + x) as usize] as u8])
            }))
        } else {
            Self::Gray16(ImageBuffer::from_fn(width, height, |x, y| {
                Luma([labels[(y * width + x) as usize].min(65535) as u16])
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panoptic_png_round_trips_ids() {
        let ids = vec![0, 1, 255, 256, 70_000, 3];
        let png = panoptic_png(&ids, 3, 2);
        let back: Vec<u32> = png
            .pixels()
            .map(|p| p[0] as u32 + 256 * p[1] as u32 + 65536 * p[2] as u32)
            .collect();
        assert_eq!(back, ids);
    }

    #[test]
    fn overlay_outlines_and_tints_regions() {
        let img = RgbImage::from_pixel(40, 30, Rgb([100, 100, 100]));
        let mut ids = vec![0u32; 1200];
        for y in 2..28 {
            for x in 2..38 {
                ids[y * 40 + x] = 1;
            }
        }
        let region = Region {
            id: 1,
            color: [200, 0, 0],
            caption: "cat".into(),
        };
        let out = overlay(&img, &ids, &[region]);
        assert_eq!(
            out.get_pixel(0, 0),
            &Rgb([100, 100, 100]),
            "outside is untouched"
        );
        assert_eq!(
            out.get_pixel(10, 2),
            &Rgb([63, 63, 63]),
            "caption box darkens the outline"
        );
        assert_eq!(out.get_pixel(2, 20), &Rgb([255, 255, 255]), "outline");
        assert_eq!(out.get_pixel(30, 20), &Rgb([150, 50, 50]), "tinted inside");
    }

    #[test]
    fn colors_differ_between_neighbouring_ids() {
        assert_ne!(color(1), color(2));
        assert_ne!(color(2), color(3));
    }
}
