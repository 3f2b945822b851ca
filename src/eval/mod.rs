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
    #[error("running the model: {0}")]
    Model(String),
}

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Serialize;

use crate::data::coco_instance::CocoInstance;
use crate::data::coco_panoptic::{CocoPanoptic, PanopticPredictions};
use crate::data::semantic::{read_label_png, SemanticFolder};
use crate::data::synthetic::{self, Split};
use crate::data::{panoptic_to_labels, Categories, LabelMap, Panoptic, Rle, Sample, IGNORE};

/// Which ground truth to evaluate against (`--data`).
#[derive(Clone, Debug, PartialEq)]
pub enum DataSpec {
    /// The synthetic panoptic validation split, generated in memory.
    Synthetic {
        count: usize,
        seed: u64,
    },
    CocoPanoptic(PathBuf),
    CocoInstance(PathBuf),
    Semantic(PathBuf),
}

impl std::fmt::Display for DataSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DataSpec::Synthetic { count, seed } => write!(f, "synthetic:{count}:{seed}"),
            DataSpec::CocoPanoptic(d) => write!(f, "coco-panoptic:{}", d.display()),
            DataSpec::CocoInstance(d) => write!(f, "coco-instance:{}", d.display()),
            DataSpec::Semantic(d) => write!(f, "semantic:{}", d.display()),
        }
    }
}

/// Default size of the synthetic validation split.
pub const SYNTHETIC_VAL_COUNT: usize = 64;

impl FromStr for DataSpec {
    type Err = EvalError;

    /// `synthetic[:<count>[:<seed>]] | coco-panoptic:<DIR> | coco-instance:<DIR> | semantic:<DIR>`
    fn from_str(s: &str) -> Result<Self, EvalError> {
        let (kind, rest) = s.split_once(':').unwrap_or((s, ""));
        let dir = || {
            if rest.is_empty() {
                Err(EvalError::Invalid(format!(
                    "data spec {s:?} needs a directory: {kind}:<DIR>"
                )))
            } else {
                Ok(PathBuf::from(rest))
            }
        };
        match kind {
            "synthetic" => {
                let mut parts = rest.split(':').filter(|p| !p.is_empty());
                let num = |p: Option<&str>, default: u64| {
                    p.map_or(Ok(default), |v| {
                        v.parse::<u64>()
                            .map_err(|_| EvalError::Invalid(format!("data spec {s:?}: {v:?} is not a number")))
                    })
                };
                let count = num(parts.next(), SYNTHETIC_VAL_COUNT as u64)? as usize;
                let seed = num(parts.next(), 0)?;
                Ok(DataSpec::Synthetic { count, seed })
            }
            "coco-panoptic" => Ok(DataSpec::CocoPanoptic(dir()?)),
            "coco-instance" => Ok(DataSpec::CocoInstance(dir()?)),
            "semantic" => Ok(DataSpec::Semantic(dir()?)),
            _ => Err(EvalError::Invalid(format!(
                "unknown data spec {s:?}; expected synthetic[:N[:SEED]], coco-panoptic:<DIR>, coco-instance:<DIR> or semantic:<DIR>"
            ))),
        }
    }
}

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
    let name = opts.data.to_string();
    match &opts.data {
        DataSpec::Synthetic { count, seed } => {
            let ds = synthetic::Dataset::new(*seed, Split::Val, *count);
            let cats = synthetic::categories();
            let gts = (0..ds.len()).map(|i| {
                let g = ds.generate(i);
                Ok((g.info.id, g.panoptic, g.image))
            });
            if let Some(results) = instance_results(&opts.source) {
                let gts = (0..ds.len()).map(|i| {
                    let g = ds.generate(i);
                    Ok((g.info.id, g.panoptic))
                });
                return eval_panoptic_as_instances(&name, ds.len(), gts, &cats, results, progress);
            }
            eval_panoptic(&name, ds.len(), gts, &cats, &opts.source, progress)
        }
        DataSpec::CocoPanoptic(dir) => {
            let ds = CocoPanoptic::open_dir(dir)?;
            let cats = ds.categories().clone();
            if let Some(results) = instance_results(&opts.source) {
                let gts = (0..ds.len()).map(|i| Ok((ds.image_info(i).id, ds.ground_truth(i)?)));
                return eval_panoptic_as_instances(&name, ds.len(), gts, &cats, results, progress);
            }
            let model = matches!(opts.source, Source::Model(_));
            let gts = (0..ds.len()).map(|i| {
                let pan = ds.ground_truth(i)?;
                // the image is only needed to run the model
                let image = if model {
                    ds.sample(i)?.image
                } else {
                    image::RgbImage::new(0, 0)
                };
                Ok((ds.image_info(i).id, pan, image))
            });
            eval_panoptic(&name, ds.len(), gts, &cats, &opts.source, progress)
        }
        DataSpec::CocoInstance(dir) => eval_instance(&name, dir, &opts.source, progress),
        DataSpec::Semantic(dir) => eval_semantic(&name, dir, opts, progress),
    }
}

