//! Training-side optimisation: AdamW with parameter groups as one fused launch over the
//! parameter, gradient and moment arenas (per binding-sized window), global gradient-norm
//! clipping computed on the device, and learning-rate schedules.
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
mod reference;
mod schedule;
mod update;

pub use adamw::{AdamW, AdamWConfig, GroupConfig, Moments, OptimizerState, ParamState};
pub use clip::{clip_coefficient, global_norm_reference, GradNorm};
pub use reference::adamw_reference;
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
