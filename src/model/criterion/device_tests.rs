//! The criterion's graph nodes (`device.rs`) against the host criterion (the f64 reference):
//! matching costs and assignments, loss terms and logit gradients.

use super::device::*;
use super::*;
use crate::graph::{CompileOptions, Executable, Graph, HostData};
use crate::testing::{assert_close, assert_close_to_bound, rng, runtime, seed, uniform};
use rand::Rng;

const SHAPE: PredictionShape = PredictionShape {
    batch: 2,
    queries: 7,
    classes: 5,
    height: 9,
    width: 11,
};
const TARGET_HW: (usize, usize) = (19, 23);

fn targets(r: &mut impl Rng, counts: &[usize]) -> Vec<ImageTargets> {
    let (th, tw) = TARGET_HW;
    counts
        .iter()
        .map(|&n| ImageTargets {
            height: th,
            width: tw,
            masks: (0..n * th * tw)
                .map(|_| (r.random::<f32>() < 0.4) as u8 as f32)
                .collect(),
            classes: (0..n)
                .map(|_| r.random_range(0..SHAPE.classes as u32 - 1))
                .collect(),
        })
        .collect()
}

fn draws(r: &mut impl Rng, n: usize, p: usize) -> ([usize; 3], Vec<f32>) {
    // Some points past the map's edge cells, where the zero padding matters.
    ([n, p, 2], uniform(r, n * p * 2, 0.0, 1.0))
}

fn pairs(v: &[f32]) -> Vec<[f32; 2]> {
    v.chunks_exact(2).map(|c| [c[0], c[1]]).collect()
}

#[test]
fn device_match_costs_and_assignments_match_the_host() {
    let rt = runtime();
    let s = seed();
    let mut r = rng(s);
    let p = 300;
    let crit = Criterion::new(
        CriterionConfig {
            num_points: p,
            ..CriterionConfig::default()
        },
        SHAPE.classes - 1,
    )
    .unwrap();
    let tg = targets(&mut r, &[3, 5]);
    let m = MatchShape {
        points: p,
        max_targets: 6,
        target_height: TARGET_HW.0,
        target_width: TARGET_HW.1,
    };
    let (b, q, c, h, w) = (
        SHAPE.batch,
        SHAPE.queries,
        SHAPE.classes,
        SHAPE.height,
        SHAPE.width,
    );
    let class_logits = uniform(&mut r, b * q * c, -3.0, 3.0);
    let mask_logits = uniform(&mut r, b * q * h * w, -4.0, 4.0);

    let mut g = Graph::new();
    let cl = g.input("class_logits", &[b, q, c]).unwrap();
    let ml = g.input("mask_logits", &[b, q, h, w]).unwrap();
    let costs = attach_match_costs(&mut g, &[(cl, ml)], SHAPE, m, crit.match_weights()).unwrap();
    let mut exe = Executable::compile(rt, &g, &costs, &CompileOptions::inference()).unwrap();
    let (masks, classes) = match_targets(&tg, m).unwrap();
    let coords: Vec<f32> = (0..b).flat_map(|_| draws(&mut r, 1, p).1).collect();
    exe.set_input("class_logits", HostData::F32(&class_logits))
        .unwrap();
    exe.set_input("mask_logits", HostData::F32(&mask_logits))
        .unwrap();
    exe.set_input(MATCH_TARGET_MASKS, HostData::U32(&masks))
        .unwrap();
    exe.set_input(MATCH_TARGET_CLASSES, HostData::U32(&classes))
        .unwrap();
    exe.set_input(&match_coords_name(0), HostData::F32(&coords))
        .unwrap();
    exe.run().unwrap();
    let cost = exe.read(costs[0]).unwrap();

    let pred = Logits {
        class_logits: &class_logits,
        mask_logits: &mask_logits,
    };
    for (bi, t) in tg.iter().enumerate() {
        let pts = pairs(&coords[bi * p * 2..(bi + 1) * p * 2]);
        let want: Vec<f32> = crit
            .cost_matrix(SHAPE, pred, t, bi, &pts)
            .iter()
            .map(|&v| v as f32)
            .collect();
        let n = t.len();
        let got: Vec<f32> = (0..q * n)
            .map(|i| cost[(bi * q + i / n) * m.max_targets + i % n])
            .collect();
        // The class, BCE and dice costs partly cancel: bound by their magnitudes (≤ 2 + 5·BCE + 5).
        let bound: Vec<f32> = want.iter().map(|v| v.abs() + 7.0).collect();
        assert_close_to_bound(&format!("image {bi} cost"), s, &got, &want, &bound, 1e-5);
    }
    let mut replay = ReplayPoints::new(
        (0..b)
            .map(|bi| ([1, p, 2], coords[bi * 2 * p..(bi + 1) * 2 * p].to_vec()))
            .collect(),
    );
    let host = crit.match_batch(SHAPE, pred, &tg, &mut replay).unwrap();
    let device = solve_costs(&cost, SHAPE, m.max_targets, &tg).unwrap();
    assert_eq!(device, host, "assignments (seed {s})");
}

