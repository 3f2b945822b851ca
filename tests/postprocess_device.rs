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

/// Host against device instance post-processing time, as docs/PERFORMANCE.md (session 10)
/// reports it; prints, checks nothing:
/// `cargo test --release --test postprocess_device -- --ignored --nocapture instance_timings`.
/// Host: read the mask logits back, then `postprocess::instance` (one CPU thread). Device:
/// `postprocess::instance_on_device` (bits and counters read back, masks unpacked). The network
/// and the finiteness checks are not timed. Cases (medians of 3): the demo model on
/// `assets/demo.png`, and random logits for 100 queries (20 confident, 133 classes) at an
/// 800×1216 input and image.
#[test]
#[ignore]
fn instance_timings() {
    use mask2former::model::postprocess::{self, DeviceOutputs, PostprocessConfig, RawOutputs};
    use mask2former::model::preprocess::{preprocess, PreprocessConfig};
    use mask2former::model::Mask2Former;
    use mask2former::ops::mask_argmax::Sizes;
    use mask2former::runtime::Tensor;
    use mask2former::Runtime;
    use rand::{Rng, SeedableRng};
    use std::time::Instant;

    fn median_ms(reps: usize, mut f: impl FnMut()) -> f64 {
        let mut t: Vec<f64> = (0..reps)
            .map(|_| {
                let t0 = Instant::now();
                f();
                t0.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        t.sort_by(f64::total_cmp);
        t[reps / 2]
    }

    let time = |rt: &Runtime,
                name: &str,
                class: &[f32],
                c: usize,
                logits: &Tensor,
                sizes: Sizes,
                is_thing: Option<&dyn Fn(u32) -> bool>,
                reps: usize| {
        let q = logits.shape()[0];
        let cfg = PostprocessConfig::default();
        let read = median_ms(reps, || drop(rt.download(logits).unwrap()));
        let masks = rt.download(logits).unwrap();
        let raw = RawOutputs {
            class_logits: class,
            mask_logits: &masks,
            num_queries: q,
            num_classes_with_void: c,
            mask_size: sizes.mask,
            input_size: sizes.input,
            output_size: sizes.output,
        };
        let host = median_ms(reps, || drop(postprocess::instance(&raw, &cfg, is_thing)));
        let dev = DeviceOutputs {
            class_logits: class,
            num_classes_with_void: c,
            mask_logits: logits,
            sizes,
        };
        let run = || pollster::block_on(postprocess::instance_on_device(rt, dev, &cfg, is_thing));
        let found = run().unwrap();
        let mut queries: Vec<usize> = found.instances.iter().map(|i| i.query).collect();
        queries.sort();
        queries.dedup();
        let device = median_ms(reps, || drop(run().unwrap()));
        println!(
            "{name}: logits [{q}, {}, {}] → {:?}, {} instances of {} distinct queries\n  read back {read:.1} ms, host instance {host:.1} ms; device instance {device:.1} ms",
            sizes.mask.0,
            sizes.mask.1,
            sizes.output,
            found.instances.len(),
            queries.len(),
        );
    };

    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let rt = Runtime::new().unwrap();
    println!("{}", rt.describe());
    let dir = root.join("assets/demo-model");
    let mut model = Mask2Former::load(&rt, &dir).unwrap();
    let pcfg = PreprocessConfig::for_model_dir(&dir).unwrap();
    let pre = preprocess(&image::open(root.join("assets/demo.png")).unwrap(), &pcfg);
    let out = pollster::block_on(model.forward_on_device_async(
        &pre.pixel_values,
        1,
        pre.height,
        pre.width,
    ))
    .unwrap();
    let (h, w) = out.mask_size;
    let logits = out.mask_logits.reshape(&[out.num_queries, h, w]).unwrap();
    let labels = model.labels();
    let is_thing = |l: u32| labels.is_thing(l);
    let sizes = Sizes {
        mask: out.mask_size,
        input: (pre.height, pre.width),
        output: pre.original_size,
    };
    let c = out.num_classes_with_void;
    time(
        &rt,
        "demo model, assets/demo.png",
        &out.class_logits,
        c,
        &logits,
        sizes,
        Some(&is_thing),
        3,
    );

    let (q, k) = (100, 133);
    let mut g = rand::rngs::StdRng::seed_from_u64(7);
    let mut class: Vec<f32> = (0..q * (k + 1))
        .map(|_| g.random_range(-2.0..2.0))
        .collect();
    for j in 0..20 {
        class[j * (k + 1) + g.random_range(0..k)] = 9.0;
    }
    let masks: Vec<f32> = (0..q * 200 * 304)
        .map(|_| g.random_range(-8.0..8.0))
        .collect();
    let logits = rt.upload(&masks, &[q, 200, 304]).unwrap();
    let sizes = Sizes {
        mask: (200, 304),
        input: (800, 1216),
        output: (800, 1216),
    };
    time(
        &rt,
        "random logits, 100 queries",
        &class,
        k + 1,
        &logits,
        sizes,
        None,
        3,
    );
}
