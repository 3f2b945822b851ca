//! The `segment` CLI on the tiny transformers fixture: files written, raw outputs equal to
//! transformers' logits, clear errors for bad input, and a non-zero exit when an image fails.

use std::path::PathBuf;
use std::process::Command;

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parity/tiny")
}

fn segment() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_segment"));
    c.env("XDG_RUNTIME_DIR", "/tmp");
    c
}

fn out_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("m2f-segment-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[test]
fn writes_overlay_json_and_label_maps_for_each_task() {
    for task in ["panoptic", "instance", "semantic"] {
        let out = out_dir(task);
        let st = segment()
            .args([
                "--model",
                fixture().to_str().unwrap(),
                "--task",
                task,
                "--out",
                out.to_str().unwrap(),
            ])
            .args([
                "--object-mask-threshold",
                "0.2",
                "--overlap-threshold",
                "0.3",
            ])
            .arg(fixture().join("image_0.png"))
            .output()
            .unwrap();
        assert!(
            st.status.success(),
            "{task}: {}",
            String::from_utf8_lossy(&st.stderr)
        );
        let stdout = String::from_utf8_lossy(&st.stdout);
        assert!(
            stdout.contains("images/s") && stdout.contains("peak device memory"),
            "{stdout}"
        );
        let overlay = image::open(out.join("image_0.overlay.png")).unwrap();
        assert_eq!(
            (overlay.width(), overlay.height()),
            (100, 75),
            "results at the original size"
        );
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("image_0.json")).unwrap())
                .unwrap();
        assert_eq!(json["task"], task);
        assert_eq!(json["width"], 100);
        match task {
            "panoptic" => {
                assert!(out.join("image_0.panoptic.png").exists());
                assert!(out.join("image_0.semantic.png").exists());
                assert!(!json["segments"].as_array().unwrap().is_empty(), "{json}");
            }
            "instance" => {
                let segs = json["segments"].as_array().unwrap();
                assert!(!segs.is_empty());
                assert!(
                    segs[0]["segmentation"]["counts"].is_string(),
                    "instance masks as COCO RLE"
                );
            }
            _ => assert!(out.join("image_0.semantic.png").exists()),
        }
    }
}

#[test]
fn pixel_values_and_dump_raw_reproduce_transformers_logits() {
    let out = out_dir("raw");
    std::fs::create_dir_all(&out).unwrap();
    let raw = out.join("raw.safetensors");
    let st = segment()
        .args([
            "--model",
            fixture().to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .arg("--pixel-values")
        .arg(fixture().join("intermediates.safetensors"))
        .arg("--dump-raw")
        .arg(&raw)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let ours = std::fs::read(&raw).unwrap();
    let ours = safetensors::SafeTensors::deserialize(&ours).unwrap();
    let theirs = std::fs::read(fixture().join("intermediates.safetensors")).unwrap();
    let theirs = safetensors::SafeTensors::deserialize(&theirs).unwrap();
    for key in ["class_queries_logits", "masks_queries_logits"] {
        let (a, b) = (ours.tensor(key).unwrap(), theirs.tensor(key).unwrap());
        assert_eq!(a.shape(), b.shape(), "{key}");
        let f = |t: &safetensors::tensor::TensorView| -> Vec<f32> {
            t.data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        };
        let err = mask2former::testing::rel_l2(&f(&a), &f(&b));
        assert!(err < 1e-4, "{key}: relative L2 {err:.2e}");
    }
    assert!(out.join("batch0.overlay.png").exists());
}

#[test]
fn unreadable_image_is_named_skipped_and_fails_the_exit_status() {
    let out = out_dir("bad");
    let bad = std::env::temp_dir().join(format!("m2f-not-an-image-{}.png", std::process::id()));
    std::fs::write(&bad, b"definitely not a png").unwrap();
    let st = segment()
        .args([
            "--model",
            fixture().to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .arg(&bad)
        .arg(fixture().join("image_0.png"))
        .output()
        .unwrap();
    assert_eq!(st.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&st.stderr);
    assert!(stderr.contains("m2f-not-an-image"), "{stderr}");
    assert!(
        out.join("image_0.overlay.png").exists(),
        "the good image is still processed"
    );
}

#[test]
fn bad_model_folders_give_clear_errors() {
    let st = segment()
        .args(["--model", "/nonexistent/model"])
        .arg(fixture().join("image_0.png"))
        .output()
        .unwrap();
    assert_eq!(st.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&st.stderr);
    assert!(stderr.contains("/nonexistent/model"), "{stderr}");

    // A checkpoint with a tensor of the wrong shape names the key and both shapes.
    let dir = out_dir("badckpt");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(fixture().join("config.json"), dir.join("config.json")).unwrap();
    let bytes = std::fs::read(fixture().join("model.safetensors")).unwrap();
    let st_file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = st_file
        .tensors()
        .into_iter()
        .map(|(k, t)| (k, t.shape().to_vec(), t.data().to_vec()))
        .collect();
    let key = "class_predictor.bias";
    let t = tensors.iter_mut().find(|t| t.0 == key).unwrap();
    t.1 = vec![t.1[0] - 1];
    t.2.truncate(t.2.len() - 4);
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(k, s, d)| {
            (
                k.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), d)
                    .unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, &dir.join("model.safetensors")).unwrap();
    let st = segment()
        .args(["--model", dir.to_str().unwrap()])
        .arg(fixture().join("image_0.png"))
        .output()
        .unwrap();
    assert_eq!(st.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&st.stderr);
    assert!(stderr.contains(key), "{stderr}");
}
