//! Learning-rate schedules as detectron2 defines them for Mask2Former: linear or constant warmup,
//! then constant, multi-step decay at fractions of the run (COCO: ×0.1 at 88.9% and 96.3%), or
//! polynomial decay (ADE20K: power 0.9).

/// Warmup over the first `iters` steps, multiplying the scheduled rate.
#[derive(Clone, Debug, PartialEq)]
pub enum Warmup {
    /// From `start_factor` up to 1: `start·(1 − α) + α` with `α = step / iters`.
    Linear { iters: u64, start_factor: f64 },
    /// `factor` for the first `iters` steps.
    Constant { iters: u64, factor: f64 },
}

/// The decay after (and under) warmup.
#[derive(Clone, Debug, PartialEq)]
pub enum Decay {
    Constant,
    /// Multiply by `gamma` at each milestone `round(fraction · total_steps)` passed.
    Steps {
        fractions: Vec<f64>,
        gamma: f64,
    },
    /// `(1 − step / total_steps)^power`.
    Poly {
        power: f64,
    },
}

/// A learning rate for every step `0..total_steps`.
#[derive(Clone, Debug, PartialEq)]
pub struct LrSchedule {
    pub base_lr: f64,
    pub total_steps: u64,
    pub warmup: Option<Warmup>,
    pub decay: Decay,
}

impl LrSchedule {
    /// Mask2Former COCO: AdamW 1e-4, linear warmup factor 1.0 over 10 iterations (a no-op kept
    /// for fidelity), ×0.1 at iterations 327778 and 355092 of 368750.
    pub fn mask2former_coco(base_lr: f64, total_steps: u64) -> Self {
        Self {
            base_lr,
            total_steps,
            warmup: Some(Warmup::Linear {
                iters: 10,
                start_factor: 1.0,
            }),
            decay: Decay::Steps {
                fractions: vec![327_778.0 / 368_750.0, 355_092.0 / 368_750.0],
                gamma: 0.1,
            },
        }
    }

    /// The learning rate at (0-based) step `step`.
    pub fn lr(&self, step: u64) -> f64 {
        let decay = match &self.decay {
            Decay::Constant => 1.0,
            Decay::Steps { fractions, gamma } => {
                let passed = fractions
                    .iter()
                    .filter(|f| step >= (*f * self.total_steps as f64).round() as u64)
                    .count();
                gamma.powi(passed as i32)
            }
            Decay::Poly { power } => {
                let frac = step.min(self.total_steps) as f64 / self.total_steps.max(1) as f64;
                (1.0 - frac).powf(*power)
            }
        };
        let warm = match self.warmup {
            Some(Warmup::Linear {
                iters,
                start_factor,
            }) if step < iters => {
                let alpha = step as f64 / iters as f64;
                start_factor * (1.0 - alpha) + alpha
            }
            Some(Warmup::Constant { iters, factor }) if step < iters => factor,
            _ => 1.0,
        };
        self.base_lr * decay * warm
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * b.abs().max(1e-30)
    }

    #[test]
    fn linear_warmup_then_steps() {
        let s = LrSchedule {
            base_lr: 1e-4,
            total_steps: 1000,
            warmup: Some(Warmup::Linear {
                iters: 10,
                start_factor: 0.001,
            }),
            decay: Decay::Steps {
                fractions: vec![0.5, 0.75],
                gamma: 0.1,
            },
        };
        // step 0: 0.001; step 5: 0.001·0.5 + 0.5 = 0.5005; step 10: warmup over.
        assert!(close(s.lr(0), 1e-7));
        assert!(close(s.lr(5), 1e-4 * 0.5005));
        assert!(close(s.lr(10), 1e-4));
        assert!(close(s.lr(499), 1e-4));
        assert!(close(s.lr(500), 1e-5));
        assert!(close(s.lr(749), 1e-5));
        assert!(close(s.lr(750), 1e-6));
        assert!(close(s.lr(999), 1e-6));
    }

    #[test]
    fn poly_and_constant_warmup() {
        let s = LrSchedule {
            base_lr: 2.0,
            total_steps: 100,
            warmup: Some(Warmup::Constant {
                iters: 3,
                factor: 0.25,
            }),
            decay: Decay::Poly { power: 0.9 },
        };
        assert!(close(s.lr(0), 0.5));
        assert!(close(s.lr(2), 2.0 * 0.25 * 0.98f64.powf(0.9)));
        assert!(close(s.lr(50), 2.0 * 0.5f64.powf(0.9)));
        assert_eq!(s.lr(100), 0.0);
        assert_eq!(s.lr(150), 0.0);
    }

    #[test]
    fn coco_milestones() {
        let s = LrSchedule::mask2former_coco(1e-4, 368_750);
        assert!(close(s.lr(0), 1e-4));
        assert!(close(s.lr(327_777), 1e-4));
        assert!(close(s.lr(327_778), 1e-5));
        assert!(close(s.lr(355_092), 1e-6));
    }
}
