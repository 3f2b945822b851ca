use super::points::{sample, RandomPoints, ReplayPoints};
use super::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn numeric_check(auxiliary: bool) {
    // Long: one numeric-gradient check over every loss term, with its fixture built inline.
    let shape = PredictionShape {
        batch: 2,
        queries: 4,
        classes: 4,
        height: 5,
        width: 6,
    };
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let preds: Vec<(Vec<f32>, Vec<f32>)> = (0..2)
        .map(|_| {
            (
                (0..shape.class_len())
                    .map(|_| rng.random::<f32>() * 4.0 - 2.0)
                    .collect(),
                (0..shape.mask_len())
                    .map(|_| rng.random::<f32>() * 6.0 - 3.0)
                    .collect(),
            )
        })
        .collect();
    let targets: Vec<ImageTargets> = [2usize, 1]
        .iter()
        .map(|&n| ImageTargets {
            height: 10,
            width: 12,
            masks: (0..n * 120)
                .map(|_| (rng.random::<f32>() > 0.5) as u8 as f32)
                .collect(),
            classes: (0..n as u32).collect(),
        })
        .collect();
    let cfg = CriterionConfig {
        num_points: 16,
        auxiliary,
        ..CriterionConfig::default()
    };
    let crit = Criterion::new(cfg, 3).unwrap();
    let run = |preds: &[(Vec<f32>, Vec<f32>)]| {
        let logits: Vec<Logits> = preds
            .iter()
            .map(|(c, m)| Logits {
                class_logits: c,
                mask_logits: m,
            })
            .collect();
        crit.compute(shape, &logits, &targets, &mut RandomPoints::new(9))
            .unwrap()
    };
    let base = run(&preds);
    assert_eq!(base.terms.len(), if auxiliary { 6 } else { 3 });
    assert!((base.total - base.terms.iter().map(|t| t.1).sum::<f64>()).abs() < 1e-9);
    // Central differences on a few logits (the matching and points stay fixed for small steps).
    let eps = 1e-3f32;
    for k in 0..2 {
        for (is_mask, i) in [(false, 3), (false, 17), (true, 7), (true, 40), (true, 200)] {
            let mut plus = preds.clone();
            let mut minus = preds.clone();
            let (pv, mv) = if is_mask {
                (&mut plus[k].1[i], &mut minus[k].1[i])
            } else {
                (&mut plus[k].0[i], &mut minus[k].0[i])
            };
            *pv += eps;
            *mv -= eps;
            let num = (run(&plus).total - run(&minus).total) / (2.0 * eps as f64);
            let g = &base.grads[k];
            let ana = if is_mask {
                g.mask_logits[i]
            } else {
                g.class_logits[i]
            } as f64;
            assert!(
                (num - ana).abs() < 2e-3 + 1e-2 * ana.abs(),
                "pred {k} mask={is_mask} [{i}]: numeric {num} analytic {ana}"
            );
        }
    }
    if !auxiliary {
        assert!(base.grads[0].class_logits.iter().all(|&v| v == 0.0));
    }
}

#[test]
fn gradients_match_finite_differences() {
    numeric_check(true);
    numeric_check(false);
}

#[test]
fn bilinear_taps_follow_grid_sample() {
    // A point at a pixel centre reads that pixel; at the map corner a quarter of it (zero padding).
    let map: Vec<f32> = (0..12).map(|v| v as f32).collect();
    assert!((sample(&map, 3, 4, [(1.5) / 4.0, (2.5) / 3.0]) - 9.0).abs() < 1e-5);
    assert!((sample(&map, 3, 4, [0.0, 0.0]) - 0.0).abs() < 1e-6);
    assert!((sample(&map, 3, 4, [1.0, 1.0]) - 11.0 / 4.0).abs() < 1e-5);
    // Half-way between pixel centres (0,1) and (0,2): their mean.
    assert!((sample(&map, 3, 4, [2.0 / 4.0, 0.5 / 3.0]) - 1.5).abs() < 1e-5);
}

#[test]
fn the_matcher_finds_the_obvious_assignment() {
    // Query 2 predicts target 0's mask exactly and its class; query 0 target 1's.
    let shape = PredictionShape {
        batch: 1,
        queries: 3,
        classes: 3,
        height: 4,
        width: 4,
    };
    let m0: Vec<f32> = (0..16).map(|i| if i < 8 { 1.0 } else { 0.0 }).collect();
    let m1: Vec<f32> = m0.iter().map(|v| 1.0 - v).collect();
    let to_logit = |m: &[f32]| {
        m.iter()
            .map(|&v| if v > 0.5 { 8.0 } else { -8.0 })
            .collect::<Vec<f32>>()
    };
    let mut masks = to_logit(&m1);
    masks.extend(vec![0.0; 16]);
    masks.extend(to_logit(&m0));
    let class = vec![-5.0, 5.0, -5.0, 0.0, 0.0, 0.0, 5.0, -5.0, -5.0];
    let mut tm = m0.clone();
    tm.extend(&m1);
    let targets = [ImageTargets {
        height: 4,
        width: 4,
        masks: tm,
        classes: vec![0, 1],
    }];
    let crit = Criterion::new(
        CriterionConfig {
            num_points: 64,
            ..CriterionConfig::default()
        },
        2,
    )
    .unwrap();
    let out = crit
        .compute(
            shape,
            &[Logits {
                class_logits: &class,
                mask_logits: &masks,
            }],
            &targets,
            &mut RandomPoints::new(1),
        )
        .unwrap();
    assert_eq!(out.matches[0][0], vec![(0, 1), (2, 0)]);
}

#[test]
fn replay_checks_shapes() {
    let mut r = ReplayPoints::new(vec![([1, 2, 2], vec![0.1, 0.2, 0.3, 0.4])]);
    assert!(matches!(
        r.draw(1, 3),
        Err(CriterionError::ReplayShape { .. })
    ));
    let mut r = ReplayPoints::new(vec![([1, 2, 2], vec![0.1, 0.2, 0.3, 0.4])]);
    assert_eq!(r.draw(1, 2).unwrap(), vec![[0.1, 0.2], [0.3, 0.4]]);
    assert!(matches!(
        r.draw(1, 2),
        Err(CriterionError::ReplayExhausted(1))
    ));
}
