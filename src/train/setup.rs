//! Building a [`Trainer`]: the data of the run, the criterion, the training graph compiled
//! into one two-phase executable, and the optimizer attached to it (in one process as the
//! executable's last dispatches, with several ranks after the gradient all-reduce). The weights
//! are filled in by [`Trainer::new`] and [`Trainer::resume`] (see [`super::run_folder`]).

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use super::collective::Collective;
use super::config::TrainConfig;
use super::data::{open_source, DataSpec};
use super::device_criterion::DeviceCriterion;
use super::metrics::MetricsLog;
use super::parallel::Parallel;
use super::trainer::Trainer;
use super::{Result, TrainError};
use crate::data::loader::SampleSource;
use crate::data::Category;
use crate::graph::{CompileOptions, Executable, Graph, ParamKind, Value};
use crate::model::checkpoint::HostTensor;
use crate::model::config::Mask2FormerConfig;
use crate::model::criterion::{
    attach_logit_gradients, seed_names, Criterion, CriterionConfig, PredictionShape,
};
use crate::model::network;
use crate::optim::{AdamW, AdamWConfig};
use crate::Runtime;

impl Trainer {
    /// The executable, optimizer and criterion of a run in `run_dir` (locked), with unset
    /// weights; [`Trainer::new`] and [`Trainer::resume`] fill them in.
    pub(super) fn build(
        rt: &Runtime,
        cfg: TrainConfig,
        model: Mask2FormerConfig,
        run_dir: &Path,
        lock: Option<std::fs::File>,
        resume_at: Option<u64>,
        group: Box<dyn Collective>,
    ) -> Result<Self> {
        cfg.validate()?;
        model.validate()?;
        if group.world() > 1 && cfg.device_criterion.is_some() {
            return Err(TrainError::Setting {
                what: "device_criterion (--device-criterion)",
                value: format!("{:?} with {} ranks", cfg.device_criterion, group.world()),
                reason: "data-parallel runs use the host criterion (its points and normalisers \
                         are split by image across the ranks); leave the flag out"
                    .into(),
            });
        }
        let data = TrainData::open(&cfg, &model)?;
        let (b, s) = (cfg.batch_size, cfg.image_size);
        let mut crit_cfg = CriterionConfig::from_model(&model);
        if let Some(p) = cfg.num_points {
            crit_cfg.num_points = p;
        }
        let criterion = Criterion::new(crit_cfg, model.num_labels())?;
        let device_crit = cfg.device_criterion.map(|t| (&criterion, t));
        let (g, mut train, fwd_outputs, shape, device) =
            compile_training(rt, &model, b, s, device_crit)?;
        let params: Vec<(String, Vec<usize>, ParamKind)> = g
            .params()
            .map(|(n, v, k)| (n.to_string(), g.shape(v).to_vec(), k))
            .collect();
        let adam = AdamWConfig {
            max_grad_norm: cfg.clip_grad_norm,
            ..AdamWConfig::default()
        };
        let (opt, parallel) = if group.world() > 1 {
            let (opt, p) = Parallel::attach(rt, &train, &adam, &cfg.groups())?;
            (opt, Some(p))
        } else {
            (AdamW::attach(&mut train, &adam, &cfg.groups())?, None)
        };
        let metrics = match group.is_root() {
            true => Some(MetricsLog::open(&run_dir.join("metrics.jsonl"), resume_at)?),
            false => None,
        };
        Ok(Self {
            rt: rt.clone(),
            schedule: cfg.schedule(),
            cfg,
            model,
            categories: data.categories,
            source: data.source,
            val: data.val,
            data_summary: data.summary,
            fwd_outputs,
            train,
            opt,
            criterion,
            shape,
            step: 0,
            run_dir: run_dir.to_owned(),
            metrics,
            _lock: lock,
            prefetch: None,
            last_pq: None,
            saved: Default::default(),
            params,
            device,
            group,
            parallel,
        })
    }

