//! The run folder's checkpoint: `<run>/checkpoint/` holds the model in the hub layout
//! (`config.json`, `model.safetensors`, `preprocessor_config.json`, `categories.json`: loadable
//! by `segment --model` and by transformers), the optimizer moments (`optimizer.safetensors`: `exp_avg.<param>`,
//! `exp_avg_sq.<param>`) and `train_state.json` (step, optimizer step, settings).
//!
//! Atomicity: a checkpoint is written completely into a fresh temporary folder, synced, then
//! swapped in by renames (`checkpoint` → `.checkpoint.old`, temporary → `checkpoint`, old
//! removed). A crash at any point leaves a complete checkpoint in `checkpoint/` or, between the
//! two renames, in `.checkpoint.old/`, which [`load`] falls back to.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{file_err, Result, TrainError};
use crate::data::Category;
use crate::model::checkpoint::{save_safetensors, Checkpoint, HostTensor};
use crate::model::config::Mask2FormerConfig;
use crate::model::preprocess::{PreprocessConfig, PREPROCESSOR_FILE};

pub const CHECKPOINT_DIR: &str = "checkpoint";
pub const OLD_DIR: &str = ".checkpoint.old";
/// Prefix of the folder a checkpoint is written into before it is swapped in.
pub const TMP_PREFIX: &str = ".checkpoint.tmp-";
pub const STATE_FILE: &str = "train_state.json";
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";

/// Where training stands; with the settings it needs to continue identically.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Steps completed (the next step to run).
    pub step: u64,
    /// AdamW's step counter (bias corrections).
    pub adam_step: u64,
    /// Settings of the run (the `TrainConfig` as JSON), checked on resume.
    pub settings: serde_json::Value,
}

/// Everything a checkpoint holds.
pub struct Saved {
    pub config: Mask2FormerConfig,
    pub params: BTreeMap<String, HostTensor>,
    /// `exp_avg.<name>` / `exp_avg_sq.<name>`.
    pub moments: BTreeMap<String, HostTensor>,
    pub state: TrainState,
    /// `preprocessor_config.json`: how `segment` should size images for this model.
    pub preprocess: PreprocessConfig,
}

/// `categories.json` in label order, with `isthing` as 0/1 (what `LabelInfo` reads).
pub fn categories_json(categories: &[Category]) -> serde_json::Value {
    serde_json::Value::Array(
        categories
            .iter()
            .map(|c| {
                serde_json::json!({
                    "id": c.id,
                    "name": c.name,
                    "isthing": u8::from(c.isthing),
                    "color": c.color,
                })
            })
            .collect(),
    )
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    crate::atomic_file::write_synced(path, bytes).map_err(|e| file_err(path, e))
}

/// Writes a checkpoint into `<run>/checkpoint/` atomically (see the module docs).
pub fn save(run: &Path, saved: &Saved, categories: Option<&[Category]>) -> Result<PathBuf> {
    let tmp = run.join(format!("{TMP_PREFIX}{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| file_err(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| file_err(&tmp, e))?;
    let json = saved.config.to_json()?;
    write_synced(&tmp.join("config.json"), json.as_bytes())?;
    if let Some(cats) = categories {
        let text =
            serde_json::to_string_pretty(&categories_json(cats)).map_err(|e| file_err(&tmp, e))?;
        write_synced(&tmp.join("categories.json"), text.as_bytes())?;
    }
    let pre =
        serde_json::to_string_pretty(&saved.preprocess.to_json()).map_err(|e| file_err(&tmp, e))?;
    write_synced(&tmp.join(PREPROCESSOR_FILE), pre.as_bytes())?;
    save_safetensors(&tmp.join("model.safetensors"), &saved.params)?;
    save_safetensors(&tmp.join(OPTIMIZER_FILE), &saved.moments)?;
    let state = serde_json::to_string_pretty(&saved.state).map_err(|e| file_err(&tmp, e))?;
    write_synced(&tmp.join(STATE_FILE), state.as_bytes())?;

    let dst = run.join(CHECKPOINT_DIR);
    let old = run.join(OLD_DIR);
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(|e| file_err(&old, e))?;
    }
    if dst.exists() {
        std::fs::rename(&dst, &old).map_err(|e| file_err(&dst, e))?;
    }
    std::fs::rename(&tmp, &dst).map_err(|e| file_err(&tmp, e))?;
    crate::atomic_file::sync_dir(run);
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(|e| file_err(&old, e))?;
    }
    Ok(dst)
}

/// The folder of the newest complete checkpoint of `run`, if any.
pub fn latest(run: &Path) -> Option<PathBuf> {
    [CHECKPOINT_DIR, OLD_DIR]
        .iter()
        .map(|d| run.join(d))
        .find(|d| d.join(STATE_FILE).is_file())
}

/// Loads the newest checkpoint of `run`.
pub fn load(run: &Path) -> Result<Saved> {
    let dir = latest(run).ok_or_else(|| {
        TrainError::Resume(format!(
            "{} has no checkpoint ({CHECKPOINT_DIR}/{STATE_FILE} not found)",
            run.display()
        ))
    })?;
    let config = Mask2FormerConfig::from_file(&dir.join("config.json"))?;
    let params = Checkpoint::load(&dir.join("model.safetensors"))?
        .tensors()
        .clone();
    let moments = Checkpoint::load(&dir.join(OPTIMIZER_FILE))?
        .tensors()
        .clone();
    let path = dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| file_err(&path, e))?;
    let state = serde_json::from_str(&text).map_err(|e| file_err(&path, e))?;
    let preprocess = PreprocessConfig::for_model_dir(&dir).map_err(TrainError::Resume)?;
    Ok(Saved {
        preprocess,
        config,
        params,
        moments,
        state,
    })
}
