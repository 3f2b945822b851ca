//! The device path (`on_device.rs`) against the host path on random logits, under both kernel
//! policies: the same segments, labels and scores, and at least 99.99% identical pixels (a pixel
//! may differ only where its best candidates tie to within f32 rounding: the device's `exp`
//! is not the host's, bit for bit). Instances: the same pairs in the same order after the same
//! filters, the same masks, areas and boxes, scores to f32 rounding.

use rand::Rng;

use super::*;
use crate::ops::mask_argmax::Sizes;
use crate::runtime::Runtime;
use crate::testing::{cpu_policy_runtime, gpu_policy_runtime, rng, seed, uniform};

const SIZES: Sizes = Sizes {
    mask: (19, 31),
    input: (76, 124),
    output: (97, 150),
};

/// Class logits [Q, K+1] where `confident` queries pick a random class with high confidence,
/// and mask logits [Q, h, w]: a confident query's mask is a random rectangle (logits in [1, 8],
/// outside in [-8, -1]), the others noise in [-8, 8]. Every third confident query duplicates
/// the previous one (same class, score and mask: an exact tie, which the first must win).
fn random_outputs(g: &mut impl Rng, q: usize, k: usize, confident: usize) -> (Vec<f32>, Vec<f32>) {
    let c = k + 1;
    let (mh, mw) = SIZES.mask;
    let plane = mh * mw;
    let mut class = uniform(g, q * c, -2.0, 2.0);
    let mut masks = uniform(g, q * plane, -8.0, 8.0);
    for j in 0..confident {
        if j % 3 == 2 {
            class.copy_within((j - 1) * c..j * c, j * c);
            masks.copy_within((j - 1) * plane..j * plane, j * plane);
            continue;
        }
        class[j * c + g.random_range(0..k)] = g.random_range(8.0..12.0);
        let (y0, x0) = (g.random_range(0..mh - 4), g.random_range(0..mw - 4));
        let (y1, x1) = (g.random_range(y0 + 3..mh), g.random_range(x0 + 3..mw));
        for y in 0..mh {
            for x in 0..mw {
                let inside = (y0..y1).contains(&y) && (x0..x1).contains(&x);
                masks[j * plane + y * mw + x] = if inside {
                    g.random_range(1.0..8.0)
                } else {
                    g.random_range(-8.0..-1.0)
                };
            }
        }
    }
    (class, masks)
}

fn raw<'a>(class: &'a [f32], masks: &'a [f32], q: usize, c: usize) -> RawOutputs<'a> {
    RawOutputs {
        class_logits: class,
        mask_logits: masks,
        num_queries: q,
        num_classes_with_void: c,
        mask_size: SIZES.mask,
        input_size: SIZES.input,
        output_size: SIZES.output,
    }
}

fn same_pixels(a: &[u32], b: &[u32]) -> f64 {
    a.iter().zip(b).filter(|(x, y)| x == y).count() as f64 / a.len() as f64
}

fn on(rt: &Runtime, masks: &[f32], q: usize) -> crate::runtime::Tensor {
    rt.upload(masks, &[q, SIZES.mask.0, SIZES.mask.1]).unwrap()
}

