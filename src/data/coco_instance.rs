//! COCO instance format: `images`, `annotations` (polygons, uncompressed RLE with a list of
//! counts, or compressed RLE with a string; `iscrowd`), `categories`. Masks are turned into RLE
//! exactly as pycocotools' `annToRLE` does.
//!
//! Where the files are (COCO 2017's `annotations/instances_val2017.json` + `val2017/`, or
//! explicit paths) is decided by [`super::spec`]; [`CocoInstance::open_dir`] reads the
//! `DIR/instances.json` + `DIR/images/` layout that this project's tests write.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use super::coco_panoptic::ImageInfo;
use super::records::{check_image, BadRecords};
use super::{
    de_bool_or_int, load_rgb, read_json, Categories, Category, DataError, GroundTruth, Instance,
    Rle, Sample,
};

#[derive(Deserialize)]
struct AnnotationJson {
    id: u64,
    image_id: u64,
    category_id: u32,
    segmentation: Value,
    #[serde(default)]
    area: Option<f64>,
    #[serde(default, deserialize_with = "de_bool_or_int")]
    iscrowd: bool,
}

#[derive(Deserialize)]
struct InstanceJson {
    images: Vec<ImageInfo>,
    annotations: Vec<AnnotationJson>,
    categories: Vec<Category>,
}

/// Converts a COCO `segmentation` value to RLE; `(height, width)` is the image size (polygons).
pub fn segmentation_to_rle(seg: &Value, height: usize, width: usize) -> Result<Rle, String> {
    match seg {
        Value::Array(parts) => {
            let polys = parts
                .iter()
                .map(|p| {
                    p.as_array()
                        .ok_or("polygon is not a list")?
                        .iter()
                        .map(|v| v.as_f64().ok_or("polygon coordinate is not a number"))
                        .collect::<Result<Vec<f64>, _>>()
                })
                .collect::<Result<Vec<_>, _>>()?;
            if polys.is_empty() {
                return Err("empty polygon list".into());
            }
            if polys.iter().any(|p| p.len() % 2 != 0) {
                return Err("polygon with an odd number of coordinates".into());
            }
            // pycocotools' frPyObjects reads a list whose first entry has 4 numbers as boxes
            if polys[0].len() == 4 {
                let boxes: Vec<Rle> = polys
                    .iter()
                    .map(|b| {
                        let (x0, y0, x1, y1) = (b[0], b[1], b[0] + b[2], b[1] + b[3]);
                        Rle::from_polygon(&[x0, y0, x0, y1, x1, y1, x1, y0], height, width)
                    })
                    .collect::<Result<_, _>>()
                    .map_err(|e| e.to_string())?;
                return Ok(Rle::merge(&boxes, false).expect("non-empty, same size"));
            }
            Rle::from_polygons(&polys, height, width).map_err(|e| e.to_string())
        }
        Value::Object(obj) => {
            let size = obj
                .get("size")
                .and_then(|s| s.as_array())
                .filter(|s| s.len() == 2)
                .and_then(|s| Some((s[0].as_u64()? as usize, s[1].as_u64()? as usize)))
                .ok_or("RLE without a [height, width] `size`")?;
            match obj.get("counts") {
                Some(Value::String(s)) => {
                    Rle::from_compressed(s, size.0, size.1).map_err(|e| e.to_string())
                }
                Some(Value::Array(c)) => {
                    let counts = c
                        .iter()
                        .map(|v| v.as_u64().and_then(|v| u32::try_from(v).ok()))
                        .collect::<Option<Vec<u32>>>()
                        .ok_or("RLE counts are not non-negative integers")?;
                    Rle::from_counts(size.0, size.1, counts).map_err(|e| e.to_string())
                }
                _ => Err("RLE without `counts`".into()),
            }
        }
        _ => Err("segmentation is neither a polygon list nor an RLE object".into()),
    }
}

/// A COCO instance dataset; annotations are parsed (to RLE) when opened.
#[derive(Clone, Debug)]
pub struct CocoInstance {
    json_path: PathBuf,
    image_dir: PathBuf,
    categories: Categories,
    images: Vec<ImageInfo>,
    /// Per image (same order as `images`).
    instances: Vec<Vec<Instance>>,
}

impl CocoInstance {
    /// Opens `DIR/instances.json` with `DIR/images/`.
    pub fn open_dir(dir: &Path) -> Result<Self, DataError> {
        Self::open(&dir.join("instances.json"), &dir.join("images"))
    }

    /// Opens an annotation JSON with its image folder; any bad record is an error.
    pub fn open(json_path: &Path, image_dir: &Path) -> Result<Self, DataError> {
        let mut bad = BadRecords::new();
        let ds = Self::open_checked(json_path, image_dir, false, &mut bad)?;
        bad.finish(false)?;
        Ok(ds)
    }