#[test]
fn device_losses_and_gradients_match_the_host() {
    // Over ~80 lines: every loss term's inputs are built here, so the comparison reads in one place.
    let rt = runtime();
    let s = seed();
    let mut r = rng(s);
    let p = 200;
    // All points uniform, so the host's points are known: the device's importance sampling is
    // tested on its own.
    let crit = Criterion::new(
        CriterionConfig {
            num_points: p,
            importance_sample_ratio: 0.0,
            auxiliary: false,
            ..CriterionConfig::default()
        },
        SHAPE.classes - 1,
    )
    .unwrap();
    let tg = targets(&mut r, &[2, 4]);
    let (b, q, c, h, w) = (
        SHAPE.batch,
        SHAPE.queries,
        SHAPE.classes,
        SHAPE.height,
        SHAPE.width,
    );
    let class_logits = uniform(&mut r, b * q * c, -3.0, 3.0);
    let mask_logits = uniform(&mut r, b * q * h * w, -4.0, 4.0);
    let n: usize = tg.iter().map(|t| t.len()).sum();
    let over = crit.config().oversampled();
    let recorded = vec![
        draws(&mut r, 1, p),
        draws(&mut r, 1, p),
        draws(&mut r, n, over),
        draws(&mut r, n, p),
    ];
    let pair_points = pairs(&recorded[3].1);
    let pred = Logits {
        class_logits: &class_logits,
        mask_logits: &mask_logits,
    };
    let host = crit
        .compute(SHAPE, &[pred], &tg, &mut ReplayPoints::new(recorded))
        .unwrap();

    let mut g = Graph::new();
    let cl = g.param("class_logits", &[b, q, c]).unwrap();
    let ml = g.param("mask_logits", &[b, q, h, w]).unwrap();
    let (total, terms) = attach_losses(&mut g, &[(cl, ml)], SHAPE, p).unwrap();
    g.backward(total).unwrap();
    let t = terms[0];
    let outputs = [total, t.cross_entropy, t.mask, t.dice];
    let mut exe = Executable::compile(rt, &g, &outputs, &CompileOptions::training()).unwrap();
    let feed = LossFeed::new(
        &crit,
        SHAPE,
        &tg,
        &host.matches[0],
        &pair_points,
        host.num_masks,
    );
    let names = loss_input_names(0);
    exe.set_param("class_logits", &class_logits).unwrap();
    exe.set_param("mask_logits", &mask_logits).unwrap();
    exe.set_input(&names.coords, HostData::F32(&feed.coords))
        .unwrap();
    exe.set_input(&names.labels, HostData::F32(&feed.labels))
        .unwrap();
    exe.set_input(
        &names.mask_weights,
        HostData::F32(&feed.weights.mask_weights),
    )
    .unwrap();
    exe.set_input(
        &names.class_targets,
        HostData::U32(&feed.weights.class_targets),
    )
    .unwrap();
    exe.set_input(
        &names.class_weights,
        HostData::F32(&feed.weights.class_weights),
    )
    .unwrap();
    exe.run().unwrap();

    let got: Vec<f32> = outputs.iter().map(|&v| exe.read(v).unwrap()[0]).collect();
    let want = [
        host.total,
        host.term("loss_cross_entropy").unwrap(),
        host.term("loss_mask").unwrap(),
        host.term("loss_dice").unwrap(),
    ];
    let want: Vec<f32> = want.iter().map(|&v| v as f32).collect();
    assert_close("loss terms", s, &got, &want, 1e-5);
    for (name, want) in [
        ("class_logits", &host.grads[0].class_logits),
        ("mask_logits", &host.grads[0].mask_logits),
    ] {
        let grad = rt.download(exe.grad(name).unwrap().unwrap()).unwrap();
        assert_close(&format!("d loss / d {name}"), s, &grad, want, 1e-5);
    }
}

