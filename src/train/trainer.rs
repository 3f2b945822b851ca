//! The training step: one executable run in two phases (the forward, whose logits the host
//! criterion matches and scores; then the backward seeded with the logits' loss gradients,
//! gradient clipping and AdamW), and the loop over steps with its checkpoints and evaluations.
//!
//! Determinism (what resume relies on): the batch of step `s` is a pure function of
//! `(seed, s)` (see [`super::data`]), and so are the criterion's random points (seeded from
//! `(seed, s)`). A checkpoint stores the parameters, the AdamW moments and step counter;
//! nothing else carries state from one step to the next.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::checkpoint;
use super::collective::Collective;
use super::config::TrainConfig;
use super::data::{batch_inputs, check_labels, open_source, DataSpec, Prefetch};
use super::device_criterion::DeviceCriterion;
use super::metrics::MetricsLog;
use super::parallel::Parallel;
use super::timeline::{DeviceTimes, Laps, StepTimes};
use super::{Result, TrainError};
use crate::data::loader::SampleSource;
use crate::data::Category;
use crate::graph::{CompileOptions, Executable, Graph, HostData, ParamKind, Value};
use crate::model::checkpoint::HostTensor;
use crate::model::config::Mask2FormerConfig;
use crate::model::criterion::{
    attach_logit_gradients, seed_names, Criterion, CriterionConfig, ImageTargets, Logits,
    LossOutput, Normalisers, PointSource, PredictionShape, RandomPoints,
};
use crate::model::network::{self, PIXEL_VALUES};
use crate::optim::{AdamW, AdamWConfig, LrSchedule};
use crate::Runtime;

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
    /// Images of the global batch (all ranks) per second.
    pub images_per_second: f64,
    /// Where the step's time went.
    pub times: StepTimes,
    /// Whether this step is one of the timeline's (every `timeline_every` steps): the CLI
    /// prints its breakdown.
    pub timeline: bool,
}

