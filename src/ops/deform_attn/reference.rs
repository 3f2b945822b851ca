//! Plain-Rust specification of multi-scale deformable attention in f64, following
//! Deformable-DETR's CUDA kernel (`ms_deformable_im2col_bilinear` and `ms_deformable_col2im_bilinear`).

/// Problem sizes: batch, queries, heads, channels per head, points per level, and the levels'
/// (H, W) in the order they are concatenated in `value`.
#[derive(Clone, Debug)]
pub struct Dims {
    pub n: usize,
    pub queries: usize,
    pub heads: usize,
    pub channels: usize,
    pub points: usize,
    pub shapes: Vec<(usize, usize)>,
}

impl Dims {
    /// S = Σ H_l·W_l.
    pub fn spatial(&self) -> usize {
        self.shapes.iter().map(|&(h, w)| h * w).sum()
    }
    pub fn levels(&self) -> usize {
        self.shapes.len()
    }
    fn starts(&self) -> Vec<usize> {
        let mut s = 0;
        self.shapes
            .iter()
            .map(|&(h, w)| {
                let start = s;
                s += h * w;
                start
            })
            .collect()
    }
}

/// The bilinear corners of (x, y) on an (h, w) level, as (row, col, weight, d/dh, d/dw) for
/// corners inside the map; `None` when the point is outside the sampling region
/// (−1 < h_im < H and −1 < w_im < W), where the CUDA kernel contributes nothing.
#[allow(clippy::type_complexity)]
fn taps(x: f64, y: f64, h: usize, w: usize) -> Option<Vec<(usize, usize, f64, f64, f64)>> {
    let (hf, wf) = (h as f64, w as f64);
    let h_im = y * hf - 0.5;
    let w_im = x * wf - 0.5;
    if !(h_im > -1.0 && w_im > -1.0 && h_im < hf && w_im < wf) {
        return None;
    }
    let (h0, w0) = (h_im.floor(), w_im.floor());
    let (lh, lw) = (h_im - h0, w_im - w0);
    let (hh, hw) = (1.0 - lh, 1.0 - lw);
    let (h0, w0) = (h0 as i64, w0 as i64);
    let corners = [
        (h0, w0, hh * hw, -hw, -hh),
        (h0, w0 + 1, hh * lw, -lw, hh),
        (h0 + 1, w0, lh * hw, hw, -lh),
        (h0 + 1, w0 + 1, lh * lw, lw, lh),
    ];
    Some(
        corners
            .iter()
            .filter(|c| c.0 >= 0 && c.1 >= 0 && (c.0 as usize) < h && (c.1 as usize) < w)
            .map(|&(r, c, wt, dh, dw)| (r as usize, c as usize, wt, dh, dw))
            .collect(),
    )
}

/// out [N, Lq, M·D] from value [N, S, M, D], loc [N, Lq, M, L, P, 2], attn [N, Lq, M, L, P].
pub fn forward(value: &[f64], loc: &[f64], attn: &[f64], d: &Dims) -> Vec<f64> {
    let (m_, c_, l_, p_) = (d.heads, d.channels, d.levels(), d.points);
    let s_ = d.spatial();
    let starts = d.starts();
    let mut out = vec![0.0; d.n * d.queries * m_ * c_];
    for n in 0..d.n {
        for q in 0..d.queries {
            for m in 0..m_ {
                let nqm = (n * d.queries + q) * m_ + m;
                for (l, &(h, w)) in d.shapes.iter().enumerate() {
                    for k in 0..p_ {
                        let slot = (nqm * l_ + l) * p_ + k;
                        let a = attn[slot];
                        let Some(taps) = taps(loc[2 * slot], loc[2 * slot + 1], h, w) else {
                            continue;
                        };
                        for (r, col, wt, _, _) in taps {
                            let s = starts[l] + r * w + col;
                            let vb = ((n * s_ + s) * m_ + m) * c_;
                            for c in 0..c_ {
                                out[nqm * c_ + c] += a * wt * value[vb + c];
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

/// Gradients of [`forward`] for upstream gradient `grad_out`:
/// (grad_value [N, S, M, D], grad_loc [N, Lq, M, L, P, 2], grad_attn [N, Lq, M, L, P]).
pub fn backward(
    value: &[f64],
    loc: &[f64],
    attn: &[f64],
    grad_out: &[f64],
    d: &Dims,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (m_, c_, l_, p_) = (d.heads, d.channels, d.levels(), d.points);
    let s_ = d.spatial();
    let starts = d.starts();
    let mut gv = vec![0.0; value.len()];
    let mut gl = vec![0.0; loc.len()];
    let mut ga = vec![0.0; attn.len()];
    for n in 0..d.n {
        for q in 0..d.queries {
            for m in 0..m_ {
                let nqm = (n * d.queries + q) * m_ + m;
                let go = &grad_out[nqm * c_..(nqm + 1) * c_];
                for (l, &(h, w)) in d.shapes.iter().enumerate() {
                    for k in 0..p_ {
                        let slot = (nqm * l_ + l) * p_ + k;
                        let a = attn[slot];
                        let Some(taps) = taps(loc[2 * slot], loc[2 * slot + 1], h, w) else {
                            continue;
                        };
                        let (mut g_h, mut g_w) = (0.0, 0.0);
                        for (r, col, wt, dh, dw) in taps {
                            let s = starts[l] + r * w + col;
                            let vb = ((n * s_ + s) * m_ + m) * c_;
                            for c in 0..c_ {
                                let v = value[vb + c];
                                ga[slot] += go[c] * wt * v;
                                g_h += go[c] * dh * v;
                                g_w += go[c] * dw * v;
                                gv[vb + c] += a * wt * go[c];
                            }
                        }
                        gl[2 * slot] = g_w * a * w as f64;
                        gl[2 * slot + 1] = g_h * a * h as f64;
                    }
                }
            }
        }
    }
    (gv, gl, ga)
}
