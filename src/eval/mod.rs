//! Evaluation: panoptic quality ([`pq`]), COCO mask AP ([`ap`]), mIoU ([`miou`]) — the metrics
//! computed by the `hotcoco` crate — the model run on the caller's device ([`model`]), the
//! report with its per-category tables ([`Report`]), and the `evaluate` driver ([`run`]) behind
//! the CLI.

pub mod ap;
mod drive;
pub mod miou;
pub mod model;
pub mod pq;
mod report;
pub mod save;

pub use model::{ModelOutput, ModelRunner, Task};
pub use report::Report;

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
    #[error("running the model: {0}")]
    Model(String),
}

use std::path::{Path, PathBuf};

use crate::data::spec::{self, Dataset, OpenOptions, Opened, Role};

pub use crate::data::spec::{DataSpec, SYNTHETIC_VAL_COUNT};

/// Where the predictions come from.
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    /// Run the segmentation model stored in this directory.
    Model(PathBuf),
    /// Read them: a COCO results JSON (instance data; with panoptic data it is scored against
    /// the "thing" segments), a COCO panoptic JSON (+ PNG folder), or a folder of label PNGs
    /// (semantic).
    Predictions(PathBuf),
}

/// Options of [`run`].
#[derive(Clone, Debug)]
pub struct EvalOptions {
    pub data: DataSpec,
    pub source: Source,
    /// ADE-style label reduction of semantic ground truth (0 → ignore, others − 1).
    pub reduce_labels: bool,
    /// Number of semantic classes; by default from `classes.txt` or the largest label seen.
    pub num_classes: Option<usize>,
}

/// [`run`] with the model (if any) on `rt`, the caller's device (training scores its
/// checkpoints on the device it trains on instead of opening a second one).
pub fn run_on(
    rt: &crate::Runtime,
    opts: &EvalOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Report, EvalError> {
    run_with(Some(rt), opts, &RunOptions::default(), progress)
}

/// Evaluates predictions (read, or produced by the model) against a dataset.
/// `progress(done, total)` is called after each image. A model runs on a device opened for
/// this evaluation ([`run_on`] takes the caller's).
pub fn run(
    opts: &EvalOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Report, EvalError> {
    run_with(None, opts, &RunOptions::default(), progress)
}

/// What `evaluate` adds to [`EvalOptions`].
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Report bad records of the dataset and leave them out instead of failing.
    pub skip_bad: bool,
    /// Write the model's predictions here (see [`save`]).
    pub save_predictions: Option<PathBuf>,
}

/// Opens the data of `opts` for evaluation (the split defaults to the validation split).
pub fn open_data(opts: &EvalOptions, skip_bad: bool) -> Result<Opened, EvalError> {
    let open = OpenOptions {
        role: Role::Val,
        skip_bad,
        reduce_labels: opts.reduce_labels,
    };
    Ok(spec::open(&opts.data, &open)?)
}

/// [`run`] with the options of [`RunOptions`], the model (if any) on `rt` or, without one, on
/// a device opened for this evaluation.
pub fn run_with(
    rt: Option<&crate::Runtime>,
    opts: &EvalOptions,
    run: &RunOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Report, EvalError> {
    let opened = open_data(opts, run.skip_bad)?;
    run_opened(
        rt,
        opts,
        &opened.dataset,
        run.save_predictions.as_deref(),
        progress,
    )
}

/// Evaluates on an opened dataset; `save` writes the model's predictions there. The model (if
/// any) runs on `rt`, or without one on a device opened here.
pub fn run_opened(
    rt: Option<&crate::Runtime>,
    opts: &EvalOptions,
    dataset: &Dataset,
    save: Option<&Path>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Report, EvalError> {
    if save.is_some() && !matches!(opts.source, Source::Model(_)) {
        return Err(EvalError::Invalid(
            "--save-predictions needs --model (predictions read from files are already saved)"
                .into(),
        ));
    }
    let opened;
    let rt = match (rt, &opts.source) {
        (Some(rt), _) => Some(rt),
        (None, Source::Model(_)) => {
            opened = crate::Runtime::new().map_err(|e| EvalError::Model(e.to_string()))?;
            Some(&opened)
        }
        (None, Source::Predictions(_)) => None,
    };
    drive::evaluate(&opts.data.to_string(), dataset, opts, rt, save, progress)
}
