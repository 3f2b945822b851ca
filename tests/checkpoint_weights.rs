//! Loading `model.safetensors`, checking it against `network::expected_keys`, and the atomic writer.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use mask2former::model::checkpoint::{save_safetensors, Checkpoint, CheckpointError, HostTensor};
use mask2former::model::config::Mask2FormerConfig;
use mask2former::model::network::expected_keys;
use safetensors::tensor::{Dtype, TensorView};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/parity")
        .join(name)
}

/// A fresh directory per test under the system temp dir (removed at the end of a passing test).
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("m2f-ckpt-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn load_fixture(name: &str) -> (Mask2FormerConfig, Checkpoint) {
    let config = Mask2FormerConfig::from_file(&fixture(&format!("{name}/config.json"))).unwrap();
    let ckpt = Checkpoint::load(&fixture(&format!("{name}/model.safetensors"))).unwrap();
    (config, ckpt)
}

#[test]
fn fixture_checkpoints_match_expected_keys_exactly() {
    for name in ["tiny", "small"] {
        let (config, ckpt) = load_fixture(name);
        let expected = expected_keys(&config).unwrap();
        let report = ckpt
            .validate(&expected)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        // Everything in the file is either expected or one of the three extras transformers 5 writes.
        let ignored: Vec<&str> = report.ignored.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            ignored,
            [
                "criterion.empty_weight",
                "model.pixel_level_module.encoder.swin.layernorm.bias",
                "model.pixel_level_module.encoder.swin.layernorm.weight",
            ],
            "{name}"
        );
        assert_eq!(
            ckpt.tensors().len(),
            expected.len() + ignored.len(),
            "{name}"
        );
        // No duplicates in expected_keys.
        let mut names: Vec<&str> = expected.iter().map(|(k, _)| k.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), expected.len(), "{name}");
        // The class head has K + 1 outputs and the empty weight ends with no_object_weight.
        let k1 = config.num_labels() + 1;
        ckpt.get_shaped("class_predictor.weight", &[k1, config.hidden_dim])
            .unwrap();
        let empty = ckpt.get("criterion.empty_weight").unwrap();
        assert_eq!(empty.data.len(), k1);
        assert_eq!(
            empty.data[k1 - 1] as f64,
            config.no_object_weight as f32 as f64
        );
        assert_eq!(ckpt.source_dtype("class_predictor.bias"), Some(Dtype::F32));
    }
}

#[test]
fn fixture_parameter_count_matches_transformers() {
    // meta.json's num_params counts torch parameters (which include swin.layernorm, not the buffer).
    for name in ["tiny", "small"] {
        let (config, _) = load_fixture(name);
        let meta: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(fixture(&format!("{name}/meta.json"))).unwrap(),
        )
        .unwrap();
        let swin_final_norm = 2 * config.backbone_config.stage_dim(3);
        let total: usize = expected_keys(&config)
            .unwrap()
            .iter()
            .map(|(_, s)| s.iter().product::<usize>())
            .sum();
        assert_eq!(
            (total + swin_final_norm) as u64,
            meta["num_params"].as_u64().unwrap(),
            "{name}"
        );
    }
}

