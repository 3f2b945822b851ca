//! Plain-Rust specification of the reductions in f64, forward and backward, over x viewed as
//! `[outer, len, inner]` along the reduced axis.

use super::Reduce;

/// Which extreme [`arg_reduce`] finds (the indices the max/min backward routes by).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ArgReduce {
    ArgMax,
    ArgMin,
}

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

/// First index of the extreme along the axis; NaN counts as extreme (first NaN wins).
pub fn arg_reduce(op: ArgReduce, x: &[f64], shape: &[usize], axis: usize) -> Vec<u32> {
    let (outer, len, inner) = dims(shape, axis);
    let mut out = Vec::with_capacity(outer * inner);
    for o in 0..outer {
        for i in 0..inner {
            let at = |l: usize| x[(o * len + l) * inner + i];
            let mut best = 0;
            for l in 1..len {
                let (v, b) = (at(l), at(best));
                if b.is_nan() {
                    break;
                }
                let better = match op {
                    ArgReduce::ArgMax => v > b,
                    ArgReduce::ArgMin => v < b,
                };
                if v.is_nan() || better {
                    best = l;
                }
            }
            out.push(best as u32);
        }
    }
    out
}

/// Gradient w.r.t. x of `reduce(op, x)` given dy; max/min route dy to `indices`.
pub fn reduce_backward(
    op: Reduce,
    dy: &[f64],
    indices: Option<&[u32]>,
    shape: &[usize],
    axis: usize,
) -> Vec<f64> {
    let (outer, len, inner) = dims(shape, axis);
    let mut dx = vec![0.0; outer * len * inner];
    for o in 0..outer {
        for l in 0..len {
            for i in 0..inner {
                let q = o * inner + i;
                dx[(o * len + l) * inner + i] = match op {
                    Reduce::Sum => dy[q],
                    Reduce::Mean => dy[q] / len as f64,
                    Reduce::Max | Reduce::Min => {
                        if indices.expect("indices for max/min")[q] as usize == l {
                            dy[q]
                        } else {
                            0.0
                        }
                    }
                };
            }
        }
    }
    dx
}
