//! End-to-end training on a tiny configuration and tiny synthetic images: the loss falls,
//! resume continues exactly, a non-finite loss stops with the last checkpoint intact, and the
//! checkpoint loads as a model.

mod train_common;

use std::path::Path;
use std::sync::atomic::AtomicBool;

use mask2former::model::checkpoint::{save_safetensors, Checkpoint};
use mask2former::model::Mask2Former;
use mask2former::testing;
use mask2former::train::checkpoint;
use mask2former::train::Init;
use mask2former::train::{TrainConfig, TrainError, Trainer};
use train_common::{run_dir, saved_step, tiny_config};

fn settings(steps: u64) -> TrainConfig {
    TrainConfig {
        steps,
        batch_size: 2,
        image_size: 64,
        lr: 1e-3,
        num_points: Some(256),
        checkpoint_every: 0,
        pq_images: 0,
        seed: 5,
        ..TrainConfig::default()
    }
}

fn named_params(t: &Trainer) -> Vec<(String, Vec<f32>)> {
    let names: Vec<String> = t.param_names().map(str::to_string).collect();
    names
        .into_iter()
        .map(|n| {
            let v = t.read_param(&n).unwrap();
            (n, v)
        })
        .collect()
}

/// Elements whose true gradient is exactly zero: an attention key bias adds the same q·b to
/// every logit of a softmax row. Their computed gradients are rounding noise, which Adam turns
/// into updates of about ±lr per step whatever the noise's size, so they cannot be compared
/// between two runs whose float-atomic summation orders differ.
fn zero_gradient_range(name: &str, len: usize) -> std::ops::Range<usize> {
    if name.ends_with("key.bias") || name.ends_with("k_proj.bias") {
        0..len
    } else if name.ends_with("in_proj_bias") {
        len / 3..2 * len / 3
    } else {
        0..0
    }
}

/// 30 steps at lr 1e-3 (recipe otherwise: clipping 0.01, backbone ×0.1): the validation loss
/// (fixed images and points) must fall below 90% of its starting value (seed 5: 48.9 -> 42.2).
#[test]
fn training_lowers_the_validation_loss_and_writes_a_loadable_checkpoint() {
    let rt = testing::runtime();
    let dir = run_dir("falls");
    let cfg = TrainConfig {
        pq_images: 3,
        timeline_every: 10,
        ..settings(30)
    };
    let mut t = Trainer::new(rt, cfg, tiny_config(), Init::Scratch, &dir).unwrap();
    let before = t.evaluate().unwrap().unwrap();
    let mut losses = Vec::new();
    let mut timeline = Vec::new();
    let ckpt = t
        .run(&AtomicBool::new(false), |r| {
            losses.push(r.loss);
            if r.timeline {
                timeline.push(r.step);
            }
        })
        .unwrap();
    assert_eq!(timeline, [9, 19, 29]);
    let after = t.evaluate().unwrap().unwrap();
    assert_eq!(losses.len(), 30);
    assert!(losses.iter().all(|l| l.is_finite()));
    assert!(
        after < 0.9 * before,
        "validation loss {before} -> {after}; training losses {losses:?}"
    );

    // metrics.jsonl: one line per step with each term, lr, step time and images/s.
    let lines = mask2former::train::metrics::read(&dir.join("metrics.jsonl")).unwrap();
    assert_eq!(lines.len(), 30);
    for key in [
        "loss",
        "lr",
        "step_time",
        "images_per_s",
        "loss_dice",
        "loss_mask_0",
    ] {
        assert!(
            lines[5].get(key).is_some(),
            "metrics line lacks {key}: {}",
            lines[5]
        );
    }
    // Each step's time by phase; device times on the timeline's steps where timestamps exist.
    let timestamps = rt.caps().timestamps;
    for (i, line) in lines.iter().enumerate() {
        let time = &line["time"];
        let phases: f64 = [
            "data",
            "forward",
            "readback",
            "criterion",
            "upload",
            "backward",
        ]
        .iter()
        .map(|k| {
            time[k]
                .as_f64()
                .unwrap_or_else(|| panic!("no time.{k}: {line}"))
        })
        .sum();
        let step_time = line["step_time"].as_f64().unwrap();
        assert!(
            (phases - step_time).abs() < 1e-6 * step_time.max(1.0),
            "{line}"
        );
        assert!(time["forward"].as_f64().unwrap() > 0.0, "{line}");
        // The logits and the gradient norm come back, the pixels and the logits' gradients go
        // up: the same sizes every step.
        assert_eq!(time["bytes_read"], lines[0]["time"]["bytes_read"]);
        assert!(
            time["bytes_uploaded"].as_u64().unwrap() > 2 * 3 * 64 * 64 * 4,
            "{line}"
        );
        let device = time.get("device");
        assert_eq!(
            device.is_some(),
            timestamps && i % 10 == 9,
            "step {i}: {line}"
        );
        if let Some(d) = device {
            assert!(d["backward"].as_f64().unwrap() > 0.0, "{line}");
            assert!(d["optimizer"].as_f64().unwrap() > 0.0, "{line}");
        }
    }

    // Each evaluation scored PQ on the synthetic validation split too (a number in [0, 100]).
    let evals = mask2former::train::metrics::read(&dir.join("eval.jsonl")).unwrap();
    assert_eq!(evals.len(), 2);
    for e in &evals {
        let pq = e["pq"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&pq), "{e}");
        assert_eq!(e["pq_images"], 3);
    }
    assert!(t.last_pq().is_some());

    // The checkpoint is a model folder, with the pre-processing it was trained for.
    let pre = mask2former::model::preprocess::PreprocessConfig::for_model_dir(&ckpt).unwrap();
    assert_eq!((pre.shortest_edge, pre.longest_edge), (64, Some(64)));
    assert_eq!(ckpt, dir.join("checkpoint"));
    let mut model = Mask2Former::load(rt, &ckpt).unwrap();
    assert!(model.labels().is_thing(0) && !model.labels().is_thing(5));
    let out = model.forward(&vec![0.1; 3 * 64 * 64], 1, 64, 64).unwrap();
    assert!(out.class_logits.iter().all(|v| v.is_finite()));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every parameter by name.