#[test]
fn swin_tiny_coco_panoptic_key_list() {
    // Appendix A of shared/reference/mask2former.md lists 566 tensors for this checkpoint: 12 int64
    // relative_position_index buffers and criterion.empty_weight among them. transformers 5.24 builds the model
    // from this config with 47,435,264 parameters besides swin.layernorm.
    let mut config = Mask2FormerConfig::from_file(&fixture("tiny/config.json")).unwrap();
    let swin = &mut config.backbone_config;
    swin.embed_dim = 96;
    swin.depths = vec![2, 2, 6, 2];
    swin.num_heads = vec![3, 6, 12, 24];
    swin.window_size = 7;
    swin.mlp_ratio = 4.0;
    config.feature_size = 256;
    config.mask_feature_size = 256;
    config.hidden_dim = 256;
    config.encoder_feedforward_dim = 1024;
    config.dim_feedforward = 2048;
    config.encoder_layers = 6;
    config.decoder_layers = 10;
    config.num_attention_heads = 8;
    config.num_queries = 100;
    config.id2label = (0..133).map(|i| (i.to_string(), format!("c{i}"))).collect();
    config.validate().unwrap();
    let keys = expected_keys(&config).unwrap();
    assert_eq!(keys.len(), 566 - 12 - 1);
    let params: usize = keys.iter().map(|(_, s)| s.iter().product::<usize>()).sum();
    assert_eq!(params, 47_435_264);
    let map: HashMap<&str, &Vec<usize>> = keys.iter().map(|(k, s)| (k.as_str(), s)).collect();
    let shape = |k: &str| {
        map.get(k)
            .map(|s| s.as_slice())
            .unwrap_or_else(|| panic!("no {k}"))
    };
    assert_eq!(
        shape("model.pixel_level_module.encoder.encoder.layers.2.blocks.5.attention.self.relative_position_bias_table"),
        [169, 12]
    );
    assert_eq!(
        shape("model.pixel_level_module.encoder.encoder.layers.2.downsample.reduction.weight"),
        [768, 1536]
    );
    assert_eq!(
        shape("model.pixel_level_module.decoder.input_projections.0.0.weight"),
        [256, 768, 1, 1]
    );
    assert_eq!(
        shape(
            "model.pixel_level_module.decoder.encoder.layers.5.self_attn.sampling_offsets.weight"
        ),
        [192, 256]
    );
    assert_eq!(
        shape("model.pixel_level_module.decoder.adapter_1.0.weight"),
        [256, 96, 1, 1]
    );
    assert_eq!(
        shape("model.transformer_module.decoder.layers.8.cross_attn.in_proj_weight"),
        [768, 256]
    );
    assert!(!map.contains_key("model.transformer_module.decoder.layers.9.fc1.weight"));
    assert_eq!(shape("class_predictor.weight"), [134, 256]);
}

#[test]
fn optional_keys_follow_the_config() {
    let (mut config, _) = load_fixture("tiny");
    let count = |c: &Mask2FormerConfig, pat: &str| {
        expected_keys(c)
            .unwrap()
            .iter()
            .filter(|(k, _)| k.contains(pat))
            .count()
    };
    assert_eq!(count(&config, "transformer_module.input_projections"), 0);
    assert_eq!(count(&config, "attention.self.query.bias"), 5);
    config.enforce_input_projection = true;
    assert_eq!(count(&config, "transformer_module.input_projections"), 6);
    // A decoder wider than the pixel decoder needs them too: transformers' Conv2d(feature, hidden, 1).
    let (mut wide, _) = load_fixture("tiny");
    wide.hidden_dim = 2 * wide.feature_size;
    wide.validate().unwrap();
    let keys = expected_keys(&wide).unwrap();
    let proj = "model.transformer_module.input_projections.2";
    let want = [
        (
            format!("{proj}.weight"),
            vec![wide.hidden_dim, wide.feature_size, 1, 1],
        ),
        (format!("{proj}.bias"), vec![wide.hidden_dim]),
    ];
    for key in &want {
        assert!(keys.contains(key), "{key:?}");
    }
    config.backbone_config.qkv_bias = false;
    assert_eq!(count(&config, "attention.self.query.bias"), 0);
    config.common_stride = 8; // no FPN level below 1/8
    config.validate().unwrap();
    assert_eq!(count(&config, "adapter_1"), 0);
}