#[test]
fn panoptic_on_device_matches_the_host() {
    for rt in [cpu_policy_runtime(), gpu_policy_runtime()] {
        let seed = seed();
        let mut g = rng(seed);
        let (q, k) = (100, 133);
        let (class, masks) = random_outputs(&mut g, q, k, 20);
        // Overlapping rectangles: half the own mask visible keeps enough segments to compare.
        let cfg = PostprocessConfig {
            overlap_threshold: 0.5,
            ..Default::default()
        };
        let is_thing = |l: u32| l.is_multiple_of(2);
        let host = panoptic(&raw(&class, &masks, q, k + 1), &cfg, &is_thing);
        let logits = on(rt, &masks, q);
        let dev = DeviceOutputs {
            class_logits: &class,
            num_classes_with_void: k + 1,
            mask_logits: &logits,
            sizes: SIZES,
        };
        let got = pollster::block_on(panoptic_on_device(rt, dev, &cfg, &is_thing)).unwrap();
        let case = format!("{:?} (seed {seed})", rt.kernel_policy());
        assert!(!host.segments.is_empty(), "{case}: no segments to compare");
        let same = same_pixels(&host.ids, &got.ids);
        assert!(same >= 0.9999, "{case}: {same} of the pixels agree");
        let differ = host.ids.len() as u64 - (same * host.ids.len() as f64).round() as u64;
        assert_eq!(host.segments.len(), got.segments.len(), "{case}");
        for (a, b) in host.segments.iter().zip(&got.segments) {
            assert_eq!(
                (a.id, a.label_id, a.is_thing),
                (b.id, b.label_id, b.is_thing),
                "{case}"
            );
            assert!((a.score - b.score).abs() <= 1e-6 * a.score.abs(), "{case}");
            assert!(a.area.abs_diff(b.area) <= differ, "{case}: {a:?} vs {b:?}");
        }
    }
}

#[test]
fn semantic_on_device_matches_the_host() {
    for rt in [cpu_policy_runtime(), gpu_policy_runtime()] {
        let seed = seed();
        let mut g = rng(seed);
        let (q, k) = (100, 133);
        let (class, masks) = random_outputs(&mut g, q, k, 20);
        let cfg = PostprocessConfig::default();
        let host = semantic(&raw(&class, &masks, q, k + 1), &cfg);
        let logits = on(rt, &masks, q);
        let dev = DeviceOutputs {
            class_logits: &class,
            num_classes_with_void: k + 1,
            mask_logits: &logits,
            sizes: SIZES,
        };
        let got = pollster::block_on(semantic_on_device(rt, dev)).unwrap();
        let same = same_pixels(&host.labels, &got.labels);
        assert!(
            same >= 0.9999,
            "{:?} (seed {seed}): {same} of the pixels agree",
            rt.kernel_policy()
        );
    }
}

#[test]
fn no_confident_query_gives_an_empty_result_without_a_launch() {
    let rt = cpu_policy_runtime();
    let class = vec![0.0f32; 3 * 4];
    let logits = rt.upload(&vec![0.0; 3 * 19 * 31], &[3, 19, 31]).unwrap();
    let dev = DeviceOutputs {
        class_logits: &class,
        num_classes_with_void: 4,
        mask_logits: &logits,
        sizes: SIZES,
    };
    let got =
        pollster::block_on(panoptic_on_device(rt, dev, &Default::default(), &|_| true)).unwrap();
    assert!(got.segments.is_empty() && got.ids.iter().all(|&i| i == 0));
    let bad = DeviceOutputs {
        class_logits: &class[..5],
        ..dev
    };
    assert!(pollster::block_on(semantic_on_device(rt, bad)).is_err());
}

/// A threshold between two host scores near the middle that differ by more than f32 rounding,
/// so about half the instances are filtered and no score lies near it.
fn threshold_in_a_gap(scores: &[f32]) -> f32 {
    let mut s = scores.to_vec();
    s.sort_by(f32::total_cmp);
    let m = s.len() / 2;
    let gap = (m..s.len() - 1)
        .chain((0..m).rev())
        .find(|&i| s[i + 1] - s[i] > 1e-4 * s[i + 1])
        .expect("two distinct scores");
    0.5 * (s[gap] + s[gap + 1])
}