type Params = Vec<(String, Vec<f32>)>;

/// Parameters after steps 3 and 6 of a 6-step run. With `resume`, the run stops after step 3,
/// writes a checkpoint, `damage` alters its folder, and a new trainer resumes from it.
fn params_at_3_and_6(name: &str, resume: bool, damage: impl Fn(&Path)) -> (Params, Params) {
    params_at_3_and_6_with(settings(6), name, resume, damage)
}

fn params_at_3_and_6_with(
    cfg: TrainConfig,
    name: &str,
    resume: bool,
    damage: impl Fn(&Path),
) -> (Params, Params) {
    let rt = testing::runtime();
    let dir = run_dir(name);
    let mut t = Trainer::new(rt, cfg, tiny_config(), Init::Scratch, &dir).unwrap();
    for _ in 0..3 {
        t.train_step().unwrap();
    }
    let at3 = named_params(&t);
    if resume {
        t.save().unwrap();
        drop(t);
        damage(&dir.join("checkpoint"));
        t = Trainer::resume(rt, &dir, None).unwrap();
        assert_eq!(t.step(), 3);
    }
    t.run(&AtomicBool::new(false), |_| {}).unwrap();
    let at6 = named_params(&t);
    drop(t);
    if resume {
        // Each step appears once in the metrics of the resumed run.
        let steps: Vec<u64> = mask2former::train::metrics::read(&dir.join("metrics.jsonl"))
            .unwrap()
            .iter()
            .map(|l| l["step"].as_u64().unwrap())
            .collect();
        assert_eq!(steps, (0..6).collect::<Vec<_>>());
    }
    let _ = std::fs::remove_dir_all(&dir);
    (at3, at6)
}

