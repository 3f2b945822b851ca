//! Training data: which dataset (`--data`), opening it, the batch of each step (a pure function
//! of the seed and the step, which exact resume relies on), and the thread that builds the next
//! batches while the device runs the current step.

use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::{Result, TrainError};
use crate::data::loader::{build_batch, epoch_order, Batch, LoaderConfig, SampleSource};
use crate::data::spec::{self, Dataset, OpenOptions, Role};
use crate::data::{synthetic, Category};
use crate::model::criterion::ImageTargets;
use crate::model::preprocess::PreprocessConfig;

/// Where training data comes from: the spec `evaluate` takes too (`synthetic` is the embedded
/// synthetic panoptic dataset at the run's image size; a dataset root's split defaults to the
/// training split).
pub use crate::data::spec::DataSpec;

/// Number of images of the synthetic training split.
pub const SYNTHETIC_TRAIN_IMAGES: usize = 2048;
/// Number of images of the synthetic validation split used by evaluation.
pub const SYNTHETIC_VAL_IMAGES: usize = 16;

/// The samples, the categories (none for semantic data) and the line saying what was found.
type Source = (Arc<dyn SampleSource>, Option<Vec<Category>>, String);

pub(super) fn open_source(
    spec: &DataSpec,
    seed: u64,
    image_size: usize,
    val: bool,
) -> Result<Source> {
    if let DataSpec::Synthetic { .. } = spec {
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
        let summary = format!(
            "synthetic {} split: {len} images of {image_size} px, {} classes",
            split.name(),
            cats.len()
        );
        return Ok((Arc::new(ds), Some(cats), summary));
    }
    let opts = OpenOptions {
        role: if val { Role::Val } else { Role::Train },
        skip_bad: false,
        reduce_labels: false,
    };
    let opened = spec::open(spec, &opts)?;
    let summary = opened.summary;
    Ok(match opened.dataset {
        Dataset::Synthetic(ds) => (
            Arc::new(ds),
            Some(synthetic::categories().list().to_vec()),
            summary,
        ),
        Dataset::Panoptic(ds) => {
            let cats = ds.categories().list().to_vec();
            (Arc::new(ds), Some(cats), summary)
        }
        Dataset::Instance(ds) => {
            let cats = ds.categories().list().to_vec();
            (Arc::new(ds), Some(cats), summary)
        }
        Dataset::Semantic(ds) => (Arc::new(ds), None, summary),
    })
}

/// Checks that every target class of `batch` is one of the model's `num_labels` labels,
/// naming the image file and the value otherwise.
pub(super) fn check_labels(batch: &Batch, num_labels: usize, data: &str) -> Result<()> {
    for s in &batch.samples {
        if let Some(&c) = s.class_ids.iter().find(|&&c| c as usize >= num_labels) {
            let file = if s.file_name.is_empty() {
                format!("image_id {} of {data}", s.image_id)
            } else {
                format!("{} of {data}", s.file_name)
            };
            return Err(TrainError::Setting {
                what: "data",
                value: file,
                reason: format!(
                    "label value {c}, but the model has {num_labels} labels (0..={}); \
                     use a model config with more labels or fix the label file",
                    num_labels.saturating_sub(1)
                ),
            });
        }
    }
    Ok(())
}

/// A rank's share of the data: rank `rank` of `world` takes `order[rank::world]` of every
/// epoch's permutation (padded by repeating its start to a multiple of `world`, as PyTorch's
/// `DistributedSampler` does), so the ranks' batches of a step are one global batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub rank: usize,
    pub world: usize,
}

impl Shard {
    /// The whole data set (one process).
    pub const ALL: Shard = Shard { rank: 0, world: 1 };

    /// Position of this rank's image `i` in the global batch of `world × batch` images: the
    /// ranks' images interleave, as the shards of the permutation do.
    pub fn global_index(&self, i: usize) -> usize {
        i * self.world + self.rank
    }
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
        shard: Shard,
        start: u64,
        end: u64,
    ) -> Self {
        let (tx, rx) = sync_channel(cfg.prefetch.max(1));
        let handle = std::thread::Builder::new()
            .name("train-data".into())
            .spawn(move || {
                for step in start..end {
                    let batch = shard_batch_of_step(source.as_ref(), &cfg, shard, step);
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
    shard_batch_of_step(source, cfg, Shard::ALL, step)
}

/// The batch of step `step` of one rank (`cfg.batch_size` images of its [`Shard`]): a pure
/// function of the loader settings, the shard and the step. Augmentation draws are seeded per
/// image and epoch, so an image is augmented alike whichever rank takes it.
pub fn shard_batch_of_step(
    source: &dyn SampleSource,
    cfg: &LoaderConfig,
    shard: Shard,
    step: u64,
) -> std::result::Result<Batch, crate::data::DataError> {
    let len = source.len();
    let shard_len = len.div_ceil(shard.world).max(1);
    let per_epoch = (shard_len / cfg.batch_size).max(1) as u64;
    let (epoch, pos) = (step / per_epoch, (step % per_epoch) as usize);
    let order = epoch_order(len, cfg, epoch);
    let bs = cfg.batch_size;
    // A shard smaller than one batch repeats its images; the padded order repeats its start.
    let indices: Vec<usize> = (0..bs)
        .map(|i| {
            let j = (pos * bs + i) % shard_len;
            order[(j * shard.world + shard.rank) % len]
        })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::synthetic;

    fn source(len: usize) -> synthetic::Dataset {
        let cfg = synthetic::Config {
            height: 32,
            width: 32,
            ..synthetic::Config::default()
        };
        synthetic::Dataset::with_config(1, synthetic::Split::Train, len, cfg)
    }

    fn loader(batch: usize) -> LoaderConfig {
        LoaderConfig {
            batch_size: batch,
            seed: 3,
            ..LoaderConfig::default()
        }
    }

    /// The ranks' batches of a step are one global batch: W ranks × B images take, image for
    /// image, what one process of W·B images takes (at `Shard::global_index`), across epochs;
    /// one rank is the single-process order.
    #[test]
    fn shards_of_a_step_make_the_global_batch() {
        for (len, world, batch) in [(12, 2, 1), (12, 3, 1), (12, 2, 3)] {
            let ds = source(len);
            for step in 0..8 {
                let global = batch_of_step(&ds, &loader(world * batch), step).unwrap();
                for rank in 0..world {
                    let shard = Shard { rank, world };
                    let mine = shard_batch_of_step(&ds, &loader(batch), shard, step).unwrap();
                    for (i, idx) in mine.indices.iter().enumerate() {
                        assert_eq!(
                            *idx,
                            global.indices[shard.global_index(i)],
                            "len {len}, {world} ranks x {batch}, step {step}, rank {rank}"
                        );
                        // The same image, augmented alike.
                        let k = shard.global_index(i);
                        assert_eq!(mine.samples[i].class_ids, global.samples[k].class_ids);
                    }
                }
            }
        }
    }

    /// A data set that does not divide among the ranks: every index still appears in each
    /// epoch, the ranks' shares are equal (padded by repeating the permutation's start).
    #[test]
    fn uneven_shards_cover_the_epoch() {
        let (len, world) = (7, 3);
        let ds = source(len);
        let mut seen = Vec::new();
        for rank in 0..world {
            for step in 0..3 {
                let shard = Shard { rank, world };
                let b = shard_batch_of_step(&ds, &loader(1), shard, step).unwrap();
                seen.extend(b.indices);
            }
        }
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen, (0..len).collect::<Vec<_>>());
    }
}
