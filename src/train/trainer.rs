//! The training step: one executable run in two phases (the forward, whose logits the host
//! criterion matches and scores; then the backward seeded with the logits' loss gradients,
//! gradient clipping and AdamW), and the loop over steps with its checkpoints and evaluations.
//!
//! Determinism (what resume relies on): the batch of step `s` is a pure function of
//! `(seed, s)` (see [`super::data`]), and so are the criterion's random points (seeded from
//! `(seed, s)`). A checkpoint stores the parameters, the AdamW moments and step counter;
//! nothing else carries state from one step to the next.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::checkpoint;
use super::collective::Collective;
use super::config::TrainConfig;
use super::data::{batch_inputs, check_labels, Prefetch};
use super::device_criterion::DeviceCriterion;
use super::metrics::MetricsLog;
use super::parallel::Parallel;
use super::signals;
use super::timeline::{DeviceTimes, Laps, StepTimes};
use super::{Result, TrainError};
use crate::data::loader::SampleSource;
use crate::data::Category;
use crate::graph::{Executable, HostData, ParamKind, Value};
use crate::model::config::Mask2FormerConfig;
use crate::model::criterion::{
    seed_names, Criterion, ImageTargets, Logits, LossOutput, Normalisers, PointSource,
    PredictionShape, RandomPoints,
};
use crate::model::network::PIXEL_VALUES;
use crate::optim::{AdamW, LrSchedule};
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
        // Over ~80 lines: the step's phases in order, each timed for the timeline.
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
            // Every rank stops at the same step when any of them was asked to (signals reach
            // the ranks at different times), so rank 0 saves a step every rank finished and
            // no rank is left waiting in a collective; all then exit with the same status.
            if let Some(sig) = self.stop_requested(stop) {
                stop.store(true, Ordering::SeqCst);
                if let Some(sig) = sig {
                    signals::adopt(sig);
                }
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

    /// Whether any rank's `stop` is set, and the highest signal any rank received (`None`
    /// inside when the stop came from a caller's flag, not a signal): one all-reduce.
    fn stop_requested(&self, stop: &AtomicBool) -> Option<Option<i32>> {
        let mine = match stop.load(Ordering::SeqCst) {
            true => 1 + signals::received().unwrap_or(0).max(0) as u64,
            false => 0,
        };
        match self.group.min_max(mine).1 {
            0 => None,
            1 => Some(None),
            n => Some(Some((n - 1) as i32)),
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
