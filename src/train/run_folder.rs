//! The run folder: its lock, a new run's creation, the checkpoint of the current step and
//! resuming from one (see [`super::checkpoint`] for the files and their atomic replacement).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::checkpoint::{self, Saved, TrainState};
use super::collective::{Collective, Solo};
use super::config::{Init, TrainConfig};
use super::init::init_params;
use super::trainer::Trainer;
use super::{Result, TrainError};
use crate::model::checkpoint::{Checkpoint, HostTensor};
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

/// `train_config.json`: the settings of the run, for people (resume reads the checkpoint's).
pub const CONFIG_FILE: &str = "train_config.json";

/// What a run writes into its folder (what `--overwrite` removes).
const RUN_FILES: [&str; 5] = [
    checkpoint::CHECKPOINT_DIR,
    checkpoint::OLD_DIR,
    CONFIG_FILE,
    "metrics.jsonl",
    "eval.jsonl",
];

/// Removes `.checkpoint.tmp-<pid>` folders left by killed runs (up to a model's size each).
/// Only called with the run folder locked, so no live process is writing one.
fn remove_stale_temporaries(run_dir: &Path) -> Result<()> {
    let entries = std::fs::read_dir(run_dir).map_err(|e| super::file_err(run_dir, e))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        if name
            .to_str()
            .is_some_and(|n| n.starts_with(checkpoint::TMP_PREFIX))
        {
            let path = entry.path();
            std::fs::remove_dir_all(&path).map_err(|e| super::file_err(&path, e))?;
        }
    }
    Ok(())
}

impl Trainer {
    /// A new run in `run_dir` (created), starting from `init`. A folder that already holds a
    /// run is refused (see [`Trainer::create`]).
    pub fn new(
        rt: &Runtime,
        cfg: TrainConfig,
        model: Mask2FormerConfig,
        init: Init,
        run_dir: &Path,
    ) -> Result<Self> {
        Self::create(rt, cfg, model, init, run_dir, false)
    }

    /// A new run in `run_dir`. When the folder already holds a run (a checkpoint, settings or
    /// metrics), `overwrite` removes that run's files first; otherwise it is an error that
    /// points at `--resume` and `--overwrite`.
    pub fn create(
        rt: &Runtime,
        cfg: TrainConfig,
        model: Mask2FormerConfig,
        init: Init,
        run_dir: &Path,
        overwrite: bool,
    ) -> Result<Self> {
        Self::create_in(rt, cfg, model, init, run_dir, overwrite, Box::new(Solo))
    }

    /// [`Trainer::create`] as one rank of a data-parallel run (`group`): rank 0 prepares and
    /// writes the run folder, the others only read; every rank then starts from rank 0's
    /// parameters.
    pub fn create_in(
        rt: &Runtime,
        cfg: TrainConfig,
        model: Mask2FormerConfig,
        init: Init,
        run_dir: &Path,
        overwrite: bool,
        group: Box<dyn Collective>,
    ) -> Result<Self> {
        cfg.validate()?;
        if !group.is_root() {
            let mut t = Self::build(rt, cfg, model, run_dir, None, None, group)?;
            let weights = t.initial_weights(&init)?;
            t.set_weights(&weights)?;
            t.broadcast_params()?;
            return Ok(t);
        }
        std::fs::create_dir_all(run_dir).map_err(|e| super::file_err(run_dir, e))?;
        let lock = lock_run_dir(run_dir)?;
        let existing: Vec<&str> = RUN_FILES
            .iter()
            .copied()
            .filter(|f| run_dir.join(f).exists())
            .collect();
        if !existing.is_empty() && !overwrite {
            return Err(TrainError::Setting {
                what: "run folder (--out)",
                value: run_dir.display().to_string(),
                reason: format!(
                    "it already holds a run ({}); continue it with --resume --out {}, start \
                     it over with --overwrite, or choose another --out",
                    existing.join(", "),
                    run_dir.display()
                ),
            });
        }
        for f in existing {
            let path = run_dir.join(f);
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            removed.map_err(|e| super::file_err(&path, e))?;
        }
        remove_stale_temporaries(run_dir)?;
        let mut t = Self::build(rt, cfg, model, run_dir, Some(lock), None, group)?;
        let weights = t.initial_weights(&init)?;
        t.set_weights(&weights)?;
        t.broadcast_params()?;
        let path = run_dir.join(CONFIG_FILE);
        crate::atomic_file::write_atomic(
            &path,
            serde_json::to_string_pretty(&t.cfg)
                .expect("plain data serialises")
                .as_bytes(),
        )
        .map_err(|e| super::file_err(&path, e))?;
        Ok(t)
    }

    /// The weights a new run starts from: random (seeded), or an `--init` checkpoint's.
    fn initial_weights(&self, init: &Init) -> Result<BTreeMap<String, HostTensor>> {
        let t = self;
        Ok(match init {
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
        })
    }

    /// Continues the run in `run_dir` from its newest checkpoint: same step, optimizer state and
    /// data order. `steps` may raise the total.
    pub fn resume(rt: &Runtime, run_dir: &Path, steps: Option<u64>) -> Result<Self> {
        Self::resume_in(rt, run_dir, steps, Box::new(Solo))
    }

    /// [`Trainer::resume`] as one rank of a data-parallel run: every rank reads the same
    /// checkpoint, rank 0 alone locks and writes the folder, and the parameters are then
    /// broadcast from rank 0.
    pub fn resume_in(
        rt: &Runtime,
        run_dir: &Path,
        steps: Option<u64>,
        group: Box<dyn Collective>,
    ) -> Result<Self> {
        if !run_dir.is_dir() {
            return Err(TrainError::Resume(format!(
                "{} is not a folder (start a new run without --resume)",
                run_dir.display()
            )));
        }
        let lock = match group.is_root() {
            true => {
                let lock = lock_run_dir(run_dir)?;
                remove_stale_temporaries(run_dir)?;
                Some(lock)
            }
            false => None,
        };
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
            lock,
            Some(saved.state.step),
            group,
        )?;
        t.set_weights(&saved.params)?;
        t.broadcast_params()?;
        t.opt
            .load_state(&optimizer_state(&saved)?)
            .map_err(|e| TrainError::Resume(e.to_string()))?;
        t.step = saved.state.step;
        Ok(t)
    }

    /// Writes the checkpoint of the current step (atomically). On data-parallel ranks other
    /// than 0 nothing is written: the path is where rank 0 writes it.
    pub fn save(&self) -> Result<PathBuf> {
        if !self.group.is_root() {
            let path = self.run_dir.join(checkpoint::CHECKPOINT_DIR);
            *self.saved.borrow_mut() = Some((self.step, path.clone()));
            return Ok(path);
        }
        // The graph declares every parameter under its hub key in its hub shape
        // (`network::expected_keys`), so the tensors are written as the graph holds them.
        let mut params = BTreeMap::new();
        for (name, shape, _) in &self.params {
            let data = self.train.read_param(name)?;
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