/// Writes `tensors` (raw little-endian bytes with a dtype) with the safetensors crate directly.
fn write_raw(path: &Path, tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) {
    let views: Vec<(&str, TensorView)> = tensors
        .iter()
        .map(|(k, d, s, b)| (*k, TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    let bytes = safetensors::serialize(views, None).unwrap();
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn converts_f16_bf16_f64_and_skips_integer_extras() {
    let dir = scratch("dtypes");
    let path = dir.join("model.safetensors");
    let vals = [1.5f32, -2.25, 0.0, 65504.0];
    let f16: Vec<u8> = vals
        .iter()
        .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
        .collect();
    let bf16: Vec<u8> = vals
        .iter()
        .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
        .collect();
    let f64b: Vec<u8> = vals
        .iter()
        .flat_map(|v| (*v as f64).to_le_bytes())
        .collect();
    let idx: Vec<u8> = (0..4i64).flat_map(|v| v.to_le_bytes()).collect();
    write_raw(
        &path,
        &[
            ("a", Dtype::F16, vec![2, 2], f16),
            ("b", Dtype::BF16, vec![4], bf16),
            ("c", Dtype::F64, vec![1, 4], f64b),
            (
                "x.blocks.0.attention.self.relative_position_index",
                Dtype::I64,
                vec![2, 2],
                idx,
            ),
        ],
    );
    let ckpt = Checkpoint::load(&path).unwrap();
    assert_eq!(
        ckpt.get("a").unwrap(),
        &HostTensor::new(vec![2, 2], vals.to_vec()).unwrap()
    );
    // bf16 keeps 8 mantissa bits: 65504 rounds to 65536.
    assert_eq!(ckpt.get("b").unwrap().data, [1.5, -2.25, 0.0, 65536.0]);
    assert_eq!(ckpt.get("c").unwrap().data, vals);
    assert_eq!(ckpt.source_dtype("a"), Some(Dtype::F16));
    assert_eq!(ckpt.source_dtype("b"), Some(Dtype::BF16));
    assert!(ckpt
        .get("x.blocks.0.attention.self.relative_position_index")
        .is_err());
    assert_eq!(
        ckpt.skipped()
            .get("x.blocks.0.attention.self.relative_position_index"),
        Some(&vec![2, 2])
    );
    // The skipped buffer is reported as ignored, not as unexpected.
    let report = ckpt.report(&[
        ("a".into(), vec![2, 2]),
        ("b".into(), vec![4]),
        ("c".into(), vec![1, 4]),
    ]);
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.ignored.len(), 1);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn integer_weight_is_a_dtype_error_naming_the_key() {
    let dir = scratch("dtype-error");
    let path = dir.join("model.safetensors");
    let ints: Vec<u8> = (0..6i32).flat_map(|v| v.to_le_bytes()).collect();
    write_raw(
        &path,
        &[("class_predictor.weight", Dtype::I32, vec![2, 3], ints)],
    );
    let err = Checkpoint::load(&path).unwrap_err();
    match &err {
        CheckpointError::Dtype { key, dtype, .. } => {
            assert_eq!(key, "class_predictor.weight");
            assert_eq!(dtype, "I32");
        }
        other => panic!("expected a dtype error, got {other}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("class_predictor.weight") && msg.contains("model.safetensors"),
        "{msg}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// The tiny fixture's tensors, edited, written back with the crate's own writer.
fn edited_tiny(
    test: &str,
    edit: impl FnOnce(&mut BTreeMap<String, HostTensor>),
) -> (PathBuf, Checkpoint, Vec<(String, Vec<usize>)>) {
    let (config, ckpt) = load_fixture("tiny");
    let mut tensors = ckpt.tensors().clone();
    edit(&mut tensors);
    let dir = scratch(test);
    let path = dir.join("model.safetensors");
    save_safetensors(&path, &tensors).unwrap();
    (
        dir,
        Checkpoint::load(&path).unwrap(),
        expected_keys(&config).unwrap(),
    )
}

#[test]
fn missing_key_is_reported_with_its_expected_shape() {
    let key = "model.transformer_module.decoder.layers.1.fc2.weight";
    let (dir, ckpt, expected) = edited_tiny("missing", |t| {
        t.remove(key);
    });
    let err = ckpt.validate(&expected).unwrap_err();
    let CheckpointError::Mismatch { report, .. } = &err else {
        panic!("expected a mismatch, got {err}");
    };
    assert_eq!(report.missing, [(key.to_owned(), vec![32, 64])]);
    assert!(report.mismatched.is_empty() && report.unexpected.is_empty());
    let msg = err.to_string();
    assert!(
        msg.contains(key) && msg.contains("[32, 64]") && msg.contains("1 missing"),
        "{msg}"
    );
    assert!(matches!(
        ckpt.get(key),
        Err(CheckpointError::Missing { .. })
    ));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn wrong_shape_is_reported_with_both_shapes() {
    let key = "model.pixel_level_module.decoder.level_embed";
    let (dir, ckpt, expected) = edited_tiny("shape", |t| {
        t.insert(
            key.into(),
            HostTensor::new(vec![4, 32], vec![0.0; 128]).unwrap(),
        );
    });
    let err = ckpt.validate(&expected).unwrap_err();
    let CheckpointError::Mismatch { report, .. } = &err else {
        panic!("expected a mismatch, got {err}");
    };
    assert_eq!(report.mismatched.len(), 1);
    assert_eq!(report.mismatched[0].key, key);
    assert_eq!(report.mismatched[0].expected, [3, 32]);
    assert_eq!(report.mismatched[0].found, [4, 32]);
    assert!(
        err.to_string()
            .contains("expected shape [3, 32], found [4, 32]"),
        "{err}"
    );
    let err = ckpt.get_shaped(key, &[3, 32]).unwrap_err();
    assert!(matches!(err, CheckpointError::Shape { .. }), "{err}");
    assert!(err.to_string().contains(key), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn unknown_key_is_unexpected_but_known_extras_are_not() {
    let (dir, ckpt, expected) = edited_tiny("unexpected", |t| {
        t.insert(
            "model.some_new_module.weight".into(),
            HostTensor::new(vec![2], vec![1.0, 2.0]).unwrap(),
        );
        t.insert(
            "model.x.num_batches_tracked".into(),
            HostTensor::new(vec![], vec![3.0]).unwrap(),
        );
    });
    let report = ckpt.report(&expected);
    assert_eq!(
        report.unexpected,
        [("model.some_new_module.weight".to_owned(), vec![2])]
    );
    assert!(report
        .ignored
        .iter()
        .any(|(k, _)| k == "model.x.num_batches_tracked"));
    let err = ckpt.validate(&expected).unwrap_err();
    assert!(
        err.to_string()
            .contains("unexpected `model.some_new_module.weight`"),
        "{err}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn config_mismatch_reports_many_keys_compactly() {
    // The small checkpoint against the tiny config: nearly every key differs; the message stays short.
    let (tiny, _) = load_fixture("tiny");
    let (_, small) = load_fixture("small");
    let err = small.validate(&expected_keys(&tiny).unwrap()).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("more"), "{msg}");
    assert!(msg.lines().count() < 40, "{msg}");
}

#[test]
fn corrupt_and_missing_files_are_errors_naming_the_path() {
    let dir = scratch("corrupt");
    let good = std::fs::read(fixture("tiny/model.safetensors")).unwrap();
    for (name, bytes) in [
        ("truncated.safetensors", good[..good.len() / 2].to_vec()),
        (
            "garbage.safetensors",
            b"this is not a safetensors file at all".to_vec(),
        ),
        ("empty.safetensors", Vec::new()),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        let err = Checkpoint::load(&path).unwrap_err();
        assert!(
            matches!(err, CheckpointError::Format { .. }),
            "{name}: {err}"
        );
        assert!(err.to_string().contains(name), "{err}");
    }
    let err = Checkpoint::load(&dir.join("nope.safetensors")).unwrap_err();
    assert!(matches!(err, CheckpointError::Io { .. }), "{err}");
    assert!(err.to_string().contains("nope.safetensors"), "{err}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn atomic_writer_round_trips_and_leaves_no_temp_files() {
    let dir = scratch("writer");
    let path = dir.join("model.safetensors");
    let (_, ckpt) = load_fixture("small");
    save_safetensors(&path, ckpt.tensors()).unwrap();
    // Overwriting an existing file replaces it whole.
    let mut second = ckpt.tensors().clone();
    second.insert(
        "extra.scalar".into(),
        HostTensor::new(vec![], vec![7.0]).unwrap(),
    );
    save_safetensors(&path, &second).unwrap();
    let back = Checkpoint::load(&path).unwrap();
    assert_eq!(back.tensors(), &second);
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["model.safetensors"]);
    // transformers needs the "format" metadata to accept the file.
    let bytes = std::fs::read(&path).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    assert_eq!(
        meta.metadata()
            .as_ref()
            .and_then(|m| m.get("format"))
            .map(String::as_str),
        Some("pt")
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn writer_rejects_bad_tensors_and_unwritable_paths() {
    let dir = scratch("writer-errors");
    let mut bad = BTreeMap::new();
    bad.insert(
        "w".to_owned(),
        HostTensor {
            shape: vec![2, 2],
            data: vec![1.0; 3],
        },
    );
    let err = save_safetensors(&dir.join("a.safetensors"), &bad).unwrap_err();
    assert!(matches!(err, CheckpointError::DataLength { .. }), "{err}");
    assert!(HostTensor::new(vec![2, 2], vec![0.0; 3]).is_err());
    let mut good = BTreeMap::new();
    good.insert("w".to_owned(), HostTensor::new(vec![1], vec![1.0]).unwrap());
    let target = dir.join("missing-dir").join("a.safetensors");
    let err = save_safetensors(&target, &good).unwrap_err();
    assert!(err.to_string().contains("missing-dir"), "{err}");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    std::fs::remove_dir_all(dir).unwrap();
}
