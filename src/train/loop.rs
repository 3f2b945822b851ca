//! The training loop: data order, the two executables, the criterion, the optimizer, metrics,
//! checkpoints, and exact resume.
//!
//! Determinism (what resume relies on): the batch of step `s` is a pure function of
//! `(seed, s)` (epoch `s / batches_per_epoch`, position `s % batches_per_epoch` in that epoch's
//! seeded permutation, augmentation seeded per sample), and so are the criterion's random points
//! (seeded from `(seed, s)`). A checkpoint stores the parameters, the AdamW moments and step
//! counter; nothing else carries state from one step to the next.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::checkpoint::{self, Saved, TrainState};
use super::init::init_params;
use super::metrics::MetricsLog;
use super::{Result, TrainError};
use crate::data::augment::AugmentConfig;
use crate::data::coco_instance::CocoInstance;
use crate::data::coco_panoptic::CocoPanoptic;
use crate::data::loader::{build_batch, epoch_order, Batch, LoaderConfig, SampleSource};
use crate::data::semantic::SemanticFolder;
use crate::data::{synthetic, Category};
use crate::graph::{CompileOptions, Executable, Graph, HostData, ParamKind, Value};
use crate::model::checkpoint::{expected_keys, Checkpoint, HostTensor};
use crate::model::config::Mask2FormerConfig;
use crate::model::criterion::{
    attach_logit_gradients, seed_names, Criterion, CriterionConfig, ImageTargets, Logits,
    LossOutput, PredictionShape, RandomPoints,
};
use crate::model::network::{self, PIXEL_VALUES};
use crate::model::preprocess::PreprocessConfig;
use crate::optim::{AdamW, AdamWConfig, Decay, GroupConfig, LrSchedule, Warmup};
use crate::Runtime;

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

/// Settings of a run (all of the paper's recipe is here and configurable).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// `synthetic`, `coco-panoptic:<DIR>`, `coco-instance:<DIR>` or `semantic:<DIR>`.
    pub data: String,
    pub steps: u64,
    pub batch_size: usize,
    pub lr: f64,
    /// Square LSJ crop size (a multiple of 32).
    pub image_size: usize,
    pub lsj_min_scale: f64,
    pub lsj_max_scale: f64,
    /// Evaluate every N steps (validation loss; with synthetic data also PQ); 0: never.
    pub eval_every: u64,
    /// Images of the synthetic validation split (`evaluate --data synthetic:N`) scored for PQ
    /// at each evaluation; 0: validation loss only.
    #[serde(default = "default_pq_images")]
    pub pq_images: usize,
    /// Write a checkpoint every N steps (and at the end); 0: only at the end.
    pub checkpoint_every: u64,
    pub seed: u64,
    pub weight_decay: f64,
    /// Learning-rate multiplier of the Swin backbone.
    pub backbone_lr_multiplier: f64,
    /// Full-model gradient clipping (L2); `None`: off.
    pub clip_grad_norm: Option<f64>,
    pub warmup_iters: u64,
    pub warmup_factor: f64,
    /// Multiply the learning rate by `lr_decay_gamma` at these fractions of the steps.
    pub lr_decay_fractions: Vec<f64>,
    pub lr_decay_gamma: f64,
    /// Override of the config's `train_num_points`.
    pub num_points: Option<usize>,
    pub loader_workers: usize,
}

fn default_pq_images() -> usize {
    crate::eval::SYNTHETIC_VAL_COUNT
}

impl Default for TrainConfig {
    /// The paper's recipe (Mask2Former COCO), at a small image size.
    fn default() -> Self {
        Self {
            data: "synthetic".into(),
            steps: 200,
            batch_size: 2,
            lr: 1e-4,
            image_size: 160,
            lsj_min_scale: 0.1,
            lsj_max_scale: 2.0,
            eval_every: 0,
            pq_images: default_pq_images(),
            checkpoint_every: 100,
            seed: 0,
            weight_decay: 0.05,
            backbone_lr_multiplier: 0.1,
            clip_grad_norm: Some(0.01),
            warmup_iters: 10,
            warmup_factor: 1.0,
            lr_decay_fractions: vec![0.9, 0.95],
            lr_decay_gamma: 0.1,
            num_points: None,
            loader_workers: 1,
        }
    }
}

