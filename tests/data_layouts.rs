//! Datasets in the official layouts, as their archives unpack (COCO 2017 instance and panoptic,
//! ADE20K, Cityscapes) and as explicit files: built here in temp folders, opened through the
//! `--data` spec, checked for what was found, bad records and errors that name the path.

use std::path::{Path, PathBuf};

use mask2former::data::id_to_rgb;
use mask2former::data::spec::{self, DataSpec, Dataset, OpenOptions, Role};
use serde_json::json;

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("m2f-layouts-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn mkdirs(p: &Path) {
    std::fs::create_dir_all(p).unwrap();
}

fn write_rgb(path: &Path, h: u32, w: u32) {
    mkdirs(path.parent().unwrap());
    image::RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, 7]))
        .save(path)
        .unwrap();
}

fn write_grey(path: &Path, h: u32, w: u32, f: impl Fn(u32, u32) -> u8) {
    mkdirs(path.parent().unwrap());
    image::GrayImage::from_fn(w, h, |x, y| image::Luma([f(x, y)]))
        .save(path)
        .unwrap();
}

fn opts(skip_bad: bool) -> OpenOptions {
    OpenOptions {
        role: Role::Val,
        skip_bad,
        reduce_labels: false,
    }
}

fn open(spec: &str, skip_bad: bool) -> Result<spec::Opened, String> {
    let spec: DataSpec = spec.parse().map_err(|e| format!("{e}"))?;
    spec::open(&spec, &opts(skip_bad)).map_err(|e| e.to_string())
}

/// COCO 2017 instance: `annotations/instances_val2017.json` + `val2017/*.jpg`, two images.
fn coco_instance(root: &Path, split: &str) {
    let images: Vec<_> = (0..2)
        .map(|i| json!({"id": 10 + i, "file_name": format!("{:012}.jpg", 10 + i), "height": 12, "width": 16, "license": 1}))
        .collect();
    for i in 0..2 {
        write_rgb(
            &root.join(split).join(format!("{:012}.jpg", 10 + i)),
            12,
            16,
        );
    }
    let anns = json!([
        {"id": 1, "image_id": 10, "category_id": 1, "iscrowd": 0, "area": 20.0, "bbox": [1, 1, 4, 5],
         "segmentation": [[1.0, 1.0, 5.0, 1.0, 5.0, 6.0, 1.0, 6.0]]},
        {"id": 2, "image_id": 11, "category_id": 3, "iscrowd": 1, "area": 12.0, "bbox": [0, 0, 3, 4],
         "segmentation": {"size": [12, 16], "counts": [0, 4, 8, 4, 8, 4, 164]}},
        {"id": 3, "image_id": 11, "category_id": 1, "iscrowd": 0, "area": 9.0, "bbox": [8, 8, 3, 3],
         "segmentation": [[8.0, 8.0, 11.0, 8.0, 11.0, 11.0, 8.0, 11.0]]}
    ]);
    let cats = json!([
        {"id": 1, "name": "person", "supercategory": "person"},
        {"id": 3, "name": "car", "supercategory": "vehicle"}
    ]);
    let ann = json!({"info": {}, "licenses": [], "images": images, "annotations": anns, "categories": cats});
    mkdirs(&root.join("annotations"));
    std::fs::write(
        root.join(format!("annotations/instances_{split}.json")),
        ann.to_string(),
    )
    .unwrap();
}

