//! The specification of the criterion kernels in plain f64 (the formulas of
//! mask2former/modeling/criterion.py and matcher.py, row by row).

/// `BCEWithLogits(x, t)` in torch's stable form.
pub fn bce(x: f64, t: f64) -> f64 {
    x.max(0.0) - x * t + (-x.abs()).exp().ln_1p()
}

pub fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Per row of x, t [rows, p]: (loss [rows, 2] = (mean BCE, dice), stats [rows, 2] = (num, den)).
pub fn mask_loss(x: &[f64], t: &[f64], p: usize) -> (Vec<f64>, Vec<f64>) {
    let (mut loss, mut stats) = (Vec::new(), Vec::new());
    for (xr, tr) in x.chunks(p).zip(t.chunks(p)) {
        let b: f64 = xr.iter().zip(tr).map(|(&v, &l)| bce(v, l)).sum();
        let s: Vec<f64> = xr.iter().map(|&v| sigmoid(v)).collect();
        let num = 2.0 * s.iter().zip(tr).map(|(a, l)| a * l).sum::<f64>() + 1.0;
        let den = s.iter().sum::<f64>() + tr.iter().sum::<f64>() + 1.0;
        loss.extend([b / p as f64, 1.0 - num / den]);
        stats.extend([num, den]);
    }
    (loss, stats)
}

/// The gradient of `Σ dloss · mask_loss(x, t)` with respect to x.
pub fn mask_loss_backward(x: &[f64], t: &[f64], dloss: &[f64], p: usize) -> Vec<f64> {
    let (_, stats) = mask_loss(x, t, p);
    x.iter()
        .zip(t)
        .enumerate()
        .map(|(i, (&v, &l))| {
            let r = i / p;
            let (num, den) = (stats[2 * r], stats[2 * r + 1]);
            let s = sigmoid(v);
            dloss[2 * r] * (s - l) / p as f64
                - dloss[2 * r + 1] * (2.0 * l * den - num) / (den * den) * s * (1.0 - s)
        })
        .collect()
}

/// Cross-entropy per row of x [rows, c] against `targets`: (loss, logsumexp).
pub fn class_loss(x: &[f64], targets: &[u32], c: usize) -> (Vec<f64>, Vec<f64>) {
    x.chunks(c)
        .zip(targets)
        .map(|(row, &k)| {
            let m = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v));
            let lse = m + row.iter().map(|&v| (v - m).exp()).sum::<f64>().ln();
            (lse - row[k as usize], lse)
        })
        .unzip()
}

/// The gradient of `Σ dloss · class_loss(x, targets)` with respect to x.
pub fn class_loss_backward(x: &[f64], targets: &[u32], dloss: &[f64], c: usize) -> Vec<f64> {
    let (_, lse) = class_loss(x, targets, c);
    x.iter()
        .enumerate()
        .map(|(i, &v)| {
            let r = i / c;
            let hit = if targets[r] as usize == i % c {
                1.0
            } else {
                0.0
            };
            dloss[r] * ((v - lse[r]).exp() - hit)
        })
        .collect()
}

/// The matcher's cost [b, q, t] (see `match_cost_into`): x [b, q, p], labels [b, t, p],
/// probs [b, q, c], classes [b, t]; weights (class, mask, dice).
#[allow(clippy::too_many_arguments)]
pub fn match_cost(
    x: &[f64],
    labels: &[f64],
    probs: &[f64],
    classes: &[u32],
    (b, q, t, p, c): (usize, usize, usize, usize, usize),
    (wc, wm, wd): (f64, f64, f64),
) -> Vec<f64> {
    let mut cost = Vec::with_capacity(b * q * t);
    for bi in 0..b {
        for qi in 0..q {
            let xr = &x[(bi * q + qi) * p..(bi * q + qi + 1) * p];
            for ti in 0..t {
                let lr = &labels[(bi * t + ti) * p..(bi * t + ti + 1) * p];
                let (mut mask, mut inter, mut ss, mut ls) = (0.0, 0.0, 0.0, 0.0);
                for (&v, &l) in xr.iter().zip(lr) {
                    let s = sigmoid(v);
                    mask += bce(v, 1.0) * l + bce(v, 0.0) * (1.0 - l);
                    inter += s * l;
                    ss += s;
                    ls += l;
                }
                let dice = 1.0 - (2.0 * inter + 1.0) / (ss + ls + 1.0);
                let k = classes[bi * t + ti] as usize;
                let v = wm * mask / p as f64 - wc * probs[(bi * q + qi) * c + k] + wd * dice;
                cost.push(if v.is_nan() {
                    0.0
                } else {
                    v.clamp(-1e10, 1e10)
                });
            }
        }
    }
    cost
}
