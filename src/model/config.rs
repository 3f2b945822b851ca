//! The Hugging Face `Mask2FormerConfig` (`config.json`) with its nested Swin `backbone_config`.
//!
//! Mirrors transformers' `configuration_mask2former.py` and `configuration_swin.py`: field names and defaults
//! are theirs, so a hub `config.json` (transformers 4.x era) and one written by transformers 5.x both parse,
//! and [`Mask2FormerConfig::to_json`] writes a file transformers can load back. Keys this crate does not use
//! (`architectures`, `transformers_version`, generation defaults, ...) are kept verbatim in `extra` so a
//! round trip loses nothing. [`Mask2FormerConfig::validate`] rejects what the model code does not implement,
//! naming the field.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

mod validate;

/// A config that cannot be read or that asks for something this crate does not implement.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a Mask2Former config.json: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("config field `{field}` = {value}: {reason}")]
    Invalid {
        field: &'static str,
        value: String,
        reason: String,
    },
    #[error("{path}: {source}")]
    InFile {
        path: PathBuf,
        source: Box<ConfigError>,
    },
    #[error("serialising config: {0}")]
    Serialize(serde_json::Error),
}

/// The Swin backbone sub-config (`backbone_config`, transformers `SwinConfig`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SwinConfig {
    /// Must be "swin": the only backbone implemented.
    #[serde(default = "default_swin_type")]
    pub model_type: String,
    /// Pretraining resolution; only used by absolute position embeddings (not supported).
    #[serde(default = "default_image_size", deserialize_with = "square")]
    pub image_size: usize,
    /// Patch size of the stem convolution (kernel = stride).
    #[serde(default = "default_patch_size", deserialize_with = "square")]
    pub patch_size: usize,
    #[serde(default = "default_num_channels")]
    pub num_channels: usize,
    /// Channels of stage 1; stage s has `embed_dim * 2^s`.
    #[serde(default = "default_embed_dim")]
    pub embed_dim: usize,
    /// Swin blocks per stage.
    #[serde(default = "default_depths")]
    pub depths: Vec<usize>,
    /// Attention heads per stage.
    #[serde(default = "default_num_heads")]
    pub num_heads: Vec<usize>,
    #[serde(default = "default_window_size")]
    pub window_size: usize,
    /// MLP hidden size = `int(dim * mlp_ratio)`.
    #[serde(default = "default_mlp_ratio")]
    pub mlp_ratio: f64,
    #[serde(default = "default_true")]
    pub qkv_bias: bool,
    #[serde(default)]
    pub hidden_dropout_prob: f64,
    #[serde(default)]
    pub attention_probs_dropout_prob: f64,
    #[serde(default = "default_drop_path_rate")]
    pub drop_path_rate: f64,
    #[serde(default = "default_gelu")]
    pub hidden_act: String,
    #[serde(default)]
    pub use_absolute_embeddings: bool,
    #[serde(default = "default_layer_norm_eps")]
    pub layer_norm_eps: f64,
    /// Which stages the backbone returns ("stage1".."stage4"); Mask2Former needs all four.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_features: Option<Vec<String>>,
    /// The same as `out_features`, as indices into `stage_names` (stem = 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out_indices: Option<Vec<usize>>,
    /// Everything else (generation defaults of 4.x files, `stage_names`, `path_norm`, ...), kept for round trips.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `Mask2FormerConfig` (transformers `configuration_mask2former.py`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mask2FormerConfig {
    #[serde(default = "default_m2f_type")]
    pub model_type: String,
    pub backbone_config: SwinConfig,
    /// Channels of the pixel decoder (its GroupNorm(32) needs a multiple of 32).
    #[serde(default = "default_256")]
    pub feature_size: usize,
    /// Channels of the per-pixel mask features (and of the mask embeddings).
    #[serde(default = "default_256")]
    pub mask_feature_size: usize,
    /// Width of the masked-attention transformer decoder.
    #[serde(default = "default_256")]
    pub hidden_dim: usize,
    /// FFN width of the pixel decoder's MSDeformAttn encoder layers.
    #[serde(default = "default_1024")]
    pub encoder_feedforward_dim: usize,
    /// Activation of the transformer decoder FFN.
    #[serde(default = "default_relu")]
    pub activation_function: String,
    /// MSDeformAttn encoder layers in the pixel decoder.
    #[serde(default = "default_encoder_layers")]
    pub encoder_layers: usize,
    /// Number of predictions: one from the learnable queries plus `decoder_layers - 1` masked-attention layers.
    #[serde(default = "default_decoder_layers")]
    pub decoder_layers: usize,
    /// Heads of the decoder attentions and of the pixel decoder's MSDeformAttn.
    #[serde(default = "default_heads")]
    pub num_attention_heads: usize,
    /// Dropout; transformers also uses it as the decoder's layer-drop probability in training.
    #[serde(default)]
    pub dropout: f64,
    /// FFN width of the transformer decoder.
    #[serde(default = "default_2048")]
    pub dim_feedforward: usize,
    #[serde(default)]
    pub pre_norm: bool,
    /// Adds a 1x1 conv on each decoder input level even when `feature_size == hidden_dim`.
    #[serde(default)]
    pub enforce_input_projection: bool,
    #[serde(default = "default_common_stride")]
    pub common_stride: usize,
    #[serde(default = "default_ignore_value")]
    pub ignore_value: i64,
    #[serde(default = "default_num_queries")]
    pub num_queries: usize,
    #[serde(default = "default_no_object_weight")]
    pub no_object_weight: f64,
    #[serde(default = "default_class_weight")]
    pub class_weight: f64,
    #[serde(default = "default_mask_weight")]
    pub mask_weight: f64,
    #[serde(default = "default_mask_weight")]
    pub dice_weight: f64,
    #[serde(default = "default_train_num_points")]
    pub train_num_points: usize,
    #[serde(default = "default_oversample_ratio")]
    pub oversample_ratio: f64,
    #[serde(default = "default_importance_sample_ratio")]
    pub importance_sample_ratio: f64,
    #[serde(default = "default_init_std")]
    pub init_std: f64,
    #[serde(default = "default_one")]
    pub init_xavier_std: f64,
    #[serde(default = "default_true")]
    pub use_auxiliary_loss: bool,
    #[serde(default = "default_feature_strides")]
    pub feature_strides: Vec<usize>,
    /// Class names by id, keys "0".."K-1" as in every HF config; `num_labels` is its length.
    #[serde(default)]
    pub id2label: BTreeMap<String, String>,
    #[serde(default)]
    pub label2id: BTreeMap<String, i64>,
    /// Everything else (`architectures`, `transformers_version`, `dtype`, `output_auxiliary_logits`, ...).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Mask2FormerConfig {
    #[cfg(not(target_arch = "wasm32"))]
    /// Reads and validates `config.json`.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates the text of a `config.json`; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let config: Self = serde_json::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })?;
        config.validate().map_err(|e| ConfigError::InFile {
            path: path.to_owned(),
            source: Box::new(e),
        })?;
        Ok(config)
    }

    /// Parses and validates a `config.json` held in memory.
    pub fn from_json(text: &str) -> Result<Self, ConfigError> {
        let config: Self = serde_json::from_str(text).map_err(|source| ConfigError::Parse {
            path: PathBuf::from("<memory>"),
            source,
        })?;
        config.validate()?;
        Ok(config)
    }

    /// The config as pretty JSON, in the layout transformers reads (training writes this as `config.json`).
    pub fn to_json(&self) -> Result<String, ConfigError> {
        serde_json::to_string_pretty(self).map_err(ConfigError::Serialize)
    }

    /// Number of object classes K (the class head has K + 1 outputs, the last being "no object").
    pub fn num_labels(&self) -> usize {
        self.id2label.len()
    }

    /// Class names ordered by id. Valid after [`validate`](Self::validate) (ids are exactly 0..K).
    pub fn labels(&self) -> Vec<String> {
        (0..self.num_labels())
            .map(|i| {
                self.id2label
                    .get(&i.to_string())
                    .cloned()
                    .unwrap_or_default()
            })
            .collect()
    }

    /// Number of masked-attention decoder layers (`decoder_layers - 1`).
    pub fn num_masked_attention_layers(&self) -> usize {
        self.decoder_layers.saturating_sub(1)
    }

    /// Pixel-decoder FPN levels below the three MSDeformAttn levels (1 for the usual stride 8 → 4).
    pub fn num_fpn_levels(&self) -> usize {
        let lowest_msda_stride = self.feature_strides[1];
        (lowest_msda_stride / self.common_stride).trailing_zeros() as usize
    }

    /// Whether the transformer decoder has 1x1 input projections (`transformer_module.input_projections`).
    pub fn has_decoder_input_projection(&self) -> bool {
        self.feature_size != self.hidden_dim || self.enforce_input_projection
    }
}

