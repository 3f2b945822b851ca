//! Semantic segmentation datasets: pairs of an image and a label PNG (8-bit grey or palette, one
//! class index per pixel, 255 = ignore), in one of these layouts:
//! - ADE20K as unzipped (`ADEChallengeData2016/images/<split>/*.jpg` +
//!   `annotations/<split>/*.png`, names from `objectInfo150.txt`): 150 classes, the file's 0
//!   ("other") is ignored and every other value moves down by one (`reduce_labels`);
//! - Cityscapes (`leftImg8bit/<split>/<city>/*_leftImg8bit.png` +
//!   `gtFine/<split>/<city>/*_gtFine_labelIds.png`): label ids mapped to the 19 train ids;
//! - an image folder and a label folder given separately (`<stem>.png` labels `<stem>.<ext>`),
//!   or `DIR/images/` + `DIR/labels/` (+ optional `DIR/classes.txt`, one name per line).

use std::path::{Path, PathBuf};

use super::records::{check_image, BadRecords};

use super::{
    load_rgb, read_file, semantic_targets, DataError, GroundTruth, LabelMap, Sample, IGNORE,
};

/// Reads a label PNG (8-bit or packed 1/2/4-bit grey or palette; palette indices are the labels).
pub fn read_label_png(path: &Path, reduce_labels: bool) -> Result<LabelMap, DataError> {
    let lut = if reduce_labels {
        reduce_lut()
    } else {
        identity_lut()
    };
    read_label_png_mapped(path, &lut)
}

/// The identity label table.
pub fn identity_lut() -> [u8; 256] {
    std::array::from_fn(|i| i as u8)
}

/// ADE20K's `reduce_labels`: 0 → ignore, `v` → `v - 1`, 255 stays ignore.
pub fn reduce_lut() -> [u8; 256] {
    std::array::from_fn(|i| match i {
        0 | 255 => IGNORE,
        v => v as u8 - 1,
    })
}

/// Cityscapes label ids (`*_gtFine_labelIds.png`) → the 19 train ids, 255 elsewhere; the table of
/// `cityscapesscripts/helpers/labels.py`.
pub fn cityscapes_lut() -> [u8; 256] {
    let mut lut = [IGNORE; 256];
    let pairs: [(usize, u8); 19] = [
        (7, 0),
        (8, 1),
        (11, 2),
        (12, 3),
        (13, 4),
        (17, 5),
        (19, 6),
        (20, 7),
        (21, 8),
        (22, 9),
        (23, 10),
        (24, 11),
        (25, 12),
        (26, 13),
        (27, 14),
        (28, 15),
        (31, 16),
        (32, 17),
        (33, 18),
    ];
    for (id, train) in pairs {
        lut[id] = train;
    }
    lut
}

/// The names of Cityscapes' 19 train ids.
pub const CITYSCAPES_CLASSES: [&str; 19] = [
    "road",
    "sidewalk",
    "building",
    "wall",
    "fence",
    "pole",
    "traffic light",
    "traffic sign",
    "vegetation",
    "terrain",
    "sky",
    "person",
    "rider",
    "car",
    "truck",
    "bus",
    "train",
    "motorcycle",
    "bicycle",
];

/// Reads a label PNG and maps every value through `lut`.
pub fn read_label_png_mapped(path: &Path, lut: &[u8; 256]) -> Result<LabelMap, DataError> {
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
    for l in &mut labels {
        *l = lut[*l as usize];
    }
    Ok(LabelMap {
        height: h,
        width: w,
        labels,
    })
}

/// One image/label pair of a semantic dataset.
#[derive(Clone, Debug, PartialEq)]
pub struct SemanticItem {
    /// The name predictions are matched by (`<key>.png`).
    pub key: String,
    /// `None`: looked up beside the labels when the image is needed (the `images/` + `labels/`
    /// layout, which evaluation of saved predictions may use without images).
    pub image: Option<PathBuf>,
    pub label: PathBuf,
}

/// A semantic segmentation dataset: image/label pairs, a table applied to every label value,
/// and the class names or count.
#[derive(Clone, Debug)]
pub struct SemanticFolder {
    /// The `DIR` of the `images/` + `labels/` layout (for the lazy image lookup).
    dir: Option<PathBuf>,
    items: Vec<SemanticItem>,
    lut: [u8; 256],
    class_names: Option<Vec<String>>,
    num_classes: Option<usize>,
}

