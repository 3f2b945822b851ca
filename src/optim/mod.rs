//! Training-side optimisation: AdamW with parameter groups as one fused kernel per parameter,
//! global gradient-norm clipping computed on the device, and learning-rate schedules.
//!
//! The optimizer's dispatches are appended to the training graph's, so forward, backward,
//! gradient norm and update are one submit per step:
//!
//! ```ignore
//! let mut exe = Executable::compile(rt, &g, &[loss], &CompileOptions::training())?;
//! let mut opt = AdamW::attach(&mut exe, &AdamWConfig::default(), &GroupConfig::mask2former())?;
//! for step in 0..total {
//!     opt.begin_step(schedule.lr(step));
//!     exe.set_input("pixel_values", &batch)?;
//!     exe.run()?;
//! }
//! ```

mod adamw;
mod clip;
mod schedule;

pub use adamw::{
    adamw_reference, AdamW, AdamWConfig, GroupConfig, Moments, OptimizerState, ParamState,
};
pub use clip::{clip_coefficient, global_norm_reference, GradNorm};
pub use schedule::{Decay, LrSchedule, Warmup};

use thiserror::Error;

/// Errors from setting up or running the optimizer.
#[derive(Debug, Error)]
pub enum OptimError {
    #[error("optimizer: {what} = {value} is invalid ({reason})")]
    Config {
        what: &'static str,
        value: String,
        reason: &'static str,
    },

    #[error("optimizer: parameter `{name}` is {param:?} but its gradient is {grad:?}")]
    GradShape {
        name: String,
        param: Vec<usize>,
        grad: Vec<usize>,
    },

    #[error("optimizer state of `{name}`: {reason}")]
    State { name: String, reason: String },

    #[error("optimizer: no parameter named `{0}`")]
    UnknownParam(String),

    #[error(transparent)]
    Runtime(#[from] crate::Error),
}

pub type Result<T, E = OptimError> = std::result::Result<T, E>;

/// Splits `n` elements into chunks that fit one storage binding (offsets stay 256-byte aligned).
pub(crate) fn binding_chunks(n: usize, max_binding_bytes: u64) -> Vec<(usize, usize)> {
    let max = ((max_binding_bytes / 4) as usize & !63).max(64);
    (0..n.div_ceil(max))
        .map(|c| (c * max, (n - c * max).min(max)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::binding_chunks;

    #[test]
    fn chunks_cover_exactly_and_stay_aligned() {
        for (n, max) in [
            (0usize, 1024u64),
            (1, 1024),
            (256, 1024),
            (257, 1024),
            (10_000, 4096),
        ] {
            let c = binding_chunks(n, max);
            let total: usize = c.iter().map(|x| x.1).sum();
            assert_eq!(total, n);
            for (i, (start, len)) in c.iter().enumerate() {
                assert!(*len as u64 * 4 <= max.max(256));
                assert_eq!(start % 64, 0);
                if i > 0 {
                    assert_eq!(*start, c[i - 1].0 + c[i - 1].1);
                }
            }
        }
    }
}
