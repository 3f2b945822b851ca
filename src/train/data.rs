//! Training data: which dataset (`--data`), opening it, the batch of each step (a pure function
//! of the seed and the step, which exact resume relies on), and the thread that builds the next
//! batches while the device runs the current step.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::{Result, TrainError};
use crate::data::coco_instance::CocoInstance;
use crate::data::coco_panoptic::CocoPanoptic;
use crate::data::loader::{build_batch, epoch_order, Batch, LoaderConfig, SampleSource};
use crate::data::semantic::SemanticFolder;
use crate::data::{synthetic, Category};
use crate::model::criterion::ImageTargets;
use crate::model::preprocess::PreprocessConfig;

/// Where training data comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum DataSpec {
    /// The embedded synthetic panoptic dataset.
    Synthetic,
    CocoPanoptic(PathBuf),
    CocoInstance(PathBuf),
    Semantic(PathBuf),
}

impl FromStr for DataSpec {
    type Err = TrainError;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || TrainError::Setting {
            what: "data",
            value: s.into(),
            reason:
                "expected synthetic | coco-panoptic:<DIR> | coco-instance:<DIR> | semantic:<DIR>"
                    .into(),
        };
        if s == "synthetic" {
            return Ok(DataSpec::Synthetic);
        }
        let (kind, dir) = s.split_once(':').ok_or_else(bad)?;
        let dir = PathBuf::from(dir);
        match kind {
            "coco-panoptic" => Ok(DataSpec::CocoPanoptic(dir)),
            "coco-instance" => Ok(DataSpec::CocoInstance(dir)),
            "semantic" => Ok(DataSpec::Semantic(dir)),
            _ => Err(bad()),
        }
    }
}

/// Number of images of the synthetic training split.
pub const SYNTHETIC_TRAIN_IMAGES: usize = 2048;
/// Number of images of the synthetic validation split used by evaluation.
pub const SYNTHETIC_VAL_IMAGES: usize = 16;

type Source = (Arc<dyn SampleSource>, Option<Vec<Category>>);

pub(super) fn open_source(
    spec: &DataSpec,
    seed: u64,
    image_size: usize,
    val: bool,
) -> Result<Source> {
    Ok(match spec {
        DataSpec::Synthetic => {
            let cfg = synthetic::Config {
                height: image_size,
                width: image_size,
                ..synthetic::Config::default()
            };
            let (split, len) = if val {
                (synthetic::Split::Val, SYNTHETIC_VAL_IMAGES)
            } else {
                (synthetic::Split::Train, SYNTHETIC_TRAIN_IMAGES)
            };
            let ds = synthetic::Dataset::with_config(seed, split, len, cfg);
            let cats = ds.categories().list().to_vec();
            (Arc::new(ds), Some(cats))
        }
        DataSpec::CocoPanoptic(dir) => {
            let ds = CocoPanoptic::open_dir(dir)?;
            let cats = ds.categories().list().to_vec();
            (Arc::new(ds), Some(cats))
        }
        DataSpec::CocoInstance(dir) => {
            let ds = CocoInstance::open_dir(dir)?;
            let cats = ds.categories().list().to_vec();
            (Arc::new(ds), Some(cats))
        }
        DataSpec::Semantic(dir) => (Arc::new(SemanticFolder::open(dir, false)?), None),
    })
}

/// Builds the batches of steps `start..end` on a worker thread, in order.
pub(super) struct Prefetch {
    rx: Option<Receiver<(u64, std::result::Result<Batch, crate::data::DataError>)>>,
    handle: Option<JoinHandle<()>>,
}

impl Prefetch {
    pub(super) fn start(
        source: Arc<dyn SampleSource>,
        cfg: LoaderConfig,
        start: u64,
        end: u64,
    ) -> Self {
        let (tx, rx) = sync_channel(cfg.prefetch.max(1));
        let handle = std::thread::Builder::new()
            .name("train-data".into())
            .spawn(move || {
                for step in start..end {
                    let batch = batch_of_step(source.as_ref(), &cfg, step);
                    if tx.send((step, batch)).is_err() {
                        return;
                    }
                }
            })
            .ok();
        Self {
            rx: Some(rx),
            handle,
        }
    }

    pub(super) fn next(&mut self, step: u64) -> Result<Batch> {
        let rx = self.rx.as_ref().expect("receiver lives until drop");
        match rx.recv() {
            Ok((s, batch)) if s == step => Ok(batch?),
            Ok((s, _)) => Err(TrainError::Resume(format!(
                "data order: expected the batch of step {step}, got {s}"
            ))),
            Err(_) => Err(TrainError::Setting {
                what: "data",
                value: format!("step {step}"),
                reason: "the data thread stopped".into(),
            }),
        }
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        self.rx.take();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// The batch of step `step`: a pure function of the loader settings and the step.
pub fn batch_of_step(
    source: &dyn SampleSource,
    cfg: &LoaderConfig,
    step: u64,
) -> std::result::Result<Batch, crate::data::DataError> {
    let per_epoch = (source.len() / cfg.batch_size).max(1) as u64;
    let (epoch, pos) = (step / per_epoch, (step % per_epoch) as usize);
    let order = epoch_order(source.len(), cfg, epoch);
    let bs = cfg.batch_size;
    // A dataset smaller than one batch repeats its images.
    let indices: Vec<usize> = (0..bs)
        .map(|i| order[(pos * bs + i) % order.len()])
        .collect();
    build_batch(source, &indices, cfg, epoch)
}

/// Normalised `pixel_values [B, 3, H, W]` and the targets of a batch.
pub fn batch_inputs(batch: &Batch) -> (Vec<f32>, Vec<ImageTargets>) {
    let pre = PreprocessConfig::default();
    let (h, w) = (batch.height, batch.width);
    let plane = h * w;
    let mut pixels = batch.images.clone();
    for b in 0..batch.samples.len() {
        for c in 0..3 {
            let off = (b * 3 + c) * plane;
            for i in 0..plane {
                // Padding stays 0, as transformers pads after normalising.
                if batch.pixel_mask[b * plane + i] != 0 {
                    pixels[off + i] = (pixels[off + i] - pre.mean[c]) / pre.std[c];
                }
            }
        }
    }
    let targets = batch
        .samples
        .iter()
        .map(|s| {
            let mut masks = Vec::with_capacity(s.masks.len() * plane);
            for m in &s.masks {
                masks.extend(m.data().iter().map(|&v| v as f32));
            }
            ImageTargets {
                height: h,
                width: w,
                masks,
                classes: s.class_ids.clone(),
            }
        })
        .collect();
    (pixels, targets)
}