#[test]
fn instance_on_device_matches_the_host() {
    for rt in [cpu_policy_runtime(), gpu_policy_runtime()] {
        let seed = seed();
        let mut g = rng(seed);
        let (q, k) = (100, 133);
        let (class, masks) = random_outputs(&mut g, q, k, 20);
        let raw = raw(&class, &masks, q, k + 1);
        let logits = on(rt, &masks, q);
        let dev = DeviceOutputs {
            class_logits: &class,
            num_classes_with_void: k + 1,
            mask_logits: &logits,
            sizes: SIZES,
        };
        let is_thing = |l: u32| l.is_multiple_of(2);
        for thing_filter in [None, Some(&is_thing as &dyn Fn(u32) -> bool)] {
            let all = instance(&raw, &PostprocessConfig::default(), thing_filter);
            let scores: Vec<f32> = all.instances.iter().map(|i| i.score).collect();
            let cfg = PostprocessConfig {
                instance_score_threshold: threshold_in_a_gap(&scores),
                ..Default::default()
            };
            let host = instance(&raw, &cfg, thing_filter);
            let got = pollster::block_on(instance_on_device(rt, dev, &cfg, thing_filter)).unwrap();
            let case = format!(
                "{:?}, thing filter {} (seed {seed})",
                rt.kernel_policy(),
                thing_filter.is_some()
            );
            assert!(
                host.instances.len() > 5 && host.instances.len() < all.instances.len(),
                "{case}: {} of {} instances kept",
                host.instances.len(),
                all.instances.len()
            );
            assert_same_instances(&case, &raw, &host, &got);
        }
    }
}

/// `got` (on the device) has `host`'s instances: queries, classes, scores, and masks except
/// where the mask logit is zero to within rounding.
fn assert_same_instances(case: &str, raw: &RawOutputs<'_>, host: &Instances, got: &Instances) {
    assert_eq!((got.height, got.width), (host.height, host.width), "{case}");
    assert_eq!(got.instances.len(), host.instances.len(), "{case}");
    for (a, b) in host.instances.iter().zip(&got.instances) {
        let what = format!("{case}: query {} class {}", a.query, a.label_id);
        assert_eq!((a.query, a.label_id), (b.query, b.label_id), "{what}");
        // Same f32 formula on both sides: a pixel may only differ where the logit is
        // zero to within rounding (an adapter contracting to FMA); on lavapipe none does.
        let host_logits = raw.mask_logits_full(a.query);
        let differ: Vec<usize> = (0..a.mask.len())
            .filter(|&i| a.mask[i] != b.mask[i])
            .collect();
        for &i in &differ {
            assert!(host_logits[i].abs() < 1e-5, "{what}: pixel {i} differs");
        }
        if differ.is_empty() {
            assert_eq!((a.area, a.bbox), (b.area, b.bbox), "{what}");
        } else {
            assert!(a.area.abs_diff(b.area) <= differ.len() as u64, "{what}");
        }
        assert!(
            (a.score - b.score).abs() <= 1e-6 * a.score.abs().max(1e-6),
            "{what}: score {} vs {}",
            a.score,
            b.score
        );
    }
}

/// More selected queries than one instance launch holds (`MAX_QUERIES`): the masks come from
/// two launches and still match the host's, in order.
#[test]
fn instance_on_device_splits_its_launches_past_max_queries() {
    let q = crate::ops::mask_argmax::MAX_QUERIES + 44;
    for rt in [cpu_policy_runtime(), gpu_policy_runtime()] {
        let seed = seed();
        let mut g = rng(seed);
        // One class: every query is one (query, class) pair, all of them kept.
        let (class, masks) = random_outputs(&mut g, q, 1, q);
        let raw = raw(&class, &masks, q, 2);
        let logits = on(rt, &masks, q);
        let dev = DeviceOutputs {
            class_logits: &class,
            num_classes_with_void: 2,
            mask_logits: &logits,
            sizes: SIZES,
        };
        let cfg = PostprocessConfig {
            top_k: q,
            ..Default::default()
        };
        let host = instance(&raw, &cfg, None);
        assert_eq!(host.instances.len(), q, "every query kept");
        assert!(
            crate::ops::mask_argmax::queries_per_launch(rt, SIZES.output).unwrap() < q,
            "more queries than one launch holds"
        );
        let got = pollster::block_on(instance_on_device(rt, dev, &cfg, None)).unwrap();
        let case = format!("{:?}, {q} queries (seed {seed})", rt.kernel_policy());
        assert_same_instances(&case, &raw, &host, &got);
    }
}
