//! Post-processing against recorded reference outputs (tests/fixtures/postprocess, made by
//! tools/make_postprocess_fixtures.py from seeded raw logits):
//! - "orig": the original Mask2Former inference (`maskformer_model.py`), transcribed in torch. Our
//!   code follows it; every orig comparison is exact up to float ties.
//! - "hf": transformers 5.24 `Mask2FormerImageProcessor.post_process_*`. It differs from the
//!   original (see docs/POSTPROCESS.md), so each hf comparison covers only what the two share:
//!   panoptic segment ids/labels/scores and the map on the pixels the original assigns (hf also
//!   assigns the pixels whose owner has probability < 0.5); semantic maps for the combine-first
//!   order only (hf always combines at 384×384, then resizes); instance scores/labels/areas only
//!   at input = output = 384×384 (hf scores and binarises at 384×384, then resizes nearest).

use mask2former::model::postprocess::{self, PostprocessConfig, RawOutputs};
use safetensors::SafeTensors;
use serde_json::Value;

struct Fixture {
    bytes: Vec<u8>,
    info: Value,
}

impl Fixture {
    fn load() -> Self {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/postprocess");
        let bytes = std::fs::read(format!("{dir}/postprocess.safetensors")).unwrap();
        let text = std::fs::read_to_string(format!("{dir}/postprocess.json")).unwrap();
        Self {
            bytes,
            info: serde_json::from_str(&text).unwrap(),
        }
    }

    fn raw(&self, key: &str) -> Vec<u8> {
        let st = SafeTensors::deserialize(&self.bytes).unwrap();
        let t = st
            .tensor(key)
            .unwrap_or_else(|e| panic!("fixture key {key}: {e}"));
        t.data().to_vec()
    }

