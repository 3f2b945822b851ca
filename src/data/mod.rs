//! Datasets: readers for COCO panoptic / COCO instance / semantic data (ADE20K, Cityscapes,
//! folders), the dataset spec shared by `train` and `evaluate` ([`spec`]), the embedded synthetic
//! panoptic dataset, augmentation and the batching loader.
//!
//! Every reader yields, per image, a [`Sample`]: the RGB image, the training targets as binary masks
//! `[N, H, W]` with contiguous class indices `0..K` (what Mask2Former trains on), and the original
//! annotations ([`GroundTruth`]) for evaluation. Class indices map to dataset category ids through
//! [`Categories`].

#[cfg(not(target_arch = "wasm32"))]
pub mod augment;
#[cfg(not(target_arch = "wasm32"))]
pub mod coco_instance;
#[cfg(not(target_arch = "wasm32"))]
pub mod coco_panoptic;
#[cfg(not(target_arch = "wasm32"))]
mod layout;
#[cfg(not(target_arch = "wasm32"))]
pub mod loader;
#[cfg(not(target_arch = "wasm32"))]
pub mod records;
pub mod rle;
#[cfg(not(target_arch = "wasm32"))]
pub mod semantic;
#[cfg(not(target_arch = "wasm32"))]
pub mod spec;
#[cfg(not(target_arch = "wasm32"))]
pub mod synthetic;
#[cfg(not(target_arch = "wasm32"))]
pub mod write;

use std::path::{Path, PathBuf};

use image::RgbImage;

pub use rle::Rle;

/// Errors of the data layer; each names the file and, where there is one, the record.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: cannot read: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: invalid JSON: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path}: cannot decode or encode image: {source}")]
    Image {
        path: PathBuf,
        source: image::ImageError,
    },
    #[error("{path}: {record}: {message}")]
    Record {
        path: PathBuf,
        record: String,
        message: String,
    },
    #[error("invalid RLE: {0}")]
    Rle(String),
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// A dataset or its layout is not what was expected (the message names paths and what
    /// was expected there).
    #[error("{0}")]
    Layout(String),
    /// Bad records of a dataset opened without `--skip-bad` (the message lists them).
    #[error("{0}")]
    BadRecords(String),
}

