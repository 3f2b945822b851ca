//! Segmenting images end to end: pre-processing, the network, post-processing, and the files the
//! `segment` CLI writes (overlay PNG, segments JSON, COCO-panoptic PNG, semantic label PNG).
//!
//! ```no_run
//! use mask2former::{segment::{Segmenter, Task}, Runtime};
//! let rt = Runtime::new()?;
//! let mut seg = Segmenter::load(&rt, "assets/demo-model".as_ref())?;
//! let image = image::open("assets/demo.png")?;
//! let result = seg.segment(&image, Task::Panoptic)?;
//! for s in result.segments(seg.labels()) {
//!     println!("{} {:.2} {} px", s.label_name, s.score, s.area);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#[cfg(not(target_arch = "wasm32"))]
use std::path::Path;
use std::path::PathBuf;

use image::{DynamicImage, RgbImage};
use serde::Serialize;
use thiserror::Error;

use crate::data::{rle::Rle, Mask};
use crate::model::postprocess::{
    self, Instances, Panoptic, PostprocessConfig, RawOutputs, Semantic,
};
use crate::model::preprocess::{preprocess, PreprocessConfig, Preprocessed};
use crate::model::{LabelInfo, Mask2Former, ModelError, ModelFiles, RawBatch};
use crate::visualize;
use crate::Runtime;

mod on_device;
mod output;
use on_device::check_finite_on_device;
pub use output::overlay;
#[cfg(not(target_arch = "wasm32"))]
pub use output::{output_stems, prepare_out_dir, write_atomic, write_outputs};

/// What to produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    Panoptic,
    Instance,
    Semantic,
}

#[derive(Debug, Error)]
pub enum SegmentError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what} contains {count} non-finite value(s) (first at flat index {first}: {value}); {hint}")]
    NonFinite {
        what: String,
        count: usize,
        first: usize,
        value: f32,
        hint: &'static str,
    },
    #[error("output folder {path} is not writable: {source}")]
    OutDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot encode {path}: {source}")]
    Encode {
        path: PathBuf,
        source: image::ImageError,
    },
}

/// A loaded model with its pre- and post-processing settings.
pub struct Segmenter {
    model: Mask2Former,
    pub preprocess: PreprocessConfig,
    pub postprocess: PostprocessConfig,
    /// Panoptic, semantic and instance post-processing of [`Segmenter::segment`] run their
    /// per-pixel work on the device; false reads the mask logits back and runs it on the host.
    /// Default: on the device where the kernel policy is GPU-shaped (a GPU adapter, or
    /// `M2F_KERNEL_POLICY=gpu`), on the host on CPU adapters, where lavapipe ran the device path
    /// 10–15× (panoptic, semantic) and 1.5–3× (instance) slower than the host's one thread
    /// (docs/PERFORMANCE.md, sessions 9 and 10).
    /// Semantic results of models without stuff classes always run on the host, as does any
    /// image the device kernels cannot take (more than 256 queries, or instance masks of
    /// one query past a storage binding).
    pub postprocess_on_device: bool,
}

/// The result for one image, at the image's original size.
pub enum Segmentation {
    Panoptic(Panoptic),
    Instance(Instances),
    Semantic(Semantic),
}

/// One segment as written to JSON.
#[derive(Clone, Debug, Serialize)]
pub struct SegmentInfo {
    pub id: u32,
    pub label_id: u32,
    pub label_name: String,
    pub is_thing: bool,
    pub score: f32,
    pub area: u64,
    /// [x, y, width, height]
    pub bbox: [u32; 4],
    /// COCO compressed RLE of the segment's mask (instance task only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub segmentation: Option<RleJson>,
}

/// COCO RLE as JSON (`{"size": [h, w], "counts": "..."}`).
#[derive(Clone, Debug, Serialize)]
pub struct RleJson {
    pub size: [usize; 2],
    pub counts: String,
}

impl Segmenter {
    #[cfg(not(target_arch = "wasm32"))]
    /// Loads a checkpoint folder (`config.json` + `model.safetensors`, and the image-processor
    /// settings of `preprocessor_config.json` when the folder has one).
    pub fn load(rt: &Runtime, dir: &Path) -> Result<Self, SegmentError> {
        let preprocess =
            PreprocessConfig::for_model_dir(dir).map_err(|reason| ModelError::Folder {
                path: dir.into(),
                reason,
            })?;
        Ok(Self {
            model: Mask2Former::load(rt, dir)?,
            preprocess,
            postprocess: PostprocessConfig::default(),
            postprocess_on_device: !crate::ops::policy::policy(rt).cpu_shapes(),
        })
    }

