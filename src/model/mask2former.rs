//! A loaded Mask2Former: config, labels and weights, with one compiled graph per input shape.

use std::collections::HashMap;
#[cfg(not(target_arch = "wasm32"))]
use std::path::Path;
use std::path::PathBuf;

use thiserror::Error;

use crate::graph::{CompileOptions, Executable, Graph, GraphError};
#[cfg(not(target_arch = "wasm32"))]
use crate::model::checkpoint::HostTensor;
use crate::model::checkpoint::{Checkpoint, CheckpointError};
use crate::model::config::{ConfigError, Mask2FormerConfig};
use crate::model::network::{self, expected_keys, PIXEL_VALUES};
use crate::model::LabelInfo;
use crate::Runtime;

#[derive(Debug, Error)]
pub enum ModelError {
    #[error("{path}: not a checkpoint folder: {reason}")]
    Folder { path: PathBuf, reason: String },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("building or running the network: {0}")]
    Graph(#[from] GraphError),
    #[error("input: {0}")]
    Input(String),
    /// A file of a folder held in memory ([`ModelFiles`]); the message names it.
    #[error("{0}")]
    File(String),
    #[error("writing {path}: {reason}")]
    Write { path: PathBuf, reason: String },
}

/// A checkpoint folder's files held in memory, as a web page fetches them.
#[derive(Clone, Copy, Debug)]
pub struct ModelFiles<'a> {
    /// `config.json`
    pub config: &'a str,
    /// `model.safetensors`
    pub weights: &'a [u8],
    /// `categories.json` (which labels are things), when the folder has one
    pub categories: Option<&'a str>,
    /// `preprocessor_config.json`, when the folder has one
    pub preprocessor: Option<&'a str>,
}

/// Raw network outputs of a batch (transformers names: `class_queries_logits`,
/// `masks_queries_logits`).
#[derive(Clone, Debug)]
pub struct RawBatch {
    pub batch: usize,
    pub num_queries: usize,
    pub num_classes_with_void: usize,
    /// `(H/4, W/4)`
    pub mask_size: (usize, usize),
    /// `[B, Q, K+1]`
    pub class_logits: Vec<f32>,
    /// `[B, Q, H/4, W/4]`
    pub mask_logits: Vec<f32>,
}

impl RawBatch {
    #[cfg(not(target_arch = "wasm32"))]
    /// Writes `class_queries_logits` and `masks_queries_logits` to a safetensors file.
    pub fn save_safetensors(&self, path: &Path) -> Result<(), ModelError> {
        let (b, q, c) = (self.batch, self.num_queries, self.num_classes_with_void);
        let (h, w) = self.mask_size;
        let mut map = std::collections::BTreeMap::new();
        map.insert(
            "class_queries_logits".to_string(),
            HostTensor::new(vec![b, q, c], self.class_logits.clone())?,
        );
        map.insert(
            "masks_queries_logits".to_string(),
            HostTensor::new(vec![b, q, h, w], self.mask_logits.clone())?,
        );
        crate::model::checkpoint::save_safetensors(path, &map)?;
        Ok(())
    }
}

/// A compiled network for one input shape.
struct Compiled {
    exe: Executable,
    /// `(H/4, W/4)` of the mask logits.
    mask_size: (usize, usize),
}

pub struct Mask2Former {
    rt: Runtime,
    config: Mask2FormerConfig,
    labels: LabelInfo,
    weights: Checkpoint,
    compiled: HashMap<(usize, usize, usize), Compiled>,
}

impl Mask2Former {
    #[cfg(not(target_arch = "wasm32"))]
    /// Loads `config.json` and `model.safetensors` from `dir` and checks every expected tensor.
    pub fn load(rt: &Runtime, dir: &Path) -> Result<Self, ModelError> {
        if !dir.is_dir() {
            return Err(ModelError::Folder {
                path: dir.into(),
                reason: "no such directory".into(),
            });
        }
        let config = Mask2FormerConfig::from_file(&dir.join("config.json"))?;
        let weights = Checkpoint::load(&dir.join("model.safetensors"))?;
        let labels = LabelInfo::load(config.labels(), Some(&dir.join("categories.json"))).map_err(
            |reason| ModelError::Folder {
                path: dir.into(),
                reason,
            },
        )?;
        Self::assemble(rt, config, weights, labels)
    }

    /// Builds the model from a checkpoint folder's files held in memory (what a web page
    /// fetches): checked as [`Mask2Former::load`] checks them, errors naming the file.
    pub fn from_files(rt: &Runtime, files: &ModelFiles<'_>) -> Result<Self, ModelError> {
        let config = Mask2FormerConfig::parse(files.config, "config.json".as_ref())?;
        let weights = Checkpoint::from_bytes("model.safetensors".as_ref(), files.weights)?;
        let labels = LabelInfo::from_categories(
            config.labels(),
            files.categories.map(|t| (t, "categories.json")),
        )
        .map_err(ModelError::File)?;
        Self::assemble(rt, config, weights, labels)
    }

    fn assemble(
        rt: &Runtime,
        config: Mask2FormerConfig,
        weights: Checkpoint,
        labels: LabelInfo,
    ) -> Result<Self, ModelError> {
        config.validate()?;
        weights.validate(&expected_keys(&config)?)?;
        Ok(Self {
            rt: rt.clone(),
            config,
            labels,
            weights,
            compiled: HashMap::new(),
        })
    }

    pub fn config(&self) -> &Mask2FormerConfig {
        &self.config
    }
    pub fn labels(&self) -> &LabelInfo {
        &self.labels
    }
    pub fn runtime(&self) -> &Runtime {
        &self.rt
    }

