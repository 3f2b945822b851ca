//! The per-dataset evaluation drivers behind [`super::run_opened`]: ground truth from an opened
//! dataset, predictions read from files or produced by the model (and then optionally saved).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::model::{ModelOutput, ModelRunner, Task};
use super::save::{PredictionWriter, RESULTS_JSON};
use super::{ap, miou, pq, EvalError, EvalOptions, Report, Source};
use crate::data::coco_instance::CocoInstance;
use crate::data::coco_panoptic::{CocoPanoptic, ImageInfo, PanopticPredictions};
use crate::data::semantic::{read_label_png, SemanticFolder};
use crate::data::spec::Dataset;
use crate::data::{Categories, GroundTruth, Panoptic, Rle, Sample, IGNORE};
use crate::Runtime;

/// One panoptic ground truth: the image's entry, its segmentation and (when the model runs)
/// its pixels.
type PanopticGt = Result<(ImageInfo, Panoptic, image::RgbImage), EvalError>;

/// Evaluates `dataset`; `rt` runs the model of a [`Source::Model`].
pub(super) fn evaluate(
    name: &str,
    dataset: &Dataset,
    opts: &EvalOptions,
    rt: Option<&Runtime>,
    save: Option<&Path>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Report, EvalError> {
    let mut writer = save.map(PredictionWriter::create).transpose()?;
    let model = matches!(opts.source, Source::Model(_));
    match dataset {
        Dataset::Synthetic(ds) => {
            let cats = crate::data::synthetic::categories();
            if let Some(results) = instance_results(&opts.source) {
                let gts = (0..ds.len()).map(|i| {
                    let g = ds.generate(i);
                    Ok((g.info.id, g.panoptic))
                });
                return eval_panoptic_as_instances(name, ds.len(), gts, &cats, &results, progress);
            }
            let gts = (0..ds.len()).map(|i| {
                let g = ds.generate(i);
                Ok((g.info, g.panoptic, g.image))
            });
            eval_panoptic(
                name,
                ds.len(),
                gts,
                &cats,
                (&opts.source, rt),
                writer.as_mut(),
                progress,
            )
        }
        Dataset::Panoptic(ds) => {
            let cats = ds.categories().clone();
            if let Some(results) = instance_results(&opts.source) {
                let gts = (0..ds.len()).map(|i| Ok((ds.image_info(i).id, ds.ground_truth(i)?)));
                return eval_panoptic_as_instances(name, ds.len(), gts, &cats, &results, progress);
            }
            let gts = (0..ds.len()).map(|i| panoptic_gt(ds, i, model));
            eval_panoptic(
                name,
                ds.len(),
                gts,
                &cats,
                (&opts.source, rt),
                writer.as_mut(),
                progress,
            )
        }
        Dataset::Instance(ds) => {
            eval_instance(name, ds, (&opts.source, rt), writer.as_mut(), progress)
        }
        Dataset::Semantic(ds) => eval_semantic(name, ds, (opts, rt), writer.as_mut(), progress),
    }
}

/// Loads the model of `dir` on `rt` (given whenever the source is a model).
fn load(
    rt: Option<&Runtime>,
    dir: &Path,
    task: Task,
    cats: &Categories,
) -> Result<ModelRunner, EvalError> {
    let rt = rt.ok_or_else(|| EvalError::Invalid("running a model needs a device".into()))?;
    ModelRunner::load(rt, dir, task, cats)
}

fn panoptic_gt(ds: &CocoPanoptic, i: usize, model: bool) -> PanopticGt {
    // the image is only needed to run the model
    let (pan, image) = if model {
        let sample = ds.sample(i)?;
        let GroundTruth::Panoptic(pan) = sample.ground_truth else {
            unreachable!("a panoptic dataset yields panoptic ground truth")
        };
        (pan, sample.image)
    } else {
        (ds.ground_truth(i)?, image::RgbImage::new(0, 0))
    };
    Ok((ds.image_info(i).clone(), pan, image))
}

/// A predictions path that is a COCO results file (a JSON list, or a folder holding
/// `results.json`) rather than panoptic output.
fn instance_results(source: &Source) -> Option<PathBuf> {
    let Source::Predictions(p) = source else {
        return None;
    };
    if p.is_dir() {
        let r = p.join(RESULTS_JSON);
        return r.is_file().then_some(r);
    }
    let bytes = std::fs::read(p).ok()?;
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace())?;
    (*first == b'[').then(|| p.clone())
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
        instance: Some(ap::evaluate(&instances, &dts, &image_ids, &thing_ids)?.with_names(cats)),
        semantic: None,
    })
}

