use super::*;
use crate::ops::elementwise::testutil::{check_fd, poisoned, run, to32, to64};
use crate::testing::{assert_close, assert_close_to_bound, rng, runtime, seed, uniform};
use rand::Rng;

const TOL: f64 = 1e-5;

/// (rows, points): one element, sizes around the 64-thread workgroup, a long row (the
/// criterion's 12544 points), and more rows than one grid dimension (65535 workgroups) holds.
const MASK_CASES: &[(usize, usize)] =
    &[(1, 1), (3, 63), (5, 65), (2, 12544), (7, 129), (65_600, 2)];

/// Labels as point samples of binary masks are: mostly 0 or 1, some fractions between.
fn labels(r: &mut impl Rng, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| match r.random_range(0..4) {
            0 => 0.0,
            1 => 1.0,
            2 => r.random::<f32>(),
            _ => (r.random::<f32>() < 0.5) as u8 as f32,
        })
        .collect()
}

#[test]
fn mask_loss_matches_reference() {
    let rt = runtime();
    let s = seed();
    let mut r = rng(s);
    for &(rows, p) in MASK_CASES {
        let x = uniform(&mut r, rows * p, -6.0, 6.0);
        let t = labels(&mut r, rows * p);
        let (want_loss, want_stats) = reference::mask_loss(&to64(&x), &to64(&t), p);
        let xt = rt.upload(&x, &[rows, p]).unwrap();
        let tt = rt.upload(&t, &[rows, p]).unwrap();
        let loss = poisoned(rt, &[rows, 2]);
        let stats = poisoned(rt, &[rows, 2]);
        run(rt, mask_loss_into(rt, &xt, &tt, &loss, &stats));
        let case = format!("mask_loss [{rows}, {p}]");
        // The dice loss is 1 − num/den: near 0 it cancels, so its f32 rounding is relative to
        // the terms (1 + num/den), not to the result (seen: 1.9e-5 of a 0.0015 loss at p = 1).
        // The BCE mean is a sum of positive terms: bounded by itself.
        let bound: Vec<f32> = want_loss
            .chunks(2)
            .zip(want_stats.chunks(2))
            .flat_map(|(l, st)| [l[0].abs() as f32, (1.0 + st[0] / st[1]) as f32])
            .collect();
        assert_close_to_bound(
            &case,
            s,
            &rt.download(&loss).unwrap(),
            &to32(&want_loss),
            &bound,
            TOL,
        );
        assert_close(
            &case,
            s,
            &rt.download(&stats).unwrap(),
            &to32(&want_stats),
            TOL,
        );

        let dl = uniform(&mut r, rows * 2, -1.0, 1.0);
        let want = reference::mask_loss_backward(&to64(&x), &to64(&t), &to64(&dl), p);
        let dlt = rt.upload(&dl, &[rows, 2]).unwrap();
        let dx = poisoned(rt, &[rows, p]);
        run(rt, mask_loss_backward_into(rt, &xt, &tt, &stats, &dlt, &dx));
        let case = format!("mask_loss_backward [{rows}, {p}]");
        assert_close(&case, s, &rt.download(&dx).unwrap(), &to32(&want), TOL);
    }
}

#[test]
fn mask_loss_reference_gradient_matches_finite_differences() {
    let s = seed();
    let mut r = rng(s);
    for (rows, p) in [(1, 1), (2, 5), (3, 17)] {
        let x = to64(&uniform(&mut r, rows * p, -3.0, 3.0));
        let t = to64(&labels(&mut r, rows * p));
        let dl = to64(&uniform(&mut r, rows * 2, -1.0, 1.0));
        let g = reference::mask_loss_backward(&x, &t, &dl, p);
        let f = |x: &[f64]| reference::mask_loss(x, &t, p).0;
        check_fd(
            &format!("mask_loss [{rows}, {p}] (seed {s})"),
            &f,
            &x,
            &dl,
            &g,
            1e-6,
        );
    }
}