    /// Builds a segmenter from a checkpoint folder's files held in memory (a web page's
    /// fetches), with the folder's image-processor settings when it has them.
    pub fn from_files(rt: &Runtime, files: &ModelFiles<'_>) -> Result<Self, SegmentError> {
        let preprocess = match files.preprocessor {
            Some(text) => PreprocessConfig::from_json(text).map_err(|reason| {
                ModelError::File(format!(
                    "{}: {reason}",
                    crate::model::preprocess::PREPROCESSOR_FILE
                ))
            })?,
            None => PreprocessConfig::default(),
        };
        Ok(Self {
            model: Mask2Former::from_files(rt, files)?,
            preprocess,
            postprocess: PostprocessConfig::default(),
            postprocess_on_device: !crate::ops::policy::policy(rt).cpu_shapes(),
        })
    }

    pub fn model(&self) -> &Mask2Former {
        &self.model
    }

    pub fn labels(&self) -> &LabelInfo {
        self.model.labels()
    }

    /// Segments one image.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn segment(
        &mut self,
        image: &DynamicImage,
        task: Task,
    ) -> Result<Segmentation, SegmentError> {
        pollster::block_on(self.segment_async(image, task))
    }

    /// [`Segmenter::segment`] without blocking (the only form in a browser).
    pub async fn segment_async(
        &mut self,
        image: &DynamicImage,
        task: Task,
    ) -> Result<Segmentation, SegmentError> {
        let pre = preprocess(image, &self.preprocess);
        if !self.postprocess_on_device {
            let raw = self
                .forward_async(&pre.pixel_values, 1, pre.height, pre.width)
                .await?;
            return Ok(self.postprocess(&raw, 0, &pre, task));
        }
        check_finite(
            "pixel_values",
            &pre.pixel_values,
            "the input must hold finite numbers",
        )?;
        let out = self
            .model
            .forward_on_device_async(&pre.pixel_values, 1, pre.height, pre.width)
            .await?;
        check_finite("class_queries_logits", &out.class_logits, NETWORK_HINT)?;
        check_finite_on_device(self.model.runtime(), &out.mask_logits).await?;
        if let Some(result) = self.postprocess_on_device(&out, &pre, task).await? {
            return Ok(result);
        }
        let raw = out.download(self.model.runtime()).await?;
        Ok(self.postprocess(&raw, 0, &pre, task))
    }

    /// Runs the network on an already pre-processed `[B, 3, H, W]` batch. Non-finite pixel
    /// values, and non-finite network outputs (which would otherwise become one class at score
    /// 1.0, or no segments at all), are errors.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn forward(
        &mut self,
        pixel_values: &[f32],
        batch: usize,
        height: usize,
        width: usize,
    ) -> Result<RawBatch, SegmentError> {
        pollster::block_on(self.forward_async(pixel_values, batch, height, width))
    }

    /// [`Segmenter::forward`] without blocking.
    pub async fn forward_async(
        &mut self,
        pixel_values: &[f32],
        batch: usize,
        height: usize,
        width: usize,
    ) -> Result<RawBatch, SegmentError> {
        check_finite(
            "pixel_values",
            pixel_values,
            "the input must hold finite numbers",
        )?;
        let raw = self
            .model
            .forward_async(pixel_values, batch, height, width)
            .await?;
        check_finite("class_queries_logits", &raw.class_logits, NETWORK_HINT)?;
        check_finite("masks_queries_logits", &raw.mask_logits, NETWORK_HINT)?;
        Ok(raw)
    }

    /// Post-processes image `b` of a raw batch into a result at `pre.original_size`.
    pub fn postprocess(
        &self,
        raw: &RawBatch,
        b: usize,
        pre: &Preprocessed,
        task: Task,
    ) -> Segmentation {
        let (q, c) = (raw.num_queries, raw.num_classes_with_void);
        let (h, w) = raw.mask_size;
        let out = RawOutputs {
            class_logits: &raw.class_logits[b * q * c..(b + 1) * q * c],
            mask_logits: &raw.mask_logits[b * q * h * w..(b + 1) * q * h * w],
            num_queries: q,
            num_classes_with_void: c,
            mask_size: raw.mask_size,
            input_size: (pre.height, pre.width),
            output_size: pre.original_size,
        };
        let labels = self.model.labels();
        let is_thing = |l: u32| labels.is_thing(l);
        // A model with stuff classes is a panoptic model: as in the original, its instance
        // results keep thing classes only and its semantic results upsample masks first.
        let panoptic_model = (0..labels.len() as u32).any(|l| !labels.is_thing(l));
        match task {
            Task::Panoptic => {
                Segmentation::Panoptic(postprocess::panoptic(&out, &self.postprocess, &is_thing))
            }
            Task::Instance => Segmentation::Instance(postprocess::instance(
                &out,
                &self.postprocess,
                panoptic_model.then_some(&is_thing as &dyn Fn(u32) -> bool),
            )),
            Task::Semantic => {
                let cfg = PostprocessConfig {
                    semantic_resize_masks_first: panoptic_model,
                    ..self.postprocess.clone()
                };
                Segmentation::Semantic(postprocess::semantic(&out, &cfg))
            }
        }
    }
}

