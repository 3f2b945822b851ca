//! The training step with the criterion on the device (`TrainConfig::device_criterion`): the
//! executable's first phase runs the forward and the matcher's costs; the host solves the
//! assignments (`lsap`) from those small matrices and uploads, per query, its target plane and
//! loss weights; the second phase draws and selects the points, computes the losses, runs the
//! backward from their total, then AdamW. Nothing of the logits' size crosses the bus: read back
//! are B·Q·T costs per prediction and the loss terms; uploaded are the pixels, the target masks
//! [B, T, H, W] (bit-packed) with their classes, the seed and B·Q·6 words per prediction.
//!
//! Determinism as on the host path: the points of step `s` are drawn from `mix(seed, s)` by a
//! counter hash, so a resumed run draws what the uninterrupted one drew.

use super::timeline::{DeviceTimes, Laps, StepTimes};
use super::trainer::mix;
use super::Result;
use crate::graph::{Executable, Graph, HostData, Value};
use crate::model::criterion::device::{
    attach_drawn_criterion, drawn_loss_input_names, match_targets, solve_costs, LossTerms,
    LossWeights, MatchShape, MATCH_TARGET_CLASSES, MATCH_TARGET_MASKS, POINTS_SEED,
};
use crate::model::criterion::{Criterion, ImageTargets, PredictionShape};
use crate::model::network::{Network, PIXEL_VALUES};

/// The criterion's nodes in the training graph.
pub(super) struct DeviceCriterion {
    match_shape: MatchShape,
    /// Indices (network order) of the predictions the loss uses: all with deep supervision,
    /// else the last.
    used: Vec<usize>,
    costs: Vec<Value>,
    pub(super) total: Value,
    terms: Vec<LossTerms>,
}

/// What the device criterion moved and found in one step.
pub(super) struct DeviceLoss {
    pub(super) total: f64,
    pub(super) terms: Vec<(String, f64)>,
}

impl DeviceCriterion {
    /// Adds the criterion on `net`'s predictions, `max_targets` target slots per image of
    /// `image_size`² pixels, and the backward from its total.
    pub(super) fn attach(
        g: &mut Graph,
        net: &Network,
        shape: PredictionShape,
        crit: &Criterion,
        max_targets: usize,
        image_size: usize,
    ) -> Result<Self> {
        let last = net.predictions.len() - 1;
        let used: Vec<usize> = if crit.config().auxiliary {
            (0..=last).collect()
        } else {
            vec![last]
        };
        let preds: Vec<(Value, Value)> = used
            .iter()
            .map(|&k| {
                let p = &net.predictions[k];
                (p.class_logits, p.mask_logits)
            })
            .collect();
        let match_shape = MatchShape {
            points: crit.config().num_points,
            max_targets,
            target_height: image_size,
            target_width: image_size,
        };
        let (costs, total, terms) = attach_drawn_criterion(g, &preds, shape, match_shape, crit)?;
        g.backward(total)?;
        Ok(Self {
            match_shape,
            used,
            costs,
            total,
            terms,
        })
    }

    /// Values the executable must keep as outputs: the costs (read between the phases), the
    /// total and the terms.
    pub(super) fn outputs(&self) -> Vec<Value> {
        let mut v = self.costs.clone();
        v.push(self.total);
        for t in &self.terms {
            v.extend([t.cross_entropy, t.mask, t.dice]);
        }
        v
    }

    /// The inputs set between the phases (they start the second).
    pub(super) fn second_phase_inputs(&self) -> Vec<String> {
        (0..self.used.len())
            .flat_map(|k| {
                let n = drawn_loss_input_names(k);
                [
                    n.row_targets,
                    n.mask_weights,
                    n.class_targets,
                    n.class_weights,
                ]
            })
            .collect()
    }

    pub(super) fn costs(&self) -> &[Value] {
        &self.costs
    }

    /// Zero targets and seed, so the first phase can run before any step set them (a
    /// validation pass right after a resume).
    pub(super) fn init_inputs(&self, exe: &mut Executable, batch: usize) -> Result<()> {
        let m = self.match_shape;
        let n = batch * m.max_targets;
        let words = (n * m.target_height * m.target_width).div_ceil(32);
        exe.set_input(MATCH_TARGET_MASKS, HostData::U32(&vec![0; words]))?;
        exe.set_input(MATCH_TARGET_CLASSES, HostData::U32(&vec![0; n]))?;
        exe.set_input(POINTS_SEED, HostData::U32(&[0, 0]))?;
        Ok(())
    }

    /// Before the first phase: the step's targets and seed. Returns the bytes uploaded.
    pub(super) fn set_targets(
        &self,
        exe: &mut Executable,
        targets: &[ImageTargets],
        seed: u64,
    ) -> Result<u64> {
        let (masks, classes) = match_targets(targets, self.match_shape)?;
        exe.set_input(MATCH_TARGET_MASKS, HostData::U32(&masks))?;
        exe.set_input(MATCH_TARGET_CLASSES, HostData::U32(&classes))?;
        exe.set_input(
            POINTS_SEED,
            HostData::U32(&[seed as u32, (seed >> 32) as u32]),
        )?;
        Ok(4 * (masks.len() + classes.len() + 2) as u64)
    }

