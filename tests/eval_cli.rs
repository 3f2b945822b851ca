//! The `evaluate` binary end to end on the committed fixtures.

use std::path::Path;
use std::process::Command;

fn fixtures() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/eval")
}

#[test]
fn evaluate_prints_a_table_and_writes_json() {
    let out =
        std::env::temp_dir().join(format!("m2f-eval-cli-{}/metrics.json", std::process::id()));
    let dir = fixtures().join("instance");
    let result = Command::new(env!("CARGO_BIN_EXE_evaluate"))
        .arg("--data")
        .arg(format!("coco-instance:{}", dir.display()))
        .arg("--predictions")
        .arg(dir.join("results.json"))
        .arg("--out")
        .arg(&out)
        .arg("--per-category")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&result.stdout);
    assert!(
        result.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&result.stderr)
    );
    assert!(
        stdout.contains("AP50") && stdout.contains("AR100"),
        "{stdout}"
    );
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let want: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
    let (got, want) = (
        json["instance"]["AP"].as_f64().unwrap(),
        want["AP"].as_f64().unwrap(),
    );
    assert!((got - want).abs() < 1e-4, "AP {got} vs {want}");
    // per category: a named row each, and AP is their mean over the categories with ground truth
    let per = json["instance"]["per_category"].as_object().unwrap();
    assert!(per.len() > 1, "{per:?}");
    let scored: Vec<f64> = per
        .values()
        .map(|c| c["AP"].as_f64().unwrap())
        .filter(|&ap| ap >= 0.0)
        .collect();
    let mean = scored.iter().sum::<f64>() / scored.len() as f64;
    assert!((mean - got).abs() < 1e-9, "mean {mean} vs AP {got}");
    for c in per.values() {
        let name = c["name"].as_str().unwrap();
        assert!(
            !name.is_empty() && stdout.contains(name),
            "{name}: {stdout}"
        );
    }
    std::fs::remove_dir_all(out.parent().unwrap()).unwrap();
}

#[test]
fn evaluate_with_a_missing_model_fails_clearly() {
    let result = Command::new(env!("CARGO_BIN_EXE_evaluate"))
        .args(["--data", "synthetic:2", "--model", "no/such/model"])
        .env("RUST_BACKTRACE", "0")
        .env("XDG_RUNTIME_DIR", "/tmp")
        .output()
        .unwrap();
    assert!(!result.status.success());
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(
        stderr.contains("no/such/model") && stderr.contains("not a checkpoint folder"),
        "{stderr}"
    );
}

/// `--model` runs the network on every image (the bundled demo model, trained on the synthetic
/// categories) and scores its panoptic output.
#[test]
fn evaluate_runs_a_model() {
    let model = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/demo-model");
    let out = std::env::temp_dir().join(format!("m2f-eval-model-{}.json", std::process::id()));
    let result = Command::new(env!("CARGO_BIN_EXE_evaluate"))
        .args([
            "--data",
            "synthetic:2",
            "--model",
            model.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .env("XDG_RUNTIME_DIR", "/tmp")
        .output()
        .unwrap();
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert!(json.to_string().contains("pq"), "{json}");
}

/// A model whose label space differs from the dataset's (the 5-label transformers fixture on
/// the 8 synthetic categories) is refused, naming both counts, instead of scoring PQ 0.
#[test]
fn evaluate_refuses_a_model_with_another_label_space() {
    let model = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parity/tiny");
    let result = Command::new(env!("CARGO_BIN_EXE_evaluate"))
        .args(["--data", "synthetic:2", "--model", model.to_str().unwrap()])
        .env("XDG_RUNTIME_DIR", "/tmp")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.starts_with("error: ")
            && stderr.contains("5 labels")
            && stderr.contains("8 categories"),
        "{stderr}"
    );
}

/// COCO results naming a category the ground truth does not have are an error naming it (as
/// the panoptic path already did), not AP 0.
#[test]
fn evaluate_refuses_results_with_an_unknown_category() {
    let dir = fixtures().join("instance");
    let tmp = std::env::temp_dir().join(format!("m2f-eval-unknown-cat-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let mut results: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(dir.join("results.json")).unwrap()).unwrap();
    results[0]["category_id"] = 999.into();
    let path = tmp.join("results.json");
    std::fs::write(&path, serde_json::to_vec(&results).unwrap()).unwrap();
    let result = Command::new(env!("CARGO_BIN_EXE_evaluate"))
        .arg("--data")
        .arg(format!("coco-instance:{}", dir.display()))
        .arg("--predictions")
        .arg(&path)
        .arg("--out")
        .arg(tmp.join("m.json"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("category_id 999"), "{stderr}");
    assert!(!stderr.contains("Caused by"), "one error style: {stderr}");
}

#[test]
fn evaluate_rejects_a_bad_spec() {
    let result = Command::new(env!("CARGO_BIN_EXE_evaluate"))
        .args(["--data", "imagenet:/x", "--predictions", "p.json"])
        .output()
        .unwrap();
    assert!(!result.status.success());
    assert!(String::from_utf8_lossy(&result.stderr).contains("unknown data spec"));
}

fn evaluate(args: &[&str]) -> (bool, String) {
    let result = Command::new(env!("CARGO_BIN_EXE_evaluate"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .env("XDG_RUNTIME_DIR", "/tmp")
        .output()
        .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&result.stdout),
        String::from_utf8_lossy(&result.stderr)
    );
    (result.status.success(), text)
}

#[test]
fn saved_predictions_read_back_to_the_same_numbers() {
    let root = std::env::temp_dir().join(format!("m2f-eval-save-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/demo-model");
    let preds = root.join("preds");
    let (m1, m2) = (root.join("model.json"), root.join("files.json"));
    let s = |p: &Path| p.display().to_string();
    let (ok, text) = evaluate(&[
        "--data",
        "synthetic:2",
        "--model",
        &s(&model),
        "--save-predictions",
        &s(&preds),
        "--out",
        &s(&m1),
    ]);
    assert!(ok, "{text}");
    assert!(
        text.contains("synthetic val split") && text.contains("2 images"),
        "{text}"
    );
    // panopticapi's layout: the JSON lists a PNG per image in the folder beside it
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(preds.join("panoptic.json")).unwrap()).unwrap();
    let anns = json["annotations"].as_array().unwrap();
    assert_eq!(anns.len(), 2);
    for a in anns {
        let png = preds
            .join("panoptic")
            .join(a["file_name"].as_str().unwrap());
        assert!(png.is_file(), "{}", png.display());
        assert!(a["segments_info"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["category_id"].is_u64()));
    }
    let (ok, text) = evaluate(&[
        "--data",
        "synthetic:2",
        "--predictions",
        &s(&preds),
        "--out",
        &s(&m2),
    ]);
    assert!(ok, "{text}");
    let read = |p: &Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    };
    assert_eq!(read(&m1)["panoptic"], read(&m2)["panoptic"]);
    assert_eq!(read(&m1)["semantic"], read(&m2)["semantic"]);
    // --save-predictions without a model is refused by the CLI
    let (ok, text) = evaluate(&[
        "--data",
        "synthetic:2",
        "--predictions",
        &s(&preds),
        "--save-predictions",
        &s(&preds),
    ]);
    assert!(!ok && text.contains("--model"), "{text}");
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn evaluate_says_what_it_found_and_stops_on_a_bad_layout() {
    let (ok, text) = evaluate(&[
        "--data",
        "coco-instance:/no/such/coco",
        "--predictions",
        "x.json",
    ]);
    assert!(
        !ok && text.contains("/no/such/coco") && text.contains("expected"),
        "{text}"
    );
}
