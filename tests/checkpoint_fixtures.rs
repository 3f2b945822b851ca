//! The parity fixtures hold what tests/fixtures/parity/README.md says, with shapes implied by their config:
//! a guard for the files other tests compare against.

use std::collections::BTreeSet;
use std::path::PathBuf;

use mask2former::model::checkpoint::Checkpoint;
use mask2former::model::config::Mask2FormerConfig;
use mask2former::model::network::expected_keys;
use safetensors::tensor::Dtype;
use safetensors::SafeTensors;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/parity")
        .join(name)
}

struct File {
    bytes: Vec<u8>,
}

impl File {
    fn open(name: &str) -> Self {
        Self {
            bytes: std::fs::read(fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}")),
        }
    }

    fn st(&self) -> SafeTensors<'_> {
        SafeTensors::deserialize(&self.bytes).unwrap()
    }

    fn shape(&self, key: &str) -> Vec<usize> {
        self.st()
            .tensor(key)
            .unwrap_or_else(|_| panic!("no tensor {key}"))
            .shape()
            .to_vec()
    }

    fn dtype(&self, key: &str) -> Dtype {
        self.st().tensor(key).unwrap().dtype()
    }

    fn i64s(&self, key: &str) -> Vec<i64> {
        let t = self.st().tensor(key).unwrap();
        assert_eq!(t.dtype(), Dtype::I64, "{key}");
        t.data()
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
            .collect()
    }

    fn keys(&self) -> BTreeSet<String> {
        self.st().names().into_iter().map(str::to_owned).collect()
    }
}

fn config(name: &str) -> Mask2FormerConfig {
    Mask2FormerConfig::from_file(&fixture(&format!("{name}/config.json"))).unwrap()
}

#[test]
fn forward_intermediates_have_config_shapes() {
    for (name, batch, height, width) in [("tiny", 1, 96, 128), ("small", 2, 96, 160)] {
        let c = config(name);
        let f = File::open(&format!("{name}/intermediates.safetensors"));
        let (q, k1, hd) = (c.num_queries, c.num_labels() + 1, c.hidden_dim);
        assert_eq!(f.shape("pixel_values"), [batch, 3, height, width], "{name}");
        for s in 0..4 {
            let stride = 4 << s;
            assert_eq!(
                f.shape(&format!("backbone.features.{s}")),
                [
                    batch,
                    c.backbone_config.stage_dim(s),
                    height / stride,
                    width / stride
                ],
                "{name} stage {s}"
            );
        }
        let level_hw: Vec<usize> = (0..3)
            .map(|l| (height / (32 >> l)) * (width / (32 >> l)))
            .collect();
        for l in 0..3 {
            let (h, w) = (height / (32 >> l), width / (32 >> l));
            assert_eq!(
                f.shape(&format!("pixel_decoder.multi_scale_features.{l}")),
                [batch, c.feature_size, h, w]
            );
        }
        let mask_hw = [height / 4, width / 4];
        assert_eq!(
            f.shape("pixel_decoder.mask_features"),
            [batch, c.mask_feature_size, mask_hw[0], mask_hw[1]]
        );
        let layers = c.num_masked_attention_layers();
        for i in 0..layers {
            assert_eq!(
                f.shape(&format!("decoder.attention_mask.{i}")),
                [batch, q, level_hw[i % 3]]
            );
        }
        for k in 0..=layers {
            assert_eq!(
                f.shape(&format!("decoder.intermediate.{k}")),
                [batch, q, hd]
            );
            assert_eq!(
                f.shape(&format!("decoder.hidden_states.{k}")),
                [batch, q, hd]
            );
        }
        for k in 0..layers {
            assert_eq!(
                f.shape(&format!("predictions.{k}.class_logits")),
                [batch, q, k1]
            );
            assert_eq!(
                f.shape(&format!("predictions.{k}.mask_logits")),
                [batch, q, mask_hw[0], mask_hw[1]]
            );
        }
        assert!(!f
            .keys()
            .contains(&format!("predictions.{layers}.class_logits")));
        assert_eq!(f.shape("class_queries_logits"), [batch, q, k1]);
        assert_eq!(
            f.shape("masks_queries_logits"),
            [batch, q, mask_hw[0], mask_hw[1]]
        );
        assert!(f
            .keys()
            .iter()
            .all(|k| k == "msda0.spatial_shapes" || f.dtype(k) == Dtype::F32));
    }
}

#[test]
fn msda_record_matches_the_pixel_decoder() {
    let c = config("tiny");
    let f = File::open("tiny/intermediates.safetensors");
    let shapes = f.i64s("msda0.spatial_shapes");
    assert_eq!(shapes, [3, 4, 6, 8, 12, 16]);
    let s: usize = shapes.chunks(2).map(|p| (p[0] * p[1]) as usize).sum();
    let heads = c.num_attention_heads;
    assert_eq!(
        f.shape("msda0.value"),
        [1, s, heads, c.feature_size / heads]
    );
    assert_eq!(f.shape("msda0.sampling_locations"), [1, s, heads, 3, 4, 2]);
    assert_eq!(f.shape("msda0.attention_weights"), [1, s, heads, 3, 4]);
    assert_eq!(f.shape("msda0.output"), [1, s, c.feature_size]);
}

