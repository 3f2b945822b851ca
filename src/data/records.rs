//! Bad records of a dataset: collected while it is opened, then either reported and dropped
//! (`--skip-bad`) or turned into one error before any work starts.

use std::path::Path;

use super::DataError;

/// How many bad records an error lists before "and N more".
const LISTED: usize = 5;

/// The bad records found while opening a dataset, each `"<path>: <record>: <problem>"`.
#[derive(Clone, Debug, Default)]
pub struct BadRecords {
    list: Vec<String>,
}

impl BadRecords {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn push(
        &mut self,
        path: &Path,
        record: impl std::fmt::Display,
        problem: impl std::fmt::Display,
    ) {
        self.list
            .push(format!("{}: {record}: {problem}", path.display()));
    }
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
    pub fn len(&self) -> usize {
        self.list.len()
    }
    pub fn list(&self) -> &[String] {
        &self.list
    }

    /// With `skip_bad`, hands the list back for reporting; otherwise fails if there is any.
    pub fn finish(self, skip_bad: bool) -> Result<Vec<String>, DataError> {
        if skip_bad || self.list.is_empty() {
            return Ok(self.list);
        }
        let mut msg = format!("{} bad record(s):", self.list.len());
        for line in self.list.iter().take(LISTED) {
            msg += &format!("\n  {line}");
        }
        if self.list.len() > LISTED {
            msg += &format!("\n  ... and {} more", self.list.len() - LISTED);
        }
        msg += "\n(fix them, or pass --skip-bad to leave these records out)";
        Err(DataError::BadRecords(msg))
    }
}

/// Checks that an image file exists and, where `(height, width)` is known, has that size (only
/// the header is read). Returns the problem, if any.
pub fn check_image(path: &Path, size: Option<(usize, usize)>) -> Option<String> {
    if !path.is_file() {
        return Some(format!("image {} is missing", path.display()));
    }
    let (w, h) = match image::image_dimensions(path) {
        Ok(d) => d,
        Err(e) => return Some(format!("image {} cannot be read: {e}", path.display())),
    };
    match size {
        Some((eh, ew)) if (h as usize, w as usize) != (eh, ew) => Some(format!(
            "image {} is {h}x{w}, expected {eh}x{ew}",
            path.display()
        )),
        _ => None,
    }
}
