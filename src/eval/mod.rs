//! Evaluation: panoptic quality ([`pq`]), COCO mask AP ([`ap`]), mIoU ([`miou`]), and the
//! `evaluate` driver ([`run`]) behind the CLI.

pub mod ap;
mod drive;
pub mod miou;
pub mod pq;
pub mod save;

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

use serde::Serialize;

use crate::data::spec::{self, Dataset, OpenOptions, Opened, Role};
use crate::data::{Categories, LabelMap, Panoptic, Rle, Sample};

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

/// The numbers of one evaluation.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub data: String,
    pub images: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub panoptic: Option<pq::PqResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<ap::ApResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub semantic: Option<miou::SemSegResult>,
}

impl Report {
    /// A human-readable table (numbers in percent, like the reference tools print).
    pub fn table(&self) -> String {
        let mut s = format!("{} ({} images)\n", self.data, self.images);
        if let Some(p) = &self.panoptic {
            s += &format!(
                "{:10}| {:>6} {:>6} {:>6} {:>4}\n",
                "", "PQ", "SQ", "RQ", "N"
            );
            s += &format!("{}\n", "-".repeat(38));
            for (name, r) in [("All", p.all), ("Things", p.things), ("Stuff", p.stuff)] {
                s += &format!(
                    "{name:10}| {:6.2} {:6.2} {:6.2} {:4}\n",
                    100.0 * r.pq,
                    100.0 * r.sq,
                    100.0 * r.rq,
                    r.n
                );
            }
        }
        if let Some(a) = &self.instance {
            let names = [
                "AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm",
                "ARl",
            ];
            s += &names
                .iter()
                .map(|n| format!("{n:>6}"))
                .collect::<Vec<_>>()
                .join(" ");
            s += "\n";
            s += &a
                .stats()
                .iter()
                .map(|v| {
                    if *v < 0.0 {
                        format!("{:>6}", "-")
                    } else {
                        format!("{:6.2}", 100.0 * v)
                    }
                })
                .collect::<Vec<_>>()
                .join(" ");
            s += "\n";
        }
        if let Some(m) = &self.semantic {
            s += &format!("{:>6} {:>6} {:>6} {:>6}\n", "mIoU", "fwIoU", "mACC", "pACC");
            s += &format!(
                "{:6.2} {:6.2} {:6.2} {:6.2}\n",
                100.0 * m.miou,
                100.0 * m.fwiou,
                100.0 * m.macc,
                100.0 * m.pacc
            );
        }
        s
    }
}

/// What the segmentation model produces for one image, in the evaluators' terms.
#[derive(Clone, Debug)]
pub enum ModelOutput {
    Panoptic(Panoptic),
    /// `(category_id, mask, score)` per detection.
    Instances(Vec<(u32, Rle, f64)>),
    Semantic(LabelMap),
}

/// The task the model is asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Task {
    Panoptic,
    Instance,
    Semantic,
}