#[test]
fn coco_2017_instance_layout_is_found_and_counted() {
    let root = temp_dir("coco-instance");
    coco_instance(&root, "val2017");
    for spec in [
        format!("coco-instance:{}", root.display()),
        root.display().to_string(),
    ] {
        let o = open(&spec, false).unwrap();
        let Dataset::Instance(ds) = &o.dataset else {
            panic!("{spec}: {:?}", o.summary)
        };
        assert_eq!(ds.len(), 2);
        assert_eq!(ds.annotation_count(), 3);
        assert!(
            o.summary.contains("COCO 2017 layout")
                && o.summary.contains("2 images")
                && o.summary.contains("3 annotations")
                && o.summary.contains("2 classes"),
            "{}",
            o.summary
        );
        let s = ds.sample(1).unwrap();
        assert_eq!(
            s.masks.len(),
            1,
            "the crowd annotation is no training target"
        );
    }
    // a wrong split names what was looked for and the splits that are there
    let err = open(&format!("coco-instance:{}", root.display()), false);
    assert!(err.is_ok());
    let spec = DataSpec::root(spec::Kind::CocoInstance, &root)
        .with_split("val2014")
        .unwrap();
    let err = spec::open(&spec, &opts(false)).unwrap_err().to_string();
    assert!(
        err.contains("instances_val2014.json") && err.contains("val2017"),
        "{err}"
    );
    // train defaults to train2017
    let err = spec::open(
        &DataSpec::root(spec::Kind::CocoInstance, &root),
        &OpenOptions {
            role: Role::Train,
            ..opts(false)
        },
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("train2017"), "{err}");
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn coco_instance_bad_records_stop_the_run_or_are_skipped() {
    let root = temp_dir("coco-instance-bad");
    coco_instance(&root, "val2017");
    let missing = root.join("val2017/000000000011.jpg");
    std::fs::remove_file(&missing).unwrap();
    let spec = format!("coco-instance:{}", root.display());
    let err = open(&spec, false).unwrap_err();
    assert!(
        err.contains("000000000011.jpg") && err.contains("missing") && err.contains("--skip-bad"),
        "{err}"
    );
    let o = open(&spec, true).unwrap();
    assert_eq!(o.dataset.len(), 1);
    assert_eq!(o.skipped.len(), 1, "{:?}", o.skipped);
    assert!(o.summary.contains("1 bad record"), "{}", o.summary);
    // an image of another size than `images` says
    write_rgb(&missing, 10, 16);
    let err = open(&spec, false).unwrap_err();
    assert!(err.contains("is 10x16, expected 12x16"), "{err}");
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn explicit_coco_instance_files() {
    let root = temp_dir("coco-files");
    coco_instance(&root, "val2017");
    let spec = format!(
        "coco-instance:{},{}",
        root.join("annotations/instances_val2017.json").display(),
        root.join("val2017").display()
    );
    let o = open(&spec, false).unwrap();
    assert_eq!(o.dataset.len(), 2);
    let err = open(
        &format!(
            "coco-instance:{},{}",
            root.join("annotations/instances_val2017.json").display(),
            root.join("nope").display()
        ),
        false,
    )
    .unwrap_err();
    assert!(
        err.contains("nope") && err.contains("image folder"),
        "{err}"
    );
    std::fs::remove_dir_all(&root).unwrap();
}

/// COCO 2017 panoptic with the PNGs at `png_dir` (relative to the root).
fn coco_panoptic(root: &Path, png_dir: &str) {
    let (h, w) = (8u32, 10u32);
    let mut images = Vec::new();
    let mut anns = Vec::new();
    for i in 0..3u64 {
        let name = format!("{:012}", 100 + i);
        write_rgb(&root.join("val2017").join(format!("{name}.jpg")), h, w);
        // left half: a thing segment (id 5), right half: stuff (id 9)
        let png = image::RgbImage::from_fn(w, h, |x, _| {
            image::Rgb(id_to_rgb(if x < 5 { 5 } else { 9 }))
        });
        mkdirs(&root.join(png_dir));
        png.save(root.join(png_dir).join(format!("{name}.png")))
            .unwrap();
        images.push(
            json!({"id": 100 + i, "file_name": format!("{name}.jpg"), "height": h, "width": w}),
        );
        anns.push(
            json!({"image_id": 100 + i, "file_name": format!("{name}.png"), "segments_info": [
                {"id": 5, "category_id": 1, "iscrowd": 0, "area": 40, "bbox": [0, 0, 5, 8]},
                {"id": 9, "category_id": 184, "iscrowd": 0, "area": 40, "bbox": [5, 0, 5, 8]}
            ]}),
        );
    }
    let cats = json!([
        {"id": 1, "name": "person", "supercategory": "person", "isthing": 1, "color": [220, 20, 60]},
        {"id": 184, "name": "tree-merged", "supercategory": "plant", "isthing": 0, "color": [107, 142, 35]}
    ]);
    mkdirs(&root.join("annotations"));
    std::fs::write(
        root.join("annotations/panoptic_val2017.json"),
        json!({"info": {}, "licenses": [], "images": images, "annotations": anns, "categories": cats}).to_string(),
    )
    .unwrap();
}

#[test]
fn coco_2017_panoptic_both_png_folders() {
    for png_dir in ["annotations/panoptic_val2017", "panoptic_val2017"] {
        let root = temp_dir(&format!("coco-pan-{}", png_dir.replace('/', "-")));
        coco_panoptic(&root, png_dir);
        let o = open(&format!("coco-panoptic:{}", root.display()), false).unwrap();
        let Dataset::Panoptic(ds) = &o.dataset else {
            panic!()
        };
        assert_eq!(ds.len(), 3);
        assert!(
            o.summary.contains("3 images")
                && o.summary.contains("6 segments")
                && o.summary.contains("2 classes (1 things)"),
            "{}",
            o.summary
        );
        assert!(!ds.categories().list()[1].isthing);
        let s = ds.sample(0).unwrap();
        assert_eq!(s.masks.len(), 2);
        // detection picks panoptic for a bare root
        assert!(matches!(
            open(&root.display().to_string(), false).unwrap().dataset,
            Dataset::Panoptic(_)
        ));
        std::fs::remove_dir_all(&root).unwrap();
    }
}

#[test]
fn coco_panoptic_png_of_another_size_is_a_bad_record() {
    let root = temp_dir("coco-pan-bad");
    coco_panoptic(&root, "annotations/panoptic_val2017");
    let png = root.join("annotations/panoptic_val2017/000000000101.png");
    image::RgbImage::new(9, 8).save(&png).unwrap();
    let spec = format!("coco-panoptic:{}", root.display());
    let err = open(&spec, false).unwrap_err();
    assert!(
        err.contains("000000000101.png") && err.contains("expected 8x10"),
        "{err}"
    );
    let o = open(&spec, true).unwrap();
    assert_eq!((o.dataset.len(), o.skipped.len()), (2, 1));
    // no PNG folder at all
    std::fs::remove_dir_all(root.join("annotations/panoptic_val2017")).unwrap();
    let err = open(&spec, false).unwrap_err();
    assert!(
        err.contains("panoptic_val2017/") && err.contains("PNG folder"),
        "{err}"
    );
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn ade20k_layout_reduces_labels_and_reads_names() {
    let root = temp_dir("ade");
    let base = root.join("ADEChallengeData2016");
    for (i, name) in ["ADE_val_00000001", "ADE_val_00000002"].iter().enumerate() {
        write_rgb(&base.join(format!("images/validation/{name}.jpg")), 6, 7);
        write_grey(
            &base.join(format!("annotations/validation/{name}.png")),
            6,
            7,
            |x, _| (x as u8 + i as u8) % 151,
        );
    }
    mkdirs(&base.join("images/training"));
    let mut info = String::from("Idx\tRatio\tTrain\tVal\tName\n");
    for i in 1..=150 {
        info += &format!("{i}\t0.01\t10\t1\tclass{i};alt\n");
    }
    std::fs::write(base.join("objectInfo150.txt"), info).unwrap();
    let o = open(&format!("ade20k:{}", root.display()), false).unwrap();
    assert!(
        o.summary.contains("ADE20K")
            && o.summary.contains("split validation")
            && o.summary.contains("2 images")
            && o.summary.contains("150 named classes"),
        "{}",
        o.summary
    );
    let Dataset::Semantic(ds) = &o.dataset else {
        panic!()
    };
    assert_eq!(ds.class_names().unwrap()[0], "class1;alt");
    let gt = ds.ground_truth(0).unwrap();
    assert_eq!(
        &gt.labels[..3],
        &[255, 0, 1],
        "0 is ignored, 1 becomes class 0"
    );
    assert_eq!(ds.stem(1), "ADE_val_00000002");
    // `val` is accepted for `validation`; an unknown split lists the ones there
    let spec = DataSpec::root(spec::Kind::Ade20k, &root)
        .with_split("val")
        .unwrap();
    assert_eq!(spec::open(&spec, &opts(false)).unwrap().dataset.len(), 2);
    let spec = DataSpec::root(spec::Kind::Ade20k, &root)
        .with_split("test")
        .unwrap();
    let err = spec::open(&spec, &opts(false)).unwrap_err().to_string();
    assert!(
        err.contains("images/test/") && err.contains("training, validation"),
        "{err}"
    );
    // a label PNG of another size than its image
    write_grey(
        &base.join("annotations/validation/ADE_val_00000002.png"),
        5,
        7,
        |_, _| 1,
    );
    let err = open(&format!("ade20k:{}", base.display()), false).unwrap_err();
    assert!(
        err.contains("ADE_val_00000002.png") && err.contains("expected 5x7"),
        "{err}"
    );
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn cityscapes_layout_maps_label_ids_to_train_ids() {
    let root = temp_dir("cityscapes");
    let stem = "frankfurt_000000_000294";
    write_rgb(
        &root.join(format!("leftImg8bit/val/frankfurt/{stem}_leftImg8bit.png")),
        4,
        8,
    );
    // label ids 0..8 along x: 7 (road) → 0, 8 (sidewalk) → 1, the rest ignored
    write_grey(
        &root.join(format!("gtFine/val/frankfurt/{stem}_gtFine_labelIds.png")),
        4,
        8,
        |x, _| x as u8 + 3,
    );
    // the other gtFine files are not labels
    write_grey(
        &root.join(format!(
            "gtFine/val/frankfurt/{stem}_gtFine_instanceIds.png"
        )),
        4,
        8,
        |_, _| 0,
    );
    mkdirs(&root.join("leftImg8bit/train"));
    let o = open(&root.display().to_string(), false).unwrap();
    assert!(
        o.summary.contains("Cityscapes")
            && o.summary.contains("1 images")
            && o.summary.contains("19 named classes"),
        "{}",
        o.summary
    );
    let Dataset::Semantic(ds) = &o.dataset else {
        panic!()
    };
    assert_eq!(ds.stem(0), stem);
    assert_eq!(
        &ds.ground_truth(0).unwrap().labels[..8],
        &[255, 255, 255, 255, 0, 1, 255, 255]
    );
    assert_eq!(ds.class_names().unwrap()[18], "bicycle");
    let err = spec::open(
        &DataSpec::root(spec::Kind::Cityscapes, &root),
        &OpenOptions {
            role: Role::Train,
            ..opts(false)
        },
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("gtFine/train/") && err.contains("val"),
        "{err}"
    );
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn explicit_semantic_folders_and_unknown_roots() {
    let root = temp_dir("semantic-files");
    write_rgb(&root.join("img/a.jpg"), 3, 4);
    write_grey(&root.join("lab/a.png"), 3, 4, |_, _| 2);
    write_grey(&root.join("lab/b.png"), 3, 4, |_, _| 2);
    let spec = format!(
        "semantic:{},{}",
        root.join("img").display(),
        root.join("lab").display()
    );
    let err = open(&spec, false).unwrap_err();
    assert!(err.contains("b.png") && err.contains("no image"), "{err}");
    assert_eq!(open(&spec, true).unwrap().dataset.len(), 1);
    // nothing recognisable: say what was expected
    let err = open(&root.display().to_string(), false).unwrap_err();
    assert!(
        err.contains("annotations/panoptic_val2017.json") && err.contains("leftImg8bit/"),
        "{err}"
    );
    let err = open("coco-panoptic:/no/such/root", false).unwrap_err();
    assert!(err.contains("/no/such/root"), "{err}");
    assert!(open("imagenet:/x", false)
        .unwrap_err()
        .contains("unknown data spec kind"));
    std::fs::remove_dir_all(&root).unwrap();
}

/// The prediction files `--save-predictions` writes, filled with the ground truth itself, read
/// back by `--predictions` give perfect scores.
#[test]
fn saved_instance_and_semantic_predictions_read_back() {
    use mask2former::eval::save::PredictionWriter;
    use mask2former::eval::{run, EvalOptions, Source};
    let root = temp_dir("saved");
    coco_instance(&root, "val2017");
    let data: DataSpec = format!("coco-instance:{}", root.display()).parse().unwrap();
    let Dataset::Instance(ds) = spec::open(&data, &opts(false)).unwrap().dataset else {
        panic!()
    };
    let preds = root.join("preds");
    let mut w = PredictionWriter::create(&preds).unwrap();
    for i in 0..ds.len() {
        let list: Vec<_> = ds
            .ground_truth(i)
            .iter()
            .filter(|g| !g.iscrowd)
            .map(|g| (g.category_id, g.rle.clone(), 0.9))
            .collect();
        w.instances(ds.image_info(i).id, &list);
    }
    w.finish(ds.categories()).unwrap();
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(preds.join("results.json")).unwrap()).unwrap();
    assert!(
        results[0]["segmentation"]["counts"].is_string(),
        "compressed RLE as pycocotools writes"
    );
    let eval = |data: DataSpec, p: &Path| {
        run(
            &EvalOptions {
                data,
                source: Source::Predictions(p.to_path_buf()),
                reduce_labels: false,
                num_classes: None,
            },
            &mut |_, _| {},
        )
        .unwrap()
    };
    let ap = eval(data, &preds).instance.unwrap();
    assert!((ap.stats()[0] - 1.0).abs() < 1e-12, "{:?}", ap.stats());

    let city = root.join("city");
    let stem = "aachen_000000_000019";
    write_rgb(
        &city.join(format!("leftImg8bit/val/aachen/{stem}_leftImg8bit.png")),
        4,
        8,
    );
    write_grey(
        &city.join(format!("gtFine/val/aachen/{stem}_gtFine_labelIds.png")),
        4,
        8,
        |x, y| (x + y) as u8 + 5,
    );
    let data: DataSpec = format!("cityscapes:{}", city.display()).parse().unwrap();
    let Dataset::Semantic(ds) = spec::open(&data, &opts(false)).unwrap().dataset else {
        panic!()
    };
    let preds = root.join("sem");
    let mut w = PredictionWriter::create(&preds).unwrap();
    let mut gt = ds.ground_truth(0).unwrap();
    w.semantic(ds.stem(0), &gt).unwrap();
    let m = eval(data.clone(), &preds).semantic.unwrap();
    assert!((m.miou - 1.0).abs() < 1e-12 && (m.pacc - 1.0).abs() < 1e-12);
    // one wrong pixel is seen
    let at = gt.labels.iter().position(|&l| l != 255).unwrap();
    gt.labels[at] = 18;
    w.semantic(ds.stem(0), &gt).unwrap();
    assert!(eval(data, &preds).semantic.unwrap().pacc < 1.0);
    std::fs::remove_dir_all(&root).unwrap();
}