impl DataError {
    pub(crate) fn record(
        path: &Path,
        record: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        DataError::Record {
            path: path.to_path_buf(),
            record: record.into(),
            message: message.into(),
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, DataError> {
    std::fs::read(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, DataError> {
    let bytes = read_file(path)?;
    serde_json::from_slice(&bytes).map_err(|source| DataError::Json {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn create_dir(path: &Path) -> Result<(), DataError> {
    std::fs::create_dir_all(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn open_image(path: &Path) -> Result<image::DynamicImage, DataError> {
    let bytes = read_file(path)?;
    image::load_from_memory(&bytes).map_err(|source| DataError::Image {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(not(target_arch = "wasm32"))]
/// Loads an image as 8-bit RGB (`[H, W, 3]`).
pub fn load_rgb(path: &Path) -> Result<RgbImage, DataError> {
    Ok(open_image(path)?.to_rgb8())
}

/// A binary mask, row-major `[height, width]`, one byte per pixel (0 or 1).
#[derive(Clone, PartialEq, Eq)]
pub struct Mask {
    height: usize,
    width: usize,
    data: Vec<u8>,
}

impl std::fmt::Debug for Mask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Mask({}x{}, area {})",
            self.height,
            self.width,
            self.area()
        )
    }
}

impl Mask {
    /// An all-zero mask `[height, width]`.
    pub fn zeros(height: usize, width: usize) -> Self {
        Mask {
            height,
            width,
            data: vec![0; height * width],
        }
    }

    /// Wraps row-major data; any non-zero byte counts as set.
    pub fn from_vec(height: usize, width: usize, data: Vec<u8>) -> Result<Self, DataError> {
        if data.len() != height * width {
            return Err(DataError::Invalid(format!(
                "mask data has {} bytes, expected {height}x{width}",
                data.len()
            )));
        }
        let data = data.into_iter().map(|v| u8::from(v != 0)).collect();
        Ok(Mask {
            height,
            width,
            data,
        })
    }

    /// The mask of the pixels where `pred(value)` holds, for a row-major map `[height, width]`.
    pub fn from_map<T: Copy>(
        height: usize,
        width: usize,
        map: &[T],
        pred: impl Fn(T) -> bool,
    ) -> Self {
        assert_eq!(map.len(), height * width, "map size");
        Mask {
            height,
            width,
            data: map.iter().map(|&v| u8::from(pred(v))).collect(),
        }
    }

    pub fn height(&self) -> usize {
        self.height
    }
    pub fn width(&self) -> usize {
        self.width
    }
    /// Row-major bytes, 0 or 1.
    pub fn data(&self) -> &[u8] {
        &self.data
    }
    pub fn get(&self, y: usize, x: usize) -> bool {
        self.data[y * self.width + x] != 0
    }
    pub fn set(&mut self, y: usize, x: usize, v: bool) {
        self.data[y * self.width + x] = u8::from(v);
    }
    /// Number of set pixels.
    pub fn area(&self) -> u64 {
        self.data.iter().map(|&v| v as u64).sum()
    }
}

/// One dataset category.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Category {
    /// The dataset's category id (as in the annotation files).
    pub id: u32,
    pub name: String,
    /// Countable object ("thing") rather than amorphous region ("stuff").
    #[serde(default = "default_isthing", deserialize_with = "de_bool_or_int")]
    pub isthing: bool,
    #[serde(default)]
    pub color: Option<[u8; 3]>,
}

fn default_isthing() -> bool {
    true
}

/// COCO writes `isthing` / `iscrowd` as 0/1; accept booleans too.
pub(crate) fn de_bool_or_int<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum B {
        B(bool),
        I(i64),
    }
    Ok(match <B as serde::Deserialize>::deserialize(d)? {
        B::B(b) => b,
        B::I(i) => i != 0,
    })
}

pub(crate) fn ser_bool_as_int<S: serde::Serializer>(v: &bool, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u8(u8::from(*v))
}

/// The categories of a dataset in file order; the position is the contiguous training index `0..K`.
#[derive(Clone, Debug, PartialEq)]
pub struct Categories {
    list: Vec<Category>,
}

impl Categories {
    pub fn new(list: Vec<Category>) -> Result<Self, DataError> {
        let mut ids: Vec<u32> = list.iter().map(|c| c.id).collect();
        ids.sort_unstable();
        if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
            return Err(DataError::Invalid(format!(
                "duplicate category id {}",
                w[0]
            )));
        }
        Ok(Categories { list })
    }
    /// Number of classes K.
    pub fn len(&self) -> usize {
        self.list.len()
    }
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
    pub fn list(&self) -> &[Category] {
        &self.list
    }
    /// Contiguous index of a dataset category id.
    pub fn index_of(&self, id: u32) -> Option<u32> {
        self.list.iter().position(|c| c.id == id).map(|i| i as u32)
    }
    /// Dataset category id of a contiguous index.
    pub fn id_of(&self, index: u32) -> Option<u32> {
        self.list.get(index as usize).map(|c| c.id)
    }
    pub fn get(&self, id: u32) -> Option<&Category> {
        self.list.iter().find(|c| c.id == id)
    }
}

/// A panoptic segment description (COCO panoptic `segments_info` entry).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SegmentInfo {
    pub id: u32,
    pub category_id: u32,
    #[serde(
        default,
        deserialize_with = "de_bool_or_int",
        serialize_with = "ser_bool_as_int"
    )]
    pub iscrowd: bool,
    /// Area in pixels as written in the file (the panoptic evaluation uses it for ground truth).
    #[serde(default)]
    pub area: f64,
    #[serde(default)]
    pub bbox: Option<[f64; 4]>,
}

/// A panoptic segmentation of one image: a segment id per pixel (0 = VOID) and the segment list.
#[derive(Clone, Debug, PartialEq)]
pub struct Panoptic {
    pub height: usize,
    pub width: usize,
    /// Row-major `[height, width]` segment ids; 0 is VOID.
    pub ids: Vec<u32>,
    pub segments: Vec<SegmentInfo>,
}

/// One COCO instance annotation, with its mask as RLE.
#[derive(Clone, Debug, PartialEq)]
pub struct Instance {
    pub id: u64,
    pub category_id: u32,
    pub iscrowd: bool,
    /// Area as written in the file (COCO evaluation uses it for the area ranges).
    pub area: f64,
    pub rle: Rle,
}

/// A semantic label map `[height, width]`, values are contiguous class indices or [`IGNORE`].
#[derive(Clone, Debug, PartialEq)]
pub struct LabelMap {
    pub height: usize,
    pub width: usize,
    pub labels: Vec<u8>,
}

/// The ignore value of semantic label maps.
pub const IGNORE: u8 = 255;

/// The original annotations of an image, for evaluation.
#[derive(Clone, Debug, PartialEq)]
pub enum GroundTruth {
    Panoptic(Panoptic),
    Instance(Vec<Instance>),
    Semantic(LabelMap),
}

/// One training/evaluation item.
#[derive(Clone, Debug)]
pub struct Sample {
    pub image_id: u64,
    pub file_name: String,
    /// `[H, W, 3]` RGB.
    pub image: RgbImage,
    /// Training targets, `N × [H, W]`; crowd regions and VOID are in no mask.
    pub masks: Vec<Mask>,
    /// `N` contiguous class indices `0..K`.
    pub class_ids: Vec<u32>,
    /// `(height, width)` of the real content, from the top-left; the rest is padding (augmentation).
    pub valid: (usize, usize),
    /// The original annotations (not augmented).
    pub ground_truth: GroundTruth,
}

/// Builds the training targets of a panoptic segmentation: one mask per non-crowd segment.
pub fn panoptic_targets(
    pan: &Panoptic,
    categories: &Categories,
    path: &Path,
) -> Result<(Vec<Mask>, Vec<u32>), DataError> {
    let mut masks = Vec::new();
    let mut classes = Vec::new();
    for seg in pan.segments.iter().filter(|s| !s.iscrowd) {
        let class = categories.index_of(seg.category_id).ok_or_else(|| {
            DataError::record(
                path,
                format!("segment {}", seg.id),
                format!("unknown category_id {}", seg.category_id),
            )
        })?;
        let mask = Mask::from_map(pan.height, pan.width, &pan.ids, |v| v == seg.id);
        if mask.area() > 0 {
            masks.push(mask);
            classes.push(class);
        }
    }
    Ok((masks, classes))
}

/// Builds the training targets of a label map: one mask per class present (ignore excluded).
pub fn semantic_targets(map: &LabelMap) -> (Vec<Mask>, Vec<u32>) {
    let mut present = [false; 256];
    for &l in &map.labels {
        present[l as usize] = true;
    }
    let mut masks = Vec::new();
    let mut classes = Vec::new();
    for class in (0..255u8).filter(|&c| present[c as usize]) {
        masks.push(Mask::from_map(map.height, map.width, &map.labels, |v| {
            v == class
        }));
        classes.push(class as u32);
    }
    (masks, classes)
}

/// Encodes a panoptic id as the COCO panoptic PNG colour: `id = R + 256 G + 256² B`.
pub fn id_to_rgb(id: u32) -> [u8; 3] {
    [id as u8, (id >> 8) as u8, (id >> 16) as u8]
}

/// Decodes a COCO panoptic PNG colour to an id.
pub fn rgb_to_id(rgb: [u8; 3]) -> u32 {
    rgb[0] as u32 + 256 * rgb[1] as u32 + 256 * 256 * rgb[2] as u32
}
