use super::*;
use crate::ops::elementwise::testutil::{check_fd, poisoned, run, to32, to64};
use crate::testing::{assert_close, assert_close_to_bound, rng, runtime, seed, uniform};

const TOL: f64 = 1e-5;
const VARIANTS: [Variant; 2] = [Variant::Rows, Variant::Groups];
const OPS: [Reduce; 4] = [Reduce::Sum, Reduce::Mean, Reduce::Max, Reduce::Min];

/// (shape, axis): odd sizes, one-element dims, rank 1, a long axis, and more outputs than one
/// dimension of the workgroup grid holds (for the one-workgroup-per-output variant).
const CASES: &[(&[usize], usize)] = &[
    (&[1], 0),
    (&[7], 0),
    (&[3, 5, 7], 0),
    (&[3, 5, 7], 1),
    (&[3, 5, 7], 2),
    (&[2, 1, 3], 1),
    (&[4, 5000], 1),
    (&[5000, 3], 0),
    // Strided rows of whole vec4s (`rows_cols4`): inner 8 and 12.
    (&[3, 5, 8], 1),
    (&[6, 12], 0),
    (BIG, 1),
];

/// More rows than one grid dimension (65535 workgroups) holds. The workgroup variant takes about
/// a second per launch of this on lavapipe, so only the first op of each test runs it there.
const BIG: &[usize] = &[70_000, 2];

/// Checks a forward reduction against the f64 reference, bounded by its conditioning: a sum of
/// random signs cancels (a row of 65537 values in [-1, 1] sums to ~5 from terms whose magnitudes
/// add to ~3e4), so its f32 rounding is relative to Σ|x|, not to the result (1.2e-5 of the
/// result was seen, 2e-9 of Σ|x|). Max and min are exact.
fn check_reduce(
    case: &str,
    seed: u64,
    got: &[f32],
    x: &[f32],
    shape: &[usize],
    axis: usize,
    op: Reduce,
) {
    let want = to32(&reference::reduce(op, &to64(x), shape, axis));
    let bound = match op {
        Reduce::Sum | Reduce::Mean => {
            let abs: Vec<f64> = x.iter().map(|&v| (v as f64).abs()).collect();
            to32(&reference::reduce(op, &abs, shape, axis))
        }
        Reduce::Max | Reduce::Min => want.iter().map(|v| v.abs()).collect(),
    };
    assert_close_to_bound(case, seed, got, &want, &bound, 1e-6);
}

fn skip(shape: &[usize], v: Variant, first: bool) -> bool {
    shape == BIG && v == Variant::Groups && !first
}

#[test]
fn reductions_match_reference() {
    let rt = runtime();
    let s = seed();
    let mut r = rng(s);
    for &(shape, axis) in CASES {
        let x = uniform(&mut r, shape.iter().product(), -1.0, 1.0);
        let xt = rt.upload(&x, shape).unwrap();
        let out_shape = reduced_shape(shape, axis);
        for op in OPS {
            for v in VARIANTS {
                if skip(shape, v, op == Reduce::Sum) {
                    continue;
                }
                let out = poisoned(rt, &out_shape);
                run(rt, reduce_into(rt, op, &xt, axis, &out, v));
                let case = format!("{op:?} {v:?} {shape:?} axis {axis}");
                check_reduce(&case, s, &rt.download(&out).unwrap(), &x, shape, axis, op);
            }
        }
    }
}

#[test]
fn reduce_backward_matches_reference_and_finite_differences() {
    let rt = runtime();
    let s = seed();
    let mut r = rng(s);
    for &(shape, axis) in CASES {
        let n: usize = shape.iter().product();
        let out_shape = reduced_shape(shape, axis);
        let m: usize = out_shape.iter().product();
        for op in [Reduce::Sum, Reduce::Mean] {
            // (a) reference backward vs finite differences.
            if n <= 128 {
                let x = to64(&uniform(&mut r, n, -1.0, 1.0));
                let dy = to64(&uniform(&mut r, m, -1.0, 1.0));
                let g = reference::reduce_backward(op, &dy, shape, axis);
                let f = |x: &[f64]| reference::reduce(op, x, shape, axis);
                check_fd(
                    &format!("{op:?} {shape:?} axis {axis} (seed {s})"),
                    &f,
                    &x,
                    &dy,
                    &g,
                    1e-6,
                );
            }
            // (b) GPU backward vs reference backward.
            let dy = uniform(&mut r, m, -1.0, 1.0);
            let dyt = rt.upload(&dy, &out_shape).unwrap();
            let dx = poisoned(rt, shape);
            run(rt, reduce_backward_into(rt, op, &dyt, axis, &dx));
            let want = reference::reduce_backward(op, &to64(&dy), shape, axis);
            let case = format!("{op:?}' {shape:?} axis {axis}");
            assert_close(&case, s, &rt.download(&dx).unwrap(), &to32(&want), TOL);
        }
    }
}

#[test]
fn reduce_errors_name_the_op_and_shape() {
    let rt = runtime();
    let x = rt.upload(&[1.0; 6], &[2, 3]).unwrap();
    let err = reduce(rt, Reduce::Sum, &x, 2).unwrap_err().to_string();
    assert!(
        err.contains("reduce") && err.contains("[2, 3]") && err.contains("axis 2"),
        "{err}"
    );
    let out = rt.empty(&[3], DType::F32).unwrap();
    let err = reduce_into(rt, Reduce::Sum, &x, 1, &out, Variant::Auto)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("[3]") && err.contains("[2]"), "{err}");
    let dy = rt.upload(&[1.0; 2], &[2]).unwrap();
    let err = reduce_backward(rt, Reduce::Max, &dy, 1, &[2, 3])
        .unwrap_err()
        .to_string();
    assert!(err.contains("Max backward"), "{err}");
    // keepdim-shaped outputs are accepted.
    let keep = poisoned(rt, &[2, 1]);
    run(
        rt,
        reduce_into(rt, Reduce::Sum, &x, 1, &keep, Variant::Auto),
    );
    assert_eq!(rt.download(&keep).unwrap(), vec![3.0, 3.0]);
}

/// Rows longer than one llvmpipe invocation may loop over (`CPU_LOOP_ITERATIONS`, 65535
/// iterations in all): an odd length takes the scalar loop. `Rows` asked for must still be
/// right (it takes `groups` there). The largest element sits last, where a stopped loop misses it.
#[test]
fn rows_past_the_cpu_loop_budget() {
    let rt = runtime();
    let s = seed();
    let mut r = rng(s);
    let shape: &[usize] = &[2, 65_537];
    let mut x = uniform(&mut r, shape.iter().product(), -1.0, 1.0);
    x[65_536] = 2.0;
    x[2 * 65_537 - 1] = 2.0;
    let xt = rt.upload(&x, shape).unwrap();
    for v in [Variant::Auto, Variant::Rows] {
        for op in [Reduce::Sum, Reduce::Max] {
            let out = poisoned(rt, &[2]);
            run(rt, reduce_into(rt, op, &xt, 1, &out, v));
            let case = format!("{op:?} {v:?} {shape:?}");
            check_reduce(&case, s, &rt.download(&out).unwrap(), &x, shape, 1, op);
        }
    }
}
