//! The specification of the matmul family in plain Rust, in f64: forward with its epilogue and
//! the backward, so gradient tests can take finite differences of [`forward`].

use super::Activation;

/// Logical problem sizes. A is `[batch_a, M, K]` (`[batch_a, K, M]` when `trans_a`), B is
/// `[batch_b, K, N]` (`[batch_b, N, K]` when `trans_b`), C is `[max(batch_a, batch_b), M, N]`;
/// a batch of 1 broadcasts.
#[derive(Clone, Copy, Debug)]
pub struct Dims {
    pub batch_a: usize,
    pub batch_b: usize,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub trans_a: bool,
    pub trans_b: bool,
}

impl Dims {
    pub fn batch(&self) -> usize {
        self.batch_a.max(self.batch_b)
    }
    fn a_index(&self, b: usize, m: usize, k: usize) -> usize {
        let b = if self.batch_a == 1 { 0 } else { b };
        let (m_, k_) = (self.m, self.k);
        b * m_ * k_ + if self.trans_a { k * m_ + m } else { m * k_ + k }
    }
    fn b_index(&self, b: usize, k: usize, n: usize) -> usize {
        let b = if self.batch_b == 1 { 0 } else { b };
        let (k_, n_) = (self.k, self.n);
        b * k_ * n_ + if self.trans_b { n * k_ + k } else { k * n_ + n }
    }
}

/// erf to about 1e-15: a positive-term series below |x| = 3, the erfc continued fraction above.
pub fn erf(x: f64) -> f64 {
    let ax = x.abs();
    if ax < 3.0 {
        // erf(x) = 2/sqrt(pi) · exp(-x²) · Σ x·(2x²)^n / (1·3·…·(2n+1)): every term is positive, so
        // there is no cancellation (the alternating Maclaurin series loses 3 digits near 3).
        let z2 = 2.0 * x * x;
        let mut term = x;
        let mut sum = x;
        for n in 1..400 {
            term *= z2 / (2 * n + 1) as f64;
            sum += term;
            if term.abs() < 1e-17 * sum.abs() {
                break;
            }
        }
        return std::f64::consts::FRAC_2_SQRT_PI * (-x * x).exp() * sum;
    }
    // erfc(x) = exp(-x²)/sqrt(pi) · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + 2/(x + …))))),
    // evaluated from the tail; 80 levels are far past convergence for x ≥ 3.
    let mut f = ax;
    for i in (1..=80).rev() {
        f = ax + (i as f64 / 2.0) / f;
    }
    let erfc = (-ax * ax).exp() / std::f64::consts::PI.sqrt() / f;
    (1.0 - erfc).copysign(x)
}

/// The activation applied after bias and beta: identity, max(x, 0), or x·Φ(x) with the exact erf.
pub fn activation(act: Activation, x: f64) -> f64 {
    match act {
        Activation::None => x,
        Activation::Relu => x.max(0.0),
        Activation::Gelu => 0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2)),
    }
}

/// `pre = alpha·op(A)·op(B) + bias + beta·c_in` and `out = act(pre)`, both `[batch, M, N]`.
/// `c_in` is read only when `beta != 0`.
#[allow(clippy::too_many_arguments)]
pub fn forward(
    d: &Dims,
    a: &[f64],
    b: &[f64],
    bias: Option<&[f64]>,
    c_in: Option<&[f64]>,
    alpha: f64,
    beta: f64,
    act: Activation,
) -> (Vec<f64>, Vec<f64>) {
    let nb = d.batch();
    let mut pre = vec![0.0; nb * d.m * d.n];
    for bz in 0..nb {
        for m in 0..d.m {
            for n in 0..d.n {
                let mut s = 0.0;
                for k in 0..d.k {
                    s += a[d.a_index(bz, m, k)] * b[d.b_index(bz, k, n)];
                }
                let i = (bz * d.m + m) * d.n + n;
                let mut v = alpha * s;
                if let Some(bias) = bias {
                    v += bias[n];
                }
                if beta != 0.0 {
                    v += beta * c_in.expect("beta != 0 needs c_in")[i];
                }
                pre[i] = v;
            }
        }
    }
    let out = pre.iter().map(|&v| activation(act, v)).collect();
    (out, pre)
}
