//! The data-parallel parts of a training step (see [`super::collective`]): the rank's data
//! shard, the criterion with the ranks' normalisers and per-image points, the gradients averaged
//! between the backward and the optimizer, the parameter broadcast and checksum comparison.
//! With one process ([`super::Solo`]) each is the single-process step.

use super::data::Shard;
use super::grad_sync::{self, GradSync};
use super::timeline::{Laps, StepTimes};
use super::trainer::{mix, Trainer};
use super::{Result, TrainError};
use crate::graph::Executable;
use crate::model::criterion::{ImagePoints, ImageTargets, LossOutput, Normalisers};
use crate::optim::{AdamW, AdamWConfig, GroupConfig};
use crate::runtime::Dispatch;
use crate::Runtime;

/// What a data-parallel rank runs between the backward and the next step.
pub(super) struct Parallel {
    sync: GradSync,
    optimizer: Vec<Dispatch>,
}

impl Parallel {
    /// The optimizer of a data-parallel rank, whose dispatches run after the all-reduce rather
    /// than in the executable's second phase, and the all-reduce's buffers.
    pub(super) fn attach(
        rt: &Runtime,
        train: &Executable,
        adam: &AdamWConfig,
        groups: &GroupConfig,
    ) -> Result<(AdamW, Self)> {
        let (params, grads) = train.arenas().expect("compiled for training");
        let trainables = train.trainables();
        let (opt, optimizer) = AdamW::new(rt, params, grads, &trainables, adam, groups)?;
        let sync = GradSync::new(rt, grads);
        Ok((opt, Self { sync, optimizer }))
    }
}

impl Trainer {
    /// Overwrites every rank's parameters with rank 0's (a no-op in one process).
    pub(super) fn broadcast_params(&self) -> Result<()> {
        if self.group.world() > 1 {
            let (params, _) = self.train.arenas().expect("compiled for training");
            grad_sync::broadcast_params(&self.rt, params, self.group.as_ref())?;
        }
        Ok(())
    }

    /// This process's rank and the number of ranks (0 and 1 in a single process).
    pub fn rank(&self) -> (usize, usize) {
        (self.group.rank(), self.group.world())
    }

    /// This rank's share of the training data.
    pub(super) fn shard(&self) -> Shard {
        Shard {
            rank: self.group.rank(),
            world: self.group.world(),
        }
    }

    /// The criterion of a training step: points drawn per image (seeded by the image's place
    /// in the global batch, so they do not depend on how the ranks split it); with several
    /// ranks, the normalisers summed over them and the loss and its terms averaged over them.
    pub(super) fn train_loss(
        &self,
        host: &[Vec<f32>],
        targets: &[ImageTargets],
        step: u64,
    ) -> Result<LossOutput> {
        let (shard, step_seed) = (self.shard(), mix(self.cfg.seed, step));
        let seeds = (0..targets.len()).map(|i| mix(step_seed, shard.global_index(i) as u64));
        let mut points = ImagePoints::new(seeds);
        let world = self.group.world();
        let norm = (world > 1).then(|| {
            let local = Normalisers::of_batch(self.criterion.config(), self.shape.queries, targets);
            let mut sum = [0.0; 2];
            self.group
                .sum_f64(&[local.num_masks, local.class_weight], &mut sum);
            let total = Normalisers {
                num_masks: sum[0],
                class_weight: sum[1],
            };
            Normalisers::per_rank(total, world)
        });
        let mut out = self.criterion_of(host, targets, &mut points, norm)?;
        if world > 1 {
            // The global batch's loss: the mean of the ranks' (each divided by the global
            // normalisers over the ranks).
            let mut local = vec![out.total];
            local.extend(out.terms.iter().map(|t| t.1));
            let mut sum = vec![0.0; local.len()];
            self.group.sum_f64(&local, &mut sum);
            out.total = sum[0] / world as f64;
            for (t, v) in out.terms.iter_mut().zip(&sum[1..]) {
                t.1 = v / world as f64;
            }
        }
        Ok(out)
    }

    /// Data-parallel ranks, after the backward: the gradients averaged over the ranks, then
    /// the optimizer (gradient norm, clipping, AdamW) on the averaged gradients, identically on
    /// every rank. The backward's wait is part of `times.backward`; the all-reduce has its own.
    pub(super) fn average_and_update(
        &mut self,
        timed: bool,
        times: &mut StepTimes,
        laps: &mut Laps,
    ) -> Result<()> {
        let dp = self.parallel.as_mut().expect("data-parallel run");
        self.rt.sync()?;
        times.backward = laps.lap();
        let (_, grads) = self.train.arenas().expect("compiled for training");
        times.allreduce = Some(dp.sync.average(&self.rt, grads, self.group.as_ref())?);
        laps.lap();
        if timed {
            let optimizer: std::time::Duration = self.rt.run_timed(&dp.optimizer)?.iter().sum();
            if let Some(d) = &mut times.device {
                d.optimizer = optimizer;
            }
        } else {
            self.rt.run(&dp.optimizer);
        }
        Ok(())
    }

    /// Data-parallel ranks, every `checksum_every` steps: the ranks' parameters must be equal
    /// (they start equal and apply the same update); a mismatch stops the run.
    pub(super) fn compare_checksums(&self, step: u64) -> Result<()> {
        let every = self.cfg.checksum_every;
        if self.group.world() == 1 || every == 0 || !(step + 1).is_multiple_of(every) {
            return Ok(());
        }
        let (params, _) = self.train.arenas().expect("compiled for training");
        let mine = grad_sync::checksum(&self.rt, params)?;
        let (lo, hi) = self.group.min_max(mine);
        if lo != hi {
            return Err(TrainError::Diverged {
                step,
                rank: self.group.rank(),
                checksum: mine,
                range: (lo, hi),
            });
        }
        Ok(())
    }
}
