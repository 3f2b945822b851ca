//! COCO panoptic format: an annotation JSON (`images`, `annotations` with `segments_info`,
//! `categories` with `isthing`) and a folder of PNGs whose colour encodes the segment id
//! (`id = R + 256 G + 256² B`, 0 = VOID).
//!
//! Where the files are (COCO 2017's `annotations/panoptic_val2017.json` with its PNG folder, or
//! explicit paths) is decided by [`super::spec`]; [`CocoPanoptic::open_dir`] reads the
//! `DIR/panoptic.json` + `DIR/panoptic/` + `DIR/images/` layout that [`write_coco_panoptic`]
//! writes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use image::RgbImage;
use serde::{Deserialize, Serialize};

use super::records::{check_image, BadRecords};
use super::write::{write_image, write_json, write_panoptic_png};
use super::{
    create_dir, load_rgb, open_image, panoptic_targets, read_json, rgb_to_id, Categories, Category,
    DataError, GroundTruth, Panoptic, Sample, SegmentInfo,
};

/// An `images` entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImageInfo {
    pub id: u64,
    pub file_name: String,
    #[serde(default)]
    pub height: usize,
    #[serde(default)]
    pub width: usize,
}

/// An `annotations` entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PanopticAnnotation {
    pub image_id: u64,
    /// PNG file name inside the segmentation folder.
    pub file_name: String,
    pub segments_info: Vec<SegmentInfo>,
}

/// The annotation JSON. `images` and `categories` may be absent in prediction files.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PanopticJson {
    #[serde(default)]
    pub images: Vec<ImageInfo>,
    pub annotations: Vec<PanopticAnnotation>,
    #[serde(default)]
    pub categories: Vec<Category>,
}

/// Reads a panoptic PNG and pairs it with its segment list.
pub fn read_panoptic_png(path: &Path, segments: Vec<SegmentInfo>) -> Result<Panoptic, DataError> {
    let img = open_image(path)?.to_rgb8();
    let (width, height) = (img.width() as usize, img.height() as usize);
    let ids = img.pixels().map(|p| rgb_to_id(p.0)).collect();
    Ok(Panoptic {
        height,
        width,
        ids,
        segments,
    })
}

/// A COCO panoptic dataset on disk.
#[derive(Clone, Debug)]
pub struct CocoPanoptic {
    json_path: PathBuf,
    png_dir: PathBuf,
    image_dir: PathBuf,
    categories: Categories,
    annotations: Vec<PanopticAnnotation>,
    images: HashMap<u64, ImageInfo>,
}

impl CocoPanoptic {
    /// Opens `DIR/panoptic.json` with `DIR/panoptic/` and `DIR/images/`.
    pub fn open_dir(dir: &Path) -> Result<Self, DataError> {
        Self::open(
            &dir.join("panoptic.json"),
            &dir.join("panoptic"),
            &dir.join("images"),
        )
    }

    /// Opens an annotation JSON with its PNG folder and image folder; any bad record is an
    /// error. PNGs are read on demand.
    pub fn open(json_path: &Path, png_dir: &Path, image_dir: &Path) -> Result<Self, DataError> {
        let mut bad = BadRecords::new();
        let ds = Self::open_checked(json_path, png_dir, image_dir, false, &mut bad)?;
        bad.finish(false)?;
        Ok(ds)
    }

    /// Opens an annotation JSON with its PNG folder and image folder. Bad records (an
    /// annotation without an `images` entry or with an unknown category and, with
    /// `check_files`, a missing PNG or image, or one of another size than `images` says) go to
    /// `bad` and are left out. Only the files' headers are read.
    pub fn open_checked(
        json_path: &Path,
        png_dir: &Path,
        image_dir: &Path,
        check_files: bool,
        bad: &mut BadRecords,
    ) -> Result<Self, DataError> {
        let json: PanopticJson = read_json(json_path)?;
        let categories = Categories::new(json.categories)
            .map_err(|e| DataError::record(json_path, "categories", e.to_string()))?;
        let images: HashMap<u64, ImageInfo> = json.images.into_iter().map(|i| (i.id, i)).collect();
        let mut annotations = json.annotations;
        annotations.retain(|ann| {
            let rec = format!("annotation for image_id {}", ann.image_id);
            let Some(info) = images.get(&ann.image_id) else {
                bad.push(json_path, &rec, "no entry in `images`");
                return false;
            };
            if let Some(seg) = ann
                .segments_info
                .iter()
                .find(|s| categories.get(s.category_id).is_none())
            {
                let msg = format!("unknown category_id {}", seg.category_id);
                bad.push(json_path, format!("{rec}, segment {}", seg.id), msg);
                return false;
            }
            if !check_files {
                return true;
            }
            let size = (info.height != 0).then_some((info.height, info.width));
            let png = png_dir.join(&ann.file_name);
            let problem = check_image(&png, size)
                .map(|p| p.replacen("image", "panoptic PNG", 1))
                .or_else(|| {
                    let size = image::image_dimensions(&png).ok()?;
                    let size = (size.1 as usize, size.0 as usize);
                    check_image(&image_dir.join(&info.file_name), Some(size))
                        .map(|p| format!("{p} (the size of {})", png.display()))
                });
            if let Some(problem) = problem {
                bad.push(json_path, &rec, problem);
                return false;
            }
            true
        });
        Ok(CocoPanoptic {
            json_path: json_path.to_path_buf(),
            png_dir: png_dir.to_path_buf(),
            image_dir: image_dir.to_path_buf(),
            categories,
            annotations,
            images,
        })
    }

