//! Plain-Rust specification of the reductions in f64, forward and backward, over x viewed as
//! `[outer, len, inner]` along the reduced axis.

use super::Reduce;

/// `(outer, len, inner)` of `shape` around `axis`.
pub fn dims(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    (
        shape[..axis].iter().product(),
        shape[axis],
        shape[axis + 1..].iter().product(),
    )
}

pub fn reduce(op: Reduce, x: &[f64], shape: &[usize], axis: usize) -> Vec<f64> {
    let (outer, len, inner) = dims(shape, axis);
    let mut out = Vec::with_capacity(outer * inner);
    for o in 0..outer {
        for i in 0..inner {
            let vals = (0..len).map(|l| x[(o * len + l) * inner + i]);
            out.push(match op {
                Reduce::Sum => vals.sum(),
                Reduce::Mean => vals.sum::<f64>() / len as f64,
                Reduce::Max => vals.fold(f64::NEG_INFINITY, f64::max),
                Reduce::Min => vals.fold(f64::INFINITY, f64::min),
            });
        }
    }
    out
}

/// Gradient w.r.t. x of `reduce(op, x)` given dy, for sum and mean (max and min have no
/// backward: see [`super::reduce_backward_into`]).
pub fn reduce_backward(op: Reduce, dy: &[f64], shape: &[usize], axis: usize) -> Vec<f64> {
    let (outer, len, inner) = dims(shape, axis);
    let mut dx = vec![0.0; outer * len * inner];
    for o in 0..outer {
        for l in 0..len {
            for i in 0..inner {
                let q = o * inner + i;
                dx[(o * len + l) * inner + i] = match op {
                    Reduce::Sum => dy[q],
                    Reduce::Mean => dy[q] / len as f64,
                    Reduce::Max | Reduce::Min => panic!("{op:?} has no backward"),
                };
            }
        }
    }
    dx
}