    /// Opens an annotation JSON with its image folder. Bad records (an annotation of an image
    /// without an `images` entry, an unknown category, an undecodable mask and, with
    /// `check_images`, a missing image file or one of another size than `images` says) go to
    /// `bad`, and the images they concern are left out.
    pub fn open_checked(
        json_path: &Path,
        image_dir: &Path,
        check_images: bool,
        bad: &mut BadRecords,
    ) -> Result<Self, DataError> {
        let json: InstanceJson = read_json(json_path)?;
        let categories = Categories::new(json.categories)
            .map_err(|e| DataError::record(json_path, "categories", e.to_string()))?;
        let index: HashMap<u64, usize> = json
            .images
            .iter()
            .enumerate()
            .map(|(i, im)| (im.id, i))
            .collect();
        let mut ok = vec![true; json.images.len()];
        for (i, info) in json.images.iter().enumerate() {
            let rec = format!("image id {}", info.id);
            if info.height == 0 || info.width == 0 {
                bad.push(json_path, &rec, "missing or zero `height`/`width`");
                ok[i] = false;
            } else if check_images {
                let path = image_dir.join(&info.file_name);
                if let Some(problem) = check_image(&path, Some((info.height, info.width))) {
                    bad.push(json_path, &rec, problem);
                    ok[i] = false;
                }
            }
        }
        let mut instances = vec![Vec::new(); json.images.len()];
        for ann in json.annotations {
            let rec = format!("annotation id {} (image_id {})", ann.id, ann.image_id);
            let Some(&i) = index.get(&ann.image_id) else {
                bad.push(json_path, &rec, "no entry in `images`");
                continue;
            };
            if !ok[i] {
                continue;
            }
            match Self::instance(&ann, &json.images[i], &categories) {
                Ok(inst) => instances[i].push(inst),
                Err(problem) => {
                    bad.push(json_path, &rec, problem);
                    ok[i] = false;
                }
            }
        }
        let (images, instances) = json
            .images
            .into_iter()
            .zip(instances)
            .zip(ok)
            .filter(|(_, ok)| *ok)
            .map(|(pair, _)| pair)
            .unzip();
        Ok(CocoInstance {
            json_path: json_path.to_path_buf(),
            image_dir: image_dir.to_path_buf(),
            categories,
            images,
            instances,
        })
    }

    fn instance(
        ann: &AnnotationJson,
        info: &ImageInfo,
        categories: &Categories,
    ) -> Result<Instance, String> {
        if categories.get(ann.category_id).is_none() {
            return Err(format!("unknown category_id {}", ann.category_id));
        }
        let rle = segmentation_to_rle(&ann.segmentation, info.height, info.width)?;
        if (rle.height, rle.width) != (info.height, info.width) {
            return Err(format!(
                "mask is {}x{}, the image is {}x{}",
                rle.height, rle.width, info.height, info.width
            ));
        }
        Ok(Instance {
            id: ann.id,
            category_id: ann.category_id,
            iscrowd: ann.iscrowd,
            area: ann.area.unwrap_or(rle.area() as f64),
            rle,
        })
    }

    /// The annotation JSON.
    pub fn json_path(&self) -> &Path {
        &self.json_path
    }
    /// The number of annotations.
    pub fn annotation_count(&self) -> usize {
        self.instances.iter().map(Vec::len).sum()
    }

    pub fn len(&self) -> usize {
        self.images.len()
    }
    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }
    pub fn categories(&self) -> &Categories {
        &self.categories
    }
    pub fn image_info(&self, i: usize) -> &ImageInfo {
        &self.images[i]
    }
    pub fn images(&self) -> &[ImageInfo] {
        &self.images
    }
    /// The instances of image `i`, in file order.
    pub fn ground_truth(&self, i: usize) -> &[Instance] {
        &self.instances[i]
    }

    /// Image, training targets (non-crowd instances) and ground truth of image `i`.
    pub fn sample(&self, i: usize) -> Result<Sample, DataError> {
        let info = &self.images[i];
        let path = self.image_dir.join(&info.file_name);
        let image = load_rgb(&path)?;
        if (image.height() as usize, image.width() as usize) != (info.height, info.width) {
            return Err(DataError::record(
                &path,
                format!("image_id {}", info.id),
                format!(
                    "image is {}x{}, `images` in {} says {}x{}",
                    image.height(),
                    image.width(),
                    self.json_path.display(),
                    info.height,
                    info.width
                ),
            ));
        }
        let mut masks = Vec::new();
        let mut class_ids = Vec::new();
        for inst in self.instances[i].iter().filter(|x| !x.iscrowd) {
            masks.push(inst.rle.decode()?);
            class_ids.push(
                self.categories
                    .index_of(inst.category_id)
                    .expect("categories checked at open"),
            );
        }
        Ok(Sample {
            image_id: info.id,
            file_name: info.file_name.clone(),
            valid: (info.height, info.width),
            image,
            masks,
            class_ids,
            ground_truth: GroundTruth::Instance(self.instances[i].clone()),
        })
    }
}
