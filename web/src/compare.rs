//! Comparing a panoptic result with one the native `segment` CLI wrote (`<stem>.json` and
//! `<stem>.panoptic.png`): the browser test and its native twin check the same rule, so a
//! browser run that passes agrees with the native engine.

use mask2former::segment::SegmentInfo;
use serde::Deserialize;

/// Pixels that must carry the same segment id (the browser's SwiftShader and lavapipe round
/// differently, which may flip pixels on a mask's edge).
pub const MIN_PIXEL_AGREEMENT: f64 = 0.99;
/// Largest score difference between the two runs.
pub const MAX_SCORE_DIFF: f32 = 1e-3;

/// What the native CLI wrote for one image.
#[derive(Debug)]
pub struct Expected {
    pub width: usize,
    pub height: usize,
    pub segments: Vec<ExpectedSegment>,
    /// Segment id per pixel, decoded from the COCO panoptic PNG (`R + 256 G + 65536 B`).
    pub ids: Vec<u32>,
}

#[derive(Debug, Deserialize)]
pub struct ExpectedSegment {
    pub id: u32,
    pub label_id: u32,
    pub label_name: String,
    pub score: f32,
}

#[derive(Deserialize)]
struct Json {
    task: String,
    height: usize,
    width: usize,
    segments: Vec<ExpectedSegment>,
}

/// Reads the CLI's JSON and panoptic PNG.
pub fn expected(json: &str, panoptic_png: &[u8]) -> Result<Expected, String> {
    let j: Json = serde_json::from_str(json).map_err(|e| format!("segments JSON: {e}"))?;
    if j.task != "panoptic" {
        return Err(format!(
            "segments JSON: task `{}`, expected panoptic",
            j.task
        ));
    }
    let png = image::load_from_memory(panoptic_png)
        .map_err(|e| format!("panoptic PNG: {e}"))?
        .to_rgb8();
    if (png.width() as usize, png.height() as usize) != (j.width, j.height) {
        return Err(format!(
            "panoptic PNG is {}x{}, the JSON says {}x{}",
            png.width(),
            png.height(),
            j.width,
            j.height
        ));
    }
    let ids = png
        .pixels()
        .map(|p| p[0] as u32 + 256 * p[1] as u32 + 65536 * p[2] as u32)
        .collect();
    Ok(Expected {
        width: j.width,
        height: j.height,
        segments: j.segments,
        ids,
    })
}

/// Checks a result against the expected one: the same segments (id, label, score within
/// [`MAX_SCORE_DIFF`]) and the same id on at least [`MIN_PIXEL_AGREEMENT`] of the pixels.
/// Returns the fraction of agreeing pixels.
pub fn check(
    want: &Expected,
    size: (usize, usize),
    ids: &[u32],
    segments: &[SegmentInfo],
) -> Result<f64, String> {
    if size != (want.height, want.width) || ids.len() != want.ids.len() {
        return Err(format!(
            "result is {}x{} ({} ids), expected {}x{}",
            size.1,
            size.0,
            ids.len(),
            want.width,
            want.height
        ));
    }
    let got: Vec<(u32, u32)> = segments.iter().map(|s| (s.id, s.label_id)).collect();
    let expected: Vec<(u32, u32)> = want.segments.iter().map(|s| (s.id, s.label_id)).collect();
    if got != expected {
        return Err(format!(
            "segments (id, label) {got:?}, expected {expected:?} ({})",
            want.segments
                .iter()
                .map(|s| s.label_name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    for (g, w) in segments.iter().zip(&want.segments) {
        if (g.score - w.score).abs() > MAX_SCORE_DIFF {
            return Err(format!(
                "segment {} ({}) scored {}, expected {}",
                g.id, w.label_name, g.score, w.score
            ));
        }
    }
    let same = ids.iter().zip(&want.ids).filter(|(a, b)| a == b).count();
    let agreement = same as f64 / ids.len().max(1) as f64;
    if agreement < MIN_PIXEL_AGREEMENT {
        return Err(format!(
            "{:.3}% of pixels carry the expected segment id, need {:.1}%",
            agreement * 100.0,
            MIN_PIXEL_AGREEMENT * 100.0
        ));
    }
    Ok(agreement)
}
