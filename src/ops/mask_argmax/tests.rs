//! The mask_argmax kernels against the f64 reference: random logits, sizes off the 64-column
//! grid, up- and downsampling and equal sizes, many queries, exact ties (duplicated queries or
//! classes, where the first must win), outputs poisoned first; under both kernel policies.
//! An argmax may differ from the f64 one only at a near tie (margin below `TIE`), and a
//! "probability ≥ 0.5" decision only where the f64 probability is within `TIE` of 0.5.

use rand::Rng;

use super::reference as r;
use super::*;
use crate::testing::{cpu_policy_runtime, gpu_policy_runtime, rng, seed, uniform};

/// f32 rounding of 16 taps, exp and sums: relative margins below this may flip.
const TIE: f64 = 1e-5;
const POISON: u32 = 0xdead_beef;

fn runtimes() -> [&'static Runtime; 2] {
    [cpu_policy_runtime(), gpu_policy_runtime()]
}

pub(super) const CASES: [Sizes; 3] = [
    // Upsampling by non-integer factors, output 70 wide (off the 64-column grid).
    Sizes {
        mask: (7, 11),
        input: (27, 43),
        output: (61, 70),
    },
    // Downsampling in the second step (network input larger than the image).
    Sizes {
        mask: (9, 5),
        input: (36, 20),
        output: (23, 131),
    },
    // Equal sizes in both steps (copies).
    Sizes {
        mask: (6, 9),
        input: (6, 9),
        output: (6, 9),
    },
];

fn poisoned(rt: &Runtime, n: usize, shape: &[usize]) -> Tensor {
    rt.upload_u32(&vec![POISON; n], shape).unwrap()
}

/// Logits in [-6, 6] for `q` queries; query 1 duplicates query 0 (an exact tie).
fn logits(rng: &mut impl Rng, q: usize, s: Sizes) -> Vec<f32> {
    let plane = s.mask.0 * s.mask.1;
    let mut x = uniform(rng, q * plane, -6.0, 6.0);
    if q > 1 {
        x.copy_within(0..plane, plane);
    }
    x
}

#[test]
fn panoptic_owners_and_areas_match_the_reference() {
    for rt in runtimes() {
        for (ci, s) in CASES.iter().enumerate() {
            let seed = seed();
            let mut g = rng(seed);
            let q = 40;
            let x = logits(&mut g, q, *s);
            // Kept: 0 and 1 (identical masks, equal scores), then 30 random queries.
            let mut kept = vec![(0u32, 0.9f32), (1, 0.9)];
            kept.extend((0..30).map(|_| (g.random_range(2..q as u32), g.random_range(0.8..1.0))));
            let logits_t = rt.upload(&x, &[q, s.mask.0, s.mask.1]).unwrap();
            let up = Upsampling::new(rt, *s).unwrap();
            let table = panoptic_table(&kept);
            let table = rt.upload_u32(&table, &[table.len()]).unwrap();
            let (oh, ow) = s.output;
            let owners = poisoned(rt, oh * ow, &[oh, ow]);
            let area = rt.upload_u32(&vec![0; kept.len()], &[kept.len()]).unwrap();
            rt.run(&panoptic_into(rt, &logits_t, &up, &table, &owners, &area).unwrap());
            let got = rt.download_u32(&owners).unwrap();
            let got_area = rt.download_u32(&area).unwrap();
            let cand = r::panoptic(&x, q, *s, &kept);
            let case = format!("case {ci} on {:?} (seed {seed})", rt.kernel_policy());
            let mut near_half = vec![0u32; kept.len()];
            let mut want_area = vec![0u32; kept.len()];
            for (j, c) in cand.iter().enumerate() {
                want_area[j] = c.iter().filter(|v| v.1 >= 0.5).count() as u32;
                near_half[j] = c.iter().filter(|v| (v.1 - 0.5).abs() < TIE).count() as u32;
            }
            for i in 0..oh * ow {
                let (o, flag) = ((got[i] & !PROB_FLAG) as usize, got[i] & PROB_FLAG != 0);
                assert!(
                    o < kept.len(),
                    "{case}: pixel {i} not written ({:#x})",
                    got[i]
                );
                let want = r::argmax(cand.iter().map(|c| c[i].0));
                if o != want {
                    let (a, b) = (cand[o][i].0, cand[want][i].0);
                    assert!(
                        (a - b).abs() <= TIE * b.abs(),
                        "{case}: pixel {i} owner {o} ({a}) vs {want} ({b})"
                    );
                }
                // Duplicated queries tie exactly: the first must win.
                assert_ne!(
                    o, 1,
                    "{case}: pixel {i} went to the second of two equal queries"
                );
                let p = cand[o][i].1;
                assert!(
                    flag == (p >= 0.5) || (p - 0.5).abs() < TIE,
                    "{case}: pixel {i} flag {flag} for probability {p}"
                );
            }
            for j in 0..kept.len() {
                assert!(
                    got_area[j].abs_diff(want_area[j]) <= near_half[j],
                    "{case}: kept {j} area {} vs {}",
                    got_area[j],
                    want_area[j]
                );
            }
        }
    }
}

