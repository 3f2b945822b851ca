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

/// The fixture checkpoint with one value of `key` replaced by NaN, in a new model folder.
fn model_with_nan(name: &str, key: &str) -> PathBuf {
    let dir = out_dir(name);
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["config.json", "preprocessor_config.json"] {
        std::fs::copy(fixture().join(f), dir.join(f)).unwrap();
    }
    let bytes = std::fs::read(fixture().join("model.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<(String, Vec<usize>, safetensors::Dtype, Vec<u8>)> = file
        .tensors()
        .into_iter()
        .map(|(k, t)| (k, t.shape().to_vec(), t.dtype(), t.data().to_vec()))
        .collect();
    let t = tensors.iter_mut().find(|t| t.0 == key).unwrap();
    assert_eq!(t.2, safetensors::Dtype::F32);
    t.3[4..8].copy_from_slice(&f32::NAN.to_le_bytes());
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(k, s, d, b)| {
            let view = safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap();
            (k.clone(), view)
        })
        .collect();
    safetensors::serialize_to_file(views, None, &dir.join("model.safetensors")).unwrap();
    dir
}

fn run_segment(args: &[&std::ffi::OsStr]) -> (Option<i32>, String) {
    let st = segment().args(args).output().unwrap();
    (
        st.status.code(),
        String::from_utf8_lossy(&st.stderr).into_owned(),
    )
}

#[test]
fn nan_weights_and_nan_pixel_values_are_errors_naming_them() {
    let key = "model.pixel_level_module.encoder.embeddings.norm.weight";
    let model = model_with_nan("nanw", key);
    let out = out_dir("nanw-out");
    let (code, stderr) = run_segment(&[
        "--model".as_ref(),
        model.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
        fixture().join("image_0.png").as_os_str(),
    ]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("\nerror: ") && stderr.contains(key) && stderr.contains("non-finite"),
        "{stderr}"
    );
    // evaluate --model refuses the same checkpoint instead of reporting PQ 0.
    let st = Command::new(env!("CARGO_BIN_EXE_evaluate"))
        .env("XDG_RUNTIME_DIR", "/tmp")
        .args(["--data", "synthetic:1", "--model"])
        .arg(&model)
        .arg("--out")
        .arg(out.join("m.json"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&st.stderr);
    assert_eq!(st.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(key), "{stderr}");

    // A NaN among the pixel values.
    let bytes = std::fs::read(fixture().join("intermediates.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let t = file.tensor("pixel_values").unwrap();
    let mut data = t.data().to_vec();
    data[40..44].copy_from_slice(&f32::INFINITY.to_le_bytes());
    let view = safetensors::tensor::TensorView::new(t.dtype(), t.shape().to_vec(), &data).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    let px = out.join("px.safetensors");
    safetensors::serialize_to_file([("pixel_values", view)], None, &px).unwrap();
    let (code, stderr) = run_segment(&[
        "--model".as_ref(),
        fixture().as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
        "--pixel-values".as_ref(),
        px.as_os_str(),
    ]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("px.safetensors") && stderr.contains("pixel_values"),
        "{stderr}"
    );
    assert!(stderr.contains("flat index 10: inf"), "{stderr}");
}

#[test]
fn a_truncated_jpeg_fails_unless_allowed_and_then_warns() {
    let dir = out_dir("trunc");
    std::fs::create_dir_all(&dir).unwrap();
    let full = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/coffee.jpg")).unwrap();
    let half = dir.join("half.jpg");
    std::fs::write(&half, &full[..full.len() / 2]).unwrap();
    let out = dir.join("out");
    let model = fixture();
    let args = [
        "--model".as_ref(),
        model.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
        half.as_os_str(),
    ];
    let (code, stderr) = run_segment(&args);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("half.jpg") && stderr.contains("truncated"),
        "{stderr}"
    );
    assert!(!out.join("half.overlay.png").exists());
    let mut allowed = args.to_vec();
    allowed.push("--allow-truncated".as_ref());
    let (code, stderr) = run_segment(&allowed);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("warning: ") && stderr.contains("half.jpg"),
        "{stderr}"
    );
    assert!(out.join("half.overlay.png").exists());
}

#[test]
fn inputs_sharing_a_stem_keep_their_own_outputs_and_a_png_named_jpg_works() {
    let dir = out_dir("stems");
    for sub in ["a", "b"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    // b/x.png is a PNG under a JPEG name: read by its content.
    std::fs::copy(fixture().join("image_0.png"), dir.join("a/x.png")).unwrap();
    std::fs::copy(fixture().join("image_0.png"), dir.join("b/x.jpg")).unwrap();
    let out = dir.join("out");
    let raw = dir.join("raw/deeper/r.safetensors");
    let (code, stderr) = run_segment(&[
        "--model".as_ref(),
        fixture().as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
        "--task".as_ref(),
        "semantic".as_ref(),
        "--dump-raw".as_ref(),
        raw.as_os_str(),
        dir.join("a/x.png").as_os_str(),
        dir.join("b/x.jpg").as_os_str(),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("x-2"),
        "the renaming is announced: {stderr}"
    );
    for name in ["x", "x-2"] {
        assert!(out.join(format!("{name}.overlay.png")).exists(), "{name}");
        assert!(out.join(format!("{name}.semantic.png")).exists(), "{name}");
        assert!(raw.with_file_name(format!("{name}.r.safetensors")).exists());
    }
    // No temporary files are left behind by the atomic writes.
    for e in std::fs::read_dir(&out).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!name.starts_with('.'), "{name}");
    }
}

#[test]
fn a_failing_dump_raw_keeps_the_normal_outputs() {
    let dir = out_dir("dumpfail");
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("out");
    // The dump target is an existing folder's child that is itself a folder: writing fails.
    let raw = dir.join("raw.safetensors");
    std::fs::create_dir_all(raw.join("x")).unwrap();
    let (code, stderr) = run_segment(&[
        "--model".as_ref(),
        fixture().as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
        "--dump-raw".as_ref(),
        raw.as_os_str(),
        fixture().join("image_0.png").as_os_str(),
    ]);
    assert_eq!(code, Some(2), "a folder is not a file path: {stderr}");
    assert!(stderr.contains("--dump-raw"), "{stderr}");
    // Two images: the first one's dump target is taken by a folder, so that dump fails at
    // write time; both images' normal outputs are still written, and the exit status says 1.
    let dump_dir = dir.join("dumps");
    std::fs::create_dir_all(dump_dir.join("image_0.r.safetensors")).unwrap();
    let second = dir.join("second.png");
    std::fs::copy(fixture().join("image_0.png"), &second).unwrap();
    let (code, stderr) = run_segment(&[
        "--model".as_ref(),
        fixture().as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
        "--dump-raw".as_ref(),
        dump_dir.join("r.safetensors").as_os_str(),
        fixture().join("image_0.png").as_os_str(),
        second.as_os_str(),
    ]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("--dump-raw"), "{stderr}");
    assert!(out.join("image_0.overlay.png").exists());
    assert!(out.join("second.overlay.png").exists());
    assert!(dump_dir.join("second.r.safetensors").is_file());
}

#[test]
fn bad_flags_and_an_unwritable_out_fail_before_any_image_runs() {
    let img = fixture().join("image_0.png");
    for (flag, value) in [
        ("--object-mask-threshold", "nan"),
        ("--object-mask-threshold", "2"),
        ("--overlap-threshold", "-5"),
        ("--top-k", "0"),
    ] {
        let arg = format!("{flag}={value}");
        let (code, stderr) = run_segment(&[
            "--model".as_ref(),
            fixture().as_os_str(),
            arg.as_ref(),
            img.as_os_str(),
        ]);
        assert_eq!(code, Some(2), "{flag} {value}: {stderr}");
        assert!(
            stderr
                .to_lowercase()
                .starts_with(&format!("error: {flag} {value}")),
            "{stderr}"
        );
    }
    let dir = out_dir("outfile");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("a-file");
    std::fs::write(&file, b"").unwrap();
    let (code, stderr) = run_segment(&[
        "--model".as_ref(),
        fixture().as_os_str(),
        "--out".as_ref(),
        file.as_os_str(),
        img.as_os_str(),
    ]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("--out") && stderr.contains("a-file"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("adapter"),
        "checked before the GPU starts: {stderr}"
    );
}
