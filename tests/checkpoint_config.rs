//! Parsing and validation of Hugging Face `config.json` files (transformers 4.x hub files and 5.x-written ones).

use std::path::PathBuf;

use mask2former::model::config::{ConfigError, Mask2FormerConfig};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/parity")
        .join(name)
}

/// What `facebook/mask2former-swin-tiny-coco-panoptic`'s config.json looks like: written by transformers
/// 4.26.0.dev0 (Jan 2023) with `json.dumps(indent=2, sort_keys=True)`. Reconstructed from the 4.x configuration
/// classes (the nested backbone config carries every PretrainedConfig attribute, the top level only
/// non-defaults plus `num_hidden_layers`), the converter's settings and the COCO panoptic label list; it keeps
/// the hub file's stray `"path_norm": true` and has `out_features` without `out_indices`.
/// transformers 5.24 loads this exact text (checked when it was written: 133 labels, 47,436,800 parameters).
/// Kept byte for byte in `tests/fixtures/config/swin_tiny_coco_panoptic_hub.json`.
const SWIN_TINY_COCO_PANOPTIC: &str =
    include_str!("fixtures/config/swin_tiny_coco_panoptic_hub.json");

fn hub_config() -> Mask2FormerConfig {
    Mask2FormerConfig::from_json(SWIN_TINY_COCO_PANOPTIC).expect("hub config parses")
}

#[test]
fn parses_transformers_4x_hub_config() {
    let c = hub_config();
    assert_eq!(c.num_labels(), 133);
    assert_eq!(c.labels()[0], "person");
    assert_eq!(c.labels()[132], "rug-merged");
    assert_eq!(c.num_queries, 100);
    assert_eq!(
        (c.hidden_dim, c.feature_size, c.mask_feature_size),
        (256, 256, 256)
    );
    assert_eq!(
        (
            c.encoder_layers,
            c.decoder_layers,
            c.num_masked_attention_layers()
        ),
        (6, 10, 9)
    );
    assert_eq!(
        (
            c.num_attention_heads,
            c.dim_feedforward,
            c.encoder_feedforward_dim
        ),
        (8, 2048, 1024)
    );
    assert_eq!(
        (
            c.class_weight,
            c.mask_weight,
            c.dice_weight,
            c.no_object_weight
        ),
        (2.0, 5.0, 5.0, 0.1)
    );
    assert_eq!(
        (
            c.train_num_points,
            c.oversample_ratio,
            c.importance_sample_ratio
        ),
        (12544, 3.0, 0.75)
    );
    assert_eq!(c.num_fpn_levels(), 1);
    assert!(!c.has_decoder_input_projection());
    let s = &c.backbone_config;
    assert_eq!(
        (s.embed_dim, s.window_size, s.patch_size, s.num_channels),
        (96, 7, 4, 3)
    );
    assert_eq!(s.depths, [2, 2, 6, 2]);
    assert_eq!(s.num_heads, [3, 6, 12, 24]);
    assert_eq!((s.stage_dim(3), s.mlp_dim(0)), (768, 384));
    assert_eq!(s.out_indices, None);
    // Unused keys are kept, not dropped.
    assert_eq!(
        s.extra.get("path_norm"),
        Some(&serde_json::Value::Bool(true))
    );
    assert!(c.extra.contains_key("num_hidden_layers"));
}

#[test]
fn parses_transformers_5x_written_fixture_configs() {
    let tiny = Mask2FormerConfig::from_file(&fixture("tiny/config.json")).unwrap();
    assert_eq!(tiny.num_labels(), 5);
    assert_eq!(tiny.num_queries, 8);
    assert_eq!(tiny.backbone_config.embed_dim, 8);
    assert_eq!(tiny.backbone_config.depths, [1, 1, 2, 1]);
    assert_eq!(tiny.backbone_config.out_indices, Some(vec![1, 2, 3, 4]));
    assert_eq!(tiny.decoder_layers, 4);
    assert_eq!(tiny.train_num_points, 128);
    let small = Mask2FormerConfig::from_file(&fixture("small/config.json")).unwrap();
    assert_eq!(small.backbone_config.window_size, 12);
    assert_eq!(small.backbone_config.mlp_ratio, 2.0);
    assert_eq!(small.backbone_config.mlp_dim(1), 48);
    assert_eq!(small.num_attention_heads, 8);
    assert_eq!(
        small.labels(),
        (0..7).map(|i| format!("class_{i}")).collect::<Vec<_>>()
    );
}

#[test]
fn round_trips_through_json() {
    for text in [
        SWIN_TINY_COCO_PANOPTIC.to_owned(),
        std::fs::read_to_string(fixture("small/config.json")).unwrap(),
    ] {
        let c = Mask2FormerConfig::from_json(&text).unwrap();
        let written = c.to_json().unwrap();
        let back = Mask2FormerConfig::from_json(&written).unwrap();
        assert_eq!(c, back);
        // Same JSON value as the input: nothing lost, nothing invented.
        let a: serde_json::Value = serde_json::from_str(&text).unwrap();
        let b: serde_json::Value = serde_json::from_str(&written).unwrap();
        assert_eq!(a, b);
    }
}