const IMAGE_EXTENSIONS: [&str; 4] = ["jpg", "jpeg", "png", "bmp"];

fn list_dir(dir: &Path, want_dirs: bool) -> Result<Vec<String>, DataError> {
    let io = |source| DataError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let ty = entry.file_type().map_err(io)?;
        if (want_dirs && ty.is_dir()) || (!want_dirs && ty.is_file()) {
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

fn is_png(name: &str) -> bool {
    name.to_ascii_lowercase().ends_with(".png")
}

/// The image `<dir>/<stem>.<ext>` for any usual extension.
fn find_image(dir: &Path, stem: &str) -> Option<PathBuf> {
    IMAGE_EXTENSIONS
        .iter()
        .flat_map(|e| [e.to_string(), e.to_ascii_uppercase()])
        .map(|e| dir.join(format!("{stem}.{e}")))
        .find(|p| p.is_file())
}

fn read_lines(path: &Path) -> Result<Vec<String>, DataError> {
    let text = String::from_utf8_lossy(&read_file(path)?).into_owned();
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect())
}

/// ADE20K's `objectInfo150.txt`: a header line, then `Idx Ratio Train Val Name` (tab separated).
fn read_object_info(path: &Path) -> Result<Vec<String>, DataError> {
    let lines = read_lines(path)?;
    let names: Vec<String> = lines
        .iter()
        .skip(1)
        .map(|l| l.split('\t').nth(4).unwrap_or("").trim().to_string())
        .collect();
    if names.len() != 150 || names.iter().any(|n| n.is_empty()) {
        return Err(DataError::record(
            path,
            "class names",
            format!(
                "expected a header and 150 tab-separated lines `Idx Ratio Train Val Name`, found {} lines",
                lines.len()
            ),
        ));
    }
    Ok(names)
}

impl SemanticFolder {
    /// `DIR/labels/*.png` with `DIR/images/<stem>.<ext>` (looked up when a sample is loaded:
    /// evaluation of saved predictions needs only the labels) and optional `DIR/classes.txt`.
    pub fn open(dir: &Path, reduce_labels: bool) -> Result<Self, DataError> {
        let items = list_dir(&dir.join("labels"), false)?
            .into_iter()
            .filter(|n| is_png(n))
            .map(|n| SemanticItem {
                key: stem(&n).to_string(),
                image: None,
                label: dir.join("labels").join(&n),
            })
            .collect();
        let classes_path = dir.join("classes.txt");
        let class_names = if classes_path.is_file() {
            Some(read_lines(&classes_path)?)
        } else {
            None
        };
        Ok(SemanticFolder {
            dir: Some(dir.to_path_buf()),
            items,
            lut: if reduce_labels {
                reduce_lut()
            } else {
                identity_lut()
            },
            class_names,
            num_classes: None,
        })
    }

    /// An image folder and a label folder given separately: `labels/<stem>.png` labels
    /// `images/<stem>.<ext>`; a label without its image is a bad record.
    pub fn open_pair(
        images: &Path,
        labels: &Path,
        reduce_labels: bool,
        bad: &mut BadRecords,
    ) -> Result<Self, DataError> {
        let mut items = Vec::new();
        for name in list_dir(labels, false)?.into_iter().filter(|n| is_png(n)) {
            let key = stem(&name).to_string();
            let label = labels.join(&name);
            match find_image(images, &key) {
                Some(image) => items.push(SemanticItem {
                    key,
                    image: Some(image),
                    label,
                }),
                None => bad.push(
                    &label,
                    "label",
                    format!("no image {}/{key}.{{jpg,png,...}}", images.display()),
                ),
            }
        }
        let lut = if reduce_labels {
            reduce_lut()
        } else {
            identity_lut()
        };
        Ok(Self::from_items(items, lut, None, None))
    }

    /// ADE20K (`ROOT/images/<split>/*.jpg` + `ROOT/annotations/<split>/*.png`), 150 classes,
    /// label 0 ignored; class names from `ROOT/objectInfo150.txt` when present.
    pub fn open_ade20k(root: &Path, split: &str, bad: &mut BadRecords) -> Result<Self, DataError> {
        let mut ds = Self::open_pair(
            &root.join("images").join(split),
            &root.join("annotations").join(split),
            true,
            bad,
        )?;
        let info = root.join("objectInfo150.txt");
        ds.class_names = if info.is_file() {
            Some(read_object_info(&info)?)
        } else {
            None
        };
        ds.num_classes = Some(150);
        Ok(ds)
    }

    /// Cityscapes (`ROOT/leftImg8bit/<split>/<city>/<name>_leftImg8bit.png` +
    /// `ROOT/gtFine/<split>/<city>/<name>_gtFine_labelIds.png`), label ids mapped to the 19
    /// train ids. Predictions are matched by `<name>`.
    pub fn open_cityscapes(
        root: &Path,
        split: &str,
        bad: &mut BadRecords,
    ) -> Result<Self, DataError> {
        let gt_split = root.join("gtFine").join(split);
        let img_split = root.join("leftImg8bit").join(split);
        let mut items = Vec::new();
        for city in list_dir(&gt_split, true)? {
            for name in list_dir(&gt_split.join(&city), false)? {
                let Some(key) = name.strip_suffix("_gtFine_labelIds.png") else {
                    continue; // the colour, instance and polygon files of gtFine
                };
                let label = gt_split.join(&city).join(&name);
                let image = img_split.join(&city).join(format!("{key}_leftImg8bit.png"));
                if image.is_file() {
                    items.push(SemanticItem {
                        key: key.to_string(),
                        image: Some(image),
                        label,
                    });
                } else {
                    bad.push(&label, "label", format!("no image {}", image.display()));
                }
            }
        }
        let names = CITYSCAPES_CLASSES.iter().map(|s| s.to_string()).collect();
        Ok(Self::from_items(items, cityscapes_lut(), Some(names), None))
    }

    /// A dataset of explicit pairs.
    pub fn from_items(
        items: Vec<SemanticItem>,
        lut: [u8; 256],
        class_names: Option<Vec<String>>,
        num_classes: Option<usize>,
    ) -> Self {
        SemanticFolder {
            dir: None,
            items,
            lut,
            class_names,
            num_classes,
        }
    }

    /// Checks every image's size against its label PNG (headers only); mismatched or
    /// unreadable pairs are bad records and are left out.
    pub fn check_sizes(&mut self, bad: &mut BadRecords) {
        self.items.retain(|item| {
            let Some(image) = &item.image else {
                return true;
            };
            let label = match image::image_dimensions(&item.label) {
                Ok((w, h)) => (h as usize, w as usize),
                Err(e) => {
                    bad.push(&item.label, "label PNG", e);
                    return false;
                }
            };
            match check_image(image, Some(label)) {
                Some(problem) => {
                    bad.push(
                        &item.label,
                        "label PNG",
                        format!("{problem} (the label's size)"),
                    );
                    false
                }
                None => true,
            }
        });
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
    pub fn items(&self) -> &[SemanticItem] {
        &self.items
    }
    /// Class names, if known (their count is K).
    pub fn class_names(&self) -> Option<&[String]> {
        self.class_names.as_deref()
    }
    /// The number of classes K, if known (from the layout or the names).
    pub fn num_classes(&self) -> Option<usize> {
        self.num_classes
            .or_else(|| self.class_names.as_ref().map(Vec::len))
    }
    /// The key of item `i` (predictions are matched by it: `<key>.png`).
    pub fn stem(&self, i: usize) -> &str {
        &self.items[i].key
    }

    pub fn ground_truth(&self, i: usize) -> Result<LabelMap, DataError> {
        read_label_png_mapped(&self.items[i].label, &self.lut)
    }

    fn image_path(&self, i: usize) -> Result<PathBuf, DataError> {
        let item = &self.items[i];
        if let Some(p) = &item.image {
            return Ok(p.clone());
        }
        let dir = self.dir.as_deref().unwrap_or(Path::new("."));
        find_image(&dir.join("images"), &item.key).ok_or_else(|| {
            DataError::record(
                &item.label,
                "label",
                format!("no image {}/images/{}.*", dir.display(), item.key),
            )
        })
    }

    /// Image, one target mask per class present, and the label map. `image_id` is `i`.
    pub fn sample(&self, i: usize) -> Result<Sample, DataError> {
        let path = self.image_path(i)?;
        let image = load_rgb(&path)?;
        let map = self.ground_truth(i)?;
        if (image.height() as usize, image.width() as usize) != (map.height, map.width) {
            return Err(DataError::record(
                &path,
                "image",
                format!(
                    "image is {}x{}, its label map {} is {}x{}",
                    image.height(),
                    image.width(),
                    self.items[i].label.display(),
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