    /// Between the phases: solves every prediction's matching from its costs `cost[k]` and sets
    /// the loss inputs. Returns the bytes uploaded.
    pub(super) fn set_matching(
        &self,
        exe: &mut Executable,
        crit: &Criterion,
        shape: PredictionShape,
        targets: &[ImageTargets],
        cost: &[Vec<f32>],
    ) -> Result<u64> {
        let t = self.match_shape.max_targets;
        let num_masks = (targets.iter().map(|t| t.len()).sum::<usize>() as f64).max(1.0);
        let mut bytes = 0;
        for (k, c) in cost.iter().enumerate() {
            let matches = solve_costs(c, shape, t, targets)?;
            let w = LossWeights::new(crit, shape, targets, &matches, t, num_masks);
            let n = drawn_loss_input_names(k);
            exe.set_input(&n.row_targets, HostData::U32(&w.row_targets))?;
            exe.set_input(&n.mask_weights, HostData::F32(&w.mask_weights))?;
            exe.set_input(&n.class_targets, HostData::U32(&w.class_targets))?;
            exe.set_input(&n.class_weights, HostData::F32(&w.class_weights))?;
            bytes += 4 * (w.row_targets.len() * 2 + w.mask_weights.len() + w.class_weights.len());
        }
        Ok(bytes as u64)
    }

    /// After the second phase: the total and the weighted terms, named as transformers names
    /// them (the final prediction's unsuffixed first, then auxiliary `_i`).
    pub(super) fn read_loss(&self, exe: &Executable) -> Result<DeviceLoss> {
        let scalar = |v: Value| -> Result<f64> { Ok(exe.read(v)?[0] as f64) };
        let total = scalar(self.total)?;
        let last = *self.used.last().expect("one prediction at least");
        let mut order: Vec<usize> = vec![self.used.len() - 1];
        order.extend(0..self.used.len() - 1);
        let mut terms = Vec::with_capacity(3 * order.len());
        for i in order {
            let k = self.used[i];
            let suffix = if k == last {
                String::new()
            } else {
                format!("_{k}")
            };
            let t = self.terms[i];
            terms.push((format!("loss_mask{suffix}"), scalar(t.mask)?));
            terms.push((format!("loss_dice{suffix}"), scalar(t.dice)?));
            terms.push((
                format!("loss_cross_entropy{suffix}"),
                scalar(t.cross_entropy)?,
            ));
        }
        Ok(DeviceLoss { total, terms })
    }
}

impl super::trainer::Trainer {
    /// The device criterion's step: targets and seed set, the forward and the matcher's costs
    /// run, the costs read back and solved, the matching uploaded, then the losses, the backward
    /// and AdamW. Returns the loss and its terms; the second phase has run.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn device_phases(
        &mut self,
        pixels: &[f32],
        targets: &[ImageTargets],
        step: u64,
        lr: f64,
        timed: bool,
        times: &mut StepTimes,
        laps: &mut Laps,
    ) -> Result<(f64, Vec<(String, f64)>)> {
        let dc = self.device.as_ref().expect("device criterion");
        self.train.set_input(PIXEL_VALUES, HostData::F32(pixels))?;
        let mut uploaded = 4 * pixels.len() as u64;
        uploaded += dc.set_targets(&mut self.train, targets, mix(self.cfg.seed, step))?;
        let mut forward_profile = None;
        if timed {
            forward_profile = Some(self.train.run_first_phase_timed()?);
        } else {
            self.train.run_first_phase()?;
            self.rt.sync()?;
        }
        times.forward = laps.lap();
        let costs: Vec<Vec<f32>> = dc
            .costs()
            .iter()
            .map(|&v| self.train.read(v))
            .collect::<crate::graph::Result<_>>()?;
        let mut read = 4 * costs.iter().map(Vec::len).sum::<usize>() as u64;
        times.readback = laps.lap();
        uploaded += dc.set_matching(
            &mut self.train,
            &self.criterion,
            self.shape,
            targets,
            &costs,
        )?;
        times.criterion = laps.lap();
        self.opt.begin_step(lr);
        if timed {
            let (backward, optimizer) = self.train.run_second_phase_timed()?;
            let forward = forward_profile.unwrap_or_default();
            times.device = Some(DeviceTimes::from_profiles(&forward, &backward, &optimizer));
        } else {
            self.train.run_second_phase()?;
        }
        let loss = dc.read_loss(&self.train)?;
        read += 4 * (1 + loss.terms.len()) as u64;
        times.bytes_read = read;
        times.bytes_uploaded = uploaded;
        Ok((loss.total, loss.terms))
    }
}