impl TrainConfig {
    fn validate(&self) -> Result<()> {
        let bad = |what, value: String, reason: &str| {
            Err(TrainError::Setting {
                what,
                value,
                reason: reason.into(),
            })
        };
        if self.image_size < 32 || !self.image_size.is_multiple_of(32) {
            return bad(
                "image_size",
                self.image_size.to_string(),
                "must be a positive multiple of 32",
            );
        }
        if self.batch_size == 0 {
            return bad("batch_size", "0".into(), "must be at least 1");
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad("lr", self.lr.to_string(), "must be positive");
        }
        DataSpec::from_str(&self.data)?;
        Ok(())
    }

    pub fn schedule(&self) -> LrSchedule {
        LrSchedule {
            base_lr: self.lr,
            total_steps: self.steps,
            warmup: (self.warmup_iters > 0).then_some(Warmup::Linear {
                iters: self.warmup_iters,
                start_factor: self.warmup_factor,
            }),
            decay: Decay::Steps {
                fractions: self.lr_decay_fractions.clone(),
                gamma: self.lr_decay_gamma,
            },
        }
    }

    /// Mask2Former's `build_optimizer`: no weight decay on norms, embeddings and
    /// relative-position tables (biases are decayed, as detectron2 does by default).
    pub fn groups(&self) -> GroupConfig {
        GroupConfig {
            weight_decay: self.weight_decay,
            no_decay: vec![
                ParamKind::Norm,
                ParamKind::Embedding,
                ParamKind::PositionTable,
            ],
            lr_multipliers: vec![(
                "model.pixel_level_module.encoder.".into(),
                self.backbone_lr_multiplier,
            )],
        }
    }

    fn loader(&self) -> LoaderConfig {
        LoaderConfig {
            batch_size: self.batch_size,
            workers: 1,
            prefetch: 2,
            shuffle: true,
            drop_last: true,
            seed: self.seed,
            augment: Some(AugmentConfig {
                min_scale: self.lsj_min_scale,
                max_scale: self.lsj_max_scale,
                ..AugmentConfig::lsj(self.image_size)
            }),
        }
    }
}

/// How the weights start.
#[derive(Clone, Debug)]
pub enum Init {
    /// Random (see [`super::init`]).
    Scratch,
    /// A checkpoint folder (`model.safetensors`), for fine-tuning.
    From(PathBuf),
}

/// What one step did.
#[derive(Clone, Debug)]
pub struct StepReport {
    /// The step just completed (0-based).
    pub step: u64,
    pub loss: f64,
    pub terms: Vec<(String, f64)>,
    pub lr: f64,
    pub grad_norm: f64,
    pub seconds: f64,
    pub images_per_second: f64,
}

