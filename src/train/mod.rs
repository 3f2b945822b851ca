//! Training Mask2Former end to end: the paper's recipe (AdamW, backbone lr ×0.1, no decay on
//! norms / embeddings / position tables, full-model gradient clipping, step decay), the criterion
//! of [`crate::model::criterion`], a run folder with atomic checkpoints and exact resume.
//!
//! One step:
//! ```text
//! forward executable ──predictions──▶ host criterion (matching, points, losses, dlogits)
//!                                          │ logit gradients as inputs
//! training executable: forward ▶ Σ logits·seed ▶ backward ▶ clip ▶ AdamW   (one submit)
//!                                          │ parameters copied back on the device
//! ```
//! The forward runs twice per step (once to match, once inside the training graph), because
//! an [`Executable`](crate::graph::Executable) runs all its dispatches at once.

pub mod checkpoint;
pub mod init;
pub mod metrics;
#[path = "loop.rs"]
pub mod run;

use std::path::PathBuf;

use thiserror::Error;

use crate::model::checkpoint::CheckpointError;
use crate::model::config::ConfigError;
use crate::model::criterion::CriterionError;

pub use run::{DataSpec, StepReport, TrainConfig, Trainer};

#[derive(Debug, Error)]
pub enum TrainError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Criterion(#[from] CriterionError),
    #[error("graph: {0}")]
    Graph(#[from] crate::graph::GraphError),
    #[error("optimizer: {0}")]
    Optim(#[from] crate::optim::OptimError),
    #[error("data: {0}")]
    Data(#[from] crate::data::DataError),
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("invalid training setting {what} = {value}: {reason}")]
    Setting {
        what: &'static str,
        value: String,
        reason: String,
    },
    #[error(
        "step {step}: the loss is not finite ({loss}); stopped before updating — the last good checkpoint is {checkpoint}"
    )]
    NonFinite {
        step: u64,
        loss: String,
        checkpoint: String,
    },
    #[error("resume: {0}")]
    Resume(String),
    #[error("device: {0}")]
    Runtime(#[from] crate::Error),
}

pub type Result<T, E = TrainError> = std::result::Result<T, E>;

pub(crate) fn file_err(path: &std::path::Path, e: impl std::fmt::Display) -> TrainError {
    TrainError::File {
        path: path.to_owned(),
        reason: e.to_string(),
    }
}
