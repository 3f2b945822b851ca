//! [`Mask2FormerConfig::validate`]: what the model code implements, checked field by field so
//! that the error names the offending field and value.

use super::{ConfigError, Mask2FormerConfig, SwinConfig};

impl Mask2FormerConfig {
    /// Checks that the model code can run this config; the error names the offending field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_kind()?;
        self.validate_dims()?;
        self.validate_strides()?;
        self.validate_loss()
    }

    /// Model type, backbone, decoder variant and labels.
    fn validate_kind(&self) -> Result<(), ConfigError> {
        if self.model_type != "mask2former" {
            return Err(invalid(
                "model_type",
                &self.model_type,
                "expected \"mask2former\"",
            ));
        }
        self.backbone_config.validate()?;
        if self.pre_norm {
            return Err(invalid(
                "pre_norm",
                self.pre_norm,
                "only the post-norm decoder (the released checkpoints) is implemented",
            ));
        }
        if self.activation_function != "relu" {
            return Err(invalid(
                "activation_function",
                &self.activation_function,
                "only \"relu\" is implemented",
            ));
        }
        if self.id2label.is_empty() {
            return Err(invalid(
                "id2label",
                &self.id2label,
                "needs at least one class",
            ));
        }
        for i in 0..self.id2label.len() {
            if !self.id2label.contains_key(&i.to_string()) {
                return Err(invalid(
                    "id2label",
                    self.id2label.keys().collect::<Vec<_>>(),
                    format!(
                        "ids must be exactly 0..{}; {i} is missing",
                        self.id2label.len()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Widths, depths and head counts the kernels can split.
    fn validate_dims(&self) -> Result<(), ConfigError> {
        positive("feature_size", self.feature_size)?;
        positive("mask_feature_size", self.mask_feature_size)?;
        positive("hidden_dim", self.hidden_dim)?;
        positive("encoder_feedforward_dim", self.encoder_feedforward_dim)?;
        positive("dim_feedforward", self.dim_feedforward)?;
        positive("decoder_layers", self.decoder_layers)?;
        positive("num_queries", self.num_queries)?;
        positive("num_attention_heads", self.num_attention_heads)?;
        if !self.feature_size.is_multiple_of(32) {
            return Err(invalid(
                "feature_size",
                self.feature_size,
                "the pixel decoder's GroupNorm(32, C) needs a multiple of 32",
            ));
        }
        if !self.hidden_dim.is_multiple_of(self.num_attention_heads) {
            return Err(invalid(
                "hidden_dim",
                self.hidden_dim,
                format!(
                    "not divisible by num_attention_heads = {}",
                    self.num_attention_heads
                ),
            ));
        }
        if !self.feature_size.is_multiple_of(self.num_attention_heads) {
            return Err(invalid(
                "feature_size",
                self.feature_size,
                format!(
                    "not divisible by num_attention_heads = {} (MSDeformAttn heads)",
                    self.num_attention_heads
                ),
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(invalid("dropout", self.dropout, "must be in [0, 1)"));
        }
        Ok(())
    }

    /// Feature strides of the Swin stages and the FPN output stride.
    fn validate_strides(&self) -> Result<(), ConfigError> {
        let p = self.backbone_config.patch_size;
        let expected_strides: Vec<usize> = (0..4).map(|s| p << s).collect();
        if self.feature_strides != expected_strides {
            return Err(invalid(
                "feature_strides",
                &self.feature_strides,
                format!("the Swin stages have strides {expected_strides:?} (patch_size {p})"),
            ));
        }
        let fpn_ok = self.common_stride.is_power_of_two()
            && self.common_stride <= self.feature_strides[1]
            && self.feature_strides[1] / self.common_stride <= 2
            && self.common_stride >= self.feature_strides[0];
        if !fpn_ok {
            return Err(invalid(
                "common_stride",
                self.common_stride,
                format!(
                    "must be {} or {} (stage 1 or stage 2 stride)",
                    self.feature_strides[0], self.feature_strides[1]
                ),
            ));
        }
        Ok(())
    }

    /// Point sampling and loss weights (used by training).
    fn validate_loss(&self) -> Result<(), ConfigError> {
        if self.train_num_points == 0 {
            return Err(invalid(
                "train_num_points",
                self.train_num_points,
                "must be positive",
            ));
        }
        if self.oversample_ratio < 1.0 {
            return Err(invalid(
                "oversample_ratio",
                self.oversample_ratio,
                "must be >= 1",
            ));
        }
        if !(0.0..=1.0).contains(&self.importance_sample_ratio) {
            return Err(invalid(
                "importance_sample_ratio",
                self.importance_sample_ratio,
                "must be in [0, 1]",
            ));
        }
        for (field, w) in [
            ("no_object_weight", self.no_object_weight),
            ("class_weight", self.class_weight),
            ("mask_weight", self.mask_weight),
            ("dice_weight", self.dice_weight),
        ] {
            if !(w >= 0.0 && w.is_finite()) {
                return Err(invalid(field, w, "must be a finite number >= 0"));
            }
        }
        Ok(())
    }
}

impl SwinConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        self.validate_stages()?;
        self.validate_out_features()
    }

    /// Stage layout, widths, window, activation and norms.
    fn validate_stages(&self) -> Result<(), ConfigError> {
        if self.model_type != "swin" {
            return Err(invalid(
                "backbone_config.model_type",
                &self.model_type,
                "only the Swin backbone (\"swin\") is supported",
            ));
        }
        if self.depths.len() != 4 {
            return Err(invalid(
                "backbone_config.depths",
                &self.depths,
                "Mask2Former needs exactly 4 stages",
            ));
        }
        if self.num_heads.len() != self.depths.len() {
            return Err(invalid(
                "backbone_config.num_heads",
                &self.num_heads,
                format!("needs one entry per stage ({})", self.depths.len()),
            ));
        }
        positive("backbone_config.embed_dim", self.embed_dim)?;
        positive("backbone_config.patch_size", self.patch_size)?;
        positive("backbone_config.num_channels", self.num_channels)?;
        positive("backbone_config.window_size", self.window_size)?;
        if let Some(d) = self.depths.iter().find(|d| **d == 0) {
            return Err(invalid(
                "backbone_config.depths",
                &self.depths,
                format!("a stage has {d} blocks"),
            ));
        }
        for (s, &h) in self.num_heads.iter().enumerate() {
            if h == 0 || !self.stage_dim(s).is_multiple_of(h) {
                return Err(invalid(
                    "backbone_config.num_heads",
                    &self.num_heads,
                    format!(
                        "stage {} has {} channels, not divisible by {h} heads",
                        s + 1,
                        self.stage_dim(s)
                    ),
                ));
            }
        }
        if !(self.mlp_ratio > 0.0 && self.mlp_ratio.is_finite()) {
            return Err(invalid(
                "backbone_config.mlp_ratio",
                self.mlp_ratio,
                "must be positive",
            ));
        }
        if self.hidden_act != "gelu" {
            return Err(invalid(
                "backbone_config.hidden_act",
                &self.hidden_act,
                "only \"gelu\" is implemented",
            ));
        }
        if self.use_absolute_embeddings {
            return Err(invalid("backbone_config.use_absolute_embeddings", true, "absolute position embeddings are not implemented (no Mask2Former checkpoint uses them)"));
        }
        if self.layer_norm_eps.is_nan() || self.layer_norm_eps <= 0.0 {
            return Err(invalid(
                "backbone_config.layer_norm_eps",
                self.layer_norm_eps,
                "must be positive",
            ));
        }
        Ok(())
    }

    /// The backbone must output all four stages.
    fn validate_out_features(&self) -> Result<(), ConfigError> {
        let all: Vec<String> = (1..=4).map(|s| format!("stage{s}")).collect();
        match (&self.out_features, &self.out_indices) {
            (None, None) => {
                return Err(invalid("backbone_config.out_features", "missing", "Mask2Former needs [\"stage1\", \"stage2\", \"stage3\", \"stage4\"] (transformers would default to the last stage only)"));
            }
            (Some(f), _) if *f != all => {
                return Err(invalid(
                    "backbone_config.out_features",
                    f,
                    "Mask2Former needs [\"stage1\", \"stage2\", \"stage3\", \"stage4\"]",
                ));
            }
            (_, Some(i)) if *i != [1, 2, 3, 4] => {
                return Err(invalid(
                    "backbone_config.out_indices",
                    i,
                    "Mask2Former needs [1, 2, 3, 4]",
                ));
            }
            _ => {}
        }
        Ok(())
    }
}

fn invalid(
    field: &'static str,
    value: impl std::fmt::Debug,
    reason: impl Into<String>,
) -> ConfigError {
    ConfigError::Invalid {
        field,
        value: format!("{value:?}"),
        reason: reason.into(),
    }
}

fn positive(field: &'static str, v: usize) -> Result<(), ConfigError> {
    if v == 0 {
        return Err(invalid(field, v, "must be positive"));
    }
    Ok(())
}
