//! Plain-Rust specification of the elementwise family in f64: forward and backward.
//!
//! Tensors are `(data, shape)` pairs, row-major. Broadcasting follows NumPy.

use super::{Binary, Unary};

/// erf(x) to about 1e-15: Taylor series near 0, the erfc continued fraction in the tails
/// (Rust's std has no erf).
pub fn erf(x: f64) -> f64 {
    if x.abs() < 2.5 {
        // erf x = 2/√π Σ (−1)^n x^(2n+1) / (n! (2n+1)); terms peak near e^(x²) ≈ 500 here.
        let mut term = x;
        let mut sum = x;
        let x2 = x * x;
        for n in 1..200 {
            term *= -x2 / n as f64;
            let t = term / (2 * n + 1) as f64;
            sum += t;
            if t.abs() < 1e-17 * sum.abs() {
                break;
            }
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        x.signum() * (1.0 - erfc_tail(x.abs()))
    }
}

/// erfc(z) for z ≥ 2.5 by the continued fraction z + (1/2)/(z + 1/(z + (3/2)/(z + …))).
fn erfc_tail(z: f64) -> f64 {
    let mut f = z;
    for k in (1..=120).rev() {
        f = z + (k as f64 / 2.0) / f;
    }
    (-z * z).exp() / (std::f64::consts::PI.sqrt() * f)
}

/// Standard normal CDF.
pub fn phi(x: f64) -> f64 {
    if x < -2.5 * std::f64::consts::SQRT_2 {
        // Keep relative accuracy deep in the left tail.
        0.5 * erfc_tail(-x / std::f64::consts::SQRT_2)
    } else {
        0.5 * (1.0 + erf(x / std::f64::consts::SQRT_2))
    }
}

fn powf(x: f64, a: f64) -> f64 {
    if a == 0.0 {
        return 1.0;
    }
    x.powf(a)
}

/// f(x) for one unary op.
pub fn unary_scalar(op: Unary, x: f64) -> f64 {
    use Unary::*;
    match op {
        Neg => -x,
        Relu => x.max(0.0),
        Gelu => x * phi(x),
        Sigmoid => 1.0 / (1.0 + (-x).exp()),
        Exp => x.exp(),
        Log => x.ln(),
        Sqrt => x.sqrt(),
        Rsqrt => 1.0 / x.sqrt(),
        Tanh => x.tanh(),
        Abs => x.abs(),
        Recip => 1.0 / x,
        AddScalar(s) => x + s as f64,
        MulScalar(s) => x * s as f64,
        PowScalar(s) => powf(x, s as f64),
        Clamp { min, max } => x.max(min as f64).min(max as f64),
        LtScalar(s) => (x < s as f64) as u8 as f64,
        GtScalar(s) => (x > s as f64) as u8 as f64,
    }
}

/// f'(x) for one unary op (PyTorch's conventions at kinks).
pub fn unary_derivative(op: Unary, x: f64) -> f64 {
    use Unary::*;
    match op {
        Neg => -1.0,
        Relu => (x > 0.0) as u8 as f64,
        Gelu => phi(x) + x * (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt(),
        Sigmoid => {
            let s = 1.0 / (1.0 + (-x).exp());
            s * (1.0 - s)
        }
        Exp => x.exp(),
        Log => 1.0 / x,
        Sqrt => 0.5 / x.sqrt(),
        Rsqrt => -0.5 * x.powf(-1.5),
        Tanh => 1.0 - x.tanh().powi(2),
        Abs => {
            if x == 0.0 {
                0.0
            } else {
                x.signum()
            }
        }
        Recip => -1.0 / (x * x),
        AddScalar(_) => 1.0,
        MulScalar(s) => s as f64,
        PowScalar(s) => {
            if s == 0.0 {
                0.0
            } else {
                s as f64 * powf(x, s as f64 - 1.0)
            }
        }
        Clamp { min, max } => (x >= min as f64 && x <= max as f64) as u8 as f64,
        LtScalar(_) | GtScalar(_) => 0.0,
    }
}

pub fn unary(op: Unary, x: &[f64]) -> Vec<f64> {
    x.iter().map(|&v| unary_scalar(op, v)).collect()
}

pub fn unary_backward(op: Unary, x: &[f64], dy: &[f64]) -> Vec<f64> {
    x.iter()
        .zip(dy)
        .map(|(&v, &g)| g * unary_derivative(op, v))
        .collect()
}

pub fn binary_scalar(op: Binary, a: f64, b: f64) -> f64 {
    use Binary::*;
    let m = |c: bool| c as u8 as f64;
    match op {
        Add => a + b,
        Sub => a - b,
        Mul => a * b,
        Div => a / b,
        Max => a.max(b),
        Min => a.min(b),
        Pow => powf(a, b),
        Lt => m(a < b),
        Le => m(a <= b),
        Gt => m(a > b),
        Ge => m(a >= b),
        Eq => m(a == b),
    }
}

/// Row-major strides.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    super::layout::strides(shape)
}

/// NumPy broadcast of two shapes (panics on mismatch: the reference is only called on valid
/// shapes).
pub fn broadcast(a: &[usize], b: &[usize]) -> Vec<usize> {
    super::layout::broadcast_shape("reference", &[a, b]).expect("shapes broadcast")
}

/// Index into a tensor of `shape` from a multi-index over the broadcast `out` shape.
pub fn broadcast_index(shape: &[usize], out: &[usize], coords: &[usize]) -> usize {
    let off = out.len() - shape.len();
    let st = strides(shape);
    (0..shape.len())
        .map(|d| {
            if shape[d] == 1 {
                0
            } else {
                coords[d + off] * st[d]
            }
        })
        .sum()
}

/// Multi-index of linear index `i` in `shape`.
pub fn coords(shape: &[usize], mut i: usize) -> Vec<usize> {
    let mut c = vec![0; shape.len()];
    for d in (0..shape.len()).rev() {
        c[d] = i % shape[d];
        i /= shape[d];
    }
    c
}

pub fn binary(op: Binary, a: &[f64], sa: &[usize], b: &[f64], sb: &[usize]) -> Vec<f64> {
    let out = broadcast(sa, sb);
    let n: usize = out.iter().product();
    (0..n)
        .map(|i| {
            let c = coords(&out, i);
            binary_scalar(
                op,
                a[broadcast_index(sa, &out, &c)],
                b[broadcast_index(sb, &out, &c)],
            )
        })
        .collect()
}

/// Sum of `dy` (shape `from`) over the dims along which `to` broadcasts to `from`.
pub fn sum_to_shape(dy: &[f64], from: &[usize], to: &[usize]) -> Vec<f64> {
    let mut out = vec![0.0; to.iter().product()];
    for (i, &g) in dy.iter().enumerate() {
        out[broadcast_index(to, from, &coords(from, i))] += g;
    }
    out
}
