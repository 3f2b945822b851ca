//! A run's settings: [`TrainConfig`] (the recipe, every number of it configurable), its
//! validation, and what it derives (learning-rate schedule, parameter groups, loader).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use std::str::FromStr;

use super::data::DataSpec;
use super::{Result, TrainError};
use crate::data::augment::AugmentConfig;
use crate::data::loader::LoaderConfig;
use crate::graph::ParamKind;
use crate::optim::{Decay, GroupConfig, LrSchedule, Warmup};

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
    /// Print where a step's time goes every N steps (with device times where the adapter has
    /// timestamps); 0: never. Every step's host times go to `metrics.jsonl` regardless.
    #[serde(default = "default_timeline_every")]
    pub timeline_every: u64,
    /// Run the criterion on the device (matching costs, point sampling, losses; only the cost
    /// matrices go to the host) with this many target slots per image (a batch image with more
    /// targets is an error); `None`: the host criterion.
    #[serde(default)]
    pub device_criterion: Option<usize>,
    /// Data-parallel runs: every N steps the ranks compare a checksum of their parameters and
    /// stop on a mismatch; 0: never. Single-process runs ignore it.
    #[serde(default = "default_checksum_every")]
    pub checksum_every: u64,
}

fn default_checksum_every() -> u64 {
    100
}

fn default_timeline_every() -> u64 {
    100
}

fn default_pq_images() -> usize {
    crate::eval::SYNTHETIC_VAL_COUNT
}

impl Default for TrainConfig {
    /// The paper's recipe (Mask2Former COCO, for fine-tuning a pretrained backbone), at a small
    /// image size; `train --init` uses it.
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
            timeline_every: default_timeline_every(),
            device_criterion: None,
            checksum_every: default_checksum_every(),
        }
    }
}

impl TrainConfig {
    /// A recipe that learns from random weights (how the bundled demo model was trained):
    /// lr 1e-3 with the backbone at ×1 (the paper's 1e-4 and ×0.1 are for fine-tuning a
    /// pretrained backbone and reached PQ 0 from scratch after 300 steps), a 200-step warmup
    /// from 0.01, 1024 points per mask, 128-pixel crops, 1000 steps, PQ every 500.
    pub fn scratch() -> Self {
        Self {
            steps: 1000,
            lr: 1e-3,
            image_size: 128,
            eval_every: 500,
            backbone_lr_multiplier: 1.0,
            warmup_iters: 200,
            warmup_factor: 0.01,
            num_points: Some(1024),
            ..Self::default()
        }
    }

    /// The recipe for a run: [`TrainConfig::scratch`] from random weights, the paper's
    /// ([`TrainConfig::default`]) when fine-tuning a checkpoint.
    pub fn recipe(init: &Init) -> Self {
        match init {
            Init::Scratch => Self::scratch(),
            Init::From(_) => Self::default(),
        }
    }

    /// Checks every setting; errors name the setting and its `train` flag.
    pub fn validate(&self) -> Result<()> {
        // Long: one independent check per setting, in flag order.
        let bad = |what, value: String, reason: &str| {
            Err(TrainError::Setting {
                what,
                value,
                reason: reason.into(),
            })
        };
        let positive = |what, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                bad(what, v.to_string(), "must be a finite number > 0")
            }
        };
        let non_negative = |what, v: f64| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                bad(what, v.to_string(), "must be a finite number >= 0")
            }
        };
        if self.image_size < 32 || !self.image_size.is_multiple_of(32) {
            return bad(
                "image_size (--image-size)",
                self.image_size.to_string(),
                "must be a positive multiple of 32",
            );
        }
        if self.steps == 0 {
            return bad("steps (--steps)", "0".into(), "must be at least 1");
        }
        if self.batch_size == 0 {
            return bad(
                "batch_size (--batch-size)",
                "0".into(),
                "must be at least 1",
            );
        }
        positive("lr (--lr)", self.lr)?;
        positive("lsj_min_scale", self.lsj_min_scale)?;
        positive("lsj_max_scale", self.lsj_max_scale)?;
        if self.lsj_max_scale < self.lsj_min_scale {
            return bad(
                "lsj_max_scale",
                self.lsj_max_scale.to_string(),
                "must be at least lsj_min_scale",
            );
        }
        non_negative("weight_decay (--weight-decay)", self.weight_decay)?;
        non_negative(
            "backbone_lr_multiplier (--backbone-lr-multiplier)",
            self.backbone_lr_multiplier,
        )?;
        if let Some(c) = self.clip_grad_norm {
            positive("clip_grad_norm (--clip-grad-norm; 0 turns it off)", c)?;
        }
        if !(self.warmup_factor.is_finite()
            && self.warmup_factor > 0.0
            && self.warmup_factor <= 1.0)
        {
            return bad(
                "warmup_factor (--warmup-factor)",
                self.warmup_factor.to_string(),
                "must be in (0, 1] (the learning rate starts at factor × lr)",
            );
        }
        for &f in &self.lr_decay_fractions {
            if !(0.0..=1.0).contains(&f) {
                return bad("lr_decay_fractions", f.to_string(), "must be in [0, 1]");
            }
        }
        positive("lr_decay_gamma", self.lr_decay_gamma)?;
        if self.device_criterion == Some(0) {
            return bad(
                "device_criterion (--device-criterion)",
                "0".into(),
                "needs at least one target slot per image",
            );
        }
        if self.num_points == Some(0) {
            return bad(
                "num_points (--num-points)",
                "0".into(),
                "must be at least 1",
            );
        }
        if self.loader_workers == 0 {
            return bad("loader_workers", "0".into(), "must be at least 1");
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

    pub(super) fn loader(&self) -> LoaderConfig {
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
