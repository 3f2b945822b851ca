//! Batching loader: CPU threads read, augment and stack samples while the caller (the GPU
//! training loop) consumes earlier batches.
//!
//! Determinism: the sample order of an epoch is a permutation drawn from `(seed, epoch)`, and each
//! sample is augmented with an RNG seeded from `(seed, epoch, index)`, so the batches do not depend
//! on the number of workers or on thread timing. Worker `w` builds batches `w, w + W, w + 2W, ...`
//! into its own bounded channel and the consumer reads the channels round-robin, which keeps the
//! order and bounds memory to `workers × prefetch` batches.

use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::augment::{augment, pad_to, AugmentConfig};
use super::coco_instance::CocoInstance;
use super::coco_panoptic::CocoPanoptic;
use super::semantic::SemanticFolder;
use super::{synthetic, DataError, Sample};

/// Anything that yields samples by index.
pub trait SampleSource: Send + Sync {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn sample(&self, i: usize) -> Result<Sample, DataError>;
}

impl SampleSource for synthetic::Dataset {
    fn len(&self) -> usize {
        synthetic::Dataset::len(self)
    }
    fn sample(&self, i: usize) -> Result<Sample, DataError> {
        synthetic::Dataset::sample(self, i)
    }
}
impl SampleSource for CocoPanoptic {
    fn len(&self) -> usize {
        CocoPanoptic::len(self)
    }
    fn sample(&self, i: usize) -> Result<Sample, DataError> {
        CocoPanoptic::sample(self, i)
    }
}
impl SampleSource for CocoInstance {
    fn len(&self) -> usize {
        CocoInstance::len(self)
    }
    fn sample(&self, i: usize) -> Result<Sample, DataError> {
        CocoInstance::sample(self, i)
    }
}
impl SampleSource for SemanticFolder {
    fn len(&self) -> usize {
        SemanticFolder::len(self)
    }
    fn sample(&self, i: usize) -> Result<Sample, DataError> {
        SemanticFolder::sample(self, i)
    }
}

/// Loader settings.
#[derive(Clone, Debug)]
pub struct LoaderConfig {
    pub batch_size: usize,
    pub workers: usize,
    /// Batches each worker may have ready ahead of the consumer.
    pub prefetch: usize,
    pub shuffle: bool,
    /// Drop the last incomplete batch.
    pub drop_last: bool,
    pub seed: u64,
    /// `None`: samples as read (batches are padded to their largest sample).
    pub augment: Option<AugmentConfig>,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        LoaderConfig {
            batch_size: 2,
            workers: 2,
            prefetch: 2,
            shuffle: true,
            drop_last: false,
            seed: 0,
            augment: None,
        }
    }
}

/// A stacked batch.
#[derive(Clone, Debug)]
pub struct Batch {
    /// Dataset indices of the samples.
    pub indices: Vec<usize>,
    /// The samples, padded to `height × width` (masks included).
    pub samples: Vec<Sample>,
    pub height: usize,
    pub width: usize,
    /// `[B, 3, H, W]` RGB scaled to `[0, 1]`; padding is 0 (normalisation is the model's job).
    pub images: Vec<f32>,
    /// `[B, H, W]`: 1 on real pixels, 0 on padding.
    pub pixel_mask: Vec<u8>,
}

fn mix(a: u64, b: u64) -> u64 {
    let mut z = a ^ b.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The sample order of an epoch.
pub fn epoch_order(len: usize, cfg: &LoaderConfig, epoch: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..len).collect();
    if cfg.shuffle {
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(mix(cfg.seed, epoch)));
    }
    order
}

/// Reads, augments and stacks one batch.
pub fn build_batch(
    source: &dyn SampleSource,
    indices: &[usize],
    cfg: &LoaderConfig,
    epoch: u64,
) -> Result<Batch, DataError> {
    let mut samples = Vec::with_capacity(indices.len());
    for &i in indices {
        let s = source.sample(i)?;
        let s = match &cfg.augment {
            Some(a) => {
                let mut rng = ChaCha8Rng::seed_from_u64(mix(mix(cfg.seed, epoch), i as u64 + 1));
                augment(&s, a, &mut rng)
            }
            None => s,
        };
        samples.push(s);
    }
    let height = samples
        .iter()
        .map(|s| s.image.height() as usize)
        .max()
        .unwrap_or(0);
    let width = samples
        .iter()
        .map(|s| s.image.width() as usize)
        .max()
        .unwrap_or(0);
    let pad = cfg.augment.as_ref().map_or([0; 3], |a| a.pad_value);
    let samples: Vec<Sample> = samples
        .into_iter()
        .map(|s| {
            if (s.image.height() as usize, s.image.width() as usize) == (height, width) {
                s
            } else {
                pad_to(&s, height, width, pad)
            }
        })
        .collect();
    let plane = height * width;
    let mut images = vec![0f32; samples.len() * 3 * plane];
    let mut pixel_mask = vec![0u8; samples.len() * plane];
    for (b, s) in samples.iter().enumerate() {
        let (vh, vw) = s.valid;
        for y in 0..vh {
            for x in 0..vw {
                let p = s.image.get_pixel(x as u32, y as u32).0;
                for c in 0..3 {
                    images[(b * 3 + c) * plane + y * width + x] = p[c] as f32 / 255.0;
                }
                pixel_mask[b * plane + y * width + x] = 1;
            }
        }
    }
    Ok(Batch {
        indices: indices.to_vec(),
        samples,
        height,
        width,
        images,
        pixel_mask,
    })
}

