//! Evaluation: panoptic quality ([`pq`]), COCO mask AP ([`ap`]), mIoU ([`miou`]), and the
//! `evaluate` driver ([`run`]) behind the CLI.

pub mod ap;
pub mod miou;
pub mod pq;

use crate::data::DataError;

/// Errors of the evaluation layer.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error("predictions do not fit the ground truth: {0}")]
    Mismatch(String),
    #[error("invalid argument: {0}")]
    Invalid(String),
    #[error("--model {dir}: running the segmentation model is not built into `evaluate` yet; pass --predictions instead")]
    ModelNotAvailable { dir: std::path::PathBuf },
}
