//! Evaluation during training: the validation loss on fixed images and points, and the PQ of
//! the current weights scored as `evaluate --model` does, on the trainer's own device.

use super::data::{batch_inputs, batch_of_step};
use super::metrics::MetricsLog;
use super::trainer::{mix, Trainer};
use super::{Result, TrainError};
use crate::data::augment::AugmentConfig;

impl Trainer {
    /// The loss on the validation images (synthetic data only; fixed points), averaged over
    /// batches, and with `pq_images > 0` the PQ of a checkpoint written now; appended to
    /// `eval.jsonl`.
    pub fn evaluate(&mut self) -> Result<Option<f64>> {
        // Data-parallel runs: rank 0 evaluates (the ranks hold the same weights).
        let Some(val) = self.val.clone().filter(|_| self.group.is_root()) else {
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
        let report = crate::eval::run_on(&self.rt, &opts, &mut |_, _| {}).map_err(|e| {
            TrainError::Setting {
                what: "evaluation",
                value: "PQ on the synthetic validation split".into(),
                reason: e.to_string(),
            }
        })?;
        report.panoptic.ok_or_else(|| TrainError::Setting {
            what: "evaluation",
            value: "PQ on the synthetic validation split".into(),
            reason: "the evaluator returned no panoptic result".into(),
        })
    }
}