fn mix(a: u64, b: u64) -> u64 {
    let mut z = a ^ b.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

type Source = (Arc<dyn SampleSource>, Option<Vec<Category>>);

/// Locks `<run>/.lock` so that a second `train` on the same run folder (say, a `--resume`
/// while the first still runs) stops instead of interleaving checkpoints and metrics.
fn lock_run_dir(run_dir: &Path) -> Result<std::fs::File> {
    let path = run_dir.join(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| super::file_err(&path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(TrainError::Setting {
            what: "run folder",
            value: run_dir.display().to_string(),
            reason: "another train process is using it (stop that one first)".into(),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(super::file_err(&path, e)),
    }
}

fn open_source(spec: &DataSpec, seed: u64, image_size: usize, val: bool) -> Result<Source> {
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
struct Prefetch {
    rx: Option<Receiver<(u64, std::result::Result<Batch, crate::data::DataError>)>>,
    handle: Option<JoinHandle<()>>,
}

impl Prefetch {
    fn start(source: Arc<dyn SampleSource>, cfg: LoaderConfig, start: u64, end: u64) -> Self {
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

    fn next(&mut self, step: u64) -> Result<Batch> {
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

/// A training run.
pub struct Trainer {
    rt: Runtime,
    cfg: TrainConfig,
    model: Mask2FormerConfig,
    categories: Option<Vec<Category>>,
    source: Arc<dyn SampleSource>,
    val: Option<Arc<dyn SampleSource>>,
    fwd_outputs: Vec<Value>,
    train: Executable,
    opt: AdamW,
    criterion: Criterion,
    schedule: LrSchedule,
    shape: PredictionShape,
    step: u64,
    run_dir: PathBuf,
    metrics: MetricsLog,
    /// Held for the trainer's lifetime: one process per run folder.
    _lock: std::fs::File,
    prefetch: Option<Prefetch>,
    last_pq: Option<f64>,
    /// Step and folder of the last checkpoint written, so one step is not saved twice (a PQ
    /// evaluation writes the checkpoint it scores).
    saved: std::cell::RefCell<Option<(u64, PathBuf)>>,
    params: Vec<(String, Vec<usize>, ParamKind)>,
}

impl Trainer {
    /// A new run in `run_dir` (created), starting from `init`.
    pub fn new(
        rt: &Runtime,
        cfg: TrainConfig,
        model: Mask2FormerConfig,
        init: Init,
        run_dir: &Path,
    ) -> Result<Self> {
        std::fs::create_dir_all(run_dir).map_err(|e| super::file_err(run_dir, e))?;
        let mut t = Self::build(rt, cfg, model, run_dir, None)?;
        let weights: BTreeMap<String, HostTensor> = match &init {
            Init::Scratch => {
                let heads = t.model.num_attention_heads;
                let seed = t.cfg.seed;
                t.params
                    .iter()
                    .zip(init_params(&t.params, heads, seed))
                    .map(|((name, shape, _), data)| {
                        (
                            name.clone(),
                            HostTensor {
                                shape: shape.clone(),
                                data,
                            },
                        )
                    })
                    .collect()
            }
            Init::From(dir) => Checkpoint::load(&dir.join("model.safetensors"))?
                .tensors()
                .clone(),
        };
        t.set_weights(&weights)?;
        std::fs::write(
            run_dir.join("train_config.json"),
            serde_json::to_string_pretty(&t.cfg).expect("plain data serialises"),
        )
        .map_err(|e| super::file_err(run_dir, e))?;
        Ok(t)
    }

    /// Continues the run in `run_dir` from its newest checkpoint: same step, optimizer state and
    /// data order. `steps` may raise the total.
    pub fn resume(rt: &Runtime, run_dir: &Path, steps: Option<u64>) -> Result<Self> {
        let saved = checkpoint::load(run_dir)?;
        let mut cfg: TrainConfig = serde_json::from_value(saved.state.settings.clone())
            .map_err(|e| TrainError::Resume(format!("train_state.json settings: {e}")))?;
        if let Some(s) = steps {
            cfg.steps = s;
        }
        let mut t = Self::build(
            rt,
            cfg,
            saved.config.clone(),
            run_dir,
            Some(saved.state.step),
        )?;
        t.set_weights(&saved.params)?;
        for s in t.opt.states() {
            for (prefix, tensor) in [("exp_avg", &s.m), ("exp_avg_sq", &s.v)] {
                let key = format!("{prefix}.{}", s.name);
                let m = saved
                    .moments
                    .get(&key)
                    .ok_or_else(|| TrainError::Resume(format!("optimizer state has no `{key}`")))?;
                if m.data.len() != tensor.numel() {
                    return Err(TrainError::Resume(format!(
                        "`{key}` has {} values, the parameter {}",
                        m.data.len(),
                        tensor.numel()
                    )));
                }
                rt.queue()
                    .write_buffer(tensor.buffer(), 0, bytemuck::cast_slice(&m.data));
            }
        }
        t.opt.set_step(saved.state.adam_step);
        t.step = saved.state.step;
        Ok(t)
    }

    fn build(
        rt: &Runtime,
        cfg: TrainConfig,
        model: Mask2FormerConfig,
        run_dir: &Path,
        resume_at: Option<u64>,
    ) -> Result<Self> {
        cfg.validate()?;
        model.validate()?;
        let lock = lock_run_dir(run_dir)?;
        let spec = DataSpec::from_str(&cfg.data)?;
        let (source, categories) = open_source(&spec, cfg.seed, cfg.image_size, false)?;
        if let Some(c) = &categories {
            if c.len() != model.num_labels() {
                return Err(TrainError::Setting {
                    what: "model config",
                    value: format!("{} labels", model.num_labels()),
                    reason: format!("the dataset has {} categories", c.len()),
                });
            }
        }
        let val = match spec {
            DataSpec::Synthetic => Some(open_source(&spec, cfg.seed, cfg.image_size, true)?.0),
            _ => None,
        };
        let (b, s) = (cfg.batch_size, cfg.image_size);

        // One executable, run in two phases: the forward (whose logits the host matches and
        // scores), then the backward seeded with the loss gradients of those logits, and AdamW.
        let mut g = Graph::new();
        let net = network::build(&mut g, &model, b, s, s)?;
        let mut fwd_outputs = Vec::new();
        for p in &net.predictions {
            fwd_outputs.push(p.class_logits);
            fwd_outputs.push(p.mask_logits);
        }
        let seed = attach_logit_gradients(&mut g, &net.predictions)?;
        g.backward(seed)?;
        let mut outputs = vec![seed];
        outputs.extend(&fwd_outputs);
        let mut train = Executable::compile(rt, &g, &outputs, &CompileOptions::training())?;
        let seed_inputs: Vec<String> = (0..net.predictions.len())
            .flat_map(|k| {
                let (c, m) = seed_names(k);
                [c, m]
            })
            .collect();
        let seed_refs: Vec<&str> = seed_inputs.iter().map(String::as_str).collect();
        train.split_before_inputs(&g, &seed_refs, &fwd_outputs)?;
        let params: Vec<(String, Vec<usize>, ParamKind)> = g
            .params()
            .map(|(n, v, k)| (n.to_string(), g.shape(v).to_vec(), k))
            .collect();
        let adam = AdamWConfig {
            max_grad_norm: cfg.clip_grad_norm,
            ..AdamWConfig::default()
        };
        let opt = AdamW::attach(&mut train, &adam, &cfg.groups())?;
        let ms = g.shape(net.last().mask_logits).to_vec();
        let shape = PredictionShape {
            batch: b,
            queries: model.num_queries,
            classes: model.num_labels() + 1,
            height: ms[2],
            width: ms[3],
        };
        let mut crit_cfg = CriterionConfig::from_model(&model);
        if let Some(p) = cfg.num_points {
            crit_cfg.num_points = p;
        }
        let criterion = Criterion::new(crit_cfg, model.num_labels())?;
        let metrics = MetricsLog::open(&run_dir.join("metrics.jsonl"), resume_at)?;
        Ok(Self {
            rt: rt.clone(),
            schedule: cfg.schedule(),
            cfg,
            model,
            categories,
            source,
            val,
            fwd_outputs,
            train,
            opt,
            criterion,
            shape,
            step: 0,
            run_dir: run_dir.to_owned(),
            metrics,
            _lock: lock,
            prefetch: None,
            last_pq: None,
            saved: Default::default(),
            params,
        })
    }

    fn set_weights(&mut self, weights: &BTreeMap<String, HostTensor>) -> Result<()> {
        for (name, shape, _) in &self.params {
            let t = weights.get(name).ok_or_else(|| TrainError::Setting {
                what: "init",
                value: name.clone(),
                reason: "the checkpoint has no such tensor".into(),
            })?;
            // Same element count: the graph may add unit axes the hub layout lacks (queries).
            if t.numel() != shape.iter().product::<usize>() {
                return Err(TrainError::Setting {
                    what: "init",
                    value: name.clone(),
                    reason: format!("shape {:?}, the model needs {shape:?}", t.shape),
                });
            }
            self.train.set_param(name, &t.data)?;
        }
        Ok(())
    }

    pub fn step(&self) -> u64 {
        self.step
    }
    pub fn config(&self) -> &TrainConfig {
        &self.cfg
    }
    pub fn model_config(&self) -> &Mask2FormerConfig {
        &self.model
    }
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }
    pub fn done(&self) -> bool {
        self.step >= self.cfg.steps
    }

    /// The first phase of the training executable (the forward) and its logits.
    fn forward_logits(&mut self, pixels: &[f32]) -> Result<Vec<Vec<f32>>> {
        self.train.set_input(PIXEL_VALUES, HostData::F32(pixels))?;
        self.train.run_first_phase()?;
        Ok(self
            .fwd_outputs
            .iter()
            .map(|&v| self.train.read(v))
            .collect::<crate::graph::Result<Vec<_>>>()?)
    }

    /// Where a non-finite gradient norm comes from, for the error message: the parameters
    /// whose gradient holds a non-finite value, else the largest one (whose square overflowed).
    fn non_finite_grads(&self) -> String {
        let mut bad = Vec::new();
        let mut largest = (0f32, "");
        for (name, _, _) in &self.params {
            let Ok(Some(t)) = self.train.grad(name) else {
                continue;
            };
            let Ok(g) = self.rt.download(t) else {
                continue;
            };
            if g.iter().any(|x| !x.is_finite()) {
                bad.push(name.as_str());
            }
            let m = g.iter().fold(0f32, |a, x| a.max(x.abs()));
            if m > largest.0 {
                largest = (m, name.as_str());
            }
        }
        if bad.is_empty() {
            return format!(
                " (largest gradient: {} with |g| = {:e})",
                largest.1, largest.0
            );
        }
        let shown = bad.iter().take(5).copied().collect::<Vec<_>>().join(", ");
        let more = match bad.len().saturating_sub(5) {
            0 => String::new(),
            n => format!(" and {n} more"),
        };
        format!(" (non-finite gradient in {shown}{more})")
    }

    fn loss_of(
        &self,
        host: &[Vec<f32>],
        targets: &[ImageTargets],
        points_seed: u64,
    ) -> Result<LossOutput> {
        let preds: Vec<Logits> = host
            .chunks(2)
            .map(|c| Logits {
                class_logits: &c[0],
                mask_logits: &c[1],
            })
            .collect();
        Ok(self.criterion.compute(
            self.shape,
            &preds,
            targets,
            &mut RandomPoints::new(points_seed),
        )?)
    }

    /// Runs one training step and logs it to `metrics.jsonl`.
    pub fn train_step(&mut self) -> Result<StepReport> {
        let start = Instant::now();
        let step = self.step;
        if self.prefetch.is_none() {
            self.prefetch = Some(Prefetch::start(
                self.source.clone(),
                self.cfg.loader(),
                step,
                self.cfg.steps.max(step + 1),
            ));
        }
        let batch = self.prefetch.as_mut().expect("started above").next(step)?;
        let (pixels, targets) = batch_inputs(&batch);
        let host = self.forward_logits(&pixels)?;
        let out = self.loss_of(&host, &targets, mix(self.cfg.seed, step))?;
        let last_good = || {
            checkpoint::latest(&self.run_dir)
                .map_or("none (no checkpoint written yet)".into(), |p| {
                    p.display().to_string()
                })
        };
        if !out.total.is_finite() {
            return Err(TrainError::NonFinite {
                step,
                loss: format!("{}", out.total),
                checkpoint: last_good(),
            });
        }
        // The forward's activations are still in place: only the backward and AdamW run now.
        for (k, gr) in out.grads.iter().enumerate() {
            let (cn, mn) = seed_names(k);
            self.train.set_input(&cn, HostData::F32(&gr.class_logits))?;
            self.train.set_input(&mn, HostData::F32(&gr.mask_logits))?;
        }
        let lr = self.schedule.lr(step);
        self.opt.begin_step(lr);
        self.train.run_second_phase()?;
        let grad_norm = self.opt.grad_norm()?;
        if !grad_norm.is_finite() {
            return Err(TrainError::NonFinite {
                step,
                loss: format!(
                    "{} with gradient norm {grad_norm}{}",
                    out.total,
                    self.non_finite_grads()
                ),
                checkpoint: last_good(),
            });
        }
        self.step += 1;
        let seconds = start.elapsed().as_secs_f64();
        let report = StepReport {
            step,
            loss: out.total,
            terms: out.terms,
            lr,
            grad_norm,
            seconds,
            images_per_second: self.cfg.batch_size as f64 / seconds,
        };
        let mut rec = serde_json::json!({
            "step": step,
            "loss": report.loss,
            "lr": lr,
            "grad_norm": grad_norm,
            "step_time": seconds,
            "images_per_s": report.images_per_second,
        });
        for (n, v) in &report.terms {
            rec[n] = serde_json::json!(v);
        }
        self.metrics.write(&rec)?;
        Ok(report)
    }

    /// The loss on the validation images (synthetic data only; fixed points), averaged over
    /// batches, and with `pq_images > 0` the PQ of a checkpoint written now; appended to
    /// `eval.jsonl`.
    pub fn evaluate(&mut self) -> Result<Option<f64>> {
        let Some(val) = self.val.clone() else {
            return Ok(None);
        };
        let mut cfg = self.cfg.loader();
        cfg.shuffle = false;
        cfg.augment = Some(AugmentConfig {
            min_scale: 1.0,
            max_scale: 1.0,
            flip_probability: 0.0,
            ..AugmentConfig::lsj(self.cfg.image_size)
        });
        let n = (val.len() / self.cfg.batch_size).max(1) as u64;
        let mut total = 0.0;
        for i in 0..n {
            let batch = batch_of_step(val.as_ref(), &cfg, i)?;
            let (pixels, targets) = batch_inputs(&batch);
            let host = self.forward_logits(&pixels)?;
            total += self
                .loss_of(&host, &targets, mix(self.cfg.seed ^ 0xE7A1, i))?
                .total;
        }
        let loss = total / n as f64;
        let mut line = serde_json::json!({
            "step": self.step,
            "val_loss": loss,
            "images": n as usize * self.cfg.batch_size,
        });
        self.last_pq = None;
        if self.cfg.pq_images > 0 {
            let pq = self.panoptic_quality()?;
            line["pq"] = pq.all.pq.into();
            line["sq"] = pq.all.sq.into();
            line["rq"] = pq.all.rq.into();
            line["pq_things"] = pq.things.pq.into();
            line["pq_stuff"] = pq.stuff.pq.into();
            line["pq_images"] = self.cfg.pq_images.into();
            self.last_pq = Some(pq.all.pq);
        }
        let path = self.run_dir.join("eval.jsonl");
        let mut log = MetricsLog::open(&path, None)?;
        log.write(&line)?;
        Ok(Some(loss))
    }

    /// PQ (in %) of the last evaluation, when it scored one.
    pub fn last_pq(&self) -> Option<f64> {
        self.last_pq.map(|p| 100.0 * p)
    }

    /// Writes a checkpoint and scores it as `evaluate --data synthetic:N --model <it>` does:
    /// the segmenter with the checkpoint's own pre-processing and the original thresholds.
    fn panoptic_quality(&mut self) -> Result<crate::eval::pq::PqResult> {
        let ckpt = self.save()?;
        let opts = crate::eval::EvalOptions {
            data: crate::eval::DataSpec::Synthetic {
                count: self.cfg.pq_images,
                seed: 0,
            },
            source: crate::eval::Source::Model(ckpt),
            reduce_labels: false,
            num_classes: None,
        };
        let report = crate::eval::run(&opts, &mut |_, _| {}).map_err(|e| TrainError::Setting {
            what: "evaluation",
            value: "PQ on the synthetic validation split".into(),
            reason: e.to_string(),
        })?;
        report.panoptic.ok_or_else(|| TrainError::Setting {
            what: "evaluation",
            value: "PQ on the synthetic validation split".into(),
            reason: "the evaluator returned no panoptic result".into(),
        })
    }

    /// Writes the checkpoint of the current step (atomically).
    pub fn save(&self) -> Result<PathBuf> {
        // Tensors are written in the hub layout's shapes (the graph holds the query embeddings
        // as [1, Q, C], transformers as [Q, C]).
        let hub: std::collections::HashMap<String, Vec<usize>> =
            expected_keys(&self.model).into_iter().collect();
        let mut params = BTreeMap::new();
        for (name, shape, _) in &self.params {
            let data = self.train.read_param(name)?;
            let shape = hub
                .get(name)
                .filter(|s| s.iter().product::<usize>() == data.len())
                .unwrap_or(shape);
            params.insert(name.clone(), HostTensor::new(shape.clone(), data)?);
        }
        let mut moments = BTreeMap::new();
        for s in self.opt.states() {
            for (prefix, t) in [("exp_avg", &s.m), ("exp_avg_sq", &s.v)] {
                let data = self.rt.download(t)?;
                moments.insert(
                    format!("{prefix}.{}", s.name),
                    HostTensor::new(t.shape().to_vec(), data)?,
                );
            }
        }
        let saved = Saved {
            // LSJ at scale 1 fits the image's longer side to the crop: test at that size.
            preprocess: PreprocessConfig {
                shortest_edge: self.cfg.image_size as u32,
                longest_edge: Some(self.cfg.image_size as u32),
                ..PreprocessConfig::default()
            },
            config: self.model.clone(),
            params,
            moments,
            state: TrainState {
                step: self.step,
                adam_step: self.opt.step(),
                settings: serde_json::to_value(&self.cfg).expect("plain data serialises"),
            },
        };
        let path = checkpoint::save(&self.run_dir, &saved, self.categories.as_deref())?;
        *self.saved.borrow_mut() = Some((self.step, path.clone()));
        Ok(path)
    }

    /// Trains until the last step or until `stop` is set (then a checkpoint is written and
    /// the loop returns). Checkpoints every `checkpoint_every` steps and at the end.
    pub fn run(
        &mut self,
        stop: &AtomicBool,
        mut on_step: impl FnMut(&StepReport),
    ) -> Result<PathBuf> {
        while !self.done() {
            if stop.load(Ordering::SeqCst) {
                return self.save();
            }
            let report = self.train_step()?;
            on_step(&report);
            let s = self.step;
            if self.cfg.eval_every > 0 && s.is_multiple_of(self.cfg.eval_every) {
                self.evaluate()?;
            }
            if self.cfg.checkpoint_every > 0
                && s.is_multiple_of(self.cfg.checkpoint_every)
                && !self.done()
                && self.saved_step() != Some(s)
            {
                self.save()?;
            }
        }
        if self.cfg.eval_every > 0 && !self.step.is_multiple_of(self.cfg.eval_every) {
            self.evaluate()?;
        }
        let last = self.saved.borrow().clone();
        match last {
            Some((at, path)) if at == self.step => Ok(path),
            _ => self.save(),
        }
    }

    fn saved_step(&self) -> Option<u64> {
        self.saved.borrow().as_ref().map(|(at, _)| *at)
    }

    /// Reads a parameter (tests).
    pub fn read_param(&self, name: &str) -> Result<Vec<f32>> {
        Ok(self.train.read_param(name)?)
    }

    /// Overwrites a parameter (model surgery, tests); the optimizer state is kept.
    pub fn set_param(&mut self, name: &str, data: &[f32]) -> Result<()> {
        self.train.set_param(name, data)?;
        // The last checkpoint no longer holds these weights.
        *self.saved.borrow_mut() = None;
        Ok(())
    }

    /// Names of all parameters.
    pub fn param_names(&self) -> impl Iterator<Item = &str> + '_ {
        self.params.iter().map(|(n, _, _)| n.as_str())
    }
}