type PanopticGt = Result<(u64, Panoptic, image::RgbImage), EvalError>;

/// A predictions path that is a COCO results file (a JSON list) rather than panoptic output.
fn instance_results(source: &Source) -> Option<&Path> {
    let Source::Predictions(p) = source else {
        return None;
    };
    let bytes = std::fs::read(p).ok()?;
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace())?;
    (*first == b'[').then_some(p.as_path())
}

/// Mask AP of instance predictions against the "thing" segments of panoptic ground truth (crowd
/// segments stay crowd), as Mask2Former reports AP on panoptic datasets.
fn eval_panoptic_as_instances(
    name: &str,
    total: usize,
    gts: impl Iterator<Item = Result<(u64, Panoptic), EvalError>>,
    cats: &Categories,
    results: &Path,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Report, EvalError> {
    let mut instances = Vec::new();
    let mut sizes = HashMap::new();
    let mut image_ids = Vec::new();
    for (done, gt) in gts.enumerate() {
        let (image_id, pan) = gt?;
        sizes.insert(image_id, (pan.height, pan.width));
        image_ids.push(image_id);
        for seg in &pan.segments {
            if !cats.get(seg.category_id).is_some_and(|c| c.isthing) {
                continue;
            }
            let mask =
                crate::data::Mask::from_map(pan.height, pan.width, &pan.ids, |v| v == seg.id);
            instances.push(ap::GtInstance {
                image_id,
                category_id: seg.category_id,
                rle: Rle::encode(&mask),
                area: seg.area,
                iscrowd: seg.iscrowd,
            });
        }
        progress(done + 1, total);
    }
    let dts = ap::read_results(results, &sizes)?;
    let thing_ids: Vec<u32> = cats
        .list()
        .iter()
        .filter(|c| c.isthing)
        .map(|c| c.id)
        .collect();
    Ok(Report {
        data: name.to_string(),
        images: total,
        panoptic: None,
        instance: Some(ap::evaluate(&instances, &dts, &image_ids, &thing_ids)?),
        semantic: None,
    })
}

fn eval_panoptic(
    name: &str,
    total: usize,
    gts: impl Iterator<Item = PanopticGt>,
    cats: &Categories,
    source: &Source,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Report, EvalError> {
    let preds = match source {
        Source::Predictions(p) => Some(PanopticPredictions::open(p)?),
        Source::Model(_) => None,
    };
    let mut acc = pq::PqAccumulator::new();
    // the semantic view of the same predictions (as Mask2Former reports mIoU on panoptic data)
    let mut cm = miou::ConfusionMatrix::new(cats.len(), IGNORE);
    for (done, gt) in gts.enumerate() {
        let (image_id, gt, image) = gt?;
        let pred = match (&preds, source) {
            (Some(p), _) => p.get(image_id)?,
            (None, Source::Model(dir)) => {
                let sample = model_sample(
                    image_id,
                    image,
                    crate::data::GroundTruth::Panoptic(gt.clone()),
                );
                match run_model(dir, &sample, Task::Panoptic, cats)? {
                    ModelOutput::Panoptic(p) => p,
                    _ => {
                        return Err(EvalError::Mismatch(
                            "the model did not return a panoptic result".into(),
                        ))
                    }
                }
            }
            (None, Source::Predictions(_)) => unreachable!("predictions opened above"),
        };
        let image = format!("image_id {image_id}");
        acc.add(&image, &gt, &pred, cats)?;
        cm.add(
            &image,
            &panoptic_to_labels(&gt, cats)?,
            &panoptic_to_labels(&pred, cats)?,
        )?;
        progress(done + 1, total);
    }
    Ok(Report {
        data: name.to_string(),
        images: total,
        panoptic: Some(acc.finish(cats)),
        instance: None,
        semantic: Some(cm.finish()),
    })
}

fn model_sample(
    image_id: u64,
    image: image::RgbImage,
    ground_truth: crate::data::GroundTruth,
) -> Sample {
    let valid = (image.height() as usize, image.width() as usize);
    Sample {
        image_id,
        file_name: String::new(),
        image,
        masks: Vec::new(),
        class_ids: Vec::new(),
        valid,
        ground_truth,
    }
}

fn eval_instance(
    name: &str,
    dir: &Path,
    source: &Source,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Report, EvalError> {
    let ds = CocoInstance::open_dir(dir)?;
    let cats = ds.categories().clone();
    let mut gts = Vec::new();
    for i in 0..ds.len() {
        for inst in ds.ground_truth(i) {
            gts.push(ap::GtInstance {
                image_id: ds.image_info(i).id,
                category_id: inst.category_id,
                rle: inst.rle.clone(),
                area: inst.area,
                iscrowd: inst.iscrowd,
            });
        }
    }
    let dts = match source {
        Source::Predictions(p) => {
            let sizes: HashMap<u64, (usize, usize)> = ds
                .images()
                .iter()
                .map(|i| (i.id, (i.height, i.width)))
                .collect();
            ap::read_results(p, &sizes)?
        }
        Source::Model(dir) => {
            let mut dts = Vec::new();
            for i in 0..ds.len() {
                let sample = ds.sample(i)?;
                let image_id = sample.image_id;
                match run_model(dir, &sample, Task::Instance, &cats)? {
                    ModelOutput::Instances(list) => {
                        dts.extend(list.into_iter().map(|(category_id, rle, score)| {
                            ap::Detection {
                                image_id,
                                category_id,
                                rle,
                                score,
                            }
                        }))
                    }
                    _ => {
                        return Err(EvalError::Mismatch(
                            "the model did not return instances".into(),
                        ))
                    }
                }
                progress(i + 1, ds.len());
            }
            dts
        }
    };
    let image_ids: Vec<u64> = ds.images().iter().map(|i| i.id).collect();
    let cat_ids: Vec<u32> = cats.list().iter().map(|c| c.id).collect();
    let result = ap::evaluate(&gts, &dts, &image_ids, &cat_ids)?;
    progress(ds.len(), ds.len());
    Ok(Report {
        data: name.to_string(),
        images: ds.len(),
        panoptic: None,
        instance: Some(result),
        semantic: None,
    })
}

fn eval_semantic(
    name: &str,
    dir: &Path,
    opts: &EvalOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Report, EvalError> {
    let ds = SemanticFolder::open(dir, opts.reduce_labels)?;
    // A model whose label count differs from the dataset's classes is refused before it runs.
    let model_labels = match &opts.source {
        Source::Model(m) => Some(
            crate::model::config::Mask2FormerConfig::from_file(&m.join("config.json"))
                .map_err(|e| EvalError::Model(e.to_string()))?
                .num_labels(),
        ),
        Source::Predictions(_) => None,
    };
    let explicit_k = opts
        .num_classes
        .or_else(|| ds.class_names().map(|n| n.len()));
    if let (Some(labels), Some(k), Source::Model(m)) = (model_labels, explicit_k, &opts.source) {
        if labels != k {
            return Err(EvalError::Mismatch(format!(
                "the model {} has {labels} labels but the dataset has {k} classes",
                m.display()
            )));
        }
    }
    let mut pairs = Vec::with_capacity(ds.len());
    for i in 0..ds.len() {
        let gt = ds.ground_truth(i)?;
        let pred = match &opts.source {
            Source::Predictions(p) => {
                read_label_png(&p.join(format!("{}.png", ds.stem(i))), false)?
            }
            Source::Model(m) => {
                let sample = ds.sample(i)?;
                match run_model(m, &sample, Task::Semantic, &Categories::new(Vec::new())?)? {
                    ModelOutput::Semantic(l) => l,
                    _ => {
                        return Err(EvalError::Mismatch(
                            "the model did not return a label map".into(),
                        ))
                    }
                }
            }
        };
        pairs.push((ds.stem(i).to_string(), gt, pred));
        progress(i + 1, ds.len());
    }
    let k = match (explicit_k, model_labels) {
        (Some(k), _) | (None, Some(k)) => k,
        (None, None) => pairs
            .iter()
            .flat_map(|(_, g, p)| g.labels.iter().chain(&p.labels))
            .filter(|&&l| l != IGNORE)
            .map(|&l| l as usize + 1)
            .max()
            .unwrap_or(0),
    };
    let mut cm = miou::ConfusionMatrix::new(k, IGNORE);
    for (stem, gt, pred) in &pairs {
        cm.add(stem, gt, pred)?;
    }
    Ok(Report {
        data: name.to_string(),
        images: ds.len(),
        panoptic: None,
        instance: None,
        semantic: Some(cm.finish()),
    })
}
