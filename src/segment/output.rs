//! What `segment` writes for one image: output names, the overlay, the id map, the segments JSON,
//! each file written atomically.

use super::*;

#[cfg(not(target_arch = "wasm32"))]
/// The output name of each input: its file stem, or, for inputs whose stem an earlier input
/// already uses (`a/x.png`, `b/x.png`, or one file given twice), the stem with `-2`, `-3`, …
/// appended (skipping names another input has), so no input's outputs overwrite another's.
pub fn output_stems(paths: &[PathBuf]) -> Vec<String> {
    let stem = |p: &PathBuf| {
        p.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "image".into())
    };
    let natural: std::collections::HashSet<String> = paths.iter().map(stem).collect();
    let mut used = std::collections::HashSet::new();
    paths
        .iter()
        .map(|p| {
            let base = stem(p);
            let mut name = base.clone();
            let mut n = 1;
            while used.contains(&name) || (n > 1 && natural.contains(&name)) {
                n += 1;
                name = format!("{base}-{n}");
            }
            used.insert(name.clone());
            name
        })
        .collect()
}

#[cfg(not(target_arch = "wasm32"))]
/// Creates `dir` (and its parents) and checks that a file can be written in it, so a bad
/// `--out` fails before any image is processed.
pub fn prepare_out_dir(dir: &Path) -> Result<(), SegmentError> {
    let err = |source| SegmentError::OutDir {
        path: dir.into(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(err)?;
    let probe = dir.join(format!(".write-test-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(err)?;
    std::fs::remove_file(&probe).map_err(err)
}

/// The image with each segment tinted in its colour, outlined and captioned (label, and the
/// score except for semantic results): the `.overlay.png` the CLI writes.
pub fn overlay(
    image: &RgbImage,
    task: Task,
    result: &Segmentation,
    segments: &[SegmentInfo],
) -> RgbImage {
    let regions: Vec<visualize::Region> = segments
        .iter()
        .map(|s| visualize::Region {
            id: match result {
                Segmentation::Semantic(_) => s.label_id + 1,
                _ => s.id,
            },
            color: visualize::color(if s.is_thing {
                s.id * 7919 + s.label_id
            } else {
                s.label_id
            }),
            caption: match task {
                Task::Semantic => s.label_name.clone(),
                _ => format!("{} {:.0}%", s.label_name, s.score * 100.0),
            },
        })
        .collect();
    visualize::overlay(image, &result.id_map(), &regions)
}

#[cfg(not(target_arch = "wasm32"))]
/// Writes `<stem>.overlay.png`, `<stem>.json`, and for panoptic `<stem>.panoptic.png` (COCO RGB
/// ids) and `<stem>.semantic.png`; for semantic `<stem>.semantic.png`. Returns the paths written.
pub fn write_outputs(
    dir: &Path,
    stem: &str,
    image: &RgbImage,
    task: Task,
    result: &Segmentation,
    labels: &LabelInfo,
) -> Result<Vec<PathBuf>, SegmentError> {
    // Long: one block per output file, in the order the doc comment lists them.
    std::fs::create_dir_all(dir).map_err(|source| SegmentError::Write {
        path: dir.into(),
        source,
    })?;
    let (h, w) = result.size();
    let segments = result.segments(labels);
    let mut written = Vec::new();

    let overlay = overlay(image, task, result, &segments);
    let path = dir.join(format!("{stem}.overlay.png"));
    write_png(&path, DynamicImage::ImageRgb8(overlay))?;
    written.push(path);

    #[derive(Serialize)]
    struct Json<'a> {
        task: Task,
        height: usize,
        width: usize,
        segments: &'a [SegmentInfo],
    }
    let path = dir.join(format!("{stem}.json"));
    let text = serde_json::to_string_pretty(&Json {
        task,
        height: h,
        width: w,
        segments: &segments,
    })
    .expect("plain data");
    write_atomic(&path, text.as_bytes())?;
    written.push(path);

    let label_map = match result {
        Segmentation::Panoptic(p) => {
            let path = dir.join(format!("{stem}.panoptic.png"));
            let ids = visualize::panoptic_png(&p.ids, w as u32, h as u32);
            write_png(&path, DynamicImage::ImageRgb8(ids))?;
            written.push(path);
            // Semantic view of the panoptic result: label per pixel, 255 where void.
            let by_id: std::collections::HashMap<u32, u32> =
                p.segments.iter().map(|s| (s.id, s.label_id)).collect();
            let labels: Vec<u32> = p
                .ids
                .iter()
                .map(|id| by_id.get(id).copied().unwrap_or(255))
                .collect();
            Some(labels)
        }
        Segmentation::Semantic(s) => Some(s.labels.clone()),
        Segmentation::Instance(_) => None,
    };
    if let Some(labels) = label_map {
        let path = dir.join(format!("{stem}.semantic.png"));
        let png = match visualize::LabelPng::new(&labels, w as u32, h as u32) {
            visualize::LabelPng::Gray8(i) => DynamicImage::ImageLuma8(i),
            visualize::LabelPng::Gray16(i) => DynamicImage::ImageLuma16(i),
        };
        write_png(&path, png)?;
        written.push(path);
    }
    Ok(written)
}

/// Encodes `image` as PNG and writes it atomically.
#[cfg(not(target_arch = "wasm32"))]
fn write_png(path: &Path, image: DynamicImage) -> Result<(), SegmentError> {
    let mut bytes = Vec::new();
    image
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .map_err(|source| SegmentError::Encode {
            path: path.into(),
            source,
        })?;
    write_atomic(path, &bytes)
}

#[cfg(not(target_arch = "wasm32"))]
/// Writes a file through a temporary file in the same folder and a rename, so a reader never
/// sees half a file and an existing file is never left truncated.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), SegmentError> {
    crate::atomic_file::write_atomic(path, bytes).map_err(|source| SegmentError::Write {
        path: path.into(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_stems_get_suffixes_that_no_other_input_uses() {
        let paths: Vec<PathBuf> = ["a/x.png", "b/x.jpg", "x-2.png", "c/x.png", "x.png"]
            .iter()
            .map(PathBuf::from)
            .collect();
        assert_eq!(output_stems(&paths), ["x", "x-3", "x-2", "x-4", "x-5"]);
    }
}
