//! Plain-Rust specification of the movement ops, generic over the element type (the copies are
//! exact), with the f64 backward passes.

use super::Range;
use crate::ops::common::layout::strides;
use crate::ops::elementwise::reference::coords;

fn index(shape: &[usize], c: &[usize]) -> usize {
    strides(shape).iter().zip(c).map(|(s, c)| s * c).sum()
}

pub fn permute<T: Copy>(x: &[T], shape: &[usize], perm: &[usize]) -> Vec<T> {
    let out: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    (0..x.len())
        .map(|i| {
            let c = coords(&out, i);
            let mut xc = vec![0; shape.len()];
            for (d, &p) in perm.iter().enumerate() {
                xc[p] = c[d];
            }
            x[index(shape, &xc)]
        })
        .collect()
}

pub fn slice<T: Copy>(x: &[T], shape: &[usize], ranges: &[Range]) -> Vec<T> {
    let out: Vec<usize> = ranges.iter().map(Range::len).collect();
    let n: usize = out.iter().product();
    (0..n)
        .map(|i| {
            let c = coords(&out, i);
            let xc: Vec<usize> = c
                .iter()
                .zip(ranges)
                .map(|(c, r)| r.start + c * r.step)
                .collect();
            x[index(shape, &xc)]
        })
        .collect()
}

pub fn pad<T: Copy>(x: &[T], shape: &[usize], amounts: &[(i64, i64)], value: T) -> Vec<T> {
    let out: Vec<usize> = shape
        .iter()
        .zip(amounts)
        .map(|(&n, &(b, a))| (n as i64 + b + a) as usize)
        .collect();
    let n: usize = out.iter().product();
    (0..n)
        .map(|i| {
            let c = coords(&out, i);
            let xc: Vec<i64> = c
                .iter()
                .zip(amounts)
                .map(|(&c, &(b, _))| c as i64 - b)
                .collect();
            if xc.iter().zip(shape).all(|(&v, &n)| v >= 0 && v < n as i64) {
                let xc: Vec<usize> = xc.iter().map(|&v| v as usize).collect();
                x[index(shape, &xc)]
            } else {
                value
            }
        })
        .collect()
}

pub fn concat<T: Copy>(xs: &[(&[T], &[usize])], axis: usize) -> Vec<T> {
    let mut out_shape = xs[0].1.to_vec();
    out_shape[axis] = xs.iter().map(|(_, s)| s[axis]).sum();
    let n: usize = out_shape.iter().product();
    (0..n)
        .map(|i| {
            let mut c = coords(&out_shape, i);
            for (x, s) in xs {
                if c[axis] < s[axis] {
                    return x[index(s, &c)];
                }
                c[axis] -= s[axis];
            }
            unreachable!("coordinate inside the concatenated extent")
        })
        .collect()
}

/// Gradient of `slice`: dy written into zeros of x's shape.
pub fn slice_backward(dy: &[f64], shape: &[usize], ranges: &[Range]) -> Vec<f64> {
    let mut dx = vec![0.0; shape.iter().product()];
    let out: Vec<usize> = ranges.iter().map(Range::len).collect();
    for (i, &g) in dy.iter().enumerate() {
        let c = coords(&out, i);
        let xc: Vec<usize> = c
            .iter()
            .zip(ranges)
            .map(|(c, r)| r.start + c * r.step)
            .collect();
        dx[index(shape, &xc)] += g;
    }
    dx
}

/// Gradient of `pad`: the padded positions dropped.
pub fn pad_backward(dy: &[f64], shape: &[usize], amounts: &[(i64, i64)]) -> Vec<f64> {
    let out: Vec<usize> = shape
        .iter()
        .zip(amounts)
        .map(|(&n, &(b, a))| (n as i64 + b + a) as usize)
        .collect();
    let mut dx = vec![0.0; shape.iter().product()];
    for (i, &g) in dy.iter().enumerate() {
        let c = coords(&out, i);
        let xc: Vec<i64> = c
            .iter()
            .zip(amounts)
            .map(|(&c, &(b, _))| c as i64 - b)
            .collect();
        if xc.iter().zip(shape).all(|(&v, &n)| v >= 0 && v < n as i64) {
            let xc: Vec<usize> = xc.iter().map(|&v| v as usize).collect();
            dx[index(shape, &xc)] += g;
        }
    }
    dx
}