/// One epoch of batches, produced by worker threads; iterate to receive them in order.
pub struct Loader {
    receivers: Vec<Receiver<Result<Batch, DataError>>>,
    handles: Vec<JoinHandle<()>>,
    next: usize,
    total: usize,
}

impl Loader {
    /// Starts the workers for `epoch`.
    pub fn epoch(
        source: Arc<dyn SampleSource>,
        cfg: &LoaderConfig,
        epoch: u64,
    ) -> Result<Loader, DataError> {
        if cfg.batch_size == 0 || cfg.workers == 0 || cfg.prefetch == 0 {
            return Err(DataError::Invalid(format!(
                "loader needs batch_size, workers and prefetch ≥ 1 (got {}, {}, {})",
                cfg.batch_size, cfg.workers, cfg.prefetch
            )));
        }
        let order = epoch_order(source.len(), cfg, epoch);
        let mut batches: Vec<Vec<usize>> = order
            .chunks(cfg.batch_size)
            .map(<[usize]>::to_vec)
            .collect();
        if cfg.drop_last && batches.last().is_some_and(|b| b.len() < cfg.batch_size) {
            batches.pop();
        }
        let batches = Arc::new(batches);
        let total = batches.len();
        let workers = cfg.workers.min(total.max(1));
        let mut receivers = Vec::with_capacity(workers);
        let mut handles = Vec::with_capacity(workers);
        for w in 0..workers {
            let (tx, rx) = sync_channel(cfg.prefetch);
            let (source, batches, cfg) = (Arc::clone(&source), Arc::clone(&batches), cfg.clone());
            let handle = std::thread::Builder::new()
                .name(format!("loader-{w}"))
                .spawn(move || {
                    for b in (w..batches.len()).step_by(workers) {
                        let batch = build_batch(source.as_ref(), &batches[b], &cfg, epoch);
                        // the consumer hung up: stop early
                        if tx.send(batch).is_err() {
                            return;
                        }
                    }
                })
                .map_err(|e| DataError::Invalid(format!("cannot start loader thread: {e}")))?;
            receivers.push(rx);
            handles.push(handle);
        }
        Ok(Loader {
            receivers,
            handles,
            next: 0,
            total,
        })
    }

    /// Number of batches in the epoch.
    pub fn len(&self) -> usize {
        self.total
    }
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }
}

impl Iterator for Loader {
    type Item = Result<Batch, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.total {
            return None;
        }
        let rx = &self.receivers[self.next % self.receivers.len()];
        self.next += 1;
        Some(rx.recv().unwrap_or_else(|_| {
            Err(DataError::Invalid(
                "a loader thread stopped unexpectedly (panicked)".into(),
            ))
        }))
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        // hang up first so blocked workers return, then wait for them
        self.receivers.clear();
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::synthetic::{Config, Dataset, Split};

    fn source() -> Arc<dyn SampleSource> {
        let cfg = Config {
            height: 24,
            width: 20,
            ..Config::default()
        };
        Arc::new(Dataset::with_config(1, Split::Train, 7, cfg))
    }

    #[test]
    fn batches_do_not_depend_on_worker_count() {
        let mut cfg = LoaderConfig {
            batch_size: 3,
            augment: Some(AugmentConfig::lsj(16)),
            ..LoaderConfig::default()
        };
        let collect = |cfg: &LoaderConfig| -> Vec<Batch> {
            Loader::epoch(source(), cfg, 4)
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        cfg.workers = 1;
        let one = collect(&cfg);
        cfg.workers = 3;
        let three = collect(&cfg);
        assert_eq!(one.len(), 3);
        assert_eq!(one.last().unwrap().indices.len(), 1);
        for (a, b) in one.iter().zip(&three) {
            assert_eq!(a.indices, b.indices);
            assert_eq!(a.images, b.images);
            assert_eq!((a.height, a.width), (16, 16));
            assert_eq!(a.images.len(), a.indices.len() * 3 * 16 * 16);
        }
        let mut all: Vec<usize> = one.iter().flat_map(|b| b.indices.clone()).collect();
        all.sort_unstable();
        assert_eq!(all, (0..7).collect::<Vec<_>>());
        // another epoch, another order
        let other: Vec<usize> = Loader::epoch(source(), &cfg, 5)
            .unwrap()
            .flat_map(|b| b.unwrap().indices)
            .collect();
        assert_ne!(
            other,
            one.iter()
                .flat_map(|b| b.indices.clone())
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn early_drop_stops_workers() {
        let cfg = LoaderConfig {
            batch_size: 1,
            prefetch: 1,
            ..LoaderConfig::default()
        };
        let mut loader = Loader::epoch(source(), &cfg, 0).unwrap();
        let first = loader.next().unwrap().unwrap();
        assert_eq!(
            first.pixel_mask.iter().filter(|&&v| v == 1).count(),
            24 * 20
        );
        drop(loader);
    }
}