/// The one connection point to inference: runs the model of `model_dir` on one sample. The
/// model is loaded on first use and kept for the following samples. Model label `i` is the
/// dataset's category index `i` (the model was trained on this dataset's categories).
pub fn run_model(
    model_dir: &Path,
    sample: &Sample,
    task: Task,
    categories: &Categories,
) -> Result<ModelOutput, EvalError> {
    use crate::segment::{Segmentation, Segmenter};
    // Keyed by folder and weights-file time, so a checkpoint rewritten in place (training's
    // periodic evaluation) is loaded again.
    type Key = (PathBuf, Option<std::time::SystemTime>);
    thread_local! {
        static MODEL: std::cell::RefCell<Option<(Key, Segmenter)>> = const { std::cell::RefCell::new(None) };
    }
    let key: Key = (
        model_dir.to_path_buf(),
        std::fs::metadata(model_dir.join("model.safetensors"))
            .and_then(|m| m.modified())
            .ok(),
    );
    MODEL.with_borrow_mut(|slot| {
        if slot.as_ref().map(|(k, _)| k) != Some(&key) {
            // One device per thread, kept across checkpoints (a training run scores many).
            let rt = RUNTIME.with_borrow_mut(|r| -> Result<crate::Runtime, EvalError> {
                if let Some(rt) = r {
                    return Ok(rt.clone());
                }
                let rt = crate::Runtime::new().map_err(|e| EvalError::Model(e.to_string()))?;
                Ok(r.insert(rt).clone())
            })?;
            let seg =
                Segmenter::load(&rt, model_dir).map_err(|e| EvalError::Model(e.to_string()))?;
            let labels = seg.labels().len();
            if task != Task::Semantic && labels != categories.len() {
                return Err(EvalError::Mismatch(format!(
                    "the model {} has {labels} labels but the dataset has {} categories",
                    model_dir.display(),
                    categories.len()
                )));
            }
            *slot = Some((key, seg));
        }
        let seg = &mut slot.as_mut().expect("loaded above").1;
        let image = image::DynamicImage::ImageRgb8(sample.image.clone());
        let (seg_task, category) = match task {
            Task::Panoptic => (crate::segment::Task::Panoptic, true),
            Task::Instance => (crate::segment::Task::Instance, true),
            Task::Semantic => (crate::segment::Task::Semantic, false),
        };
        let result = seg
            .segment(&image, seg_task)
            .map_err(|e| EvalError::Model(e.to_string()))?;
        let category_of = |label: u32| -> Result<u32, EvalError> {
            if !category {
                return Ok(label);
            }
            categories.id_of(label).ok_or_else(|| {
                EvalError::Mismatch(format!(
                    "model label {label} has no category in the dataset ({} categories)",
                    categories.len()
                ))
            })
        };
        Ok(match result {
            Segmentation::Panoptic(p) => {
                let mut segments = Vec::with_capacity(p.segments.len());
                for s in &p.segments {
                    segments.push(crate::data::SegmentInfo {
                        id: s.id,
                        category_id: category_of(s.label_id)?,
                        iscrowd: false,
                        area: s.area as f64,
                        bbox: Some(s.bbox.map(|v| v as f64)),
                    });
                }
                ModelOutput::Panoptic(Panoptic {
                    height: p.height,
                    width: p.width,
                    ids: p.ids,
                    segments,
                })
            }
            Segmentation::Instance(r) => {
                let mut list = Vec::with_capacity(r.instances.len());
                for inst in r.instances {
                    let mask = crate::data::Mask::from_map(r.height, r.width, &inst.mask, |b| b);
                    list.push((
                        category_of(inst.label_id)?,
                        Rle::encode(&mask),
                        inst.score as f64,
                    ));
                }
                ModelOutput::Instances(list)
            }
            Segmentation::Semantic(s) => ModelOutput::Semantic(LabelMap {
                height: s.height,
                width: s.width,
                labels: s.labels.iter().map(|&l| l.min(254) as u8).collect(),
            }),
        })
    })
}

thread_local! {
    /// The device models run on in this thread: the caller's ([`run_on`]) or one opened on
    /// first use and kept across checkpoints.
    static RUNTIME: std::cell::RefCell<Option<crate::Runtime>> = const { std::cell::RefCell::new(None) };
}

/// [`run`] with the model (if any) on `rt`, the caller's device (training scores its
/// checkpoints on the device it trains on instead of opening a second one).
pub fn run_on(
    rt: &crate::Runtime,
    opts: &EvalOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Report, EvalError> {
    RUNTIME.with_borrow_mut(|r| *r = Some(rt.clone()));
    run(opts, progress)
}

/// Evaluates predictions (read, or produced by the model) against a dataset.
/// `progress(done, total)` is called after each image.
pub fn run(
    opts: &EvalOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Report, EvalError> {
    run_with(opts, &RunOptions::default(), progress)
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

/// [`run`] with the options of [`RunOptions`].
pub fn run_with(
    opts: &EvalOptions,
    run: &RunOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Report, EvalError> {
    let opened = open_data(opts, run.skip_bad)?;
    run_opened(
        opts,
        &opened.dataset,
        run.save_predictions.as_deref(),
        progress,
    )
}

/// Evaluates on an opened dataset; `save` writes the model's predictions there.
pub fn run_opened(
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
    drive::evaluate(&opts.data.to_string(), dataset, opts, save, progress)
}
