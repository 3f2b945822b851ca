//! `metrics.jsonl`: one JSON object per line, appended and flushed as training goes (a killed
//! run keeps every line written before the kill; a resumed run appends).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::{file_err, Result};

pub struct MetricsLog {
    path: PathBuf,
    file: File,
}

impl MetricsLog {
    /// Opens `path` for appending. A line that is not JSON (the torn end of a killed run's
    /// last write) is dropped, so the file stays valid JSON Lines; on resume, lines of steps
    /// ≥ `keep_below` (written after the checkpoint being resumed) are dropped too, so each
    /// step appears once. The file is rewritten (atomically) only when something is dropped.
    pub fn open(path: &Path, keep_below: Option<u64>) -> Result<Self> {
        if path.exists() {
            let text = std::fs::read(path).map_err(|e| file_err(path, e))?;
            let text = String::from_utf8_lossy(&text);
            let mut kept = String::new();
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                let Ok(record) = serde_json::from_str::<serde_json::Value>(line) else {
                    continue;
                };
                let step = record.get("step").and_then(|s| s.as_u64());
                if keep_below.is_none_or(|limit| step.is_none_or(|s| s < limit)) {
                    kept.push_str(line);
                    kept.push('\n');
                }
            }
            if kept != text {
                crate::atomic_file::write_atomic(path, kept.as_bytes())
                    .map_err(|e| file_err(path, e))?;
            }
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| file_err(path, e))?;
        Ok(Self {
            path: path.to_owned(),
            file,
        })
    }

    pub fn write(&mut self, record: &serde_json::Value) -> Result<()> {
        let mut line = record.to_string();
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.flush())
            .map_err(|e| file_err(&self.path, e))
    }
}

/// Reads every record of a metrics file.
pub fn read(path: &Path) -> Result<Vec<serde_json::Value>> {
    let text = std::fs::read_to_string(path).map_err(|e| file_err(path, e))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).map_err(|e| file_err(path, e)))
        .collect()
}
