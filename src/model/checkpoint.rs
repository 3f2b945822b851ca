//! Hugging Face `model.safetensors` checkpoints: loading into named f32 host tensors, validation
//! against the tensors a config needs, and an atomic writer for training checkpoints.
//!
//! Key names are the hub layout written by `save_pretrained` (transformers 4.x and 5.x agree on it):
//! `model.pixel_level_module.encoder.encoder.layers.{s}.blocks.{b}.attention.self.query.weight`, ...
//! The list a config needs is read off the built network ([`super::network::expected_keys`]);
//! this module knows only the extras a checkpoint may hold besides it ([`known_extra`]).

#[cfg(not(target_arch = "wasm32"))]
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

#[cfg(not(target_arch = "wasm32"))]
use safetensors::tensor::View;
use safetensors::tensor::{Dtype, SafeTensors};

/// A dense row-major f32 tensor in host memory.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl HostTensor {
    /// Checks that `data` fills `shape` exactly.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Result<Self, CheckpointError> {
        let numel: usize = shape.iter().product();
        if numel != data.len() {
            return Err(CheckpointError::DataLength {
                shape,
                len: data.len(),
            });
        }
        Ok(Self { shape, data })
    }

    pub fn numel(&self) -> usize {
        self.data.len()
    }
}

/// Errors of checkpoint reading, validation and writing; each names the file and, where there is one, the key.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a valid safetensors file: {reason}")]
    Format { path: PathBuf, reason: String },
    #[error("{path}: tensor `{key}` has dtype {dtype}; weights must be F32, F16, BF16 or F64")]
    Dtype {
        path: PathBuf,
        key: String,
        dtype: String,
    },
    #[error("{path}: tensor `{key}` not found")]
    Missing { path: PathBuf, key: String },
    #[error("{path}: tensor `{key}` has shape {found:?}, expected {expected:?}")]
    Shape {
        path: PathBuf,
        key: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("{path}: checkpoint does not match the config: {report}")]
    Mismatch {
        path: PathBuf,
        report: Box<ValidationReport>,
    },
    #[error(
        "{path}: tensor `{key}` holds {count} non-finite value(s) (first at flat index {first}: \
         {value}); the checkpoint is corrupt or came from a diverged run"
    )]
    NonFinite {
        path: PathBuf,
        key: String,
        count: usize,
        first: usize,
        value: f32,
    },
    #[error("{len} values do not fill shape {shape:?}")]
    DataLength { shape: Vec<usize>, len: usize },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing {path}: {reason}")]
    Serialize { path: PathBuf, reason: String },
}

/// Keys a checkpoint may hold that the model does not load, and why. They are ignored knowingly.
pub fn known_extra(key: &str) -> Option<&'static str> {
    if key.ends_with(".relative_position_index") {
        Some("Swin buffer, recomputed from window_size (transformers 5 no longer saves it)")
    } else if key == "criterion.empty_weight" {
        Some("loss class weights, derived from num_labels and no_object_weight")
    } else if key.ends_with(".num_batches_tracked") {
        Some("batch-norm counter, unused at inference")
    } else if key.starts_with("model.pixel_level_module.encoder.swin.layernorm.") {
        Some("SwinModel's final norm, unused by the backbone (written by transformers 5 save_pretrained)")
    } else {
        None
    }
}

/// A loaded `model.safetensors`: float tensors converted to f32, integer tensors that are known extras skipped.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    path: PathBuf,
    tensors: BTreeMap<String, HostTensor>,
    dtypes: BTreeMap<String, Dtype>,
    /// Non-float known extras (e.g. int64 `relative_position_index`): name → shape, data not kept.
    skipped: BTreeMap<String, Vec<usize>>,
}

