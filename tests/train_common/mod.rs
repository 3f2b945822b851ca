//! Helpers shared by the training tests (`train_run.rs`, `train_cli.rs`).

use std::path::{Path, PathBuf};

use mask2former::model::config::Mask2FormerConfig;
use mask2former::train::checkpoint;

/// The tiny parity model with the synthetic dataset's 8 classes.
pub fn tiny_config() -> Mask2FormerConfig {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parity/tiny");
    let mut cfg = Mask2FormerConfig::from_file(&dir.join("config.json")).unwrap();
    let names = [
        "circle", "square", "triangle", "star", "ring", "sky", "grass", "water",
    ];
    cfg.id2label = names
        .iter()
        .enumerate()
        .map(|(i, n)| (i.to_string(), n.to_string()))
        .collect();
    cfg.label2id = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.to_string(), i as i64))
        .collect();
    cfg
}

pub fn run_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("m2f-train-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

pub fn saved_step(dir: &Path) -> u64 {
    checkpoint::load(dir).unwrap().state.step
}
