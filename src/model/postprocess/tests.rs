//! Unit tests of the host post-processing on hand-made outputs.

use super::*;

#[test]
fn bilinear_matches_pytorch() {
    // F.interpolate([[0,1],[2,3]], size=(4,4), mode="bilinear", align_corners=False)
    let out = resize_bilinear(&[0.0, 1.0, 2.0, 3.0], (2, 2), (4, 4));
    let want = [
        0.0, 0.25, 0.75, 1.0, 0.5, 0.75, 1.25, 1.5, 1.5, 1.75, 2.25, 2.5, 2.0, 2.25, 2.75, 3.0,
    ];
    assert_eq!(out, want);
    // Downscaling 4 -> 2 averages the middle pair of each 2-wide cell (no antialiasing).
    let down = resize_bilinear(
        &(0..16).map(|v| v as f32).collect::<Vec<_>>(),
        (4, 4),
        (2, 2),
    );
    assert_eq!(down, vec![2.5, 4.5, 10.5, 12.5]);
}

/// Three classes (0: thing, 1: stuff, 2: stuff) + no-object, 4x4 masks.
fn toy() -> (Vec<f32>, Vec<f32>) {
    let big = 10.0;
    // q0: thing 0, left half; q1: stuff 1, top-right; q2: stuff 1, bottom-right (merges with q1);
    // q3: no-object; q4: class 2 but low confidence.
    let class = vec![
        big, 0.0, 0.0, 0.0, //
        0.0, big, 0.0, 0.0, //
        0.0, big, 0.0, 0.0, //
        0.0, 0.0, 0.0, big, //
        0.0, 0.0, 0.5, 0.0,
    ];
    let mut masks = vec![-big; 5 * 16];
    for y in 0..4 {
        for x in 0..4 {
            let i = y * 4 + x;
            masks[i] = if x < 2 { big } else { -big };
            masks[16 + i] = if x >= 2 && y < 2 { big } else { -big };
            masks[32 + i] = if x >= 2 && y >= 2 { big } else { -big };
            masks[48 + i] = big;
            masks[64 + i] = big;
        }
    }
    (class, masks)
}

fn raw<'a>(class: &'a [f32], masks: &'a [f32]) -> RawOutputs<'a> {
    RawOutputs {
        class_logits: class,
        mask_logits: masks,
        num_queries: 5,
        num_classes_with_void: 4,
        mask_size: (4, 4),
        input_size: (4, 4),
        output_size: (4, 4),
    }
}

#[test]
fn panoptic_keeps_confident_queries_and_merges_stuff() {
    let (class, masks) = toy();
    let p = panoptic(&raw(&class, &masks), &PostprocessConfig::default(), &|l| {
        l == 0
    });
    assert_eq!(p.segments.len(), 2, "{:?}", p.segments);
    let thing = &p.segments[0];
    assert_eq!(
        (thing.label_id, thing.is_thing, thing.area, thing.bbox),
        (0, true, 8, [0, 0, 2, 4])
    );
    let stuff = &p.segments[1];
    assert_eq!(
        (stuff.label_id, stuff.is_thing, stuff.area, stuff.bbox),
        (1, false, 8, [2, 0, 2, 4])
    );
    assert_eq!(p.ids[0], 1);
    assert_eq!(p.ids[3], 2);
    assert_eq!(p.ids[15], 2);
}

#[test]
fn panoptic_with_nothing_confident_is_all_void() {
    let (class, masks) = toy();
    let cfg = PostprocessConfig {
        object_mask_threshold: 0.9999,
        ..Default::default()
    };
    let p = panoptic(&raw(&class, &masks), &cfg, &|l| l == 0);
    assert!(p.segments.is_empty());
    assert!(p.ids.iter().all(|&v| v == 0));
}