/// Relative L2 distance between the updates of steps 4–6 (`p6 − p3`) of two runs, over the
/// elements with a true gradient (see `zero_gradient_range`).
fn update_distance((a3, a6): &(Params, Params), (b3, b6): &(Params, Params)) -> f64 {
    let (mut num, mut den) = (0f64, 0f64);
    for (((name, x3), (_, x6)), ((_, y3), (_, y6))) in a3.iter().zip(a6).zip(b3.iter().zip(b6)) {
        let zero = zero_gradient_range(name, x3.len());
        for i in (0..x3.len()).filter(|i| !zero.contains(i)) {
            let da = (x6[i] - x3[i]) as f64;
            let db = (y6[i] - y3[i]) as f64;
            num += (da - db).powi(2);
            den += da * da;
        }
    }
    (num / den).sqrt()
}

/// Steps 4–6 of a run resumed after step 3 update the parameters as an uninterrupted run does.
/// The updates since the resume point are compared (not the parameters, which steps 1–3
/// dominate), tightly enough that a resume which lost the Adam moments fails: the same
/// comparison with the checkpoint's moments zeroed must exceed the bound.
#[test]
fn resume_continues_exactly() {
    let straight = params_at_3_and_6("resume-a", false, |_| {});
    let resumed = params_at_3_and_6("resume-b", true, |_| {});
    let lost = params_at_3_and_6("resume-c", true, |ckpt| {
        let path = ckpt.join("optimizer.safetensors");
        let mut moments = Checkpoint::load(&path).unwrap().tensors().clone();
        for t in moments.values_mut() {
            t.data.iter_mut().for_each(|v| *v = 0.0);
        }
        save_safetensors(&path, &moments).unwrap();
    });
    let good = update_distance(&straight, &resumed);
    let bad = update_distance(&straight, &lost);
    // Not bitwise: the deformable-attention backward scatter-adds with float atomics, whose
    // order varies run to run (two uninterrupted runs differ the same way).
    eprintln!("updates of steps 4-6: resumed {good:.2e}, moments lost {bad:.2e} (relative L2)");
    assert!(
        good < RESUME_BOUND,
        "resumed run's updates differ by {good:.3e}"
    );
    assert!(
        bad > RESUME_BOUND,
        "a resume without the Adam moments would pass: {bad:.3e}"
    );
}

/// With the criterion on the device (`--device-criterion`), the loss is finite and of the host
/// criterion's size at the same weights (the points differ: another generator), the bytes moved
/// are logged, and a resumed run updates the parameters as an uninterrupted one (the points of
/// a step are drawn from the run's seed and the step, on the device).
#[test]
fn device_criterion_trains_and_resumes_exactly() {
    let device = TrainConfig {
        device_criterion: Some(8),
        ..settings(6)
    };
    let rt = testing::runtime();
    let mut losses = Vec::new();
    for (name, cfg) in [
        ("dev-host", settings(1)),
        (
            "dev-loss",
            TrainConfig {
                steps: 1,
                ..device.clone()
            },
        ),
    ] {
        let dir = run_dir(name);
        let mut t = Trainer::new(rt, cfg, tiny_config(), Init::Scratch, &dir).unwrap();
        let r = t.train_step().unwrap();
        assert!(
            r.loss.is_finite() && r.grad_norm.is_finite(),
            "{name}: {}",
            r.loss
        );
        assert!(r.times.bytes_read > 0 && r.times.bytes_uploaded > 0);
        let names: Vec<String> = r.terms.iter().map(|t| t.0.clone()).collect();
        losses.push((r.loss, r.times.bytes_read, names));
        drop(t);
        let _ = std::fs::remove_dir_all(&dir);
    }
    let ((host, host_read, host_terms), (dev, dev_read, dev_terms)) = (&losses[0], &losses[1]);
    assert_eq!(dev_terms, host_terms, "the same terms, in the same order");
    assert!(
        (dev - host).abs() < 0.1 * host,
        "device loss {dev} vs host {host}"
    );
    assert!(
        *dev_read < *host_read / 10,
        "read back {dev_read} vs {host_read} bytes"
    );
    let straight = params_at_3_and_6_with(device.clone(), "dev-resume-a", false, |_| {});
    let resumed = params_at_3_and_6_with(device, "dev-resume-b", true, |_| {});
    let good = update_distance(&straight, &resumed);
    eprintln!("device criterion: updates of steps 4-6 after a resume differ by {good:.2e}");
    assert!(
        good < RESUME_BOUND,
        "resumed run's updates differ by {good:.3e}"
    );
}

