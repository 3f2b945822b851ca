//! Semantic segmentation folders: `DIR/images/<stem>.{jpg,png,...}` with `DIR/labels/<stem>.png`
//! (8-bit grey or palette PNG, one class index per pixel, 255 = ignore), optionally
//! `DIR/classes.txt` (one class name per line). With `reduce_labels` (ADE20K style) the file's 0
//! ("other") becomes ignore and every other value moves down by one.

use std::path::{Path, PathBuf};

use super::{
    load_rgb, read_file, semantic_targets, DataError, GroundTruth, LabelMap, Sample, IGNORE,
};

/// Reads a label PNG (8-bit or packed 1/2/4-bit grey or palette; palette indices are the labels).
pub fn read_label_png(path: &Path, reduce_labels: bool) -> Result<LabelMap, DataError> {
    let bytes = read_file(path)?;
    let bad = |m: String| DataError::record(path, "label PNG", m);
    let mut decoder = png::Decoder::new(std::io::Cursor::new(&bytes));
    decoder.set_transformations(png::Transformations::IDENTITY);
    let mut reader = decoder.read_info().map_err(|e| bad(e.to_string()))?;
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| bad("image too large".into()))?;
    let mut buf = vec![0u8; size];
    let info = reader
        .next_frame(&mut buf)
        .map_err(|e| bad(e.to_string()))?;
    if !matches!(
        info.color_type,
        png::ColorType::Grayscale | png::ColorType::Indexed
    ) {
        return Err(bad(format!(
            "colour type {:?}, expected single-channel grey or palette",
            info.color_type
        )));
    }
    let bits = match info.bit_depth {
        png::BitDepth::One => 1,
        png::BitDepth::Two => 2,
        png::BitDepth::Four => 4,
        png::BitDepth::Eight => 8,
        png::BitDepth::Sixteen => {
            return Err(bad(
                "16-bit labels are not supported (expected 8-bit)".into()
            ))
        }
    };
    let (w, h) = (info.width as usize, info.height as usize);
    let mut labels = Vec::with_capacity(w * h);
    for y in 0..h {
        let row = &buf[y * info.line_size..(y + 1) * info.line_size];
        for x in 0..w {
            let bit = x * bits;
            let byte = row[bit / 8];
            let shift = 8 - bits - (bit % 8);
            let v = (byte >> shift) & ((1u16 << bits) - 1) as u8;
            labels.push(v);
        }
    }
    if reduce_labels {
        for l in &mut labels {
            *l = match *l {
                0 | IGNORE => IGNORE,
                v => v - 1,
            };
        }
    }
    Ok(LabelMap {
        height: h,
        width: w,
        labels,
    })
}

/// Writes a label map as an 8-bit grey PNG.
pub fn write_label_png(path: &Path, map: &LabelMap) -> Result<(), DataError> {
    let img =
        image::GrayImage::from_raw(map.width as u32, map.height as u32, map.labels.clone())
            .ok_or_else(|| DataError::Invalid(format!("label map size for {}", path.display())))?;
    img.save(path).map_err(|source| DataError::Image {
        path: path.to_path_buf(),
        source,
    })
}

/// A semantic segmentation folder.
#[derive(Clone, Debug)]
pub struct SemanticFolder {
    dir: PathBuf,
    /// Label file names, sorted.
    items: Vec<String>,
    class_names: Option<Vec<String>>,
    reduce_labels: bool,
}

const IMAGE_EXTENSIONS: [&str; 4] = ["jpg", "jpeg", "png", "bmp"];

fn list_dir(dir: &Path) -> Result<Vec<String>, DataError> {
    let io = |source| DataError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        if entry.file_type().map_err(io)?.is_file() {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    names.sort();
    Ok(names)
}

fn stem(name: &str) -> &str {
    Path::new(name)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or(name)
}

impl SemanticFolder {
    /// Lists `DIR/labels/*.png`; the image of `labels/<stem>.png` is `images/<stem>.<ext>`, looked
    /// up when a sample is loaded (evaluation needs only the labels).
    pub fn open(dir: &Path, reduce_labels: bool) -> Result<Self, DataError> {
        let items: Vec<String> = list_dir(&dir.join("labels"))?
            .into_iter()
            .filter(|n| n.to_ascii_lowercase().ends_with(".png"))
            .collect();
        let classes_path = dir.join("classes.txt");
        let class_names = if classes_path.is_file() {
            let text = String::from_utf8_lossy(&read_file(&classes_path)?).into_owned();
            Some(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(String::from)
                    .collect(),
            )
        } else {
            None
        };
        Ok(SemanticFolder {
            dir: dir.to_path_buf(),
            items,
            class_names,
            reduce_labels,
        })
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
    /// Class names from `classes.txt`, if present (their count is K).
    pub fn class_names(&self) -> Option<&[String]> {
        self.class_names.as_deref()
    }
    /// File stem of item `i` (predictions are matched by it).
    pub fn stem(&self, i: usize) -> &str {
        stem(&self.items[i])
    }

    pub fn ground_truth(&self, i: usize) -> Result<LabelMap, DataError> {
        read_label_png(
            &self.dir.join("labels").join(&self.items[i]),
            self.reduce_labels,
        )
    }

    /// Image, one target mask per class present, and the label map. `image_id` is `i`.
    pub fn sample(&self, i: usize) -> Result<Sample, DataError> {
        let label_path = self.dir.join("labels").join(&self.items[i]);
        let path = IMAGE_EXTENSIONS
            .iter()
            .flat_map(|e| [e.to_string(), e.to_ascii_uppercase()])
            .map(|e| {
                self.dir
                    .join("images")
                    .join(format!("{}.{e}", self.stem(i)))
            })
            .find(|p| p.is_file())
            .ok_or_else(|| {
                DataError::record(
                    &label_path,
                    "label",
                    format!("no image {}/images/{}.*", self.dir.display(), self.stem(i)),
                )
            })?;
        let image = load_rgb(&path)?;
        let map = self.ground_truth(i)?;
        if (image.height() as usize, image.width() as usize) != (map.height, map.width) {
            return Err(DataError::record(
                &path,
                "image",
                format!(
                    "image is {}x{}, its label map is {}x{}",
                    image.height(),
                    image.width(),
                    map.height,
                    map.width
                ),
            ));
        }
        let (masks, class_ids) = semantic_targets(&map);
        Ok(Sample {
            image_id: i as u64,
            file_name: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            valid: (map.height, map.width),
            image,
            masks,
            class_ids,
            ground_truth: GroundTruth::Semantic(map),
        })
    }
}
