//! The one connection point to inference: a segmentation model loaded on the caller's device
//! and run image by image, its output put in the evaluators' terms.

use std::path::{Path, PathBuf};

use super::EvalError;
use crate::data::{Categories, LabelMap, Panoptic, Rle, Sample};
use crate::segment::{Segmentation, Segmenter};
use crate::Runtime;

/// What the segmentation model produces for one image, in the evaluators' terms.
#[derive(Clone, Debug)]
pub enum ModelOutput {
    Panoptic(Panoptic),
    /// `(category_id, mask, score)` per detection.
    Instances(Vec<(u32, Rle, f64)>),
    Semantic(LabelMap),
}

/// The task the model is asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Task {
    Panoptic,
    Instance,
    Semantic,
}

/// The model of one checkpoint folder, loaded once for all the images of an evaluation. Model
/// label `i` is the dataset's category index `i` (the model was trained on this dataset's
/// categories).
pub struct ModelRunner {
    dir: PathBuf,
    segmenter: Segmenter,
    task: Task,
    categories: Categories,
}

impl ModelRunner {
    /// Loads the model of `dir` on `rt` for `task`; for panoptic and instance tasks its label
    /// count must be the number of `categories` (semantic tasks check theirs against the
    /// dataset's classes before).
    pub fn load(
        rt: &Runtime,
        dir: &Path,
        task: Task,
        categories: &Categories,
    ) -> Result<Self, EvalError> {
        let segmenter = Segmenter::load(rt, dir).map_err(|e| EvalError::Model(e.to_string()))?;
        let labels = segmenter.labels().len();
        if task != Task::Semantic && labels != categories.len() {
            return Err(EvalError::Mismatch(format!(
                "the model {} has {labels} labels but the dataset has {} categories",
                dir.display(),
                categories.len()
            )));
        }
        Ok(ModelRunner {
            dir: dir.to_path_buf(),
            segmenter,
            task,
            categories: categories.clone(),
        })
    }

    /// The folder the model was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Runs the model on one sample.
    pub fn run(&mut self, sample: &Sample) -> Result<ModelOutput, EvalError> {
        let image = image::DynamicImage::ImageRgb8(sample.image.clone());
        let task = match self.task {
            Task::Panoptic => crate::segment::Task::Panoptic,
            Task::Instance => crate::segment::Task::Instance,
            Task::Semantic => crate::segment::Task::Semantic,
        };
        let result = self
            .segmenter
            .segment(&image, task)
            .map_err(|e| EvalError::Model(e.to_string()))?;
        self.convert(result)
    }

    /// The dataset category id of model label `label`.
    fn category_of(&self, label: u32) -> Result<u32, EvalError> {
        self.categories.id_of(label).ok_or_else(|| {
            EvalError::Mismatch(format!(
                "model label {label} has no category in the dataset ({} categories)",
                self.categories.len()
            ))
        })
    }

    fn convert(&self, result: Segmentation) -> Result<ModelOutput, EvalError> {
        Ok(match result {
            Segmentation::Panoptic(p) => {
                let mut segments = Vec::with_capacity(p.segments.len());
                for s in &p.segments {
                    segments.push(crate::data::SegmentInfo {
                        id: s.id,
                        category_id: self.category_of(s.label_id)?,
                        iscrowd: false,
                        area: s.area as f64,
                        bbox: Some(s.bbox.map(|v| v as f64)),
                    });
                }
                ModelOutput::Panoptic(Panoptic {
                    height: p.height,
                    width: p.width,
                    ids: p.ids,
                    segments,
                })
            }
            Segmentation::Instance(r) => {
                let mut list = Vec::with_capacity(r.instances.len());
                for inst in r.instances {
                    let mask = crate::data::Mask::from_map(r.height, r.width, &inst.mask, |b| b);
                    list.push((
                        self.category_of(inst.label_id)?,
                        Rle::encode(&mask),
                        inst.score as f64,
                    ));
                }
                ModelOutput::Instances(list)
            }
            // semantic labels are model labels: the dataset's classes, not category ids
            Segmentation::Semantic(s) => ModelOutput::Semantic(LabelMap {
                height: s.height,
                width: s.width,
                labels: s.labels.iter().map(|&l| l.min(254) as u8).collect(),
            }),
        })
    }
}
