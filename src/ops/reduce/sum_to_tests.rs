//! `sum_to_shape`: one pass and two passes, under both kernel policies, against the f64
//! reference.

use super::*;
use crate::ops::elementwise::reference;
use crate::ops::elementwise::testutil::{poisoned, run, to32, to64};
use crate::testing::{
    assert_close, assert_close_to_bound, gpu_policy_runtime, rng, runtime, seed, uniform,
};
use rand::Rng;

const TOL: f64 = 1e-5;

/// Both runtimes: CPU-shaped kernels (lavapipe's `Auto`) and the GPU policy, whose two-pass
/// plans split reductions into more segments.
fn runtimes() -> [&'static Runtime; 2] {
    [runtime(), gpu_policy_runtime()]
}

/// Whether `sum_to_shape_scratch_into` takes two passes for this case on `rt`.
fn two_pass(rt: &Runtime, from: &[usize], to: &[usize]) -> bool {
    let dy = rt.empty(from, DType::F32).unwrap();
    let out = rt.empty(to, DType::F32).unwrap();
    sum_to_shape_scratch_into(rt, &dy, &out)
        .unwrap()
        .1
        .is_some()
}

/// Checks `Σ dy` against the reference, bounded by Σ|dy| per output (sums of random signs
/// cancel; their f32 rounding is relative to the terms, not to the result).
fn check(rt: &Runtime, seed: u64, x: &[f32], from: &[usize], to: &[usize], two: bool) {
    let xt = rt.upload(x, from).unwrap();
    let out = poisoned(rt, to);
    let (d, scratch) = sum_to_shape_scratch_into(rt, &xt, &out).unwrap();
    assert_eq!(scratch.is_some(), two, "{from:?}->{to:?}: two passes");
    run(rt, Ok(d));
    let want = reference::sum_to_shape(&to64(x), from, to);
    let abs: Vec<f64> = x.iter().map(|v| v.abs() as f64).collect();
    let bound = reference::sum_to_shape(&abs, from, to);
    assert_close_to_bound(
        &format!("sum_to {from:?}->{to:?} (policy {:?})", rt.kernel_policy()),
        seed,
        &rt.download(&out).unwrap(),
        &to32(&want),
        &to32(&bound),
        1e-6,
    );
}

#[test]
fn sum_to_shape_matches_reference() {
    let s = seed();
    let mut r = rng(s);
    for rt in runtimes() {
        for (from, to) in [
            (&[5, 7][..], &[7][..]),
            (&[5, 7], &[5, 1]),
            (&[3, 4, 5], &[]),
            (&[3, 4, 5], &[1, 4, 1]),
            (&[2, 3, 4, 5], &[3, 1, 5]),
            (&[700, 3], &[3]),
            (&[4], &[4]),
        ] {
            let n: usize = from.iter().product();
            let x = uniform(&mut r, n, -1.0, 1.0);
            let xt = rt.upload(&x, from).unwrap();
            let out = poisoned(rt, to);
            run(rt, sum_to_shape_into(rt, &xt, &out));
            let want = to32(&reference::sum_to_shape(&to64(&x), from, to));
            let got = rt.download(&out).unwrap();
            assert_close(&format!("{from:?}->{to:?}"), s, &got, &want, TOL);
        }
    }
}

/// Long reductions into few outputs take two passes: a bias gradient (rows × channels → channels),
/// a conv bias gradient (`[N, C, H, W] → [C, 1, 1]`: reduced dims on both sides of the kept one),
/// all dims reduced, segment counts that do not divide the reduced size, and a case with enough
/// outputs to stay one pass.
#[test]
fn two_pass_sums_match_reference() {
    let s = seed();
    let mut r = rng(s);
    for rt in runtimes() {
        for (from, to, two) in [
            (&[2 * 4096 + 3, 96][..], &[96][..], true),
            (&[2, 64, 32, 33], &[64, 1, 1], true),
            (&[3, 5001], &[], true),
            (&[129, 7], &[1, 7], true),
            (&[127, 7], &[7], false),
            (&[64, 1 << 17], &[1 << 17], false),
        ] {
            assert_eq!(two_pass(rt, from, to), two, "{from:?}->{to:?}");
            let n: usize = from.iter().product();
            let x = uniform(&mut r, n, -1.0, 1.0);
            check(rt, s, &x, from, to, two);
        }
    }
}

/// Reductions longer than one llvmpipe invocation may loop over (`CPU_LOOP_ITERATIONS`, 65535
/// iterations in all, two or more per reduced element here): bias gradients of a 1024² crop
/// sum 2·256² rows. Inputs are multiples of 1/64 so every partial sum is exact in f32, and a
/// thread stopped early shows as a large error rather than rounding. Both forms: the one-pass
/// launcher splits into accumulating launches, the two-pass one into segments.
#[test]
fn reductions_past_the_cpu_loop_budget() {
    let rt = runtime();
    let s = seed();
    let mut r = rng(s);
    let mut grid = |n: usize| -> Vec<f32> {
        (0..n)
            .map(|_| r.random_range(-64i32..=64) as f32 / 64.0)
            .collect()
    };
    // Contiguous rows (one collapsed reduced dim), and two reduced dims around a kept one
    // (the later launches start mid-odometer); rows of 4 (`main_v4`, vec4 loads).
    for (from, to) in [
        (&[2 * 256 * 256, 2][..], &[2][..]),
        (&[200, 2, 200], &[1, 2, 1]),
        (&[2 * 256 * 256, 4], &[4]),
    ] {
        let n: usize = from.iter().product();
        let x = grid(n);
        let want = to32(&reference::sum_to_shape(&to64(&x), from, to));
        let xt = rt.upload(&x, from).unwrap();
        let one = poisoned(rt, to);
        run(rt, sum_to_shape_into(rt, &xt, &one));
        let two = poisoned(rt, to);
        let (d, scratch) = sum_to_shape_scratch_into(rt, &xt, &two).unwrap();
        assert!(scratch.is_some(), "{from:?}: two passes");
        run(rt, Ok(d));
        for (form, out) in [("one pass", &one), ("two passes", &two)] {
            let got = rt.download(out).unwrap();
            assert_close(
                &format!("sum_to {from:?}->{to:?}, {form}"),
                s,
                &got,
                &want,
                TOL,
            );
        }
    }
}

#[test]
fn sum_to_shape_errors_name_the_op() {
    let rt = runtime();
    let a = rt.upload(&[1.0; 6], &[2, 3]).unwrap();
    let err = sum_to_shape(rt, &a, &[2]).unwrap_err().to_string();
    assert!(err.contains("sum_to_shape") && err.contains("[2]"), "{err}");
}
