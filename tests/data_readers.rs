//! Readers on files written to a temporary folder: round trips through the on-disk formats and
//! errors that name the file and the record.

use std::path::{Path, PathBuf};

use mask2former::data::coco_instance::CocoInstance;
use mask2former::data::coco_panoptic::CocoPanoptic;
use mask2former::data::semantic::{read_label_png, SemanticFolder};
use mask2former::data::spec::Kind;
use mask2former::data::synthetic::{Config, Dataset, Split};
use mask2former::data::write::write_label_png;
use mask2former::data::{GroundTruth, LabelMap, Mask, IGNORE};
use mask2former::eval::{run, DataSpec, EvalOptions, Source};

/// A fresh folder under the system temp dir, unique per test and process.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("m2f-data-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/eval")
}

fn small() -> Dataset {
    let cfg = Config {
        height: 40,
        width: 48,
        crowd_probability: 0.5,
        ..Config::default()
    };
    Dataset::with_config(11, Split::Train, 6, cfg)
}

#[test]
fn synthetic_round_trips_through_coco_panoptic() {
    let dir = temp_dir("roundtrip");
    let ds = small();
    ds.write_coco_panoptic(&dir).unwrap();
    let read = CocoPanoptic::open_dir(&dir).unwrap();
    assert_eq!(read.len(), ds.len());
    assert_eq!(read.categories(), &ds.categories());
    for i in 0..ds.len() {
        let (a, b) = (ds.sample(i).unwrap(), read.sample(i).unwrap());
        assert_eq!(a.image, b.image, "image {i}");
        assert_eq!(a.masks, b.masks, "masks {i}");
        assert_eq!(a.class_ids, b.class_ids, "classes {i}");
        assert_eq!(a.ground_truth, b.ground_truth, "ground truth {i}");
        // crowd segments are in the ground truth, never in the training targets
        let GroundTruth::Panoptic(p) = &b.ground_truth else {
            panic!()
        };
        assert_eq!(
            p.segments.iter().filter(|s| !s.iscrowd).count(),
            b.masks.len()
        );
    }
    // the ground truth as its own prediction scores perfectly
    let report = run(
        &EvalOptions {
            data: DataSpec::root(Kind::CocoPanoptic, dir.clone()),
            source: Source::Predictions(dir.clone()),
            reduce_labels: false,
            num_classes: None,
        },
        &mut |_, _| {},
    )
    .unwrap();
    assert_eq!(report.panoptic.unwrap().all.pq, 1.0);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn panoptic_errors_name_file_and_record() {
    let dir = temp_dir("panoptic-errors");
    small().write_coco_panoptic(&dir).unwrap();
    let png = dir.join("panoptic/train_000002.png");
    std::fs::remove_file(&png).unwrap();
    let ds = CocoPanoptic::open_dir(&dir).unwrap();
    let err = ds.ground_truth(1).unwrap_err().to_string();
    assert!(err.contains("train_000002.png"), "{err}");

    let json = std::fs::read_to_string(dir.join("panoptic.json")).unwrap();
    let broken = json.replacen("\"category_id\":1,", "\"category_id\":77,", 1);
    assert_ne!(broken, json, "fixture has a category_id 1 segment");
    std::fs::write(dir.join("panoptic.json"), broken).unwrap();
    let err = CocoPanoptic::open_dir(&dir).unwrap_err().to_string();
    assert!(
        err.contains("panoptic.json") && err.contains("77") && err.contains("image_id"),
        "{err}"
    );

    std::fs::write(dir.join("panoptic.json"), "{\"annotations\": [").unwrap();
    let err = CocoPanoptic::open_dir(&dir).unwrap_err().to_string();
    assert!(
        err.contains("panoptic.json") && err.contains("JSON"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn instance_reader_decodes_all_three_encodings() {
    let dir = temp_dir("instance");
    std::fs::copy(
        fixtures().join("instance/instances.json"),
        dir.join("instances.json"),
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("images")).unwrap();
    let ds = CocoInstance::open_dir(&dir).unwrap();
    for info in ds.images() {
        image::RgbImage::new(info.width as u32, info.height as u32)
            .save(dir.join("images").join(&info.file_name))
            .unwrap();
    }
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("instances.json")).unwrap()).unwrap();
    let kinds = json["annotations"].as_array().unwrap().iter().map(|a| {
        let s = &a["segmentation"];
        if s.is_array() {
            0
        } else if s["counts"].is_string() {
            1
        } else {
            2
        }
    });
    let mut seen = [0; 3];
    kinds.for_each(|k| seen[k] += 1);
    assert!(
        seen.iter().all(|&n| n > 0),
        "fixture covers polygons, compressed and uncompressed RLE: {seen:?}"
    );
    let mut total = 0;
    for i in 0..ds.len() {
        let s = ds.sample(i).unwrap();
        let gt = ds.ground_truth(i);
        assert_eq!(s.masks.len(), gt.iter().filter(|g| !g.iscrowd).count());
        for (m, g) in s.masks.iter().zip(gt.iter().filter(|g| !g.iscrowd)) {
            assert_eq!(m.area(), g.rle.area());
            assert_eq!(
                (m.height(), m.width()),
                (s.image.height() as usize, s.image.width() as usize)
            );
        }
        total += gt.len();
    }
    assert_eq!(total, json["annotations"].as_array().unwrap().len());

    // a broken RLE string names the file and the annotation
    let text = std::fs::read_to_string(dir.join("instances.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let ann = v["annotations"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|a| a["segmentation"]["counts"].is_string())
        .unwrap();
    ann["segmentation"]["counts"] = "0 bad".into();
    let id = ann["id"].as_u64().unwrap();
    std::fs::write(dir.join("instances.json"), v.to_string()).unwrap();
    let err = CocoInstance::open_dir(&dir).unwrap_err().to_string();
    assert!(
        err.contains("instances.json") && err.contains(&format!("annotation id {id}")),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn semantic_labels_reduce_and_palette() {
    let dir = temp_dir("semantic");
    std::fs::create_dir_all(dir.join("labels")).unwrap();
    std::fs::create_dir_all(dir.join("images")).unwrap();
    let map = LabelMap {
        height: 2,
        width: 3,
        labels: vec![0, 1, 2, IGNORE, 5, 1],
    };
    write_label_png(&dir.join("labels/a.png"), &map).unwrap();
    image::RgbImage::new(3, 2)
        .save(dir.join("images/a.jpg"))
        .unwrap();
    assert_eq!(
        read_label_png(&dir.join("labels/a.png"), false).unwrap(),
        map
    );
    let reduced = read_label_png(&dir.join("labels/a.png"), true).unwrap();
    assert_eq!(reduced.labels, vec![IGNORE, 0, 1, IGNORE, 4, 0]);

    // a 4-bit palette PNG: the indices are the labels, not the colours
    let path = dir.join("labels/b.png");
    {
        let file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        let mut enc = png::Encoder::new(file, 3, 2);
        enc.set_color(png::ColorType::Indexed);
        enc.set_depth(png::BitDepth::Four);
        enc.set_palette(
            (0..16u8)
                .flat_map(|i| [i * 10, 200, 7])
                .collect::<Vec<u8>>(),
        );
        let mut w = enc.write_header().unwrap();
        // rows of 3 nibbles, padded to 2 bytes: [1,2,3] [15,0,4]
        w.write_image_data(&[0x12, 0x30, 0xF0, 0x40]).unwrap();
    }
    image::RgbImage::new(3, 2)
        .save(dir.join("images/b.png"))
        .unwrap();
    assert_eq!(
        read_label_png(&path, false).unwrap().labels,
        vec![1, 2, 3, 15, 0, 4]
    );

    let folder = SemanticFolder::open(&dir, false).unwrap();
    assert_eq!(folder.len(), 2);
    let s = folder.sample(0).unwrap();
    assert_eq!(s.class_ids, vec![0, 1, 2, 5]);
    assert_eq!(
        s.masks[1],
        Mask::from_vec(2, 3, vec![0, 1, 0, 0, 0, 1]).unwrap()
    );

    std::fs::remove_file(dir.join("images/b.png")).unwrap();
    let err = folder.sample(1).unwrap_err().to_string();
    assert!(err.contains("b.png") && err.contains("no image"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn model_source_reports_a_missing_model_folder() {
    let err = run(
        &EvalOptions {
            data: DataSpec::Synthetic { count: 2, seed: 0 },
            source: Source::Model(PathBuf::from("some/model")),
            reduce_labels: false,
            num_classes: None,
        },
        &mut |_, _| {},
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("some/model") && err.contains("not a checkpoint folder"),
        "{err}"
    );
}

#[test]
fn data_spec_parsing() {
    assert_eq!(
        "synthetic".parse::<DataSpec>().unwrap(),
        DataSpec::Synthetic { count: 64, seed: 0 }
    );
    assert_eq!(
        "synthetic:5:9".parse::<DataSpec>().unwrap(),
        DataSpec::Synthetic { count: 5, seed: 9 }
    );
    assert_eq!(
        "semantic:/x/y".parse::<DataSpec>().unwrap(),
        DataSpec::root(Kind::Semantic, PathBuf::from("/x/y"))
    );
    assert!("coco-panoptic".parse::<DataSpec>().is_err());
    assert!("imagenet:/x".parse::<DataSpec>().is_err());
}
