//! Plain-Rust LayerNorm in f64: the specification the kernels are tested against.
//! `x` is `rows × cols` row-major; `weight`, `bias` are `[cols]`.

/// Forward: returns `(y, mean, rstd)` with `mean`, `rstd` per row.
pub fn forward(
    x: &[f64],
    weight: &[f64],
    bias: &[f64],
    cols: usize,
    eps: f64,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let rows = x.len() / cols;
    let mut y = vec![0.0; x.len()];
    let mut means = Vec::with_capacity(rows);
    let mut rstds = Vec::with_capacity(rows);
    for r in 0..rows {
        let row = &x[r * cols..(r + 1) * cols];
        let mean = row.iter().sum::<f64>() / cols as f64;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / cols as f64;
        let rstd = 1.0 / (var + eps).sqrt();
        for c in 0..cols {
            y[r * cols + c] = (row[c] - mean) * rstd * weight[c] + bias[c];
        }
        means.push(mean);
        rstds.push(rstd);
    }
    (y, means, rstds)
}

/// Backward: returns `(dx, dweight, dbias)` for upstream gradient `dy`, recomputing the statistics.
pub fn backward(
    dy: &[f64],
    x: &[f64],
    weight: &[f64],
    cols: usize,
    eps: f64,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let rows = x.len() / cols;
    let (_, means, rstds) = forward(x, weight, &vec![0.0; cols], cols, eps);
    let mut dx = vec![0.0; x.len()];
    let mut dw = vec![0.0; cols];
    let mut db = vec![0.0; cols];
    for r in 0..rows {
        let (mean, rstd) = (means[r], rstds[r]);
        let xhat: Vec<f64> = (0..cols).map(|c| (x[r * cols + c] - mean) * rstd).collect();
        let g: Vec<f64> = (0..cols).map(|c| dy[r * cols + c] * weight[c]).collect();
        let c1 = g.iter().sum::<f64>() / cols as f64;
        let c2 = g.iter().zip(&xhat).map(|(a, b)| a * b).sum::<f64>() / cols as f64;
        for c in 0..cols {
            dx[r * cols + c] = rstd * (g[c] - c1 - xhat[c] * c2);
            dw[c] += dy[r * cols + c] * xhat[c];
            db[c] += dy[r * cols + c];
        }
    }
    (dx, dw, db)
}