#[test]
fn semantic_labels_match_the_reference() {
    for rt in runtimes() {
        for (ci, s) in CASES.iter().enumerate() {
            let seed = seed();
            let mut g = rng(seed);
            // Many queries (past 128) and COCO's 133 classes; class 1 duplicates class 0.
            let (q, k) = (150, 133);
            let x = logits(&mut g, q, *s);
            let probs: Vec<Vec<f32>> = (0..q)
                .map(|_| {
                    let mut p = uniform(&mut g, k, 0.0, 1.0);
                    p[1] = p[0];
                    let sum: f32 = p.iter().sum::<f32>() * 1.1;
                    p.iter().map(|v| v / sum).collect()
                })
                .collect();
            let logits_t = rt.upload(&x, &[q, s.mask.0, s.mask.1]).unwrap();
            let up = Upsampling::new(rt, *s).unwrap();
            let table: Vec<u32> = probs.iter().flatten().map(|v| v.to_bits()).collect();
            let table = rt.upload_u32(&table, &[q, k]).unwrap();
            let (oh, ow) = s.output;
            let labels = poisoned(rt, oh * ow, &[oh, ow]);
            rt.run(&semantic_into(rt, &logits_t, &up, &table, &labels).unwrap());
            let got = rt.download_u32(&labels).unwrap();
            let cand = r::semantic(&x, *s, &probs);
            let case = format!("case {ci} on {:?} (seed {seed})", rt.kernel_policy());
            for (i, &l) in got.iter().enumerate() {
                assert!((l as usize) < k, "{case}: pixel {i} not written ({l:#x})");
                assert_ne!(
                    l, 1,
                    "{case}: pixel {i} went to the second of two equal classes"
                );
                let want = r::argmax(cand.iter().map(|c| c[i]));
                let (a, b) = (cand[l as usize][i], cand[want][i]);
                assert!(
                    l as usize == want || (a - b).abs() <= TIE * b.abs(),
                    "{case}: pixel {i} label {l} ({a}) vs {want} ({b})"
                );
            }
        }
    }
}

#[test]
fn nonfinite_values_are_counted_with_the_first_index() {
    for rt in runtimes() {
        let seed = seed();
        let mut g = rng(seed);
        let n = 300_017;
        let mut x = uniform(&mut g, n, -1e30, 1e30);
        let t = rt.upload(&x, &[n]).unwrap();
        let got = pollster::block_on(count_nonfinite(rt, &t)).unwrap();
        assert_eq!(got.count, 0, "seed {seed}");
        let bad: Vec<usize> = (0..5).map(|_| g.random_range(0..n)).collect();
        for (k, &i) in bad.iter().enumerate() {
            x[i] = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY][k % 3];
        }
        let distinct: std::collections::BTreeSet<usize> = bad.iter().copied().collect();
        let t = rt.upload(&x, &[n]).unwrap();
        let got = pollster::block_on(count_nonfinite(rt, &t)).unwrap();
        assert_eq!(got.count, distinct.len() as u64, "seed {seed}");
        assert_eq!(got.first, *distinct.first().unwrap(), "seed {seed}");
    }
}

#[test]
fn bad_shapes_and_too_many_queries_are_errors() {
    let rt = cpu_policy_runtime();
    let s = CASES[0];
    let up = Upsampling::new(rt, s).unwrap();
    let x = rt.upload(&vec![0.0; 3 * 7 * 12], &[3, 7, 12]).unwrap();
    let labels = rt.upload_u32(&vec![0; 61 * 70], &[61, 70]).unwrap();
    let probs = rt.upload_u32(&[0; 6], &[3, 2]).unwrap();
    let e = semantic_into(rt, &x, &up, &probs, &labels)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("mask size"), "{e}");
    let q = MAX_QUERIES + 1;
    let x = rt.upload(&vec![0.0; q * 77], &[q, 7, 11]).unwrap();
    let probs = rt.upload_u32(&vec![0; q * 2], &[q, 2]).unwrap();
    let e = semantic_into(rt, &x, &up, &probs, &labels)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("257 queries"), "{e}");
    assert!(Upsampling::new(
        rt,
        Sizes {
            output: (0, 3),
            ..s
        }
    )
    .is_err());
}