#[test]
fn class_loss_matches_reference() {
    let rt = runtime();
    let s = seed();
    let mut r = rng(s);
    for (rows, c) in [(1, 1), (1, 2), (4, 63), (9, 65), (200, 134), (3, 1000)] {
        // A wide range: the max subtraction must keep exp from overflowing.
        let x = uniform(&mut r, rows * c, -40.0, 40.0);
        let k: Vec<u32> = (0..rows).map(|_| r.random_range(0..c as u32)).collect();
        let (want_loss, want_lse) = reference::class_loss(&to64(&x), &k, c);
        let xt = rt.upload(&x, &[rows, c]).unwrap();
        let kt = rt.upload_u32(&k, &[rows]).unwrap();
        let loss = poisoned(rt, &[rows]);
        let lse = poisoned(rt, &[rows]);
        run(rt, class_loss_into(rt, &xt, &kt, &loss, &lse));
        let case = format!("class_loss [{rows}, {c}]");
        // loss = lse − x[k] cancels where x[k] dominates its row: bound by |lse| + |x[k]|.
        let bound: Vec<f32> = want_lse
            .iter()
            .zip(&want_loss)
            .map(|(l, v)| (l.abs() + (l - v).abs()) as f32)
            .collect();
        let got = rt.download(&loss).unwrap();
        assert_close_to_bound(&case, s, &got, &to32(&want_loss), &bound, TOL);
        assert_close(&case, s, &rt.download(&lse).unwrap(), &to32(&want_lse), TOL);

        let dl = uniform(&mut r, rows, -1.0, 1.0);
        let want = reference::class_loss_backward(&to64(&x), &k, &to64(&dl), c);
        let dlt = rt.upload(&dl, &[rows]).unwrap();
        let dx = poisoned(rt, &[rows, c]);
        run(rt, class_loss_backward_into(rt, &xt, &kt, &lse, &dlt, &dx));
        let case = format!("class_loss_backward [{rows}, {c}]");
        // dx = dl·(p − [c = k]) cancels where p ≈ 1 (a confident row): bound by the terms'
        // magnitudes |dl|·(p + [c = k]); f32 cannot do better (lse itself rounds at that size).
        let bound: Vec<f32> = want
            .iter()
            .enumerate()
            .map(|(i, &g)| {
                let hit = (k[i / c] as usize == i % c) as u8 as f64;
                let dli = dl[i / c].abs() as f64;
                (g.abs() + 2.0 * dli * hit) as f32
            })
            .collect();
        let got = rt.download(&dx).unwrap();
        assert_close_to_bound(&case, s, &got, &to32(&want), &bound, TOL);
    }
}

#[test]
fn class_loss_reference_gradient_matches_finite_differences() {
    let s = seed();
    let mut r = rng(s);
    for (rows, c) in [(1, 1), (2, 3), (3, 7)] {
        let x = to64(&uniform(&mut r, rows * c, -3.0, 3.0));
        let k: Vec<u32> = (0..rows).map(|_| r.random_range(0..c as u32)).collect();
        let dl = to64(&uniform(&mut r, rows, -1.0, 1.0));
        let g = reference::class_loss_backward(&x, &k, &dl, c);
        let f = |x: &[f64]| reference::class_loss(x, &k, c).0;
        check_fd(
            &format!("class_loss [{rows}, {c}] (seed {s})"),
            &f,
            &x,
            &dl,
            &g,
            1e-6,
        );
    }
}

#[test]
fn class_loss_past_the_row_is_nan_not_a_stray_read() {
    let rt = runtime();
    let x = rt.upload(&[1.0, 2.0, 3.0, 4.0], &[2, 2]).unwrap();
    let k = rt.upload_u32(&[1, 2], &[2]).unwrap();
    let (loss, _) = class_loss(rt, &x, &k).unwrap();
    let got = rt.download(&loss).unwrap();
    assert!(got[0].is_finite() && got[1].is_nan(), "{got:?}");
}