#[cfg(not(target_arch = "wasm32"))]
/// Reads one float tensor from a safetensors file that may also hold other tensors of any dtype
/// (e.g. a processor's `pixel_values` beside an int64 `pixel_mask`).
pub fn read_tensor(path: &Path, key: &str) -> Result<HostTensor, CheckpointError> {
    let bytes = std::fs::read(path).map_err(|source| CheckpointError::Io {
        path: path.to_owned(),
        source,
    })?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| CheckpointError::Format {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    let view = st.tensor(key).map_err(|_| CheckpointError::Missing {
        path: path.to_owned(),
        key: key.to_owned(),
    })?;
    let data = to_f32(view.dtype(), view.data()).ok_or_else(|| CheckpointError::Dtype {
        path: path.to_owned(),
        key: key.to_owned(),
        dtype: format!("{:?}", view.dtype()),
    })?;
    Ok(HostTensor {
        shape: view.shape().to_vec(),
        data,
    })
}

impl Checkpoint {
    #[cfg(not(target_arch = "wasm32"))]
    /// Reads a safetensors file into host memory.
    pub fn load(path: &Path) -> Result<Self, CheckpointError> {
        let bytes = std::fs::read(path).map_err(|source| CheckpointError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::from_bytes(path, &bytes)
    }

    /// Parses safetensors bytes; `path` is only used in error messages.
    pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Self, CheckpointError> {
        let st = SafeTensors::deserialize(bytes).map_err(|e| CheckpointError::Format {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        let mut ckpt = Self {
            path: path.to_owned(),
            tensors: BTreeMap::new(),
            dtypes: BTreeMap::new(),
            skipped: BTreeMap::new(),
        };
        for (key, view) in st.iter() {
            let shape = view.shape().to_vec();
            let data = match to_f32(view.dtype(), view.data()) {
                Some(data) => data,
                None if known_extra(key).is_some() => {
                    ckpt.skipped.insert(key.to_owned(), shape);
                    continue;
                }
                None => {
                    return Err(CheckpointError::Dtype {
                        path: path.to_owned(),
                        key: key.to_owned(),
                        dtype: format!("{:?}", view.dtype()),
                    })
                }
            };
            // NaN or Inf in a weight gives plausible-looking but meaningless results (one class
            // everywhere at score 1.0, or nothing), so it is refused here, naming the tensor.
            if let Some(first) = data.iter().position(|v| !v.is_finite()) {
                return Err(CheckpointError::NonFinite {
                    path: path.to_owned(),
                    key: key.to_owned(),
                    count: data.iter().filter(|v| !v.is_finite()).count(),
                    first,
                    value: data[first],
                });
            }
            ckpt.dtypes.insert(key.to_owned(), view.dtype());
            // safetensors has already checked that the byte length matches the shape.
            ckpt.tensors
                .insert(key.to_owned(), HostTensor { shape, data });
        }
        Ok(ckpt)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// All float tensors by name.
    pub fn tensors(&self) -> &BTreeMap<String, HostTensor> {
        &self.tensors
    }

    /// The dtype a float tensor had in the file (it is held as f32 here).
    pub fn source_dtype(&self, key: &str) -> Option<Dtype> {
        self.dtypes.get(key).copied()
    }

    /// Names and shapes of the non-float known extras that were not loaded.
    pub fn skipped(&self) -> &BTreeMap<String, Vec<usize>> {
        &self.skipped
    }

    pub fn get(&self, key: &str) -> Result<&HostTensor, CheckpointError> {
        self.tensors
            .get(key)
            .ok_or_else(|| CheckpointError::Missing {
                path: self.path.clone(),
                key: key.to_owned(),
            })
    }

    /// The tensor `key`, checked to have `shape`.
    pub fn get_shaped(&self, key: &str, shape: &[usize]) -> Result<&HostTensor, CheckpointError> {
        let t = self.get(key)?;
        if t.shape != shape {
            return Err(CheckpointError::Shape {
                path: self.path.clone(),
                key: key.to_owned(),
                expected: shape.to_vec(),
                found: t.shape.clone(),
            });
        }
        Ok(t)
    }

    /// Moves the tensor `key` out (to upload it without a copy).
    pub fn take(&mut self, key: &str) -> Result<HostTensor, CheckpointError> {
        self.tensors
            .remove(key)
            .ok_or_else(|| CheckpointError::Missing {
                path: self.path.clone(),
                key: key.to_owned(),
            })
    }

    /// Compares the checkpoint with `expected` (from [`super::network::expected_keys`]) and lists
    /// every difference.
    pub fn report(&self, expected: &[(String, Vec<usize>)]) -> ValidationReport {
        let mut report = ValidationReport::default();
        let wanted: HashMap<&str, &Vec<usize>> =
            expected.iter().map(|(k, s)| (k.as_str(), s)).collect();
        for (key, shape) in expected {
            match self.tensors.get(key) {
                None => report.missing.push((key.clone(), shape.clone())),
                Some(t) if t.shape != *shape => report.mismatched.push(ShapeMismatch {
                    key: key.clone(),
                    expected: shape.clone(),
                    found: t.shape.clone(),
                }),
                Some(_) => {}
            }
        }
        let present = self
            .tensors
            .iter()
            .map(|(k, t)| (k, &t.shape))
            .chain(self.skipped.iter());
        for (key, shape) in present {
            if wanted.contains_key(key.as_str()) {
                continue;
            }
            match known_extra(key) {
                Some(why) => report.ignored.push((key.clone(), why)),
                None => report.unexpected.push((key.clone(), shape.clone())),
            }
        }
        report.ignored.sort();
        report.unexpected.sort();
        report
    }

    /// Like [`report`](Self::report), but any missing, mis-shaped or unexpected tensor is an error.
    /// On success returns the report (whose `ignored` lists the known extras present).
    pub fn validate(
        &self,
        expected: &[(String, Vec<usize>)],
    ) -> Result<ValidationReport, CheckpointError> {
        let report = self.report(expected);
        if report.is_ok() {
            Ok(report)
        } else {
            Err(CheckpointError::Mismatch {
                path: self.path.clone(),
                report: Box::new(report),
            })
        }
    }
}

fn to_f32(dtype: Dtype, bytes: &[u8]) -> Option<Vec<f32>> {
    // Byte-wise decoding: the data in a safetensors buffer need not be aligned for f32.
    let out = match dtype {
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F16 => bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::BF16 => bytes
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::F64 => bytes
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().expect("chunk of 8")) as f32)
            .collect(),
        _ => return None,
    };
    Some(out)
}

/// One tensor whose shape differs from what the config implies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeMismatch {
    pub key: String,
    pub expected: Vec<usize>,
    pub found: Vec<usize>,
}

/// Result of comparing a checkpoint with [`super::network::expected_keys`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ValidationReport {
    /// Needed by the model, absent from the file: (key, expected shape).
    pub missing: Vec<(String, Vec<usize>)>,
    pub mismatched: Vec<ShapeMismatch>,
    /// In the file, neither needed nor a known extra: (key, shape).
    pub unexpected: Vec<(String, Vec<usize>)>,
    /// Known extras present in the file: (key, why it is not loaded).
    pub ignored: Vec<(String, &'static str)>,
}

impl ValidationReport {
    pub fn is_ok(&self) -> bool {
        self.missing.is_empty() && self.mismatched.is_empty() && self.unexpected.is_empty()
    }
}

impl fmt::Display for ValidationReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Long lists are cut: a wrong config typically makes hundreds of keys mismatch at once.
        const SHOW: usize = 8;
        write!(
            f,
            "{} missing, {} with a wrong shape, {} unexpected",
            self.missing.len(),
            self.mismatched.len(),
            self.unexpected.len()
        )?;
        for (key, shape) in self.missing.iter().take(SHOW) {
            write!(f, "\n  missing `{key}` (expected shape {shape:?})")?;
        }
        for m in self.mismatched.iter().take(SHOW) {
            write!(
                f,
                "\n  `{}`: expected shape {:?}, found {:?}",
                m.key, m.expected, m.found
            )?;
        }
        for (key, shape) in self.unexpected.iter().take(SHOW) {
            write!(f, "\n  unexpected `{key}` {shape:?}")?;
        }
        let hidden = self.missing.len().saturating_sub(SHOW)
            + self.mismatched.len().saturating_sub(SHOW)
            + self.unexpected.len().saturating_sub(SHOW);
        if hidden > 0 {
            write!(f, "\n  ... and {hidden} more")?;
        }
        Ok(())
    }
}