impl SwinConfig {
    /// Channels of stage `s` (0-based): `embed_dim * 2^s`.
    pub fn stage_dim(&self, s: usize) -> usize {
        self.embed_dim << s
    }

    /// Hidden width of the MLP in stage `s` (transformers: `int(mlp_ratio * dim)`).
    pub fn mlp_dim(&self, s: usize) -> usize {
        (self.mlp_ratio * self.stage_dim(s) as f64) as usize
    }
}

/// transformers accepts `patch_size` / `image_size` as an int or an `[h, w]` pair; only square ones are used.
fn square<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum IntOrPair {
        Int(usize),
        Pair(Vec<usize>),
    }
    match IntOrPair::deserialize(d)? {
        IntOrPair::Int(v) => Ok(v),
        IntOrPair::Pair(v) if v.len() == 2 && v[0] == v[1] => Ok(v[0]),
        IntOrPair::Pair(v) => Err(serde::de::Error::custom(format!(
            "expected a square size, got {v:?}"
        ))),
    }
}

// Defaults: transformers' SwinConfig / Mask2FormerConfig (the default backbone is Swin-S-like: depths [2,2,18,2]).
fn default_swin_type() -> String {
    "swin".into()
}
fn default_m2f_type() -> String {
    "mask2former".into()
}
fn default_image_size() -> usize {
    224
}
fn default_patch_size() -> usize {
    4
}
fn default_num_channels() -> usize {
    3
}
fn default_embed_dim() -> usize {
    96
}
fn default_depths() -> Vec<usize> {
    vec![2, 2, 6, 2]
}
fn default_num_heads() -> Vec<usize> {
    vec![3, 6, 12, 24]
}
fn default_window_size() -> usize {
    7
}
fn default_mlp_ratio() -> f64 {
    4.0
}
fn default_true() -> bool {
    true
}
fn default_drop_path_rate() -> f64 {
    0.1
}
fn default_gelu() -> String {
    "gelu".into()
}
fn default_layer_norm_eps() -> f64 {
    1e-5
}
fn default_256() -> usize {
    256
}
fn default_1024() -> usize {
    1024
}
fn default_2048() -> usize {
    2048
}
fn default_relu() -> String {
    "relu".into()
}
fn default_encoder_layers() -> usize {
    6
}
fn default_decoder_layers() -> usize {
    10
}
fn default_heads() -> usize {
    8
}
fn default_common_stride() -> usize {
    4
}
fn default_ignore_value() -> i64 {
    255
}
fn default_num_queries() -> usize {
    100
}
fn default_no_object_weight() -> f64 {
    0.1
}
fn default_class_weight() -> f64 {
    2.0
}
fn default_mask_weight() -> f64 {
    5.0
}
fn default_train_num_points() -> usize {
    12544
}
fn default_oversample_ratio() -> f64 {
    3.0
}
fn default_importance_sample_ratio() -> f64 {
    0.75
}
fn default_init_std() -> f64 {
    0.02
}
fn default_one() -> f64 {
    1.0
}
fn default_feature_strides() -> Vec<usize> {
    vec![4, 8, 16, 32]
}