#[test]
fn missing_fields_take_transformers_defaults() {
    let text = r#"{"backbone_config": {"model_type": "swin", "out_features": ["stage1", "stage2", "stage3", "stage4"]},
                  "id2label": {"0": "a", "1": "b"}}"#;
    let c = Mask2FormerConfig::from_json(text).unwrap();
    assert_eq!(
        (
            c.hidden_dim,
            c.num_queries,
            c.decoder_layers,
            c.common_stride
        ),
        (256, 100, 10, 4)
    );
    assert_eq!(c.feature_strides, [4, 8, 16, 32]);
    assert_eq!(c.backbone_config.depths, [2, 2, 6, 2]);
    assert_eq!(c.backbone_config.layer_norm_eps, 1e-5);
    assert_eq!(c.model_type, "mask2former");
    // patch_size may be written as a pair.
    let pair = text.replace(
        r#""model_type": "swin","#,
        r#""model_type": "swin", "patch_size": [4, 4],"#,
    );
    assert_eq!(
        Mask2FormerConfig::from_json(&pair)
            .unwrap()
            .backbone_config
            .patch_size,
        4
    );
}

/// Edits the hub config as a JSON value, then expects validation to fail naming `field`.
fn expect_invalid(field: &str, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value = serde_json::from_str(SWIN_TINY_COCO_PANOPTIC).unwrap();
    edit(&mut v);
    let err = Mask2FormerConfig::from_json(&v.to_string()).expect_err(field);
    match &err {
        ConfigError::Invalid { field: f, .. } => assert_eq!(*f, field, "{err}"),
        other => panic!("expected Invalid for {field}, got {other}"),
    }
    assert!(err.to_string().contains(field), "{err}");
}

#[test]
fn rejects_unsupported_configs_naming_the_field() {
    expect_invalid("backbone_config.model_type", |v| {
        v["backbone_config"]["model_type"] = "resnet".into()
    });
    expect_invalid("pre_norm", |v| v["pre_norm"] = true.into());
    expect_invalid("feature_size", |v| {
        v["feature_size"] = 48.into();
        v["hidden_dim"] = 48.into();
    });
    expect_invalid("hidden_dim", |v| v["hidden_dim"] = 100.into()); // not divisible by 8 heads
    expect_invalid("model_type", |v| v["model_type"] = "maskformer".into());
    expect_invalid("activation_function", |v| {
        v["activation_function"] = "gelu".into()
    });
    expect_invalid("backbone_config.depths", |v| {
        v["backbone_config"]["depths"] = serde_json::json!([2, 2, 6])
    });
    expect_invalid("backbone_config.num_heads", |v| {
        v["backbone_config"]["num_heads"] = serde_json::json!([3, 6, 12])
    });
    expect_invalid("backbone_config.num_heads", |v| {
        v["backbone_config"]["num_heads"] = serde_json::json!([5, 6, 12, 24])
    });
    expect_invalid("backbone_config.out_features", |v| {
        v["backbone_config"]
            .as_object_mut()
            .unwrap()
            .remove("out_features");
    });
    expect_invalid("backbone_config.out_features", |v| {
        v["backbone_config"]["out_features"] = serde_json::json!(["stage2", "stage3", "stage4"])
    });
    expect_invalid("backbone_config.use_absolute_embeddings", |v| {
        v["backbone_config"]["use_absolute_embeddings"] = true.into()
    });
    expect_invalid("backbone_config.hidden_act", |v| {
        v["backbone_config"]["hidden_act"] = "relu".into()
    });
    expect_invalid("id2label", |v| {
        v["id2label"].as_object_mut().unwrap().remove("7");
    });
    expect_invalid("id2label", |v| v["id2label"] = serde_json::json!({}));
    expect_invalid("feature_strides", |v| {
        v["feature_strides"] = serde_json::json!([4, 8, 16])
    });
    expect_invalid("common_stride", |v| v["common_stride"] = 2.into());
    expect_invalid("importance_sample_ratio", |v| {
        v["importance_sample_ratio"] = 1.5.into()
    });
    expect_invalid("oversample_ratio", |v| v["oversample_ratio"] = 0.5.into());
    expect_invalid("decoder_layers", |v| v["decoder_layers"] = 0.into());
    expect_invalid("dropout", |v| v["dropout"] = 1.0.into());
}

#[test]
fn unreadable_configs_are_errors_naming_the_file() {
    let missing = fixture("does-not-exist/config.json");
    let err = Mask2FormerConfig::from_file(&missing).unwrap_err();
    assert!(matches!(err, ConfigError::Io { .. }));
    assert!(
        err.to_string().contains("does-not-exist/config.json"),
        "{err}"
    );
    // A safetensors file is not a config.
    let err = Mask2FormerConfig::from_file(&fixture("tiny/model.safetensors")).unwrap_err();
    assert!(
        matches!(err, ConfigError::Parse { .. } | ConfigError::Io { .. }),
        "{err}"
    );
    // A config without a backbone_config is rejected by the parser.
    let err = Mask2FormerConfig::from_json(r#"{"id2label": {"0": "a"}}"#).unwrap_err();
    assert!(err.to_string().contains("backbone_config"), "{err}");
}

#[test]
fn invalid_config_file_error_names_file_and_field() {
    let dir = std::env::temp_dir().join(format!("m2f-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config.json");
    std::fs::write(
        &path,
        SWIN_TINY_COCO_PANOPTIC.replace(r#""pre_norm": false"#, r#""pre_norm": true"#),
    )
    .unwrap();
    let err = Mask2FormerConfig::from_file(&path).unwrap_err();
    assert!(
        matches!(&err, ConfigError::InFile { source, .. } if matches!(**source, ConfigError::Invalid { field: "pre_norm", .. })),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("config.json") && msg.contains("pre_norm"),
        "{msg}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}
