//! The `train` binary: numeric flags checked before the device starts, SIGTERM and Ctrl-C
//! checkpoint and exit non-zero, the step timeline is printed.

mod train_common;

use std::path::{Path, PathBuf};

use train_common::{run_dir, saved_step, tiny_config};

fn write_tiny_config(dir: &Path) -> PathBuf {
    let path = dir.join("tiny-config.json");
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(&path, tiny_config().to_json().unwrap()).unwrap();
    path
}

fn train_bin() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_train"));
    c.env("XDG_RUNTIME_DIR", std::env::temp_dir());
    c
}

/// Every numeric flag is checked before the device starts; the error names the flag, and no
/// run folder is created.
#[test]
fn bad_numeric_flags_are_named() {
    let dir = run_dir("flags");
    let out = dir.join("run");
    for (flag, value) in [
        ("--clip-grad-norm", "nan"),
        ("--clip-grad-norm", "-1"),
        ("--warmup-factor", "nan"),
        ("--warmup-factor", "0"),
        ("--lr", "nan"),
        ("--lr", "inf"),
        ("--lr", "0"),
        ("--weight-decay", "-0.5"),
        ("--backbone-lr-multiplier", "nan"),
        ("--steps", "0"),
        ("--batch-size", "0"),
        ("--num-points", "0"),
        ("--device-criterion", "0"),
        ("--image-size", "100"),
    ] {
        let o = train_bin()
            .arg(format!("{flag}={value}"))
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{flag} {value}: {err}");
        assert!(err.contains(flag), "{flag} {value}: {err}");
        assert!(!out.exists(), "{flag} {value} created the run folder");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Waits until `metrics.jsonl` of `run` records step `step`.
fn wait_for_step(run: &Path, step: u64, child: &mut std::process::Child) {
    let start = std::time::Instant::now();
    loop {
        let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap_or_default();
        if text.lines().any(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .is_ok_and(|v| v["step"].as_u64() == Some(step))
        }) {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("train exited early: {status}");
        }
        assert!(
            start.elapsed().as_secs() < 300,
            "step {step} not done within 300 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

fn signal(child: &std::process::Child, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

/// SIGTERM (and then Ctrl-C on the resumed run) writes a checkpoint and exits with 143 (130).
/// The resume also removes a killed run's temporary checkpoint folder and the torn last line of
/// its `metrics.jsonl`.
#[cfg(unix)]
#[test]
fn sigterm_and_ctrl_c_checkpoint_and_exit_non_zero() {
    let dir = run_dir("signals");
    let config = write_tiny_config(&dir);
    let run = dir.join("run");
    let mut child = train_bin()
        .arg("--model-config")
        .arg(&config)
        .args([
            "--steps=10000",
            "--batch-size=1",
            "--image-size=64",
            "--num-points=64",
            "--checkpoint-every=0",
            "--eval-every=0",
            "--timeline-every=1",
        ])
        .arg("--out")
        .arg(&run)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_step(&run, 0, &mut child);
    signal(&child, "-TERM");
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(143), "{err}");
    assert!(err.contains("SIGTERM"), "{err}");
    // The step timeline is printed (stderr is not a terminal here: no progress bar).
    assert!(
        err.contains("step 1: ") && err.contains("criterion (host)"),
        "{err}"
    );
    let step = saved_step(&run);
    assert!(step >= 1, "checkpoint at step {step}");

    // What a kill -9 leaves: a temporary checkpoint folder and a torn metrics line.
    let stale = run.join(".checkpoint.tmp-999999999");
    std::fs::create_dir_all(&stale).unwrap();
    std::fs::write(stale.join("model.safetensors"), b"partial").unwrap();
    let mut metrics = std::fs::OpenOptions::new()
        .append(true)
        .open(run.join("metrics.jsonl"))
        .unwrap();
    std::io::Write::write_all(&mut metrics, br#"{"step": 9999, "lo"#).unwrap();
    drop(metrics);

    let mut child = train_bin()
        .args(["--resume", "--out"])
        .arg(&run)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_step(&run, step, &mut child);
    assert!(
        !stale.exists(),
        "the stale temporary checkpoint is still there"
    );
    signal(&child, "-INT");
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(saved_step(&run) > step);
    // Every line is JSON again, each step once.
    let lines = mask2former::train::metrics::read(&run.join("metrics.jsonl")).unwrap();
    let steps: Vec<u64> = lines.iter().map(|l| l["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, (0..steps.len() as u64).collect::<Vec<_>>());
    let _ = std::fs::remove_dir_all(&dir);
}