#[test]
fn match_cost_matches_reference() {
    let rt = runtime();
    let s = seed();
    let mut r = rng(s);
    let w = MatchWeights {
        class: 2.0,
        mask: 5.0,
        dice: 5.0,
    };
    // (b, q, t, p, c): one of each, sizes around the workgroup, the criterion's points.
    for dims in [
        (1, 1, 1, 1, 1),
        (2, 3, 2, 65, 4),
        (1, 7, 5, 63, 9),
        (2, 10, 3, 12544, 134),
    ] {
        let (b, q, t, p, c) = dims;
        let x = uniform(&mut r, b * q * p, -6.0, 6.0);
        let l = labels(&mut r, b * t * p);
        let probs = uniform(&mut r, b * q * c, 0.0, 1.0);
        let k: Vec<u32> = (0..b * t).map(|_| r.random_range(0..c as u32)).collect();
        let want = reference::match_cost(
            &to64(&x),
            &to64(&l),
            &to64(&probs),
            &k,
            dims,
            (2.0, 5.0, 5.0),
        );
        let xt = rt.upload(&x, &[b, q, p]).unwrap();
        let lt = rt.upload(&l, &[b, t, p]).unwrap();
        let pt = rt.upload(&probs, &[b, q, c]).unwrap();
        let kt = rt.upload_u32(&k, &[b, t]).unwrap();
        let cost = poisoned(rt, &[b, q, t]);
        run(rt, match_cost_into(rt, &xt, &lt, &pt, &kt, &cost, w));
        // The three costs partly cancel: bound by the sum of their magnitudes.
        let bound: Vec<f32> = (0..b * q * t)
            .map(|i| {
                let (bi, qi, ti) = (i / (q * t), i / t % q, i % t);
                let pr = probs[(bi * q + qi) * c + k[bi * t + ti] as usize] as f64;
                (want[i].abs() + 4.0 * pr + 10.0) as f32
            })
            .collect();
        let got = rt.download(&cost).unwrap();
        assert_close_to_bound(
            &format!("match_cost {dims:?}"),
            s,
            &got,
            &to32(&want),
            &bound,
            TOL,
        );
    }
}

#[test]
fn bad_operands_are_errors_naming_them() {
    let rt = runtime();
    let x = rt.upload(&[0.0; 6], &[2, 3]).unwrap();
    let t = rt.upload(&[0.0; 4], &[2, 2]).unwrap();
    let e = mask_loss(rt, &x, &t).err().unwrap().to_string();
    assert!(e.contains("mask_loss") && e.contains("t has shape"), "{e}");
    let k = rt.upload(&[0.0; 2], &[2]).unwrap();
    let e = class_loss(rt, &x, &k).err().unwrap().to_string();
    assert!(e.contains("class_loss") && e.contains("U32"), "{e}");
    let x3 = rt.upload(&[0.0; 6], &[1, 2, 3]).unwrap();
    let l3 = rt.upload(&[0.0; 4], &[1, 1, 4]).unwrap();
    let p3 = rt.upload(&[0.0; 2], &[1, 2, 1]).unwrap();
    let c = rt.upload_u32(&[0], &[1, 1]).unwrap();
    let w = MatchWeights {
        class: 1.0,
        mask: 1.0,
        dice: 1.0,
    };
    let e = match_cost(rt, &x3, &l3, &p3, &c, w)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("match_cost") && e.contains("labels"), "{e}");
}

#[test]
fn uniform_draws_are_the_reference_hash_exactly() {
    let rt = runtime();
    let seed_t = rt.upload_u32(&[0xdead_beef, 7], &[2]).unwrap();
    let n = 70_001; // past one 64-thread grid row of workgroups, off the workgroup size
    let mut seen = Vec::new();
    for stream in [0, 1, 9] {
        let out = poisoned(rt, &[n]);
        run(rt, uniform_into(rt, &seed_t, stream, &out));
        let got = rt.download(&out).unwrap();
        for (i, &v) in got.iter().enumerate() {
            let want = reference::uniform([0xdead_beef, 7], stream, i as u32);
            assert_eq!(v.to_bits(), want.to_bits(), "stream {stream} element {i}");
            assert!((0.0..1.0).contains(&v));
        }
        let mean = got.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
        assert!((mean - 0.5).abs() < 0.01, "stream {stream}: mean {mean}");
        seen.push(got);
    }
    assert_ne!(seen[0], seen[1], "streams must differ");
}