#[test]
fn instance_ranks_pairs_and_scores_masks() {
    let (class, masks) = toy();
    let cfg = PostprocessConfig {
        top_k: 3,
        ..Default::default()
    };
    let r = instance(&raw(&class, &masks), &cfg, None);
    assert_eq!(r.instances.len(), 3);
    let labels: Vec<u32> = r.instances.iter().map(|i| i.label_id).collect();
    assert_eq!(labels, vec![0, 1, 1]);
    let first = &r.instances[0];
    assert_eq!((first.query, first.area, first.bbox), (0, 8, [0, 0, 2, 4]));
    let p0 = 1.0 / (1.0 + 3.0 * (-10f32).exp());
    let m0 = 1.0 / (1.0 + (-10f32).exp());
    assert!((first.score - p0 * m0).abs() < 1e-5);
    let only_things = instance(&raw(&class, &masks), &cfg, Some(&|l| l == 0));
    assert_eq!(only_things.instances.len(), 1);
}

#[test]
fn semantic_takes_the_best_weighted_class() {
    let (class, masks) = toy();
    let s = semantic(&raw(&class, &masks), &PostprocessConfig::default());
    assert_eq!(s.labels[0], 0);
    assert_eq!(s.labels[3], 1);
    assert_eq!(s.labels[15], 1);
}

#[test]
fn masks_are_resized_to_the_original_size() {
    let (class, masks) = toy();
    let mut r = raw(&class, &masks);
    r.input_size = (16, 16);
    r.output_size = (6, 10);
    let p = panoptic(&r, &PostprocessConfig::default(), &|l| l == 0);
    assert_eq!(p.ids.len(), 60);
    assert_eq!(p.ids[0], 1);
    assert_eq!(p.ids[9], 2);
}

#[test]
fn instance_scores_of_large_masks_are_summed_exactly() {
    // 1.5M mask pixels with varied probabilities: an f32 running sum drifts by ~1e-4.
    let (h, w) = (1024, 1536);
    let masks: Vec<f32> = (0..h * w)
        .map(|i| 0.05 + (i % 977) as f32 * 0.004)
        .collect();
    let class = [3.0f32, 0.0];
    let r = RawOutputs {
        class_logits: &class,
        mask_logits: &masks,
        num_queries: 1,
        num_classes_with_void: 2,
        mask_size: (h, w),
        input_size: (h, w),
        output_size: (h, w),
    };
    let got = instance(&r, &PostprocessConfig::default(), None).instances[0].score;
    let p = 1.0 / (1.0 + (-3.0f64).exp());
    let sum: f64 = masks
        .iter()
        .map(|&l| 1.0 / (1.0 + (-(l as f64)).exp()))
        .sum();
    let want = p * sum / (masks.len() as f64 + 1e-6);
    assert!(((got as f64 - want) / want).abs() < 1e-6, "{got} vs {want}");
}

#[test]
fn semantic_only_models_combine_queries_before_resizing() {
    // Two queries, two classes, masks 2x2 -> input 4x4 -> output 3x5. Combining at the input
    // size and resizing the scores is not the same as resizing each mask first.
    let class = [2.0f32, -1.0, 0.0, -1.0, 1.5, 0.0];
    let masks = [
        4.0f32, -4.0, -2.0, 3.0, //
        -3.0, 2.0, 5.0, -1.0,
    ];
    let r = RawOutputs {
        class_logits: &class,
        mask_logits: &masks,
        num_queries: 2,
        num_classes_with_void: 3,
        mask_size: (2, 2),
        input_size: (4, 4),
        output_size: (3, 5),
    };
    // Reference in f64: scores at the input size, then bilinear to the output size.
    let probs: Vec<Vec<f32>> = class.chunks(3).map(softmax_row).collect();
    let mut scores = vec![vec![0.0f32; 16]; 2];
    for (q, p) in probs.iter().enumerate() {
        let m = resize_bilinear(&masks[q * 4..(q + 1) * 4], (2, 2), (4, 4));
        for c in 0..2 {
            for (s, &v) in scores[c].iter_mut().zip(&m) {
                *s += p[c] * sigmoid(v);
            }
        }
    }
    let up: Vec<Vec<f32>> = scores
        .iter()
        .map(|s| resize_bilinear(s, (4, 4), (3, 5)))
        .collect();
    let want: Vec<u32> = (0..15).map(|i| (up[1][i] > up[0][i]) as u32).collect();
    let cfg = PostprocessConfig {
        semantic_resize_masks_first: false,
        ..Default::default()
    };
    assert_eq!(semantic(&r, &cfg).labels, want);
    let first = semantic(&r, &PostprocessConfig::default()).labels;
    assert_eq!(first.len(), 15);
}
