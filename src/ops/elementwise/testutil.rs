//! Test helpers shared by the elementwise, reduce, softmax and copy test modules.

use crate::runtime::{DType, Runtime, Tensor};

pub fn to64(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

pub fn to32(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

/// An f32 tensor of `shape` filled with NaN, so a kernel that skips an element is caught.
pub fn poisoned(rt: &Runtime, shape: &[usize]) -> Tensor {
    let t = rt.empty(shape, DType::F32).unwrap();
    rt.fill(&t, f32::NAN).unwrap();
    t
}

/// Runs dispatches and waits.
pub fn run(rt: &Runtime, d: crate::Result<Vec<crate::runtime::Dispatch>>) {
    rt.run(&d.unwrap());
    rt.sync().unwrap();
}

/// Relative L2 error of `got` against `want` in f64.
pub fn rel_err(got: &[f64], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    let num: f64 = got.iter().zip(want).map(|(g, w)| (g - w).powi(2)).sum();
    let den: f64 = want.iter().map(|w| w * w).sum();
    if num == 0.0 {
        0.0
    } else {
        (num / den.max(1e-300)).sqrt()
    }
}

/// Checks an analytic gradient of `L(x) = Σ dy·f(x)` against central finite differences of
/// the f64 reference `f`.
pub fn check_fd(
    case: &str,
    f: &dyn Fn(&[f64]) -> Vec<f64>,
    x: &[f64],
    dy: &[f64],
    grad: &[f64],
    tol: f64,
) {
    let h = 1e-6;
    let loss = |x: &[f64]| -> f64 { f(x).iter().zip(dy).map(|(a, b)| a * b).sum() };
    let mut num = Vec::with_capacity(x.len());
    let mut xp = x.to_vec();
    for i in 0..x.len() {
        let v = xp[i];
        xp[i] = v + h;
        let lp = loss(&xp);
        xp[i] = v - h;
        let lm = loss(&xp);
        xp[i] = v;
        num.push((lp - lm) / (2.0 * h));
    }
    let err = rel_err(grad, &num);
    assert!(
        err <= tol,
        "{case}: analytic gradient vs finite differences: relative error {err:.3e} > {tol:.1e}\nanalytic {grad:?}\nnumeric {num:?}"
    );
}