/// Relative L2 bound on the difference of the steps-4–6 updates (see `resume_continues_exactly`).
/// Measured: 9.3e-4 to 1.06e-2 for a correct resume (the float-atomic order's noise, larger on
/// a loaded machine; 1.06e-2 failed the earlier bound of 1e-2), 0.93–0.94 with the moments
/// zeroed: 5e-2 keeps ~5× above the noise seen and ~18× below a lost optimizer state.
const RESUME_BOUND: f64 = 5e-2;

/// A NaN weight makes the loss NaN: the step fails with a clear error naming the last good
/// checkpoint, which stays loadable and finite.
#[test]
fn non_finite_loss_stops_and_keeps_the_last_checkpoint() {
    let rt = testing::runtime();
    let dir = run_dir("nan");
    let mut t = Trainer::new(rt, settings(10), tiny_config(), Init::Scratch, &dir).unwrap();
    t.train_step().unwrap();
    t.save().unwrap();
    let name = "class_predictor.bias";
    let n = t.read_param(name).unwrap().len();
    t.set_param(name, &vec![f32::NAN; n]).unwrap();
    let err = t.train_step().unwrap_err();
    match &err {
        TrainError::NonFinite {
            step, checkpoint, ..
        } => {
            assert_eq!(*step, 1);
            assert!(checkpoint.ends_with("checkpoint"), "{checkpoint}");
        }
        other => panic!("expected NonFinite, got {other}"),
    }
    assert!(err.to_string().contains("not finite"));
    assert_eq!(saved_step(&dir), 1);
    let saved = checkpoint::load(&dir).unwrap();
    assert!(saved.params[name].data.iter().all(|v| v.is_finite()));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A second trainer on a run folder in use is refused before it touches anything.
#[test]
fn a_run_folder_takes_one_trainer() {
    let rt = testing::runtime();
    let dir = run_dir("locked");
    let first = Trainer::new(rt, settings(2), tiny_config(), Init::Scratch, &dir).unwrap();
    let before = std::fs::read(dir.join("metrics.jsonl")).ok();
    match Trainer::new(rt, settings(2), tiny_config(), Init::Scratch, &dir) {
        Err(TrainError::Setting { what, reason, .. }) => {
            assert_eq!(what, "run folder");
            assert!(reason.contains("another train process"), "{reason}");
        }
        Err(e) => panic!("unexpected error: {e}"),
        Ok(_) => panic!("a second trainer opened a run folder in use"),
    }
    assert_eq!(std::fs::read(dir.join("metrics.jsonl")).ok(), before);
    drop(first);
    // Released with the first trainer (the folder holds a run now: starting over needs
    // `overwrite`).
    Trainer::create(rt, settings(2), tiny_config(), Init::Scratch, &dir, true).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A fresh run on a folder that holds one is refused (pointing at --resume and --overwrite)
/// and changes nothing; `overwrite` starts over with clean logs.
#[test]
fn a_fresh_run_does_not_clobber_an_existing_one() {
    let rt = testing::runtime();
    let dir = run_dir("clobber");
    let mut t = Trainer::new(rt, settings(1), tiny_config(), Init::Scratch, &dir).unwrap();
    t.run(&AtomicBool::new(false), |_| {}).unwrap();
    drop(t);
    let files = [
        "train_config.json",
        "metrics.jsonl",
        "checkpoint/model.safetensors",
    ];
    let before: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(dir.join(f)).unwrap())
        .collect();
    let other = TrainConfig {
        lr: 5e-4,
        ..settings(1)
    };
    match Trainer::new(rt, other.clone(), tiny_config(), Init::Scratch, &dir) {
        Err(TrainError::Setting { what, reason, .. }) => {
            assert!(what.contains("--out"), "{what}");
            assert!(
                reason.contains("--resume") && reason.contains("--overwrite"),
                "{reason}"
            );
        }
        Err(e) => panic!("unexpected error: {e}"),
        Ok(_) => panic!("a fresh run replaced an existing one"),
    }
    for (f, b) in files.iter().zip(&before) {
        assert_eq!(&std::fs::read(dir.join(f)).unwrap(), b, "{f} changed");
    }
    let mut t = Trainer::create(rt, other, tiny_config(), Init::Scratch, &dir, true).unwrap();
    assert!(!dir.join("checkpoint").exists());
    assert_eq!(std::fs::read(dir.join("metrics.jsonl")).unwrap(), b"");
    t.run(&AtomicBool::new(false), |_| {}).unwrap();
    let lines = mask2former::train::metrics::read(&dir.join("metrics.jsonl")).unwrap();
    assert_eq!(lines.len(), 1);
    // The new settings, not the old run's.
    assert!(
        (lines[0]["lr"].as_f64().unwrap() - 5e-4).abs() < 1e-12,
        "{}",
        lines[0]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Missing dataset files are all reported before the first step.
#[test]
fn missing_dataset_files_are_listed_before_training() {
    let rt = testing::runtime();
    let dir = run_dir("missing");
    let data = dir.join("coco");
    std::fs::create_dir_all(data.join("images")).unwrap();
    image::RgbImage::from_pixel(64, 64, image::Rgb([90, 120, 30]))
        .save(data.join("images/present.jpg"))
        .unwrap();
    let images: Vec<serde_json::Value> = ["present.jpg", "gone-1.jpg", "gone-2.jpg"]
        .iter()
        .enumerate()
        .map(|(i, f)| serde_json::json!({"id": i + 1, "file_name": f, "height": 64, "width": 64}))
        .collect();
    let json = serde_json::json!({
        "images": images,
        "annotations": [],
        "categories": [{"id": 1, "name": "thing", "isthing": 1}],
    });
    std::fs::write(data.join("instances.json"), json.to_string()).unwrap();
    let cfg = TrainConfig {
        data: format!("coco-instance:{}", data.display()),
        ..settings(1)
    };
    match Trainer::new(rt, cfg, tiny_config(), Init::Scratch, &dir.join("run")) {
        Err(e @ TrainError::Data(_)) => {
            let msg = e.to_string();
            assert!(msg.contains("2 bad record(s)"), "{msg}");
            assert!(
                msg.contains("gone-1.jpg") && msg.contains("gone-2.jpg"),
                "{msg}"
            );
            assert!(!msg.contains("present.jpg"), "{msg}");
        }
        Err(e) => panic!("unexpected error: {e}"),
        Ok(_) => panic!("missing images were not reported"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A label value past the model's labels names the file and the value.
#[test]
fn a_label_past_the_models_labels_is_named() {
    let rt = testing::runtime();
    let dir = run_dir("label");
    let data = dir.join("sem");
    std::fs::create_dir_all(data.join("images")).unwrap();
    std::fs::create_dir_all(data.join("labels")).unwrap();
    image::RgbImage::from_pixel(64, 64, image::Rgb([90, 120, 30]))
        .save(data.join("images/field.png"))
        .unwrap();
    // All of it: the augmentation's random crop keeps some of any label.
    let label = image::GrayImage::from_pixel(64, 64, image::Luma([9]));
    label.save(data.join("labels/field.png")).unwrap();
    let cfg = TrainConfig {
        data: format!("semantic:{}", data.display()),
        ..settings(1)
    };
    let mut t = Trainer::new(rt, cfg, tiny_config(), Init::Scratch, &dir.join("run")).unwrap();
    let msg = t.train_step().unwrap_err().to_string();
    assert!(
        msg.contains("field.png") && msg.contains("label value 9"),
        "{msg}"
    );
    assert!(msg.contains("8 labels"), "{msg}");
    let _ = std::fs::remove_dir_all(&dir);
}
