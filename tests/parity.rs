//! Parity with transformers: the committed fixtures (tests/fixtures/parity, made by
//! tools/make_parity_fixtures.py) hold random-weight models in the hub layout and every
//! intermediate tensor of one forward. We build the same network on the graph, load the same
//! weights, feed the same `pixel_values` and compare stage by stage.

use std::collections::HashMap;
use std::path::PathBuf;

use mask2former::graph::{CompileOptions, Executable, Graph, Value};
use mask2former::model::checkpoint::Checkpoint;
use mask2former::model::config::Mask2FormerConfig;
use mask2former::model::network::{self, PIXEL_VALUES};
use mask2former::testing;

/// Relative L2 bound for every compared stage (the issue asks for 1e-4; f32 accumulation in a
/// different order than PyTorch's gives ~1e-6 per op, and errors grow through the layers).
const TOL: f64 = 1e-4;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/parity")
        .join(name)
}

/// The f32 tensors of a safetensors file (the fixtures also hold an i64 tensor we skip).
fn load_f32(path: &std::path::Path) -> HashMap<String, (Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .filter(|(_, t)| t.dtype() == safetensors::Dtype::F32)
        .map(|(k, t)| {
            let data = t
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            (k, (t.shape().to_vec(), data))
        })
        .collect()
}

fn run_parity(name: &str) {
    run_parity_dir(name, &fixture(name));
}

fn run_parity_dir(name: &str, dir: &std::path::Path) {
    let cfg = Mask2FormerConfig::from_file(&dir.join("config.json")).unwrap();
    cfg.validate().unwrap();
    let weights = Checkpoint::load(&dir.join("model.safetensors")).unwrap();
    let want = load_f32(&dir.join("intermediates.safetensors"));
    let (px_shape, px) = &want["pixel_values"];
    let [b, _, h, w] = px_shape[..] else {
        panic!("pixel_values shape")
    };

    let rt = testing::runtime();
    let mut g = Graph::new();
    let net = network::build(&mut g, &cfg, b, h, w).unwrap();

    // (fixture key, graph value, how to post-process our output before comparing)
    let mut checks: Vec<(String, Value)> = Vec::new();
    for (s, f) in net.backbone.iter().enumerate() {
        checks.push((format!("backbone.features.{s}"), f.value));
    }
    for (l, f) in net.pixel_decoder.multi_scale.iter().enumerate() {
        checks.push((format!("pixel_decoder.multi_scale_features.{l}"), f.value));
    }
    checks.push((
        "pixel_decoder.mask_features".into(),
        net.pixel_decoder.mask_features,
    ));
    let n = net.predictions.len();
    for (k, p) in net.predictions.iter().enumerate() {
        checks.push((format!("decoder.intermediate.{k}"), p.queries));
        if k + 1 < n {
            checks.push((format!("predictions.{k}.class_logits"), p.class_logits));
            checks.push((format!("predictions.{k}.mask_logits"), p.mask_logits));
            checks.push((format!("decoder.attention_mask.{k}"), p.next_attention_mask));
        }
    }
    checks.push(("class_queries_logits".into(), net.last().class_logits));
    checks.push(("masks_queries_logits".into(), net.last().mask_logits));

    let outputs: Vec<Value> = checks.iter().map(|c| c.1).collect();
    let mut exe = Executable::compile(rt, &g, &outputs, &CompileOptions::default()).unwrap();
    for (key, t) in weights.tensors() {
        if exe.param(key).is_ok() {
            exe.set_param(key, &t.data).unwrap();
        }
    }
    let got = exe
        .run_with(&[(PIXEL_VALUES, px.as_slice().into())])
        .unwrap();

    let mut report = Vec::new();
    let mut failed = false;
    for ((key, _), mut ours) in checks.iter().zip(got) {
        let theirs = &want
            .get(key)
            .unwrap_or_else(|| panic!("{name}: fixture lacks {key}"))
            .1;
        if key.starts_with("decoder.attention_mask") {
            // The fixture holds the mask after the "fully blocked row -> unblocked" fix, which our
            // attention kernel applies internally; apply it here too. Rows are Q x (h*w).
            let k = theirs.len() / (b * cfg.num_queries);
            for row in ours.chunks_mut(k) {
                if row.iter().all(|&v| v == 1.0) {
                    row.fill(0.0);
                }
            }
            let differ = ours.iter().zip(theirs).filter(|(a, b)| a != b).count();
            // A logit within rounding of 0 may flip; allow a handful of such pixels.
            let ok = differ * 1000 <= ours.len();
            failed |= !ok;
            report.push(format!(
                "{key}: {differ} of {} mask entries differ{}",
                ours.len(),
                if ok { "" } else { "  <-- FAIL" }
            ));
            continue;
        }
        let err = testing::rel_l2(&ours, theirs);
        let ok = err <= TOL;
        failed |= !ok;
        report.push(format!(
            "{key}: rel L2 {err:.2e}{}",
            if ok { "" } else { "  <-- FAIL" }
        ));
    }
    println!("{name}:\n  {}", report.join("\n  "));
    assert!(
        !failed,
        "{name}: parity failures:\n  {}",
        report.join("\n  ")
    );
}

#[test]
fn tiny_model_matches_transformers_stage_by_stage() {
    run_parity("tiny");
}

#[test]
fn small_model_batch_of_two_matches_transformers() {
    run_parity("small");
}

/// The same stage-by-stage comparison on a folder made outside the repository (too large to
/// commit), e.g. the Swin-T-shaped model of `tools/swin_tiny_photo.py` with intermediates of a
/// real photo: `M2F_PARITY_DIR=/tmp/swint/parity_512x512 cargo test --release --test parity --
/// --ignored --nocapture`.
#[test]
#[ignore = "needs M2F_PARITY_DIR (a model folder with intermediates.safetensors)"]
fn external_model_matches_transformers_stage_by_stage() {
    let dir = std::env::var("M2F_PARITY_DIR").expect("set M2F_PARITY_DIR");
    run_parity_dir("external", std::path::Path::new(&dir));
}
