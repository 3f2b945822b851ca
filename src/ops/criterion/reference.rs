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

/// "lowbias32": the 32-bit mixer of `criterion_uniform.wgsl`.
fn mix32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^= x >> 16;
    x
}

/// Element `i` of uniform stream `stream` under `seed` (what `uniform_into` writes).
pub fn uniform(seed: [u32; 2], stream: u32, i: u32) -> f32 {
    let key = mix32(mix32(seed[0] ^ mix32(seed[1])) ^ stream.wrapping_mul(0x9e37_79b9));
    let h = mix32(key ^ mix32(i));
    (h >> 8) as f32 * (1.0 / 16_777_216.0)
}

/// Importance sampling of one row (as the host criterion selects): the `keep` candidates with
/// the largest −|x| (ties by index), returned in index order.
pub fn importance_indices(x: &[f32], keep: usize) -> Vec<usize> {
    let unc: Vec<f32> = x.iter().map(|v| -v.abs()).collect();
    let mut idx: Vec<usize> = (0..x.len()).collect();
    idx.sort_by(|&a, &b| unc[b].total_cmp(&unc[a]).then(a.cmp(&b)));
    let mut kept = idx[..keep].to_vec();
    kept.sort_unstable();
    kept
}

/// Bilinear sample of an `h × w` plane at `(x, y) ∈ [0, 1]²` (grid_sample of 2c − 1,
/// align_corners = False, zero padding), in f64.
pub fn point_sample(plane: &[f64], h: usize, w: usize, c: [f32; 2]) -> f64 {
    let ix = c[0] as f64 * w as f64 - 0.5;
    let iy = c[1] as f64 * h as f64 - 0.5;
    let (x0, y0) = (ix.floor(), iy.floor());
    let (fx, fy) = (ix - x0, iy - y0);
    let mut v = 0.0;
    for (dy, wy) in [(0.0, 1.0 - fy), (1.0, fy)] {
        for (dx, wx) in [(0.0, 1.0 - fx), (1.0, fx)] {
            let (xx, yy) = (x0 + dx, y0 + dy);
            if xx >= 0.0 && yy >= 0.0 && xx < w as f64 && yy < h as f64 {
                v += plane[yy as usize * w + xx as usize] * wy * wx;
            }
        }
    }
    v
}