impl Segmentation {
    /// The segments with label names; instance masks come as COCO RLE.
    pub fn segments(&self, labels: &LabelInfo) -> Vec<SegmentInfo> {
        match self {
            Segmentation::Panoptic(p) => p
                .segments
                .iter()
                .map(|s| SegmentInfo {
                    id: s.id,
                    label_id: s.label_id,
                    label_name: labels.name(s.label_id),
                    is_thing: s.is_thing,
                    score: s.score,
                    area: s.area,
                    bbox: s.bbox,
                    segmentation: None,
                })
                .collect(),
            Segmentation::Instance(r) => r
                .instances
                .iter()
                .enumerate()
                .map(|(i, inst)| {
                    let rle = Rle::encode(&Mask::from_map(r.height, r.width, &inst.mask, |b| b));
                    SegmentInfo {
                        id: i as u32 + 1,
                        label_id: inst.label_id,
                        label_name: labels.name(inst.label_id),
                        is_thing: labels.is_thing(inst.label_id),
                        score: inst.score,
                        area: inst.area,
                        bbox: inst.bbox,
                        segmentation: Some(RleJson {
                            size: [r.height, r.width],
                            counts: rle.to_compressed(),
                        }),
                    }
                })
                .collect(),
            Segmentation::Semantic(s) => {
                let mut areas = std::collections::BTreeMap::<u32, u64>::new();
                for &l in &s.labels {
                    *areas.entry(l).or_default() += 1;
                }
                areas
                    .into_iter()
                    .map(|(l, area)| {
                        let ids: Vec<u32> = s.labels.iter().map(|&v| (v == l) as u32).collect();
                        SegmentInfo {
                            id: l + 1,
                            label_id: l,
                            label_name: labels.name(l),
                            is_thing: labels.is_thing(l),
                            score: 1.0,
                            area,
                            bbox: bbox_of(&ids, s.width),
                            segmentation: None,
                        }
                    })
                    .collect()
            }
        }
    }

    /// An id map at the original size (0 = nothing) for drawing: panoptic segment ids, instance
    /// indices (higher scores drawn on top), or semantic label + 1.
    pub fn id_map(&self) -> Vec<u32> {
        match self {
            Segmentation::Panoptic(p) => p.ids.clone(),
            Segmentation::Instance(r) => {
                let mut ids = vec![0u32; r.height * r.width];
                let mut order: Vec<usize> = (0..r.instances.len()).collect();
                order.sort_by(|&a, &b| r.instances[a].score.total_cmp(&r.instances[b].score));
                for i in order {
                    for (p, &m) in ids.iter_mut().zip(&r.instances[i].mask) {
                        if m {
                            *p = i as u32 + 1;
                        }
                    }
                }
                ids
            }
            Segmentation::Semantic(s) => s.labels.iter().map(|&l| l + 1).collect(),
        }
    }

    pub fn size(&self) -> (usize, usize) {
        match self {
            Segmentation::Panoptic(p) => (p.height, p.width),
            Segmentation::Instance(r) => (r.height, r.width),
            Segmentation::Semantic(s) => (s.height, s.width),
        }
    }
}

const NETWORK_HINT: &str = "the network overflowed on this input (the weights were finite at load)";

/// An error naming `what` when `values` holds NaN or ±inf.
pub fn check_finite(what: &str, values: &[f32], hint: &'static str) -> Result<(), SegmentError> {
    let Some(first) = values.iter().position(|v| !v.is_finite()) else {
        return Ok(());
    };
    Err(SegmentError::NonFinite {
        what: what.to_string(),
        count: values.iter().filter(|v| !v.is_finite()).count(),
        first,
        value: values[first],
        hint,
    })
}

fn bbox_of(ids: &[u32], width: usize) -> [u32; 4] {
    let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0, 0);
    for (i, &v) in ids.iter().enumerate() {
        if v != 0 {
            let (x, y) = (i % width, i / width);
            (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
        }
    }
    if x0 == usize::MAX {
        return [0; 4];
    }
    [
        x0 as u32,
        y0 as u32,
        (x1 - x0 + 1) as u32,
        (y1 - y0 + 1) as u32,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_values_are_named_with_their_position() {
        assert!(check_finite("t", &[0.0, 1.0], "h").is_ok());
        let e = check_finite("masks_queries_logits", &[0.0, f32::NAN, f32::INFINITY], "h")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(
                "masks_queries_logits contains 2 non-finite value(s) (first at flat index 1: NaN)"
            ),
            "{e}"
        );
    }
}
