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
    std::fs::remove_dir_all(out.parent().unwrap()).unwrap();
}

#[test]
fn evaluate_with_model_fails_clearly() {
    let result = Command::new(env!("CARGO_BIN_EXE_evaluate"))
        .args(["--data", "synthetic:2", "--model", "no/such/model"])
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    assert!(!result.status.success());
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert!(stderr.contains("not built into `evaluate` yet"), "{stderr}");
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
