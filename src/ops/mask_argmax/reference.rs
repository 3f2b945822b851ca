//! Plain-Rust f64 specification of the mask_argmax kernels: the two bilinear resizes
//! (align_corners=False) evaluated at one output pixel, sigmoid, and the per-pixel candidates
//! whose argmax the kernels take. Tests compare argmaxes with margins from these values.

use super::Sizes;

/// PyTorch's linear taps in f64 (equal sizes copy).
fn taps(n_in: usize, n_out: usize) -> Vec<(usize, usize, f64)> {
    let scale = n_in as f64 / n_out as f64;
    (0..n_out)
        .map(|o| {
            if n_in == n_out {
                return (o, o, 0.0);
            }
            let s = ((o as f64 + 0.5) * scale - 0.5).max(0.0);
            let i0 = (s.floor() as usize).min(n_in - 1);
            (i0, (i0 + 1).min(n_in - 1), s - i0 as f64)
        })
        .collect()
}

/// Every query's mask logit at every output pixel: `[Q][out_h · out_w]` in f64.
pub fn upsampled(logits: &[f32], q: usize, s: Sizes) -> Vec<Vec<f64>> {
    let (mh, mw) = s.mask;
    let (r1, c1) = (taps(mh, s.input.0), taps(mw, s.input.1));
    let (r2, c2) = (taps(s.input.0, s.output.0), taps(s.input.1, s.output.1));
    let lerp = |a: f64, b: f64, l: f64| a * (1.0 - l) + b * l;
    (0..q)
        .map(|qi| {
            let plane = &logits[qi * mh * mw..(qi + 1) * mh * mw];
            let at_input = |iy: usize, ix: usize| {
                let ((y0, y1, ly), (x0, x1, lx)) = (r1[iy], c1[ix]);
                let v = |y: usize, x: usize| plane[y * mw + x] as f64;
                lerp(
                    lerp(v(y0, x0), v(y0, x1), lx),
                    lerp(v(y1, x0), v(y1, x1), lx),
                    ly,
                )
            };
            let mut out = Vec::with_capacity(s.output.0 * s.output.1);
            for &(y0, y1, ly) in &r2 {
                for &(x0, x1, lx) in &c2 {
                    let top = lerp(at_input(y0, x0), at_input(y0, x1), lx);
                    let bot = lerp(at_input(y1, x0), at_input(y1, x1), lx);
                    out.push(lerp(top, bot, ly));
                }
            }
            out
        })
        .collect()
}

pub fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Panoptic candidates: per kept query j, per pixel, (score_j · prob, prob).
pub fn panoptic(logits: &[f32], q: usize, s: Sizes, kept: &[(u32, f32)]) -> Vec<Vec<(f64, f64)>> {
    let up = upsampled(logits, q, s);
    kept.iter()
        .map(|&(qi, score)| {
            up[qi as usize]
                .iter()
                .map(|&x| {
                    let p = sigmoid(x);
                    (score as f64 * p, p)
                })
                .collect()
        })
        .collect()
}

/// Semantic candidates: per class c, per pixel, Σ_q probs[q][c] · sigmoid(mask_q).
pub fn semantic(logits: &[f32], s: Sizes, probs: &[Vec<f32>]) -> Vec<Vec<f64>> {
    let up = upsampled(logits, probs.len(), s);
    let classes = probs.first().map_or(0, |p| p.len());
    let n = s.output.0 * s.output.1;
    (0..classes)
        .map(|c| {
            (0..n)
                .map(|i| {
                    probs
                        .iter()
                        .zip(&up)
                        .map(|(p, m)| p[c] as f64 * sigmoid(m[i]))
                        .sum()
                })
                .collect()
        })
        .collect()
}

/// First index of the largest value (torch.argmax's tie rule).
pub fn argmax(values: impl Iterator<Item = f64>) -> usize {
    let mut best = (0, f64::NEG_INFINITY);
    for (i, v) in values.enumerate() {
        if v > best.1 {
            best = (i, v);
        }
    }
    best.0
}
