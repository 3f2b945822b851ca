//! `Segmenter::segment` with post-processing on the device (the default) against the host path
//! (`postprocess_on_device = false`, which `tests/postprocess_parity.rs` ties to the original
//! Mask2Former and transformers) on the demo model and `assets/demo.png`, under both kernel
//! policies: the same segments, labels and scores, and at least 99.99% identical pixels;
//! instances: the same instances in the same order, with the same masks, areas and boxes.

use std::path::PathBuf;

use mask2former::model::postprocess::Instances;
use mask2former::segment::{Segmentation, Segmenter, Task};
use mask2former::testing::{cpu_policy_runtime, gpu_policy_runtime};

fn same_pixels(a: &[u32], b: &[u32]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).filter(|(x, y)| x == y).count() as f64 / a.len() as f64
}

#[test]
fn demo_image_segments_the_same_on_the_device_and_on_the_host() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let image = image::open(root.join("assets/demo.png")).unwrap();
    for rt in [cpu_policy_runtime(), gpu_policy_runtime()] {
        let mut seg = Segmenter::load(rt, &root.join("assets/demo-model")).unwrap();
        for task in [Task::Panoptic, Task::Semantic] {
            seg.postprocess_on_device = true;
            let dev = seg.segment(&image, task).unwrap();
            seg.postprocess_on_device = false;
            let host = seg.segment(&image, task).unwrap();
            let case = format!("{task:?} on {:?}", rt.kernel_policy());
            let same = same_pixels(&dev.id_map(), &host.id_map());
            assert!(same >= 0.9999, "{case}: {same} of the pixels agree");
            let differ = ((1.0 - same) * dev.id_map().len() as f64).round() as u64;
            let (a, b) = (dev.segments(seg.labels()), host.segments(seg.labels()));
            assert!(!a.is_empty(), "{case}: nothing found");
            assert_eq!(a.len(), b.len(), "{case}");
            for (x, y) in a.iter().zip(&b) {
                assert_eq!((x.id, x.label_id), (y.id, y.label_id), "{case}");
                assert!((x.score - y.score).abs() <= 1e-6 * y.score.abs(), "{case}");
                assert!(x.area.abs_diff(y.area) <= differ, "{case}: {x:?} vs {y:?}");
            }
            if let (Segmentation::Panoptic(p), Segmentation::Panoptic(q)) = (&dev, &host) {
                assert_eq!(p.ids.len(), q.ids.len());
            }
        }
    }
}

/// Device against host instances: identical masks, areas and boxes (both compute each logit
/// with the same f32 formula; an adapter contracting it to FMA could flip a pixel whose logit is
/// 0 to within rounding, which would show here), scores to f32 rounding.
fn assert_same_instances(dev: &Instances, host: &Instances, case: &str) {
    assert_eq!((dev.height, dev.width), (host.height, host.width), "{case}");
    assert!(!host.instances.is_empty(), "{case}: nothing found");
    assert_eq!(dev.instances.len(), host.instances.len(), "{case}");
    for (a, b) in dev.instances.iter().zip(&host.instances) {
        let what = format!("{case}: query {} class {}", b.query, b.label_id);
        assert_eq!((a.query, a.label_id), (b.query, b.label_id), "{what}");
        assert_eq!((a.area, a.bbox), (b.area, b.bbox), "{what}");
        assert!(a.mask == b.mask, "{what}: the masks differ");
        assert!(
            (a.score - b.score).abs() <= 1e-6 * b.score.abs().max(1e-6),
            "{what}: score {} vs {}",
            a.score,
            b.score
        );
    }
}

#[test]
fn demo_image_instances_are_the_same_on_the_device_and_on_the_host() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let image = image::open(root.join("assets/demo.png")).unwrap();
    for rt in [cpu_policy_runtime(), gpu_policy_runtime()] {
        let mut seg = Segmenter::load(rt, &root.join("assets/demo-model")).unwrap();
        seg.postprocess_on_device = true;
        let dev = seg.segment(&image, Task::Instance).unwrap();
        seg.postprocess_on_device = false;
        let host = seg.segment(&image, Task::Instance).unwrap();
        let case = format!("instance on {:?}", rt.kernel_policy());
        match (&dev, &host) {
            (Segmentation::Instance(d), Segmentation::Instance(h)) => {
                assert_same_instances(d, h, &case)
            }
            _ => panic!("{case}: not instance results"),
        }
    }
}
