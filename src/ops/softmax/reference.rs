//! Plain-Rust specification of softmax / log-softmax in f64, forward and backward, over x
//! viewed as `[outer, len, inner]` along the axis.

use super::Kind;
use crate::ops::reduce::reference::dims;

pub fn softmax(kind: Kind, x: &[f64], shape: &[usize], axis: usize) -> Vec<f64> {
    let (outer, len, inner) = dims(shape, axis);
    let mut y = vec![0.0; x.len()];
    for o in 0..outer {
        for i in 0..inner {
            let at = |l: usize| (o * len + l) * inner + i;
            let m = (0..len).map(|l| x[at(l)]).fold(f64::NEG_INFINITY, f64::max);
            let s: f64 = (0..len).map(|l| (x[at(l)] - m).exp()).sum();
            for l in 0..len {
                y[at(l)] = match kind {
                    Kind::Softmax => (x[at(l)] - m).exp() / s,
                    Kind::LogSoftmax => x[at(l)] - m - s.ln(),
                };
            }
        }
    }
    y
}

/// dx from the forward output y and dy.
pub fn softmax_backward(
    kind: Kind,
    y: &[f64],
    dy: &[f64],
    shape: &[usize],
    axis: usize,
) -> Vec<f64> {
    let (outer, len, inner) = dims(shape, axis);
    let mut dx = vec![0.0; y.len()];
    for o in 0..outer {
        for i in 0..inner {
            let at = |l: usize| (o * len + l) * inner + i;
            match kind {
                Kind::Softmax => {
                    let s: f64 = (0..len).map(|l| dy[at(l)] * y[at(l)]).sum();
                    for l in 0..len {
                        dx[at(l)] = y[at(l)] * (dy[at(l)] - s);
                    }
                }
                Kind::LogSoftmax => {
                    let s: f64 = (0..len).map(|l| dy[at(l)]).sum();
                    for l in 0..len {
                        dx[at(l)] = dy[at(l)] - y[at(l)].exp() * s;
                    }
                }
            }
        }
    }
    dx
}
