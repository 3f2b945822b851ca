//! The evaluators against numbers computed by the reference tools (pycocotools, the panopticapi
//! definition, detectron2's SemSegEvaluator definition) on the committed fixtures.
//! Regenerate with `python tools/eval_reference.py` (see tools/requirements-eval.txt).

use std::path::{Path, PathBuf};

use mask2former::data::coco_instance::segmentation_to_rle;
use mask2former::data::spec::Kind;
use mask2former::data::{Mask, Rle};
use mask2former::eval::{run, DataSpec, EvalOptions, Source};
use serde_json::Value;

const TOL: f64 = 1e-4;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/eval")
}

fn load(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn close(name: &str, got: f64, want: f64) {
    assert!(
        (got - want).abs() <= TOL,
        "{name}: got {got}, reference {want}"
    );
}

#[test]
fn rle_masks_match_pycocotools() {
    let cases = load(&fixtures().join("rle/cases.json"));
    for (i, c) in cases["masks"].as_array().unwrap().iter().enumerate() {
        let (h, w) = (
            c["height"].as_u64().unwrap() as usize,
            c["width"].as_u64().unwrap() as usize,
        );
        let data = c["data"]
            .as_str()
            .unwrap()
            .bytes()
            .map(|b| b - b'0')
            .collect();
        let mask = Mask::from_vec(h, w, data).unwrap();
        let rle = Rle::encode(&mask);
        assert_eq!(
            rle.to_compressed(),
            c["counts"].as_str().unwrap(),
            "mask case {i}"
        );
        assert_eq!(rle.area(), c["area"].as_u64().unwrap(), "mask case {i}");
        let bbox: Vec<f64> = c["bbox"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(rle.to_bbox().to_vec(), bbox, "mask case {i}");
        let back = Rle::from_compressed(c["counts"].as_str().unwrap(), h, w).unwrap();
        assert_eq!(back.decode().unwrap(), mask, "mask case {i}");
    }
}

/// The crowd-aware mask IoU mask AP is built on (hotcoco's, which the evaluator runs) equals
/// pycocotools' `mask.iou` on the fixture's masks: a crowd ground truth divides by the
/// detection's area alone.
#[test]
fn crowd_mask_iou_matches_pycocotools() {
    let cases = load(&fixtures().join("rle/cases.json"));
    let c = &cases["ious"];
    let size: Vec<u32> = c["size"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    let rles: Vec<hotcoco::Rle> = c["counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| hotcoco::mask::rle_from_string(s.as_str().unwrap(), size[0], size[1]).unwrap())
        .collect();
    let crowd: Vec<bool> = c["iscrowd"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() != 0)
        .collect();
    let got = hotcoco::mask::iou(&rles, &rles, &crowd);
    let want = c["iou"].as_array().unwrap();
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        for (j, (g, w)) in g.iter().zip(w.as_array().unwrap()).enumerate() {
            close(&format!("iou[{i}][{j}]"), *g, w.as_f64().unwrap());
        }
    }
}

#[test]
fn polygons_rasterise_like_pycocotools() {
    let cases = load(&fixtures().join("rle/cases.json"));
    for (i, c) in cases["polygons"].as_array().unwrap().iter().enumerate() {
        let (h, w) = (
            c["height"].as_u64().unwrap() as usize,
            c["width"].as_u64().unwrap() as usize,
        );
        let rle = segmentation_to_rle(&c["polygons"], h, w).unwrap();
        assert_eq!(
            rle.to_compressed(),
            c["counts"].as_str().unwrap(),
            "polygon case {i}"
        );
        assert_eq!(rle.area(), c["area"].as_u64().unwrap(), "polygon case {i}");
    }
}

#[test]
fn mask_ap_matches_pycocotools() {
    let dir = fixtures().join("instance");
    let report = run(
        &EvalOptions {
            data: DataSpec::root(Kind::CocoInstance, dir.clone()),
            source: Source::Predictions(dir.join("results.json")),
            reduce_labels: false,
            num_classes: None,
        },
        &mut |_, _| {},
    )
    .unwrap();
    let got = report.instance.unwrap().stats();
    let want = load(&dir.join("expected.json"));
    let names = [
        "AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl",
    ];
    for (name, g) in names.iter().zip(got) {
        close(name, g, want[name].as_f64().unwrap());
    }
}

#[test]
fn pq_matches_panopticapi() {
    let dir = fixtures().join("panoptic");
    let report = run(
        &EvalOptions {
            data: DataSpec::root(Kind::CocoPanoptic, dir.clone()),
            source: Source::Predictions(dir.join("pred.json")),
            reduce_labels: false,
            num_classes: None,
        },
        &mut |_, _| {},
    )
    .unwrap();
    let pq = report.panoptic.unwrap();
    let want = load(&dir.join("expected.json"));
    for (name, got) in [("All", pq.all), ("Things", pq.things), ("Stuff", pq.stuff)] {
        close(
            &format!("{name} PQ"),
            got.pq,
            want[name]["pq"].as_f64().unwrap(),
        );
        close(
            &format!("{name} SQ"),
            got.sq,
            want[name]["sq"].as_f64().unwrap(),
        );
        close(
            &format!("{name} RQ"),
            got.rq,
            want[name]["rq"].as_f64().unwrap(),
        );
        assert_eq!(got.n as u64, want[name]["n"].as_u64().unwrap(), "{name} n");
    }
    // the semantic view of the same predictions
    let m = report.semantic.unwrap();
    let ws = &want["semantic"];
    for (name, got) in [
        ("mIoU", m.miou),
        ("fwIoU", m.fwiou),
        ("mACC", m.macc),
        ("pACC", m.pacc),
    ] {
        close(&format!("panoptic {name}"), got, ws[name].as_f64().unwrap());
    }
    for (id, c) in &pq.per_class {
        let w = &want["per_class"][id.to_string()];
        close(&format!("class {id} PQ"), c.pq, w["pq"].as_f64().unwrap());
        close(&format!("class {id} SQ"), c.sq, w["sq"].as_f64().unwrap());
        close(&format!("class {id} RQ"), c.rq, w["rq"].as_f64().unwrap());
        // the counts behind them, as panopticapi's PQStat holds them (absent: nothing seen)
        let counts = &want["stats"][id.to_string()];
        let n = |k: &str| counts[k].as_u64().unwrap_or(0);
        assert_eq!(
            (c.tp, c.fp, c.fn_),
            (n("tp"), n("fp"), n("fn")),
            "class {id}"
        );
    }
}

#[test]
fn miou_matches_detectron2_definition() {
    let dir = fixtures().join("semantic");
    let want = load(&dir.join("expected.json"));
    let report = run(
        &EvalOptions {
            data: DataSpec::root(Kind::Semantic, dir.clone()),
            source: Source::Predictions(dir.join("pred")),
            reduce_labels: false,
            num_classes: Some(want["num_classes"].as_u64().unwrap() as usize),
        },
        &mut |_, _| {},
    )
    .unwrap();
    let m = report.semantic.unwrap();
    for (name, got) in [
        ("mIoU", m.miou),
        ("fwIoU", m.fwiou),
        ("mACC", m.macc),
        ("pACC", m.pacc),
    ] {
        close(name, got, want[name].as_f64().unwrap());
    }
    for (c, w) in want["per_class_iou"].as_array().unwrap().iter().enumerate() {
        match (m.per_class_iou[c], w.as_f64()) {
            (Some(g), Some(w)) => close(&format!("class {c} IoU"), g, w),
            (None, None) => {}
            (g, w) => panic!("class {c}: got {g:?}, reference {w:?}"),
        }
    }
}

#[test]
fn mask_ap_on_panoptic_things_matches_pycocotools() {
    let dir = fixtures().join("panoptic");
    let report = run(
        &EvalOptions {
            data: DataSpec::root(Kind::CocoPanoptic, dir.clone()),
            source: Source::Predictions(dir.join("results.json")),
            reduce_labels: false,
            num_classes: None,
        },
        &mut |_, _| {},
    )
    .unwrap();
    let got = report.instance.unwrap().stats();
    let want = &load(&dir.join("expected.json"))["instance"];
    let names = [
        "AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl",
    ];
    for (name, g) in names.iter().zip(got) {
        close(name, g, want[*name].as_f64().unwrap());
    }
}