/// An f32 tensor as a safetensors [`View`].
#[cfg(not(target_arch = "wasm32"))]
struct F32View<'a>(&'a HostTensor);

#[cfg(not(target_arch = "wasm32"))]
impl View for F32View<'_> {
    fn dtype(&self) -> Dtype {
        Dtype::F32
    }

    fn shape(&self) -> &[usize] {
        &self.0.shape
    }

    fn data(&self) -> Cow<'_, [u8]> {
        if cfg!(target_endian = "little") {
            Cow::Borrowed(bytemuck::cast_slice(&self.0.data))
        } else {
            Cow::Owned(self.0.data.iter().flat_map(|v| v.to_le_bytes()).collect())
        }
    }

    fn data_len(&self) -> usize {
        self.0.data.len() * 4
    }
}

#[cfg(not(target_arch = "wasm32"))]
/// Writes `tensors` as an f32 safetensors file, atomically: a temporary file in the same directory is written,
/// fsynced and renamed over `path`, so a crash leaves either the old file or the new one, never a torn one.
/// The header carries `{"format": "pt"}`, which transformers expects.
pub fn save_safetensors(
    path: &Path,
    tensors: &BTreeMap<String, HostTensor>,
) -> Result<(), CheckpointError> {
    for t in tensors.values() {
        if t.shape.iter().product::<usize>() != t.data.len() {
            return Err(CheckpointError::DataLength {
                shape: t.shape.clone(),
                len: t.data.len(),
            });
        }
    }
    let metadata = HashMap::from([("format".to_owned(), "pt".to_owned())]);
    let views = tensors.iter().map(|(k, t)| (k.as_str(), F32View(t)));
    let bytes =
        safetensors::serialize(views, Some(metadata)).map_err(|e| CheckpointError::Serialize {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    crate::atomic_file::write_atomic(path, &bytes).map_err(|source| CheckpointError::Write {
        path: path.to_owned(),
        source,
    })
}
