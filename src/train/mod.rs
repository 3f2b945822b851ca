//! Training Mask2Former end to end: the paper's recipe (AdamW, backbone lr ×0.1, no decay on
//! norms / embeddings / position tables, full-model gradient clipping, step decay) for
//! fine-tuning, or from random weights a recipe that learns ([`TrainConfig::scratch`]); the
//! criterion of [`crate::model::criterion`]; a run folder with atomic checkpoints and exact
//! resume; SIGINT / SIGTERM handling ([`signals`]).
//!
//! One step, one executable run in two phases:
//! ```text
//! phase 1: forward ──logits──▶ host criterion (matching, points, losses, logit gradients)
//!                                          │ gradients as the second phase's inputs
//! phase 2: backward from the logit seeds ▶ gradient norm and clipping ▶ AdamW
//! ```
//! The forward's activations stay on the device between the phases, so it runs once.
//!
//! Modules: [`config`] (settings and their checks), [`data`] (dataset, batch of each step,
//! prefetch thread), [`trainer`] (the step and the loop), `setup` (building a trainer: data,
//! criterion, compiled executable, optimizer), [`run_folder`] (lock, new run, checkpoint,
//! resume), `evaluate` (validation loss and PQ), [`checkpoint`] (the files), [`metrics`]
//! (`metrics.jsonl`), [`timeline`] (where a step's time goes), [`init`] (random weights),
//! [`collective`] (what a data-parallel step needs from the other ranks; the MPI
//! implementation in `distributed` with the `distributed` feature), `parallel` (the data-parallel
//! parts of a step) and `grad_sync` (the gradient all-reduce, parameter broadcast and checksum).

pub mod checkpoint;
pub mod collective;
pub mod config;
pub mod data;
mod device_criterion;
#[cfg(feature = "distributed")]
pub mod distributed;
mod evaluate;
mod grad_sync;
pub mod init;
pub mod metrics;
mod parallel;
pub mod run_folder;
mod setup;
pub mod signals;
pub mod timeline;
pub mod trainer;

use std::path::PathBuf;

use thiserror::Error;

use crate::model::checkpoint::CheckpointError;
use crate::model::config::ConfigError;
use crate::model::criterion::CriterionError;

pub use collective::{Collective, Solo};
pub use config::{Init, TrainConfig};
pub use data::DataSpec;
pub use grad_sync::{average_host, SyncTimes, CHUNK_FLOATS};
pub use timeline::{DeviceTimes, StepTimes};
pub use trainer::{StepReport, Trainer};

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
    #[error(
        "step {step}: the ranks' parameters differ (rank {rank} has checksum {checksum:016x}, \
         the ranks span {:016x}..{:016x}): the data-parallel ranks diverged; stopped",
        range.0,
        range.1
    )]
    Diverged {
        step: u64,
        rank: usize,
        checksum: u64,
        range: (u64, u64),
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