    fn f32s(&self, key: &str) -> Vec<f32> {
        self.raw(key)
            .chunks(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect()
    }

    fn i32s(&self, key: &str) -> Vec<i32> {
        self.raw(key)
            .chunks(4)
            .map(|b| i32::from_le_bytes(b.try_into().unwrap()))
            .collect()
    }

    fn i64s(&self, key: &str) -> Vec<i64> {
        self.raw(key)
            .chunks(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
            .collect()
    }

    fn size(&self, case: &str, what: &str) -> (usize, usize) {
        let v = &self.info[case][what];
        (
            v[0].as_u64().unwrap() as usize,
            v[1].as_u64().unwrap() as usize,
        )
    }

    /// Runs `f` on the case's raw outputs.
    fn with_raw<T>(&self, case: &str, f: impl FnOnce(&RawOutputs) -> T) -> T {
        let class_logits = self.f32s(&format!("{case}.class_logits"));
        let mask_logits = self.f32s(&format!("{case}.mask_logits"));
        let raw = RawOutputs {
            class_logits: &class_logits,
            mask_logits: &mask_logits,
            num_queries: self.info[case]["queries"].as_u64().unwrap() as usize,
            num_classes_with_void: self.info["num_classes"].as_u64().unwrap() as usize + 1,
            mask_size: self.size(case, "mask_size"),
            input_size: self.size(case, "input_size"),
            output_size: self.size(case, "output_size"),
        };
        f(&raw)
    }
}

fn config(f: &Fixture) -> PostprocessConfig {
    PostprocessConfig {
        object_mask_threshold: f.info["object_mask_threshold"].as_f64().unwrap() as f32,
        overlap_threshold: f.info["overlap_threshold"].as_f64().unwrap() as f32,
        ..PostprocessConfig::default()
    }
}

fn is_thing(c: u32) -> bool {
    c < 3 // fixture: things 0..2, stuff 3..5 (checked against postprocess.json below)
}

fn rel_close(a: f32, b: f32, tol: f32) -> bool {
    (a - b).abs() <= tol * b.abs().max(1e-12)
}

/// Maps must agree on at least 99.9% of the `considered` pixels; returns the agreement.
fn assert_maps(what: &str, ours: &[u32], reference: &[u32], considered: impl Fn(usize) -> bool) {
    assert_eq!(ours.len(), reference.len(), "{what}: map size");
    let idx: Vec<usize> = (0..ours.len()).filter(|&i| considered(i)).collect();
    let bad: Vec<usize> = idx
        .iter()
        .copied()
        .filter(|&i| ours[i] != reference[i])
        .collect();
    let share = bad.len() as f64 / idx.len().max(1) as f64;
    assert!(
        share <= 1e-3,
        "{what}: {} of {} pixels differ, first at {:?} (ours {:?} vs reference {:?})",
        bad.len(),
        idx.len(),
        bad.first(),
        bad.first().map(|&i| ours[i]),
        bad.first().map(|&i| reference[i]),
    );
}

fn u8_map(f: &Fixture, key: &str) -> Vec<u32> {
    f.raw(key).into_iter().map(u32::from).collect()
}

#[test]
fn fixture_things_match_the_test() {
    let f = Fixture::load();
    let things: Vec<u64> = f.info["things"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(things, [0, 1, 2]);
}

/// Panoptic (original `panoptic_inference`): ids, labels, thing flags, scores and the id map.
#[test]
fn panoptic_matches_original_and_transformers() {
    let f = Fixture::load();
    let pan = f.with_raw("pan", |raw| {
        postprocess::panoptic(raw, &config(&f), &is_thing)
    });
    let orig = f.info["pan"]["orig_panoptic_segments"].as_array().unwrap();
    assert!(orig.len() >= 5, "fixture should have several segments");
    assert_eq!(pan.segments.len(), orig.len(), "segment count vs original");
    for (s, o) in pan.segments.iter().zip(orig) {
        assert_eq!(s.id as u64, o["id"].as_u64().unwrap(), "{s:?} vs {o}");
        assert_eq!(
            s.label_id as u64,
            o["category_id"].as_u64().unwrap(),
            "{s:?}"
        );
        assert_eq!(s.is_thing, o["isthing"].as_bool().unwrap(), "{s:?}");
        let score = o["score"].as_f64().unwrap() as f32;
        assert!(rel_close(s.score, score, 1e-5), "{s:?} vs {score}");
    }
    assert_maps(
        "panoptic vs original",
        &pan.ids,
        &u8_map(&f, "pan.orig.panoptic"),
        |_| true,
    );
    // Areas are those of the map.
    for s in &pan.segments {
        let area = pan.ids.iter().filter(|&&id| id == s.id).count() as u64;
        assert_eq!(s.area, area, "{s:?}");
    }

    // transformers: a second fused stuff query re-appends its class's segment (same id, its own
    // score) — keep the first entry per id, which is the one the original and we report.
    let mut hf: Vec<&Value> = Vec::new();
    for s in f.info["pan"]["hf_panoptic_segments"].as_array().unwrap() {
        if !hf.iter().any(|h| h["id"] == s["id"]) {
            hf.push(s);
        }
    }
    assert_eq!(
        pan.segments.len(),
        hf.len(),
        "segment count vs transformers"
    );
    for (s, h) in pan.segments.iter().zip(&hf) {
        assert_eq!(s.id as u64, h["id"].as_u64().unwrap(), "{s:?} vs {h}");
        assert_eq!(s.label_id as u64, h["label_id"].as_u64().unwrap(), "{s:?}");
        assert_eq!(!s.is_thing, h["was_fused"].as_bool().unwrap(), "{s:?}");
        // transformers rounds scores to 6 decimals.
        let score = h["score"].as_f64().unwrap() as f32;
        assert!((s.score - score).abs() <= 1e-6, "{s:?} vs {score}");
    }
    // transformers also gives each segment its owned pixels below probability 0.5, which the
    // original leaves void: compare where we assign a segment.
    let hf_map = u8_map(&f, "pan.hf.panoptic");
    assert_maps("panoptic vs transformers", &pan.ids, &hf_map, |i| {
        pan.ids[i] != 0
    });
}

/// Instance on a panoptic model (original `instance_inference` with panoptic_on: thing classes
/// only, after the top-k): pairs, scores, masks.
#[test]
fn instance_on_panoptic_model_matches_original() {
    let f = Fixture::load();
    let q = f.info["pan"]["queries"].as_u64().unwrap() as usize;
    let cfg = PostprocessConfig {
        top_k: q, // the fixture's test_topk_per_image
        ..config(&f)
    };
    let thing: &dyn Fn(u32) -> bool = &is_thing;
    let ours = f.with_raw("pan", |raw| postprocess::instance(raw, &cfg, Some(thing)));
    let scores = f.f32s("pan.orig.instance.scores");
    let labels = f.i32s("pan.orig.instance.labels");
    let queries = f.i32s("pan.orig.instance.queries");
    let masks = f.raw("pan.orig.instance.masks");
    let (oh, ow) = f.size("pan", "output_size");
    let row = (oh * ow).div_ceil(8);
    assert!(labels.iter().all(|&l| is_thing(l as u32)));
    assert_eq!(ours.instances.len(), scores.len(), "instance count");
    for i in 0..scores.len() {
        let m = ours
            .instances
            .iter()
            .find(|x| x.query == queries[i] as usize && x.label_id == labels[i] as u32)
            .unwrap_or_else(|| panic!("missing (query {}, label {})", queries[i], labels[i]));
        assert!(
            rel_close(m.score, scores[i], 1e-5),
            "query {} label {}: {} vs {}",
            queries[i],
            labels[i],
            m.score,
            scores[i]
        );
        let bits = &masks[i * row..(i + 1) * row];
        let reference: Vec<u32> = (0..oh * ow)
            .map(|p| u32::from(bits[p / 8] >> (7 - p % 8) & 1))
            .collect();
        let ours_mask: Vec<u32> = m.mask.iter().map(|&b| u32::from(b)).collect();
        assert_maps(
            &format!("instance mask {i}"),
            &ours_mask,
            &reference,
            |_| true,
        );
    }
}

/// Large output (1024×1366): mean mask probabilities over ~10⁵ pixels, where an f32 running sum
/// drifts by ~1e-4 from the original's result.
#[test]
fn instance_scores_on_large_masks_match_original() {
    let f = Fixture::load();
    let q = f.info["big"]["queries"].as_u64().unwrap() as usize;
    let k = f.info["num_classes"].as_u64().unwrap() as usize;
    let cfg = PostprocessConfig {
        top_k: q * k,
        ..config(&f)
    };
    let ours = f.with_raw("big", |raw| postprocess::instance(raw, &cfg, None));
    let scores = f.f32s("big.orig.instance.scores");
    let labels = f.i32s("big.orig.instance.labels");
    let queries = f.i32s("big.orig.instance.queries");
    let areas = f.i64s("big.orig.instance.areas");
    assert_eq!(ours.instances.len(), scores.len());
    assert!(
        areas.iter().any(|&a| a > 90_000),
        "fixture masks should be large"
    );
    for i in 0..scores.len() {
        let m = ours
            .instances
            .iter()
            .find(|x| x.query == queries[i] as usize && x.label_id == labels[i] as u32)
            .unwrap();
        assert_eq!(m.area as i64, areas[i], "query {} area", queries[i]);
        assert!(
            rel_close(m.score, scores[i], 1e-5),
            "query {} label {}: {} vs original {}",
            queries[i],
            labels[i],
            m.score,
            scores[i]
        );
    }
}

/// At input = output = 384×384 transformers' instance post-processing is the original's without
/// the thing filter: compare labels, scores and areas (transformers gives no query index, so
/// instances are paired by label and area).
#[test]
fn instance_matches_transformers_at_384() {
    let f = Fixture::load();
    let q = f.info["inst384"]["queries"].as_u64().unwrap() as usize;
    let cfg = PostprocessConfig {
        top_k: q, // transformers keeps num_queries pairs
        ..config(&f)
    };
    let ours = f.with_raw("inst384", |raw| postprocess::instance(raw, &cfg, None));
    let scores = f.f32s("inst384.hf.scores");
    let labels = f.i32s("inst384.hf.labels");
    let areas = f.i64s("inst384.hf.areas");
    // transformers drops empty masks (threshold 0 keeps everything else).
    let nonempty: Vec<_> = ours.instances.iter().filter(|x| x.area > 0).collect();
    assert_eq!(nonempty.len(), scores.len(), "instance count");
    for i in 0..scores.len() {
        let m = nonempty
            .iter()
            .find(|x| x.label_id == labels[i] as u32 && x.area as i64 == areas[i])
            .unwrap_or_else(|| panic!("no instance with label {} area {}", labels[i], areas[i]));
        // transformers rounds scores to 6 decimals.
        assert!(
            (m.score - scores[i]).abs() <= 1e-6 + 1e-5 * scores[i],
            "label {}: {} vs {}",
            labels[i],
            m.score,
            scores[i]
        );
    }
}

/// Semantic: masks resized first (panoptic/instance models) vs combined first (semantic-only
/// models), both against the original; combined-first also against transformers.
#[test]
fn semantic_matches_original_and_transformers() {
    let f = Fixture::load();
    for case in ["pan", "sem"] {
        for (first, key) in [
            (true, "semantic_resize_first"),
            (false, "semantic_combine_first"),
        ] {
            let cfg = PostprocessConfig {
                semantic_resize_masks_first: first,
                ..config(&f)
            };
            let ours = f.with_raw(case, |raw| postprocess::semantic(raw, &cfg));
            let reference = u8_map(&f, &format!("{case}.orig.{key}"));
            assert_maps(&format!("{case} {key}"), &ours.labels, &reference, |_| true);
            if case == "pan" && !first {
                let hf = u8_map(&f, "pan.hf.semantic");
                assert_maps("pan semantic vs transformers", &ours.labels, &hf, |_| true);
            }
        }
    }
    // The two orders must really differ on the sem case, or the test above proves nothing.
    let a = u8_map(&f, "sem.orig.semantic_resize_first");
    let b = u8_map(&f, "sem.orig.semantic_combine_first");
    let differ = a.iter().zip(&b).filter(|(x, y)| x != y).count();
    assert!(differ * 20 > a.len(), "only {differ} pixels differ");
}