#[test]
fn loss_fixture_covers_every_parameter() {
    let c = config("tiny");
    let f = File::open("tiny/loss.safetensors");
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("tiny/loss.json")).unwrap()).unwrap();
    let keys = f.keys();
    let weights: BTreeSet<String> = expected_keys(&c)
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    let ckpt = Checkpoint::load(&fixture("tiny/model.safetensors")).unwrap();
    let no_grad: BTreeSet<String> = info["params_without_grad"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    // Gradients under hub names: every weight the model loads, and nothing else.
    let grads: BTreeSet<String> = keys
        .iter()
        .filter_map(|k| k.strip_prefix("grad.").map(str::to_owned))
        .collect();
    assert_eq!(grads, weights);
    assert!(
        no_grad.iter().all(|k| k.contains("swin.layernorm")),
        "{no_grad:?}"
    );
    let after: BTreeSet<String> = keys
        .iter()
        .filter_map(|k| k.strip_prefix("param_after.").map(str::to_owned))
        .collect();
    assert_eq!(after, &weights | &no_grad);
    for w in &weights {
        assert_eq!(
            f.shape(&format!("grad.{w}")),
            ckpt.get(w).unwrap().shape,
            "{w}"
        );
    }
    // Random draws: per prediction, one (1, P, 2) per image for the matcher, then (n, 3P, 2) and
    // (n, P/4, 2) for the point loss, n = matched masks in the batch.
    let p = c.train_num_points;
    let n: usize = (0..2)
        .map(|b| f.shape(&format!("class_labels.{b}"))[0])
        .sum();
    assert_eq!(info["num_masks"].as_u64().unwrap() as usize, n);
    let per_pred = [
        vec![1, p, 2],
        vec![1, p, 2],
        vec![n, 3 * p, 2],
        vec![n, p - 3 * p / 4, 2],
    ];
    let draws: Vec<String> = keys
        .iter()
        .filter(|k| k.starts_with("rand."))
        .cloned()
        .collect();
    assert_eq!(draws.len(), 4 * c.decoder_layers);
    for (i, key) in draws.iter().enumerate() {
        assert_eq!(key, &format!("rand.{i:03}"));
        assert_eq!(f.shape(key), per_pred[i % 4], "{key}");
    }
    // Matching: every target matched exactly once per prediction.
    for pred in 0..c.decoder_layers {
        for b in 0..2 {
            let mut t = f.i64s(&format!("match.{pred}.{b}.target"));
            let qs = f.i64s(&format!("match.{pred}.{b}.query"));
            assert!(qs.iter().all(|&x| (x as usize) < c.num_queries));
            t.sort();
            let n_b = f.shape(&format!("class_labels.{b}"))[0] as i64;
            assert_eq!(t, (0..n_b).collect::<Vec<_>>());
        }
    }
    // Total = sum of the weighted terms; one set of 3 terms per prediction.
    let terms = info["terms_weighted"].as_object().unwrap();
    assert_eq!(terms.len(), 3 * c.decoder_layers);
    let sum: f64 = terms.values().map(|v| v.as_f64().unwrap()).sum();
    let total = info["total_loss"].as_f64().unwrap();
    assert!((sum - total).abs() < 1e-4 * total, "{sum} vs {total}");
    assert_eq!(f.dtype("mask_labels.0"), Dtype::U8);
}

#[test]
fn postprocess_fixture_is_consistent() {
    for (name, batch, size) in [("tiny", 1, [75, 100]), ("small", 2, [75, 125])] {
        let f = File::open(&format!("{name}/postprocess.safetensors"));
        let info: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(fixture(&format!("{name}/postprocess.json"))).unwrap(),
        )
        .unwrap();
        for b in 0..batch {
            for kind in ["semantic", "instance", "panoptic"] {
                let key = format!("{kind}.{b}");
                assert_eq!(f.shape(&key), size, "{name} {key}");
                assert_eq!(f.dtype(&key), Dtype::I16, "{name} {key}");
            }
        }
        let images = info["images"].as_array().unwrap();
        assert_eq!(images.len(), batch);
        assert!(images
            .iter()
            .any(|i| !i["instance_segments"].as_array().unwrap().is_empty()));
        assert!(images
            .iter()
            .any(|i| !i["panoptic_segments"].as_array().unwrap().is_empty()));
        for kind in ["instance", "panoptic"] {
            let t = &info["thresholds"][kind];
            assert!(t["threshold"].as_f64().unwrap() > 0.0, "{name} {kind}");
        }
    }
}
