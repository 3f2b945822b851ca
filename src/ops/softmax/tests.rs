use super::*;
use crate::ops::elementwise::testutil::{check_fd, poisoned, run, to32, to64};
use crate::testing::{assert_close, rng, runtime, seed, uniform};

const TOL: f64 = 1e-5;
const VARIANTS: [Variant; 2] = [Variant::Rows, Variant::Groups];
const KINDS: [Kind; 2] = [Kind::Softmax, Kind::LogSoftmax];

/// (shape, axis): last axis, other axes, one-element rows, a row of 5000 (longer than any
/// workgroup), and more rows than one grid dimension holds.
const CASES: &[(&[usize], usize)] = &[
    (&[1], 0),
    (&[3, 7], 1),
    (&[3, 5, 7], 1),
    (&[3, 5, 7], 0),
    (&[4, 1], 1),
    (&[2, 5000], 1),
    (BIG, 1),
];

/// More rows than one grid dimension (65535 workgroups) holds. The workgroup variant takes about
/// a second per launch of this on lavapipe, so only softmax (not log-softmax) runs it there.
const BIG: &[usize] = &[70_000, 3];

fn skip(shape: &[usize], v: Variant, kind: Kind) -> bool {
    shape == BIG && v == Variant::Groups && kind != Kind::Softmax
}

#[test]
fn softmax_matches_reference() {
    let rt = runtime();
    let s = seed();
    let mut r = rng(s);
    for &(shape, axis) in CASES {
        // A wide range: the max subtraction must keep exp from overflowing.
        let x = uniform(&mut r, shape.iter().product(), -60.0, 60.0);
        let xt = rt.upload(&x, shape).unwrap();
        for kind in KINDS {
            let want = to32(&reference::softmax(kind, &to64(&x), shape, axis));
            for v in VARIANTS {
                if skip(shape, v, kind) {
                    continue;
                }
                let y = poisoned(rt, shape);
                run(rt, softmax_into(rt, kind, &xt, axis, &y, v));
                let case = format!("{kind:?} {v:?} {shape:?} axis {axis}");
                assert_close(&case, s, &rt.download(&y).unwrap(), &want, TOL);
            }
        }
    }
}

#[test]
fn softmax_backward_matches_reference_and_finite_differences() {
    let rt = runtime();
    let s = seed();
    let mut r = rng(s);
    for &(shape, axis) in CASES {
        let n: usize = shape.iter().product();
        for kind in KINDS {
            if n <= 128 {
                let x = to64(&uniform(&mut r, n, -2.0, 2.0));
                let dy = to64(&uniform(&mut r, n, -1.0, 1.0));
                let y = reference::softmax(kind, &x, shape, axis);
                let g = reference::softmax_backward(kind, &y, &dy, shape, axis);
                let f = |x: &[f64]| reference::softmax(kind, x, shape, axis);
                check_fd(
                    &format!("{kind:?} {shape:?} axis {axis} (seed {s})"),
                    &f,
                    &x,
                    &dy,
                    &g,
                    1e-6,
                );
            }
            let x = to64(&uniform(&mut r, n, -3.0, 3.0));
            let y = to32(&reference::softmax(kind, &x, shape, axis));
            let dy = uniform(&mut r, n, -1.0, 1.0);
            let want = to32(&reference::softmax_backward(
                kind,
                &to64(&y),
                &to64(&dy),
                shape,
                axis,
            ));
            let (yt, dyt) = (
                rt.upload(&y, shape).unwrap(),
                rt.upload(&dy, shape).unwrap(),
            );
            for v in VARIANTS {
                if skip(shape, v, kind) {
                    continue;
                }
                let dx = poisoned(rt, shape);
                run(rt, softmax_backward_into(rt, kind, &yt, &dyt, axis, &dx, v));
                let case = format!("{kind:?}' {v:?} {shape:?} axis {axis}");
                assert_close(&case, s, &rt.download(&dx).unwrap(), &want, TOL);
            }
        }
    }
}

#[test]
fn softmax_errors_name_the_op() {
    let rt = runtime();
    let x = rt.upload(&[1.0; 6], &[2, 3]).unwrap();
    let err = softmax(rt, &x, 2).unwrap_err().to_string();
    assert!(err.contains("softmax") && err.contains("[2, 3]"), "{err}");
    let y = rt.empty(&[3, 2], DType::F32).unwrap();
    let err = softmax_into(rt, Kind::Softmax, &x, 1, &y, Variant::Auto)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("[3, 2]"), "{err}");
}

/// A tensor just past the 128 MiB binding limit is split over rows.
#[test]
fn softmax_past_binding_limit() {
    let rt = runtime();
    let len = 1000;
    let rows = (rt.caps().max_storage_binding / 4) as usize / len + 3;
    let x: Vec<f32> = (0..rows * len)
        .map(|i| ((i * 7919) % 1009) as f32 * 0.01)
        .collect();
    let xt = rt.upload(&x, &[rows, len]).unwrap();
    let y = poisoned(rt, &[rows, len]);
    run(
        rt,
        softmax_into(rt, Kind::Softmax, &xt, 1, &y, Variant::Auto),
    );
    let got = rt.download(&y).unwrap();
    for row in [0, rows / 2, rows - 2, rows - 1] {
        let xs = to64(&x[row * len..(row + 1) * len]);
        let want = to32(&reference::softmax(Kind::Softmax, &xs, &[len], 0));
        assert_close(
            &format!("row {row}"),
            0,
            &got[row * len..(row + 1) * len],
            &want,
            TOL,
        );
    }
    assert!(got.iter().all(|v| v.is_finite()), "every row written");
}

/// Rows longer than one llvmpipe invocation may loop over (`CPU_LOOP_ITERATIONS`, 65535
/// iterations in all): odd lengths take the scalar loops, three passes forward and two
/// backward, so 32737 is past the budget for both (masked attention's 1/8 keys at 1333² are
/// 167² = 27889). `Rows` asked for must still be right (it takes `groups` there).
#[test]
fn rows_past_the_cpu_loop_budget() {
    let rt = runtime();
    let s = seed();
    let mut r = rng(s);
    let shape: &[usize] = &[2, 32_737];
    let n: usize = shape.iter().product();
    let x = uniform(&mut r, n, -6.0, 6.0);
    let dy = uniform(&mut r, n, -1.0, 1.0);
    let (xt, dyt) = (
        rt.upload(&x, shape).unwrap(),
        rt.upload(&dy, shape).unwrap(),
    );
    let kind = Kind::Softmax;
    let want = to32(&reference::softmax(kind, &to64(&x), shape, 1));
    let yt = rt.upload(&want, shape).unwrap();
    let want_dx = to32(&reference::softmax_backward(
        kind,
        &to64(&want),
        &to64(&dy),
        shape,
        1,
    ));
    for v in [Variant::Auto, Variant::Rows] {
        let y = poisoned(rt, shape);
        run(rt, softmax_into(rt, kind, &xt, 1, &y, v));
        assert_close(
            &format!("softmax {v:?} {shape:?}"),
            s,
            &rt.download(&y).unwrap(),
            &want,
            TOL,
        );
        let dx = poisoned(rt, shape);
        run(rt, softmax_backward_into(rt, kind, &yt, &dyt, 1, &dx, v));
        assert_close(
            &format!("softmax' {v:?} {shape:?}"),
            s,
            &rt.download(&dx).unwrap(),
            &want_dx,
            TOL,
        );
    }
}