    /// The number of segments of all records.
    pub fn segment_count(&self) -> usize {
        self.annotations.iter().map(|a| a.segments_info.len()).sum()
    }

    pub fn len(&self) -> usize {
        self.annotations.len()
    }
    pub fn is_empty(&self) -> bool {
        self.annotations.is_empty()
    }
    pub fn categories(&self) -> &Categories {
        &self.categories
    }
    pub fn annotation(&self, i: usize) -> &PanopticAnnotation {
        &self.annotations[i]
    }
    pub fn image_info(&self, i: usize) -> &ImageInfo {
        &self.images[&self.annotations[i].image_id]
    }
    pub fn json_path(&self) -> &Path {
        &self.json_path
    }

    /// The panoptic ground truth of record `i` (reads its PNG).
    pub fn ground_truth(&self, i: usize) -> Result<Panoptic, DataError> {
        let ann = &self.annotations[i];
        let path = self.png_dir.join(&ann.file_name);
        let pan = read_panoptic_png(&path, ann.segments_info.clone())?;
        let info = self.image_info(i);
        if info.height != 0 && (pan.height, pan.width) != (info.height, info.width) {
            return Err(DataError::record(
                &path,
                format!("image_id {}", ann.image_id),
                format!(
                    "PNG is {}x{}, `images` says {}x{}",
                    pan.height, pan.width, info.height, info.width
                ),
            ));
        }
        Ok(pan)
    }

    /// Image, training targets and ground truth of record `i`.
    pub fn sample(&self, i: usize) -> Result<Sample, DataError> {
        let info = self.image_info(i);
        let image_path = self.image_dir.join(&info.file_name);
        let image = load_rgb(&image_path)?;
        let pan = self.ground_truth(i)?;
        if (image.height() as usize, image.width() as usize) != (pan.height, pan.width) {
            return Err(DataError::record(
                &image_path,
                format!("image_id {}", info.id),
                format!(
                    "image is {}x{}, its panoptic PNG is {}x{}",
                    image.height(),
                    image.width(),
                    pan.height,
                    pan.width
                ),
            ));
        }
        let (masks, class_ids) = panoptic_targets(&pan, &self.categories, &self.json_path)?;
        Ok(Sample {
            image_id: info.id,
            file_name: info.file_name.clone(),
            valid: (pan.height, pan.width),
            image,
            masks,
            class_ids,
            ground_truth: GroundTruth::Panoptic(pan),
        })
    }
}

/// Panoptic predictions: a COCO panoptic JSON and its PNG folder.
#[derive(Clone, Debug)]
pub struct PanopticPredictions {
    json_path: PathBuf,
    png_dir: PathBuf,
    by_image: HashMap<u64, PanopticAnnotation>,
}

impl PanopticPredictions {
    /// `path` is either the JSON (PNGs in the folder of the same name without `.json`, the
    /// panopticapi convention) or a folder holding `panoptic.json` and `panoptic/`.
    pub fn open(path: &Path) -> Result<Self, DataError> {
        let (json_path, png_dir) = if path.is_dir() {
            (path.join("panoptic.json"), path.join("panoptic"))
        } else {
            (path.to_path_buf(), path.with_extension(""))
        };
        let json: PanopticJson = read_json(&json_path)?;
        let mut by_image = HashMap::new();
        for ann in json.annotations {
            let id = ann.image_id;
            if by_image.insert(id, ann).is_some() {
                return Err(DataError::record(
                    &json_path,
                    format!("image_id {id}"),
                    "more than one annotation",
                ));
            }
        }
        Ok(PanopticPredictions {
            json_path,
            png_dir,
            by_image,
        })
    }

    /// The prediction for an image.
    pub fn get(&self, image_id: u64) -> Result<Panoptic, DataError> {
        let ann = self.by_image.get(&image_id).ok_or_else(|| {
            DataError::record(
                &self.json_path,
                format!("image_id {image_id}"),
                "no prediction for this image",
            )
        })?;
        read_panoptic_png(
            &self.png_dir.join(&ann.file_name),
            ann.segments_info.clone(),
        )
    }
}

/// One image to write in COCO panoptic format.
pub struct PanopticItem {
    pub info: ImageInfo,
    pub image: RgbImage,
    pub panoptic: Panoptic,
}

/// Writes `DIR/panoptic.json`, `DIR/panoptic/<stem>.png` and `DIR/images/<file_name>`.
pub fn write_coco_panoptic(
    dir: &Path,
    categories: &Categories,
    items: impl IntoIterator<Item = Result<PanopticItem, DataError>>,
) -> Result<(), DataError> {
    let png_dir = dir.join("panoptic");
    let image_dir = dir.join("images");
    create_dir(&png_dir)?;
    create_dir(&image_dir)?;
    let mut json = PanopticJson {
        images: Vec::new(),
        annotations: Vec::new(),
        categories: categories.list().to_vec(),
    };
    for item in items {
        let item = item?;
        let png_name = Path::new(&item.info.file_name)
            .with_extension("png")
            .to_string_lossy()
            .into_owned();
        write_panoptic_png(&png_dir.join(&png_name), &item.panoptic)?;
        let image_path = image_dir.join(&item.info.file_name);
        write_image(&image_path, &item.image)?;
        json.annotations.push(PanopticAnnotation {
            image_id: item.info.id,
            file_name: png_name,
            segments_info: item.panoptic.segments.clone(),
        });
        json.images.push(item.info);
    }
    write_json(&dir.join("panoptic.json"), &json)
}