fn eval_panoptic(
    name: &str,
    total: usize,
    gts: impl Iterator<Item = PanopticGt>,
    cats: &Categories,
    (source, rt): (&Source, Option<&Runtime>),
    mut writer: Option<&mut PredictionWriter>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Report, EvalError> {
    let (preds, mut runner) = match source {
        Source::Predictions(p) => (Some(PanopticPredictions::open(p)?), None),
        Source::Model(dir) => (None, Some(load(rt, dir, Task::Panoptic, cats)?)),
    };
    // with the semantic view of the same predictions (as Mask2Former reports mIoU on panoptic data)
    let mut acc = pq::PqAccumulator::new(cats);
    for (done, gt) in gts.enumerate() {
        let (info, gt, image) = gt?;
        let pred = match (&preds, runner.as_mut()) {
            (Some(p), _) => p.get(info.id)?,
            (None, Some(model)) => {
                let sample = model_sample(info.id, image, GroundTruth::Panoptic(gt.clone()));
                let ModelOutput::Panoptic(p) = model.run(&sample)? else {
                    return Err(EvalError::Mismatch(
                        "the model did not return a panoptic result".into(),
                    ));
                };
                if let Some(w) = writer.as_deref_mut() {
                    w.panoptic(&info, &p)?;
                }
                p
            }
            (None, None) => unreachable!("predictions opened or model loaded above"),
        };
        let image = format!("image_id {}", info.id);
        acc.add(&image, &gt, &pred, cats)?;
        progress(done + 1, total);
    }
    if let Some(w) = writer {
        w.finish(cats)?;
    }
    Ok(Report {
        data: name.to_string(),
        images: total,
        panoptic: Some(acc.finish(cats)),
        instance: None,
        semantic: Some(miou::SemSegResult {
            class_names: cats.list().iter().map(|c| c.name.clone()).collect(),
            ..acc.pixels().finish()
        }),
    })
}

fn model_sample(image_id: u64, image: image::RgbImage, ground_truth: GroundTruth) -> Sample {
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

/// The model's detections on every image of an instance dataset.
fn model_detections(
    ds: &CocoInstance,
    mut model: ModelRunner,
    mut writer: Option<&mut PredictionWriter>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<ap::Detection>, EvalError> {
    let mut dts = Vec::new();
    for i in 0..ds.len() {
        let sample = ds.sample(i)?;
        let image_id = sample.image_id;
        let ModelOutput::Instances(list) = model.run(&sample)? else {
            return Err(EvalError::Mismatch(
                "the model did not return instances".into(),
            ));
        };
        if let Some(w) = writer.as_deref_mut() {
            w.instances(image_id, &list);
        }
        dts.extend(
            list.into_iter()
                .map(|(category_id, rle, score)| ap::Detection {
                    image_id,
                    category_id,
                    rle,
                    score,
                }),
        );
        progress(i + 1, ds.len());
    }
    if let Some(w) = writer {
        w.finish(ds.categories())?;
    }
    Ok(dts)
}

fn eval_instance(
    name: &str,
    ds: &CocoInstance,
    (source, rt): (&Source, Option<&Runtime>),
    writer: Option<&mut PredictionWriter>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Report, EvalError> {
    let cats = ds.categories();
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
            let path = if p.is_dir() {
                p.join(RESULTS_JSON)
            } else {
                p.clone()
            };
            ap::read_results(&path, &sizes)?
        }
        Source::Model(dir) => {
            let model = load(rt, dir, Task::Instance, cats)?;
            model_detections(ds, model, writer, progress)?
        }
    };
    let image_ids: Vec<u64> = ds.images().iter().map(|i| i.id).collect();
    let cat_ids: Vec<u32> = cats.list().iter().map(|c| c.id).collect();
    let result = ap::evaluate(&gts, &dts, &image_ids, &cat_ids)?.with_names(cats);
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
    ds: &SemanticFolder,
    (opts, rt): (&EvalOptions, Option<&Runtime>),
    mut writer: Option<&mut PredictionWriter>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Report, EvalError> {
    // A model whose label count differs from the dataset's classes is refused before it runs.
    let model_labels = match &opts.source {
        Source::Model(m) => Some(
            crate::model::config::Mask2FormerConfig::from_file(&m.join("config.json"))
                .map_err(|e| EvalError::Model(e.to_string()))?
                .num_labels(),
        ),
        Source::Predictions(_) => None,
    };
    let explicit_k = opts.num_classes.or(ds.num_classes());
    if let (Some(labels), Some(k), Source::Model(m)) = (model_labels, explicit_k, &opts.source) {
        if labels != k {
            return Err(EvalError::Mismatch(format!(
                "the model {} has {labels} labels but the dataset has {k} classes",
                m.display()
            )));
        }
    }
    let mut runner = match &opts.source {
        Source::Model(m) => Some(load(rt, m, Task::Semantic, &Categories::new(Vec::new())?)?),
        Source::Predictions(_) => None,
    };
    let mut pairs = Vec::with_capacity(ds.len());
    for i in 0..ds.len() {
        let gt = ds.ground_truth(i)?;
        let pred = match (&opts.source, runner.as_mut()) {
            (Source::Predictions(p), _) => {
                read_label_png(&p.join(format!("{}.png", ds.stem(i))), false)?
            }
            (Source::Model(_), Some(model)) => {
                let sample = ds.sample(i)?;
                let ModelOutput::Semantic(l) = model.run(&sample)? else {
                    return Err(EvalError::Mismatch(
                        "the model did not return a label map".into(),
                    ));
                };
                if let Some(w) = writer.as_deref_mut() {
                    w.semantic(ds.stem(i), &l)?;
                }
                l
            }
            (Source::Model(_), None) => unreachable!("model loaded above"),
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
    let mut cm = miou::ConfusionMatrix::new(k);
    for (stem, gt, pred) in &pairs {
        cm.add(stem, gt, pred)?;
    }
    Ok(Report {
        data: name.to_string(),
        images: ds.len(),
        panoptic: None,
        instance: None,
        semantic: Some(miou::SemSegResult {
            class_names: ds.class_names().map(<[String]>::to_vec).unwrap_or_default(),
            ..cm.finish()
        }),
    })
}