#[test]
fn too_many_targets_for_the_device_matcher_is_an_error_naming_the_image() {
    let mut r = rng(seed());
    let tg = targets(&mut r, &[1, 4]);
    let m = MatchShape {
        points: 4,
        max_targets: 3,
        target_height: TARGET_HW.0,
        target_width: TARGET_HW.1,
    };
    let e = match_targets(&tg, m).unwrap_err().to_string();
    assert!(
        e.contains("image 1 has 4 targets") && e.contains("at most 3"),
        "{e}"
    );
}

/// The whole criterion on the device, its points drawn there, against the host criterion fed
/// the same draws (the device's hash, replayed as the host asks for them).
#[test]
fn drawn_device_criterion_matches_the_host_on_the_same_draws() {
    // Over ~80 lines: one scenario end to end (draws, matching, sampling, losses) on both sides.
    use crate::ops::criterion::reference::uniform as hash_uniform;
    let rt = runtime();
    let s = seed();
    let mut r = rng(s);
    let p = 64;
    let crit = Criterion::new(
        CriterionConfig {
            num_points: p,
            auxiliary: false,
            ..CriterionConfig::default()
        },
        SHAPE.classes - 1,
    )
    .unwrap();
    let tg = targets(&mut r, &[3, 5]);
    let m = MatchShape {
        points: p,
        max_targets: 6,
        target_height: TARGET_HW.0,
        target_width: TARGET_HW.1,
    };
    let (b, q, c, h, w) = (
        SHAPE.batch,
        SHAPE.queries,
        SHAPE.classes,
        SHAPE.height,
        SHAPE.width,
    );
    let class_logits = uniform(&mut r, b * q * c, -3.0, 3.0);
    let mask_logits = uniform(&mut r, b * q * h * w, -4.0, 4.0);

    let mut g = Graph::new();
    let cl = g.param("class_logits", &[b, q, c]).unwrap();
    let ml = g.param("mask_logits", &[b, q, h, w]).unwrap();
    let (costs, total, terms) =
        attach_drawn_criterion(&mut g, &[(cl, ml)], SHAPE, m, &crit).unwrap();
    g.backward(total).unwrap();
    let t = terms[0];
    let outputs = [costs[0], total, t.cross_entropy, t.mask, t.dice];
    let mut exe = Executable::compile(rt, &g, &outputs, &CompileOptions::training()).unwrap();
    let seed_words = [s as u32, (s >> 32) as u32 ^ 0x5eed];
    let (masks, classes) = match_targets(&tg, m).unwrap();
    exe.set_param("class_logits", &class_logits).unwrap();
    exe.set_param("mask_logits", &mask_logits).unwrap();
    exe.set_input(POINTS_SEED, HostData::U32(&seed_words))
        .unwrap();
    exe.set_input(MATCH_TARGET_MASKS, HostData::U32(&masks))
        .unwrap();
    exe.set_input(MATCH_TARGET_CLASSES, HostData::U32(&classes))
        .unwrap();
    let num_masks = 8.0;
    let names = drawn_loss_input_names(0);
    let feed = |exe: &mut Executable, matches: &[Vec<(usize, usize)>]| {
        let lw = LossWeights::new(&crit, SHAPE, &tg, matches, m.max_targets, num_masks);
        exe.set_input(&names.row_targets, HostData::U32(&lw.row_targets))
            .unwrap();
        exe.set_input(&names.mask_weights, HostData::F32(&lw.mask_weights))
            .unwrap();
        exe.set_input(&names.class_targets, HostData::U32(&lw.class_targets))
            .unwrap();
        exe.set_input(&names.class_weights, HostData::F32(&lw.class_weights))
            .unwrap();
    };
    // First the costs (any weights), then the losses of the matching solved from them.
    feed(&mut exe, &[vec![], vec![]]);
    exe.run().unwrap();
    let device_matches =
        solve_costs(&exe.read(costs[0]).unwrap(), SHAPE, m.max_targets, &tg).unwrap();
    feed(&mut exe, &device_matches);
    exe.run().unwrap();

    let [s_match, s_cand, s_extra] = streams(0);
    let draw = |stream, n: usize| -> Vec<f32> {
        (0..n)
            .map(|i| hash_uniform(seed_words, stream, i as u32))
            .collect()
    };
    let (over, keep) = (crit.config().oversampled(), crit.config().uncertain());
    let extra = p - keep;
    let match_pts = draw(s_match, b * p * 2);
    let cand = draw(s_cand, b * q * over * 2);
    let ext = draw(s_extra, b * q * extra * 2);
    let rows: Vec<usize> = device_matches
        .iter()
        .enumerate()
        .flat_map(|(bi, pairs)| pairs.iter().map(move |&(qi, _)| bi * q + qi))
        .collect();
    let per_row = |all: &[f32], len: usize| -> Vec<f32> {
        rows.iter()
            .flat_map(|&row| all[row * len * 2..(row + 1) * len * 2].to_vec())
            .collect()
    };
    let mut recorded: Vec<([usize; 3], Vec<f32>)> = (0..b)
        .map(|bi| ([1, p, 2], match_pts[bi * p * 2..(bi + 1) * p * 2].to_vec()))
        .collect();
    recorded.push(([rows.len(), over, 2], per_row(&cand, over)));
    recorded.push(([rows.len(), extra, 2], per_row(&ext, extra)));
    let pred = Logits {
        class_logits: &class_logits,
        mask_logits: &mask_logits,
    };
    let host = crit
        .compute(SHAPE, &[pred], &tg, &mut ReplayPoints::new(recorded))
        .unwrap();
    assert_eq!(host.matches[0], device_matches, "matching (seed {s})");
    let got: Vec<f32> = outputs[1..]
        .iter()
        .map(|&v| exe.read(v).unwrap()[0])
        .collect();
    // The host normalises by the batch's 8 targets too.
    assert_eq!(host.num_masks, num_masks);
    let want: Vec<f32> = [
        host.total,
        host.term("loss_cross_entropy").unwrap(),
        host.term("loss_mask").unwrap(),
        host.term("loss_dice").unwrap(),
    ]
    .iter()
    .map(|&v| v as f32)
    .collect();
    assert_close("loss terms", s, &got, &want, 1e-5);
    for (name, want) in [
        ("class_logits", &host.grads[0].class_logits),
        ("mask_logits", &host.grads[0].mask_logits),
    ] {
        let grad = rt.download(exe.grad(name).unwrap().unwrap()).unwrap();
        assert_close(&format!("d loss / d {name}"), s, &grad, want, 1e-5);
    }
}
