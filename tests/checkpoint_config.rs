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
const SWIN_TINY_COCO_PANOPTIC: &str = r#"{
  "activation_function": "relu",
  "architectures": [
    "Mask2FormerForUniversalSegmentation"
  ],
  "backbone_config": {
    "_name_or_path": "",
    "add_cross_attention": false,
    "architectures": null,
    "attention_probs_dropout_prob": 0.0,
    "bad_words_ids": null,
    "begin_suppress_tokens": null,
    "bos_token_id": null,
    "chunk_size_feed_forward": 0,
    "cross_attention_hidden_size": null,
    "decoder_start_token_id": null,
    "depths": [
      2,
      2,
      6,
      2
    ],
    "diversity_penalty": 0.0,
    "do_sample": false,
    "drop_path_rate": 0.3,
    "early_stopping": false,
    "embed_dim": 96,
    "encoder_no_repeat_ngram_size": 0,
    "encoder_stride": 32,
    "eos_token_id": null,
    "exponential_decay_length_penalty": null,
    "finetuning_task": null,
    "forced_bos_token_id": null,
    "forced_eos_token_id": null,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.0,
    "hidden_size": 768,
    "id2label": {
      "0": "LABEL_0",
      "1": "LABEL_1"
    },
    "image_size": 224,
    "initializer_range": 0.02,
    "is_decoder": false,
    "is_encoder_decoder": false,
    "label2id": {
      "LABEL_0": 0,
      "LABEL_1": 1
    },
    "layer_norm_eps": 1e-05,
    "length_penalty": 1.0,
    "max_length": 20,
    "min_length": 0,
    "mlp_ratio": 4.0,
    "model_type": "swin",
    "no_repeat_ngram_size": 0,
    "num_beam_groups": 1,
    "num_beams": 1,
    "num_channels": 3,
    "num_heads": [
      3,
      6,
      12,
      24
    ],
    "num_layers": 4,
    "num_return_sequences": 1,
    "out_features": [
      "stage1",
      "stage2",
      "stage3",
      "stage4"
    ],
    "output_attentions": false,
    "output_hidden_states": false,
    "output_scores": false,
    "pad_token_id": null,
    "patch_size": 4,
    "path_norm": true,
    "prefix": null,
    "problem_type": null,
    "pruned_heads": {},
    "qkv_bias": true,
    "remove_invalid_values": false,
    "repetition_penalty": 1.0,
    "return_dict": true,
    "return_dict_in_generate": false,
    "sep_token_id": null,
    "stage_names": [
      "stem",
      "stage1",
      "stage2",
      "stage3",
      "stage4"
    ],
    "suppress_tokens": null,
    "task_specific_params": null,
    "temperature": 1.0,
    "tf_legacy_loss": false,
    "tie_encoder_decoder": false,
    "tie_word_embeddings": true,
    "tokenizer_class": null,
    "top_k": 50,
    "top_p": 1.0,
    "torch_dtype": null,
    "torchscript": false,
    "transformers_version": "4.26.0.dev0",
    "typical_p": 1.0,
    "use_absolute_embeddings": false,
    "use_bfloat16": false,
    "window_size": 7
  },
  "class_weight": 2.0,
  "common_stride": 4,
  "decoder_layers": 10,
  "dice_weight": 5.0,
  "dim_feedforward": 2048,
  "dropout": 0.0,
  "encoder_feedforward_dim": 1024,
  "encoder_layers": 6,
  "enforce_input_projection": false,
  "feature_size": 256,
  "feature_strides": [
    4,
    8,
    16,
    32
  ],
  "hidden_dim": 256,
  "id2label": {
    "0": "person",
    "1": "bicycle",
    "10": "fire hydrant",
    "100": "road",
    "101": "roof",
    "102": "sand",
    "103": "sea",
    "104": "shelf",
    "105": "snow",
    "106": "stairs",
    "107": "tent",
    "108": "towel",
    "109": "wall-brick",
    "11": "stop sign",
    "110": "wall-stone",
    "111": "wall-tile",
    "112": "wall-wood",
    "113": "water-other",
    "114": "window-blind",
    "115": "window-other",
    "116": "tree-merged",
    "117": "fence-merged",
    "118": "ceiling-merged",
    "119": "sky-other-merged",
    "12": "parking meter",
    "120": "cabinet-merged",
    "121": "table-merged",
    "122": "floor-other-merged",
    "123": "pavement-merged",
    "124": "mountain-merged",
    "125": "grass-merged",
    "126": "dirt-merged",
    "127": "paper-merged",
    "128": "food-other-merged",
    "129": "building-other-merged",
    "13": "bench",
    "130": "rock-merged",
    "131": "wall-other-merged",
    "132": "rug-merged",
    "14": "bird",
    "15": "cat",
    "16": "dog",
    "17": "horse",
    "18": "sheep",
    "19": "cow",
    "2": "car",
    "20": "elephant",
    "21": "bear",
    "22": "zebra",
    "23": "giraffe",
    "24": "backpack",
    "25": "umbrella",
    "26": "handbag",
    "27": "tie",
    "28": "suitcase",
    "29": "frisbee",
    "3": "motorcycle",
    "30": "skis",
    "31": "snowboard",
    "32": "sports ball",
    "33": "kite",
    "34": "baseball bat",
    "35": "baseball glove",
    "36": "skateboard",
    "37": "surfboard",
    "38": "tennis racket",
    "39": "bottle",
    "4": "airplane",
    "40": "wine glass",
    "41": "cup",
    "42": "fork",
    "43": "knife",
    "44": "spoon",
    "45": "bowl",
    "46": "banana",
    "47": "apple",
    "48": "sandwich",
    "49": "orange",
    "5": "bus",
    "50": "broccoli",
    "51": "carrot",
    "52": "hot dog",
    "53": "pizza",
    "54": "donut",
    "55": "cake",
    "56": "chair",
    "57": "couch",
    "58": "potted plant",
    "59": "bed",
    "6": "train",
    "60": "dining table",
    "61": "toilet",
    "62": "tv",
    "63": "laptop",
    "64": "mouse",
    "65": "remote",
    "66": "keyboard",
    "67": "cell phone",
    "68": "microwave",
    "69": "oven",
    "7": "truck",
    "70": "toaster",
    "71": "sink",
    "72": "refrigerator",
    "73": "book",
    "74": "clock",
    "75": "vase",
    "76": "scissors",
    "77": "teddy bear",
    "78": "hair drier",
    "79": "toothbrush",
    "8": "boat",
    "80": "banner",
    "81": "blanket",
    "82": "bridge",
    "83": "cardboard",
    "84": "counter",
    "85": "curtain",
    "86": "door-stuff",
    "87": "floor-wood",
    "88": "flower",
    "89": "fruit",
    "9": "traffic light",
    "90": "gravel",
    "91": "house",
    "92": "light",
    "93": "mirror-stuff",
    "94": "net",
    "95": "pillow",
    "96": "platform",
    "97": "playingfield",
    "98": "railroad",
    "99": "river"
  },
  "ignore_value": 255,
  "importance_sample_ratio": 0.75,
  "init_std": 0.02,
  "init_xavier_std": 1.0,
  "label2id": {
    "airplane": 4,
    "apple": 47,
    "backpack": 24,
    "banana": 46,
    "banner": 80,
    "baseball bat": 34,
    "baseball glove": 35,
    "bear": 21,
    "bed": 59,
    "bench": 13,
    "bicycle": 1,
    "bird": 14,
    "blanket": 81,
    "boat": 8,
    "book": 73,
    "bottle": 39,
    "bowl": 45,
    "bridge": 82,
    "broccoli": 50,
    "building-other-merged": 129,
    "bus": 5,
    "cabinet-merged": 120,
    "cake": 55,
    "car": 2,
    "cardboard": 83,
    "carrot": 51,
    "cat": 15,
    "ceiling-merged": 118,
    "cell phone": 67,
    "chair": 56,
    "clock": 74,
    "couch": 57,
    "counter": 84,
    "cow": 19,
    "cup": 41,
    "curtain": 85,
    "dining table": 60,
    "dirt-merged": 126,
    "dog": 16,
    "donut": 54,
    "door-stuff": 86,
    "elephant": 20,
    "fence-merged": 117,
    "fire hydrant": 10,
    "floor-other-merged": 122,
    "floor-wood": 87,
    "flower": 88,
    "food-other-merged": 128,
    "fork": 42,
    "frisbee": 29,
    "fruit": 89,
    "giraffe": 23,
    "grass-merged": 125,
    "gravel": 90,
    "hair drier": 78,
    "handbag": 26,
    "horse": 17,
    "hot dog": 52,
    "house": 91,
    "keyboard": 66,
    "kite": 33,
    "knife": 43,
    "laptop": 63,
    "light": 92,
    "microwave": 68,
    "mirror-stuff": 93,
    "motorcycle": 3,
    "mountain-merged": 124,
    "mouse": 64,
    "net": 94,
    "orange": 49,
    "oven": 69,
    "paper-merged": 127,
    "parking meter": 12,
    "pavement-merged": 123,
    "person": 0,
    "pillow": 95,
    "pizza": 53,
    "platform": 96,
    "playingfield": 97,
    "potted plant": 58,
    "railroad": 98,
    "refrigerator": 72,
    "remote": 65,
    "river": 99,
    "road": 100,
    "rock-merged": 130,
    "roof": 101,
    "rug-merged": 132,
    "sand": 102,
    "sandwich": 48,
    "scissors": 76,
    "sea": 103,
    "sheep": 18,
    "shelf": 104,
    "sink": 71,
    "skateboard": 36,
    "skis": 30,
    "sky-other-merged": 119,
    "snow": 105,
    "snowboard": 31,
    "spoon": 44,
    "sports ball": 32,
    "stairs": 106,
    "stop sign": 11,
    "suitcase": 28,
    "surfboard": 37,
    "table-merged": 121,
    "teddy bear": 77,
    "tennis racket": 38,
    "tent": 107,
    "tie": 27,
    "toaster": 70,
    "toilet": 61,
    "toothbrush": 79,
    "towel": 108,
    "traffic light": 9,
    "train": 6,
    "tree-merged": 116,
    "truck": 7,
    "tv": 62,
    "umbrella": 25,
    "vase": 75,
    "wall-brick": 109,
    "wall-other-merged": 131,
    "wall-stone": 110,
    "wall-tile": 111,
    "wall-wood": 112,
    "water-other": 113,
    "window-blind": 114,
    "window-other": 115,
    "wine glass": 40,
    "zebra": 22
  },
  "mask_feature_size": 256,
  "mask_weight": 5.0,
  "model_type": "mask2former",
  "no_object_weight": 0.1,
  "num_attention_heads": 8,
  "num_hidden_layers": 10,
  "num_queries": 100,
  "output_auxiliary_logits": null,
  "oversample_ratio": 3.0,
  "pre_norm": false,
  "torch_dtype": "float32",
  "train_num_points": 12544,
  "transformers_version": "4.26.0.dev0",
  "use_auxiliary_loss": true
}"#;

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