    pub(super) fn set_weights(&mut self, weights: &BTreeMap<String, HostTensor>) -> Result<()> {
        for (name, shape, _) in &self.params {
            let t = weights.get(name).ok_or_else(|| TrainError::Setting {
                what: "init",
                value: name.clone(),
                reason: "the checkpoint has no such tensor".into(),
            })?;
            // The graph's parameters have their hub shapes (`network::expected_keys`).
            if t.shape != *shape {
                return Err(TrainError::Setting {
                    what: "init",
                    value: name.clone(),
                    reason: format!("shape {:?}, the model needs {shape:?}", t.shape),
                });
            }
            self.train.set_param(name, &t.data)?;
        }
        Ok(())
    }
}

/// The training and validation data of a run.
struct TrainData {
    source: Arc<dyn SampleSource>,
    val: Option<Arc<dyn SampleSource>>,
    categories: Option<Vec<Category>>,
    summary: String,
}

impl TrainData {
    /// Opens `cfg.data`, checking its categories against the model's labels.
    fn open(cfg: &TrainConfig, model: &Mask2FormerConfig) -> Result<Self> {
        let spec = DataSpec::from_str(&cfg.data)?;
        let (source, categories, summary) = open_source(&spec, cfg.seed, cfg.image_size, false)?;
        if let Some(c) = &categories {
            if c.len() != model.num_labels() {
                return Err(TrainError::Setting {
                    what: "model config",
                    value: format!("{} labels", model.num_labels()),
                    reason: format!("the dataset has {} categories", c.len()),
                });
            }
        }
        let val = match spec {
            DataSpec::Synthetic { .. } => {
                Some(open_source(&spec, cfg.seed, cfg.image_size, true)?.0)
            }
            _ => None,
        };
        Ok(Self {
            source,
            val,
            categories,
            summary,
        })
    }
}

/// The training graph compiled as one executable run in two phases: the forward (whose logits
/// the host matches and scores), then the backward seeded with the loss gradients of those
/// logits; or, with `device` (the criterion and the target slots per image), the forward and the
/// matcher's costs, then the losses and the backward from their total (see
/// [`super::device_criterion`]). AdamW is attached by the caller. Returns the graph, the
/// executable, the forward outputs (class and mask logits of every prediction), the
/// predictions' shape and the device criterion's nodes.
#[allow(clippy::type_complexity)]
fn compile_training(
    rt: &Runtime,
    model: &Mask2FormerConfig,
    b: usize,
    s: usize,
    device: Option<(&Criterion, usize)>,
) -> Result<(
    Graph,
    Executable,
    Vec<Value>,
    PredictionShape,
    Option<DeviceCriterion>,
)> {
    let mut g = Graph::new();
    let net = network::build(&mut g, model, b, s, s)?;
    let ms = g.shape(net.last().mask_logits).to_vec();
    let shape = PredictionShape {
        batch: b,
        queries: model.num_queries,
        classes: model.num_labels() + 1,
        height: ms[2],
        width: ms[3],
    };
    let mut fwd_outputs = Vec::new();
    for p in &net.predictions {
        fwd_outputs.push(p.class_logits);
        fwd_outputs.push(p.mask_logits);
    }
    if let Some((crit, max_targets)) = device {
        let dc = DeviceCriterion::attach(&mut g, &net, shape, crit, max_targets, s)?;
        let mut outputs = dc.outputs();
        outputs.extend(&fwd_outputs);
        let mut train = Executable::compile(rt, &g, &outputs, &CompileOptions::training())?;
        let names = dc.second_phase_inputs();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut between = dc.costs().to_vec();
        between.extend(&fwd_outputs);
        train.split_before_inputs(&g, &refs, &between)?;
        dc.init_inputs(&mut train, b)?;
        return Ok((g, train, fwd_outputs, shape, Some(dc)));
    }
    attach_logit_gradients(&mut g, &net.predictions)?;
    let mut train = Executable::compile(rt, &g, &fwd_outputs, &CompileOptions::training())?;
    let seed_inputs: Vec<String> = (0..net.predictions.len())
        .flat_map(|k| {
            let (c, m) = seed_names(k);
            [c, m]
        })
        .collect();
    let seed_refs: Vec<&str> = seed_inputs.iter().map(String::as_str).collect();
    train.split_before_inputs(&g, &seed_refs, &fwd_outputs)?;
    Ok((g, train, fwd_outputs, shape, None))
}