/// Mixes a seed and a step into the seed of that step's random points (splitmix64).
pub(super) fn mix(a: u64, b: u64) -> u64 {
    let mut z = a ^ b.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A training run.
pub struct Trainer {
    pub(super) rt: Runtime,
    pub(super) cfg: TrainConfig,
    pub(super) model: Mask2FormerConfig,
    pub(super) categories: Option<Vec<Category>>,
    pub(super) source: Arc<dyn SampleSource>,
    pub(super) val: Option<Arc<dyn SampleSource>>,
    /// What was found in the training data, in one line.
    pub(super) data_summary: String,
    pub(super) fwd_outputs: Vec<Value>,
    pub(super) train: Executable,
    pub(super) opt: AdamW,
    pub(super) criterion: Criterion,
    pub(super) schedule: LrSchedule,
    pub(super) shape: PredictionShape,
    pub(super) step: u64,
    pub(super) run_dir: PathBuf,
    /// `None` on data-parallel ranks other than 0 (rank 0 alone writes the run folder).
    pub(super) metrics: Option<MetricsLog>,
    /// Held for the trainer's lifetime by the process writing the run folder.
    pub(super) _lock: Option<std::fs::File>,
    pub(super) prefetch: Option<Prefetch>,
    pub(super) last_pq: Option<f64>,
    /// Step and folder of the last checkpoint written, so one step is not saved twice (a PQ
    /// evaluation writes the checkpoint it scores).
    pub(super) saved: std::cell::RefCell<Option<(u64, PathBuf)>>,
    pub(super) params: Vec<(String, Vec<usize>, ParamKind)>,
    /// The criterion's nodes when it runs on the device (`TrainConfig::device_criterion`).
    pub(super) device: Option<DeviceCriterion>,
    /// The ranks of a data-parallel run ([`super::Solo`]: one process).
    pub(super) group: Box<dyn Collective>,
    /// With more than one rank: the gradient all-reduce and the optimizer's dispatches, run
    /// after it (in one process they are part of the executable's second phase).
    pub(super) parallel: Option<Parallel>,
}

impl Trainer {
    /// The executable, optimizer and criterion of a run in `run_dir` (locked), with unset
    /// weights; [`Trainer::new`] and [`Trainer::resume`] fill them in.
    pub(super) fn build(
        rt: &Runtime,
        cfg: TrainConfig,
        model: Mask2FormerConfig,
        run_dir: &Path,
        lock: Option<std::fs::File>,
        resume_at: Option<u64>,
        group: Box<dyn Collective>,
    ) -> Result<Self> {
        cfg.validate()?;
        model.validate()?;
        if group.world() > 1 && cfg.device_criterion.is_some() {
            return Err(TrainError::Setting {
                what: "device_criterion (--device-criterion)",
                value: format!("{:?} with {} ranks", cfg.device_criterion, group.world()),
                reason: "data-parallel runs use the host criterion (its points and normalisers \
                         are split by image across the ranks); leave the flag out"
                    .into(),
            });
        }
        let data = TrainData::open(&cfg, &model)?;
        let (b, s) = (cfg.batch_size, cfg.image_size);
        let mut crit_cfg = CriterionConfig::from_model(&model);
        if let Some(p) = cfg.num_points {
            crit_cfg.num_points = p;
        }
        let criterion = Criterion::new(crit_cfg, model.num_labels())?;
        let device_crit = cfg.device_criterion.map(|t| (&criterion, t));
        let (g, mut train, fwd_outputs, shape, device) =
            compile_training(rt, &model, b, s, device_crit)?;
        let params: Vec<(String, Vec<usize>, ParamKind)> = g
            .params()
            .map(|(n, v, k)| (n.to_string(), g.shape(v).to_vec(), k))
            .collect();
        let adam = AdamWConfig {
            max_grad_norm: cfg.clip_grad_norm,
            ..AdamWConfig::default()
        };
        let (opt, parallel) = if group.world() > 1 {
            let (opt, p) = Parallel::attach(rt, &train, &adam, &cfg.groups())?;
            (opt, Some(p))
        } else {
            (AdamW::attach(&mut train, &adam, &cfg.groups())?, None)
        };
        let metrics = match group.is_root() {
            true => Some(MetricsLog::open(&run_dir.join("metrics.jsonl"), resume_at)?),
            false => None,
        };
        Ok(Self {
            rt: rt.clone(),
            schedule: cfg.schedule(),
            cfg,
            model,
            categories: data.categories,
            source: data.source,
            val: data.val,
            data_summary: data.summary,
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
            device,
            group,
            parallel,
        })
    }

    pub(super) fn set_weights(&mut self, weights: &BTreeMap<String, HostTensor>) -> Result<()> {
        for (name, shape, _) in &self.params {
            let t = weights.get(name).ok_or_else(|| TrainError::Setting {
                what: "init",
                value: name.clone(),
                reason: "the checkpoint has no such tensor".into(),
            })?;
            // The graph's parameters have their hub shapes (`network::expected_keys`).
            if t.shape != *shape {
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
    /// The device the run trains (and evaluates) on.
    pub fn runtime(&self) -> &Runtime {
        &self.rt
    }
    /// What was found in the training data (images, annotations, classes), in one line.
    pub fn data_summary(&self) -> &str {
        &self.data_summary
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
    pub(super) fn forward_logits(&mut self, pixels: &[f32]) -> Result<Vec<Vec<f32>>> {
        self.train.set_input(PIXEL_VALUES, HostData::F32(pixels))?;
        self.train.run_first_phase()?;
        self.read_logits()
    }

    /// The logits of the last forward (waits for the device).
    fn read_logits(&self) -> Result<Vec<Vec<f32>>> {
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

    pub(super) fn loss_of(
        &self,
        host: &[Vec<f32>],
        targets: &[ImageTargets],
        points_seed: u64,
    ) -> Result<LossOutput> {
        self.criterion_of(host, targets, &mut RandomPoints::new(points_seed), None)
    }

    pub(super) fn criterion_of(
        &self,
        host: &[Vec<f32>],
        targets: &[ImageTargets],
        points: &mut dyn PointSource,
        norm: Option<Normalisers>,
    ) -> Result<LossOutput> {
        let preds: Vec<Logits> = host
            .chunks(2)
            .map(|c| Logits {
                class_logits: &c[0],
                mask_logits: &c[1],
            })
            .collect();
        Ok(self
            .criterion
            .compute_normalised(self.shape, &preds, targets, points, norm)?)
    }

    /// Whether step `step` is on the timeline (every `timeline_every` steps).
    fn timeline_step(&self, step: u64) -> bool {
        let every = self.cfg.timeline_every;
        every > 0 && (step + 1).is_multiple_of(every)
    }

    /// The host criterion's step: the forward, the logits read back and scored on the host,
    /// their gradients uploaded as seeds, then the backward and AdamW. Returns the loss and its
    /// terms; the second phase has run.
    #[allow(clippy::too_many_arguments)]
    fn host_phases(
        &mut self,
        pixels: &[f32],
        targets: &[ImageTargets],
        step: u64,
        lr: f64,
        timed: bool,
        times: &mut StepTimes,
        laps: &mut Laps,
    ) -> Result<(f64, Vec<(String, f64)>)> {
        let mut forward_profile = None;
        self.train.set_input(PIXEL_VALUES, HostData::F32(pixels))?;
        if timed {
            forward_profile = Some(self.train.run_first_phase_timed()?);
        } else {
            self.train.run_first_phase()?;
            self.rt.sync()?;
        }
        times.forward = laps.lap();
        let host = self.read_logits()?;
        times.readback = laps.lap();
        let out = self.train_loss(&host, targets, step)?;
        times.criterion = laps.lap();
        if !out.total.is_finite() {
            // Stop before the update: the caller reports it.
            return Ok((out.total, out.terms));
        }
        // The forward's activations are still in place: only the backward and AdamW run now.
        let mut seeds = 0;
        for (k, gr) in out.grads.iter().enumerate() {
            let (cn, mn) = seed_names(k);
            self.train.set_input(&cn, HostData::F32(&gr.class_logits))?;
            self.train.set_input(&mn, HostData::F32(&gr.mask_logits))?;
            seeds += gr.class_logits.len() + gr.mask_logits.len();
        }
        times.upload = laps.lap();
        self.opt.begin_step(lr);
        if timed {
            let (backward, optimizer) = self.train.run_second_phase_timed()?;
            let forward = forward_profile.unwrap_or_default();
            times.device = Some(DeviceTimes::from_profiles(&forward, &backward, &optimizer));
        } else {
            self.train.run_second_phase()?;
        }
        times.bytes_read = 4 * (host.iter().map(Vec::len).sum::<usize>() + 1) as u64;
        times.bytes_uploaded = 4 * (pixels.len() + seeds) as u64;
        Ok((out.total, out.terms))
    }

    /// Runs one training step and logs it to `metrics.jsonl`.
    pub fn train_step(&mut self) -> Result<StepReport> {
        let mut laps = Laps::start();
        let mut times = StepTimes::default();
        let step = self.step;
        if self.prefetch.is_none() {
            self.prefetch = Some(Prefetch::start(
                self.source.clone(),
                self.cfg.loader(),
                self.shard(),
                step,
                self.cfg.steps.max(step + 1),
            ));
        }
        let batch = self.prefetch.as_mut().expect("started above").next(step)?;
        check_labels(&batch, self.model.num_labels(), &self.cfg.data)?;
        let (pixels, targets) = batch_inputs(&batch);
        times.data = laps.lap();
        // Device times on timeline steps, where the adapter has timestamps (timing every
        // dispatch slows the step a little).
        let timeline = self.timeline_step(step);
        let timed = timeline && self.rt.caps().timestamps;
        let run_dir = self.run_dir.clone();
        let last_good = || {
            checkpoint::latest(&run_dir).map_or("none (no checkpoint written yet)".into(), |p| {
                p.display().to_string()
            })
        };
        let lr = self.schedule.lr(step);
        let (loss, terms) = if self.device.is_some() {
            self.device_phases(&pixels, &targets, step, lr, timed, &mut times, &mut laps)?
        } else {
            self.host_phases(&pixels, &targets, step, lr, timed, &mut times, &mut laps)?
        };
        if !loss.is_finite() {
            return Err(TrainError::NonFinite {
                step,
                loss: format!("{loss}"),
                checkpoint: last_good(),
            });
        }
        if self.parallel.is_some() {
            self.average_and_update(timed, &mut times, &mut laps)?;
        }
        let grad_norm = self.opt.grad_norm()?;
        times.backward += laps.lap();
        if !grad_norm.is_finite() {
            return Err(TrainError::NonFinite {
                step,
                loss: format!(
                    "{loss} with gradient norm {grad_norm}{}",
                    self.non_finite_grads()
                ),
                checkpoint: last_good(),
            });
        }
        self.compare_checksums(step)?;
        self.step += 1;
        let seconds = times.total().as_secs_f64();
        let global_batch = self.cfg.batch_size * self.group.world();
        let report = StepReport {
            step,
            loss,
            terms,
            lr,
            grad_norm,
            seconds,
            images_per_second: global_batch as f64 / seconds,
            times,
            timeline,
        };
        let mut rec = serde_json::json!({
            "step": step,
            "loss": report.loss,
            "lr": lr,
            "grad_norm": grad_norm,
            "step_time": seconds,
            "images_per_s": report.images_per_second,
            "world_size": self.group.world(),
            "global_batch": global_batch,
            "time": report.times.to_json(),
        });
        for (n, v) in &report.terms {
            rec[n] = serde_json::json!(v);
        }
        if let Some(m) = &mut self.metrics {
            m.write(&rec)?;
        }
        Ok(report)
    }

    /// Trains until the last step or until `stop` is set (then a checkpoint is written and
    /// the loop returns). Checkpoints every `checkpoint_every` steps and at the end.
    pub fn run(
        &mut self,
        stop: &AtomicBool,
        mut on_step: impl FnMut(&StepReport),
    ) -> Result<PathBuf> {
        while !self.done() {
            // Every rank stops at the same step when any of them was asked to.
            if self.group.any(stop.load(Ordering::SeqCst)) {
                stop.store(true, Ordering::SeqCst);
                return self.save_and_wait();
            }
            let report = self.train_step()?;
            on_step(&report);
            let s = self.step;
            if self.cfg.eval_every > 0 && s.is_multiple_of(self.cfg.eval_every) {
                self.evaluate()?;
                self.group.barrier();
            }
            if self.cfg.checkpoint_every > 0
                && s.is_multiple_of(self.cfg.checkpoint_every)
                && !self.done()
                && self.saved_step() != Some(s)
            {
                self.save_and_wait()?;
            }
        }
        if self.cfg.eval_every > 0 && !self.step.is_multiple_of(self.cfg.eval_every) {
            self.evaluate()?;
            self.group.barrier();
        }
        let last = self.saved.borrow().clone();
        match last {
            Some((at, path)) if at == self.step => Ok(path),
            _ => self.save_and_wait(),
        }
    }

    /// [`Trainer::save`], then every rank waits until rank 0 has written the checkpoint.
    fn save_and_wait(&self) -> Result<PathBuf> {
        let path = self.save()?;
        self.group.barrier();
        Ok(path)
    }

    pub(super) fn saved_step(&self) -> Option<u64> {
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

/// The training and validation data of a run.
struct TrainData {
    source: Arc<dyn SampleSource>,
    val: Option<Arc<dyn SampleSource>>,
    categories: Option<Vec<Category>>,
    summary: String,
}

impl TrainData {
    /// Opens `cfg.data`, checking its categories against the model's labels.
    fn open(cfg: &TrainConfig, model: &Mask2FormerConfig) -> Result<Self> {
        let spec = DataSpec::from_str(&cfg.data)?;
        let (source, categories, summary) = open_source(&spec, cfg.seed, cfg.image_size, false)?;
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
            DataSpec::Synthetic { .. } => {
                Some(open_source(&spec, cfg.seed, cfg.image_size, true)?.0)
            }
            _ => None,
        };
        Ok(Self {
            source,
            val,
            categories,
            summary,
        })
    }
}

/// The training graph compiled as one executable run in two phases: the forward (whose logits
/// the host matches and scores), then the backward seeded with the loss gradients of those
/// logits; or, with `device` (the criterion and the target slots per image), the forward and the
/// matcher's costs, then the losses and the backward from their total (see
/// [`super::device_criterion`]). AdamW is attached by the caller. Returns the graph, the
/// executable, the forward outputs (class and mask logits of every prediction), the
/// predictions' shape and the device criterion's nodes.
#[allow(clippy::type_complexity)]
fn compile_training(
    rt: &Runtime,
    model: &Mask2FormerConfig,
    b: usize,
    s: usize,
    device: Option<(&Criterion, usize)>,
) -> Result<(
    Graph,
    Executable,
    Vec<Value>,
    PredictionShape,
    Option<DeviceCriterion>,
)> {
    let mut g = Graph::new();
    let net = network::build(&mut g, model, b, s, s)?;
    let ms = g.shape(net.last().mask_logits).to_vec();
    let shape = PredictionShape {
        batch: b,
        queries: model.num_queries,
        classes: model.num_labels() + 1,
        height: ms[2],
        width: ms[3],
    };
    let mut fwd_outputs = Vec::new();
    for p in &net.predictions {
        fwd_outputs.push(p.class_logits);
        fwd_outputs.push(p.mask_logits);
    }
    if let Some((crit, max_targets)) = device {
        let dc = DeviceCriterion::attach(&mut g, &net, shape, crit, max_targets, s)?;
        let mut outputs = dc.outputs();
        outputs.extend(&fwd_outputs);
        let mut train = Executable::compile(rt, &g, &outputs, &CompileOptions::training())?;
        let names = dc.second_phase_inputs();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut between = dc.costs().to_vec();
        between.extend(&fwd_outputs);
        train.split_before_inputs(&g, &refs, &between)?;
        dc.init_inputs(&mut train, b)?;
        return Ok((g, train, fwd_outputs, shape, Some(dc)));
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
    Ok((g, train, fwd_outputs, shape, None))
}