#[test]
fn importance_points_keep_the_most_uncertain_candidates() {
    let rt = runtime();
    let s = seed();
    let mut r = rng(s);
    // (rows, candidates, kept, extra): one point, nothing kept, all kept, sizes around the
    // 256-thread workgroup, and the criterion's 3·12544 candidates.
    for (rows, m, keep, extra) in [
        (1, 1, 1, 0),
        (2, 10, 0, 5),
        (3, 40, 40, 2),
        (4, 255, 100, 33),
        (3, 257, 200, 1),
        (2, 37_632, 9408, 3136),
    ] {
        // Coarse values: many ties (and ±0), which must break by index.
        let x: Vec<f32> = (0..rows * m)
            .map(|_| (r.random_range(-8i32..=8) as f32) * 0.25)
            .collect();
        let cand = uniform(&mut r, rows * m * 2, 0.0, 1.0);
        let ext = uniform(&mut r, rows * extra * 2, 0.0, 1.0);
        let p = keep + extra;
        let mut want = Vec::with_capacity(rows * p * 2);
        for row in 0..rows {
            for j in reference::importance_indices(&x[row * m..(row + 1) * m], keep) {
                want.extend_from_slice(&cand[(row * m + j) * 2..(row * m + j) * 2 + 2]);
            }
            want.extend_from_slice(&ext[row * extra * 2..(row + 1) * extra * 2]);
        }
        let xt = rt.upload(&x, &[rows, m]).unwrap();
        let ct = rt.upload(&cand, &[rows, m, 2]).unwrap();
        // No uniform extras: an empty tensor (bound as 4 bytes, never read).
        let et = if extra == 0 {
            rt.empty(&[rows, 0, 2], DType::F32).unwrap()
        } else {
            rt.upload(&ext, &[rows, extra, 2]).unwrap()
        };
        let out = poisoned(rt, &[rows, p, 2]);
        run(rt, importance_points_into(rt, &xt, &ct, &et, &out));
        let got = rt.download(&out).unwrap();
        assert_eq!(
            got, want,
            "importance points [{rows}, {m}] keep {keep} + {extra} (seed {s})"
        );
    }
}

#[test]
fn gather_sample_reads_each_rows_bit_packed_plane() {
    let rt = runtime();
    let s = seed();
    let mut r = rng(s);
    // Planes of 7·9 = 63 pixels: planes straddle the u32 words.
    let (n, h, w, p): (usize, usize, usize, usize) = (3, 7, 9, 70);
    let masks: Vec<f32> = (0..n * h * w)
        .map(|_| (r.random::<f32>() < 0.5) as u8 as f32)
        .collect();
    let m64 = to64(&masks);
    let bits = rt
        .upload_u32(&pack_masks(&masks).unwrap(), &[(n * h * w).div_ceil(32)])
        .unwrap();
    let sample = |plane: usize, c: &[f32]| -> f32 {
        if plane >= n {
            return 0.0;
        }
        let pl = &m64[plane * h * w..(plane + 1) * h * w];
        reference::point_sample(pl, h, w, [c[0], c[1]]) as f32
    };
    // Indexed rows, one row of points each; 3 is past the planes (an unmatched row, all 0).
    let idx = [2u32, 0, 3, 1, 2];
    let rows = idx.len();
    let coords = uniform(&mut r, rows * p * 2, 0.0, 1.0);
    let want: Vec<f32> = (0..rows * p)
        .map(|i| sample(idx[i / p] as usize, &coords[2 * i..2 * i + 2]))
        .collect();
    let it = rt.upload_u32(&idx, &[rows]).unwrap();
    let ct = rt.upload(&coords, &[rows, p, 2]).unwrap();
    let out = poisoned(rt, &[rows, p]);
    run(
        rt,
        gather_sample_into(rt, &bits, (n, h, w), Some(&it), &ct, &out),
    );
    assert_close("gather_sample", s, &rt.download(&out).unwrap(), &want, 1e-6);
    // Every plane in order, three rows sharing one row of points (the matcher's layout).
    let coords = uniform(&mut r, p * 2, 0.0, 1.0);
    let want: Vec<f32> = (0..n * p)
        .map(|i| sample(i / p, &coords[2 * (i % p)..2 * (i % p) + 2]))
        .collect();
    let ct = rt.upload(&coords, &[1, p, 2]).unwrap();
    let out = poisoned(rt, &[n, p]);
    run(
        rt,
        gather_sample_into(rt, &bits, (n, h, w), None, &ct, &out),
    );
    assert_close(
        "gather_sample (shared points)",
        s,
        &rt.download(&out).unwrap(),
        &want,
        1e-6,
    );
    assert_eq!(
        pack_masks(&[0.0, 1.0, 0.5]),
        Err(2),
        "a fraction is not a binary mask"
    );
}
