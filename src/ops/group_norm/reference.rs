//! Plain-Rust GroupNorm in f64: the specification the kernels are tested against.
//! `x` is `[n, c, s]` row-major (`s` = H·W); `weight`, `bias` are `[c]`; statistics are `[n, groups]`.

/// Sizes of one GroupNorm problem.
#[derive(Clone, Copy, Debug)]
pub struct Dims {
    pub n: usize,
    pub c: usize,
    pub s: usize,
    pub groups: usize,
}

impl Dims {
    fn seg_len(&self) -> usize {
        self.c / self.groups * self.s
    }
}

/// Forward: returns `(y, mean, rstd)`; with `relu` the output is `max(y, 0)`.
pub fn forward(
    x: &[f64],
    weight: &[f64],
    bias: &[f64],
    d: Dims,
    eps: f64,
    relu: bool,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let len = d.seg_len();
    let cpg = d.c / d.groups;
    let mut y = vec![0.0; x.len()];
    let mut means = Vec::with_capacity(d.n * d.groups);
    let mut rstds = Vec::with_capacity(d.n * d.groups);
    for seg in 0..d.n * d.groups {
        let vals = &x[seg * len..(seg + 1) * len];
        let mean = vals.iter().sum::<f64>() / len as f64;
        let var = vals.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / len as f64;
        let rstd = 1.0 / (var + eps).sqrt();
        for (j, v) in vals.iter().enumerate() {
            let ch = (seg % d.groups) * cpg + j / d.s;
            let z = (v - mean) * rstd * weight[ch] + bias[ch];
            y[seg * len + j] = if relu { z.max(0.0) } else { z };
        }
        means.push(mean);
        rstds.push(rstd);
    }
    (y, means, rstds)
}

/// Backward: returns `(dx, dweight, dbias)` for upstream gradient `dy` (ReLU gradient 0 at z ≤ 0).
pub fn backward(
    dy: &[f64],
    x: &[f64],
    weight: &[f64],
    bias: &[f64],
    d: Dims,
    eps: f64,
    relu: bool,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let len = d.seg_len();
    let cpg = d.c / d.groups;
    let (_, means, rstds) = forward(x, weight, bias, d, eps, false);
    let mut dx = vec![0.0; x.len()];
    let mut dw = vec![0.0; d.c];
    let mut db = vec![0.0; d.c];
    for seg in 0..d.n * d.groups {
        let (mean, rstd) = (means[seg], rstds[seg]);
        let idx = |j: usize| seg * len + j;
        let ch = |j: usize| (seg % d.groups) * cpg + j / d.s;
        let xhat: Vec<f64> = (0..len).map(|j| (x[idx(j)] - mean) * rstd).collect();
        let dz: Vec<f64> = (0..len)
            .map(|j| {
                let z = xhat[j] * weight[ch(j)] + bias[ch(j)];
                if relu && z <= 0.0 {
                    0.0
                } else {
                    dy[idx(j)]
                }
            })
            .collect();
        let g: Vec<f64> = (0..len).map(|j| dz[j] * weight[ch(j)]).collect();
        let c1 = g.iter().sum::<f64>() / len as f64;
        let c2 = g.iter().zip(&xhat).map(|(a, b)| a * b).sum::<f64>() / len as f64;
        for j in 0..len {
            dx[idx(j)] = rstd * (g[j] - c1 - xhat[j] * c2);
            dw[ch(j)] += dz[j] * xhat[j];
            db[ch(j)] += dz[j];
        }
    }
    (dx, dw, db)
}
