//! The run folder: its lock, a new run's creation, the checkpoint of the current step and
//! resuming from one (see [`super::checkpoint`] for the files and their atomic replacement).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::checkpoint::{self, Saved, TrainState};
use super::config::{Init, TrainConfig};
use super::init::init_params;
use super::trainer::Trainer;
use super::{Result, TrainError};
use crate::model::checkpoint::{expected_keys, Checkpoint, HostTensor};
use crate::model::config::Mask2FormerConfig;
use crate::model::preprocess::PreprocessConfig;
use crate::optim::{Moments, OptimizerState};
use crate::Runtime;

/// Locks `<run>/.lock` so that a second `train` on the same run folder (say, a `--resume`
/// while the first still runs) stops instead of interleaving checkpoints and metrics.
pub(super) fn lock_run_dir(run_dir: &Path) -> Result<std::fs::File> {
    let path = run_dir.join(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| super::file_err(&path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(TrainError::Setting {
            what: "run folder",
            value: run_dir.display().to_string(),
            reason: "another train process is using it (stop that one first)".into(),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(super::file_err(&path, e)),
    }
}

impl Trainer {
    /// A new run in `run_dir` (created), starting from `init`.
    pub fn new(
        rt: &Runtime,
        cfg: TrainConfig,
        model: Mask2FormerConfig,
        init: Init,
        run_dir: &Path,
    ) -> Result<Self> {
        std::fs::create_dir_all(run_dir).map_err(|e| super::file_err(run_dir, e))?;
        let mut t = Self::build(rt, cfg, model, run_dir, None)?;
        let weights: BTreeMap<String, HostTensor> = match &init {
            Init::Scratch => {
                let heads = t.model.num_attention_heads;
                let seed = t.cfg.seed;
                t.params
                    .iter()
                    .zip(init_params(&t.params, heads, seed))
                    .map(|((name, shape, _), data)| {
                        (
                            name.clone(),
                            HostTensor {
                                shape: shape.clone(),
                                data,
                            },
                        )
                    })
                    .collect()
            }
            Init::From(dir) => Checkpoint::load(&dir.join("model.safetensors"))?
                .tensors()
                .clone(),
        };
        t.set_weights(&weights)?;
        std::fs::write(
            run_dir.join("train_config.json"),
            serde_json::to_string_pretty(&t.cfg).expect("plain data serialises"),
        )
        .map_err(|e| super::file_err(run_dir, e))?;
        Ok(t)
    }

    /// Continues the run in `run_dir` from its newest checkpoint: same step, optimizer state and
    /// data order. `steps` may raise the total.
    pub fn resume(rt: &Runtime, run_dir: &Path, steps: Option<u64>) -> Result<Self> {
        let saved = checkpoint::load(run_dir)?;
        let mut cfg: TrainConfig = serde_json::from_value(saved.state.settings.clone())
            .map_err(|e| TrainError::Resume(format!("train_state.json settings: {e}")))?;
        if let Some(s) = steps {
            cfg.steps = s;
        }
        let mut t = Self::build(
            rt,
            cfg,
            saved.config.clone(),
            run_dir,
            Some(saved.state.step),
        )?;
        t.set_weights(&saved.params)?;
        t.opt
            .load_state(&optimizer_state(&saved)?)
            .map_err(|e| TrainError::Resume(e.to_string()))?;
        t.step = saved.state.step;
        Ok(t)
    }

    /// Writes the checkpoint of the current step (atomically).
    pub fn save(&self) -> Result<PathBuf> {
        // Tensors are written in the hub layout's shapes (the graph holds the query embeddings
        // as [1, Q, C], transformers as [Q, C]).
        let hub: std::collections::HashMap<String, Vec<usize>> =
            expected_keys(&self.model).into_iter().collect();
        let mut params = BTreeMap::new();
        for (name, shape, _) in &self.params {
            let data = self.train.read_param(name)?;
            let shape = hub
                .get(name)
                .filter(|s| s.iter().product::<usize>() == data.len())
                .unwrap_or(shape);
            params.insert(name.clone(), HostTensor::new(shape.clone(), data)?);
        }
        let opt = self.opt.save_state()?;
        let mut moments = BTreeMap::new();
        for m in opt.moments {
            moments.insert(
                format!("{EXP_AVG}.{}", m.name),
                HostTensor::new(m.shape.clone(), m.exp_avg)?,
            );
            moments.insert(
                format!("{EXP_AVG_SQ}.{}", m.name),
                HostTensor::new(m.shape, m.exp_avg_sq)?,
            );
        }
        let saved = Saved {
            // LSJ at scale 1 fits the image's longer side to the crop: test at that size.
            preprocess: PreprocessConfig {
                shortest_edge: self.cfg.image_size as u32,
                longest_edge: Some(self.cfg.image_size as u32),
                ..PreprocessConfig::default()
            },
            config: self.model.clone(),
            params,
            moments,
            state: TrainState {
                step: self.step,
                adam_step: opt.step,
                settings: serde_json::to_value(&self.cfg).expect("plain data serialises"),
            },
        };
        let path = checkpoint::save(&self.run_dir, &saved, self.categories.as_deref())?;
        *self.saved.borrow_mut() = Some((self.step, path.clone()));
        Ok(path)
    }
}

/// Prefixes of the moments in `optimizer.safetensors` (torch's state names).
const EXP_AVG: &str = "exp_avg";
const EXP_AVG_SQ: &str = "exp_avg_sq";

/// The optimizer state of a checkpoint: `exp_avg.<param>` / `exp_avg_sq.<param>` pairs.
fn optimizer_state(saved: &Saved) -> Result<OptimizerState> {
    let mut moments = Vec::new();
    for (key, m) in &saved.moments {
        let Some(name) = key.strip_prefix(&format!("{EXP_AVG}.")) else {
            if key.starts_with(&format!("{EXP_AVG_SQ}.")) {
                continue;
            }
            return Err(TrainError::Resume(format!(
                "{}: unexpected tensor `{key}`",
                checkpoint::OPTIMIZER_FILE
            )));
        };
        let sq_key = format!("{EXP_AVG_SQ}.{name}");
        let sq = saved.moments.get(&sq_key).ok_or_else(|| {
            TrainError::Resume(format!(
                "{}: `{key}` has no `{sq_key}`",
                checkpoint::OPTIMIZER_FILE
            ))
        })?;
        moments.push(Moments {
            name: name.to_string(),
            shape: m.shape.clone(),
            exp_avg: m.data.clone(),
            exp_avg_sq: sq.data.clone(),
        });
    }
    Ok(OptimizerState {
        step: saved.state.adam_step,
        moments,
    })
}
