//! `--save-predictions DIR`: the model's predictions in the files the reference tools read —
//! COCO results JSON with compressed-RLE masks (`DIR/results.json`, pycocotools' `loadRes`),
//! panopticapi's prediction JSON with its PNG folder (`DIR/panoptic.json` + `DIR/panoptic/`),
//! and semantic label PNGs (`DIR/<key>.png`). `evaluate --predictions DIR` reads them back.
//! Every file is written atomically.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::data::coco_panoptic::{ImageInfo, PanopticAnnotation, PanopticJson};
use crate::data::write::{io_err, write_bytes};
pub use crate::data::write::{write_label_png, write_panoptic_png};
use crate::data::{Categories, DataError, LabelMap, Panoptic, Rle};

/// The COCO results file inside a predictions folder.
pub const RESULTS_JSON: &str = "results.json";

#[derive(Serialize)]
struct RleJson {
    size: [usize; 2],
    counts: String,
}

/// One entry of a COCO results file.
#[derive(Serialize)]
struct ResultJson {
    image_id: u64,
    category_id: u32,
    segmentation: RleJson,
    score: f64,
}

/// Collects predictions image by image and writes the files.
pub struct PredictionWriter {
    dir: PathBuf,
    panoptic: Option<PanopticJson>,
    results: Option<Vec<ResultJson>>,
}

impl PredictionWriter {
    /// Creates `dir` (and `dir/panoptic/`).
    pub fn create(dir: &Path) -> Result<Self, DataError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        Ok(PredictionWriter {
            dir: dir.to_path_buf(),
            panoptic: None,
            results: None,
        })
    }

    /// One image's panoptic prediction: its PNG now, its entry in the JSON at [`finish`](Self::finish).
    pub fn panoptic(&mut self, info: &ImageInfo, pan: &Panoptic) -> Result<(), DataError> {
        let png_dir = self.dir.join("panoptic");
        if self.panoptic.is_none() {
            std::fs::create_dir_all(&png_dir).map_err(io_err(&png_dir))?;
        }
        let json = self.panoptic.get_or_insert_with(|| PanopticJson {
            images: Vec::new(),
            annotations: Vec::new(),
            categories: Vec::new(),
        });
        let stem = Path::new(&info.file_name)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| info.id.to_string());
        let file_name = format!("{stem}.png");
        write_panoptic_png(&png_dir.join(&file_name), pan)?;
        json.annotations.push(PanopticAnnotation {
            image_id: info.id,
            file_name,
            segments_info: pan.segments.clone(),
        });
        json.images.push(info.clone());
        Ok(())
    }

    /// One image's instances `(category_id, mask, score)`.
    pub fn instances(&mut self, image_id: u64, list: &[(u32, Rle, f64)]) {
        let results = self.results.get_or_insert_with(Vec::new);
        results.extend(list.iter().map(|(category_id, rle, score)| ResultJson {
            image_id,
            category_id: *category_id,
            segmentation: RleJson {
                size: [rle.height, rle.width],
                counts: rle.to_compressed(),
            },
            score: *score,
        }));
    }

    /// One image's label map, as `<key>.png`.
    pub fn semantic(&mut self, key: &str, map: &LabelMap) -> Result<(), DataError> {
        write_label_png(&self.dir.join(format!("{key}.png")), map)
    }

    /// Writes the JSON files (the categories go into the panoptic JSON).
    pub fn finish(&self, categories: &Categories) -> Result<(), DataError> {
        let write = |name: &str, bytes: Vec<u8>| {
            let path = self.dir.join(name);
            write_bytes(&path, &bytes)
        };
        let json_err = |source| DataError::Json {
            path: self.dir.clone(),
            source,
        };
        if let Some(mut json) = self.panoptic.clone() {
            json.categories = categories.list().to_vec();
            write(
                "panoptic.json",
                serde_json::to_vec(&json).map_err(json_err)?,
            )?;
        }
        if let Some(results) = &self.results {
            write(RESULTS_JSON, serde_json::to_vec(results).map_err(json_err)?)?;
        }
        Ok(())
    }
}