    fn compiled(&mut self, b: usize, h: usize, w: usize) -> Result<&mut Compiled, ModelError> {
        if !self.compiled.contains_key(&(b, h, w)) {
            let mut g = Graph::new();
            let net = network::build(&mut g, &self.config, b, h, w)?;
            let last = *net.last();
            let ms = g.shape(last.mask_logits).to_vec();
            let mask_size = (ms[2], ms[3]);
            let mut exe = Executable::compile(
                &self.rt,
                &g,
                &[last.class_logits, last.mask_logits],
                &CompileOptions::default(),
            )?;
            for (name, t) in self.weights.tensors() {
                if exe.param(name).is_ok() {
                    exe.set_param(name, &t.data)?;
                }
            }
            self.compiled.insert((b, h, w), Compiled { exe, mask_size });
        }
        Ok(self.compiled.get_mut(&(b, h, w)).expect("inserted above"))
    }

    /// Runs the network once on `pixel_values [B, 3, H, W]` with per-dispatch GPU times
    /// (timestamp queries) instead of outputs. On a fresh machine the first call's times include
    /// each pipeline's JIT, which lavapipe runs inside the pipeline's first dispatch
    /// (`examples/cold_start.rs` tabulates it).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn profile(
        &mut self,
        pixel_values: &[f32],
        batch: usize,
        height: usize,
        width: usize,
    ) -> Result<crate::graph::Profile, ModelError> {
        let comp = self.compiled(batch, height, width)?;
        comp.exe.set_input(PIXEL_VALUES, pixel_values)?;
        Ok(comp.exe.profile()?)
    }

    /// Runs the network on `pixel_values [B, 3, H, W]` (normalised, see `preprocess`).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn forward(
        &mut self,
        pixel_values: &[f32],
        batch: usize,
        height: usize,
        width: usize,
    ) -> Result<RawBatch, ModelError> {
        pollster::block_on(self.forward_async(pixel_values, batch, height, width))
    }

    /// [`Mask2Former::forward`] without blocking (the only form in a browser).
    pub async fn forward_async(
        &mut self,
        pixel_values: &[f32],
        batch: usize,
        height: usize,
        width: usize,
    ) -> Result<RawBatch, ModelError> {
        check_input(pixel_values, batch, height, width)?;
        let (q, c) = (self.config.num_queries, self.config.num_labels() + 1);
        let comp = self.compiled(batch, height, width)?;
        let mask_size = comp.mask_size;
        let outs = comp
            .exe
            .run_with_async(&[(PIXEL_VALUES, pixel_values.into())])
            .await?;
        let mut outs = outs.into_iter();
        let class_logits = outs.next().expect("two outputs");
        let mask_logits = outs.next().expect("two outputs");
        Ok(RawBatch {
            batch,
            num_queries: q,
            num_classes_with_void: c,
            mask_size,
            class_logits,
            mask_logits,
        })
    }

    /// Runs the network and reads back only the class logits: the mask logits stay on the
    /// device for post-processing there (`postprocess::panoptic_on_device`), valid until this
    /// model's next run.
    pub async fn forward_on_device_async(
        &mut self,
        pixel_values: &[f32],
        batch: usize,
        height: usize,
        width: usize,
    ) -> Result<DeviceBatch, ModelError> {
        check_input(pixel_values, batch, height, width)?;
        let (q, c) = (self.config.num_queries, self.config.num_labels() + 1);
        let comp = self.compiled(batch, height, width)?;
        comp.exe.set_input(PIXEL_VALUES, pixel_values)?;
        comp.exe.run()?;
        let outs = comp.exe.plan().outputs.clone();
        Ok(DeviceBatch {
            batch,
            num_queries: q,
            num_classes_with_void: c,
            mask_size: comp.mask_size,
            class_logits: comp.exe.read_async(outs[0]).await?,
            mask_logits: comp.exe.tensor(outs[1])?.clone(),
        })
    }
}

fn check_input(
    pixel_values: &[f32],
    batch: usize,
    height: usize,
    width: usize,
) -> Result<(), ModelError> {
    if pixel_values.len() != batch * 3 * height * width {
        return Err(ModelError::Input(format!(
            "pixel_values has {} values, expected [B={batch}, 3, H={height}, W={width}] = {}",
            pixel_values.len(),
            batch * 3 * height * width
        )));
    }
    if height < 32 || width < 32 {
        return Err(ModelError::Input(format!(
            "image {height}x{width} is smaller than 32x32"
        )));
    }
    Ok(())
}

/// Network outputs of a batch with the mask logits left on the device.
#[derive(Clone)]
pub struct DeviceBatch {
    pub batch: usize,
    pub num_queries: usize,
    pub num_classes_with_void: usize,
    /// `(H/4, W/4)`
    pub mask_size: (usize, usize),
    /// `[B, Q, K+1]`
    pub class_logits: Vec<f32>,
    /// `[B, Q, H/4, W/4]`
    pub mask_logits: crate::runtime::Tensor,
}

impl DeviceBatch {
    /// Reads the mask logits back: the [`RawBatch`] the host post-processing takes.
    pub async fn download(&self, rt: &Runtime) -> Result<RawBatch, ModelError> {
        let mask_logits = rt
            .download_async(&self.mask_logits)
            .await
            .map_err(GraphError::from)?;
        Ok(RawBatch {
            batch: self.batch,
            num_queries: self.num_queries,
            num_classes_with_void: self.num_classes_with_void,
            mask_size: self.mask_size,
            class_logits: self.class_logits.clone(),
            mask_logits,
        })
    }
}
