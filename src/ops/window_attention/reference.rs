//! Plain-Rust specification of window attention in f64, written as HF `SwinLayer` does it:
//! pad the token map, roll, partition into windows, attend per window and head, reverse, roll
//! back, crop. The kernels compute the same thing with index arithmetic; these functions
//! materialise every step so that the two can disagree.

/// Shapes and settings of one window-attention call.
#[derive(Clone, Copy, Debug)]
pub struct Geometry {
    pub batch: usize,
    pub height: usize,
    pub width: usize,
    pub heads: usize,
    pub head_dim: usize,
    pub window: usize,
    pub shift: usize,
    pub scale: f64,
}

impl Geometry {
    pub fn channels(&self) -> usize {
        self.heads * self.head_dim
    }
    fn padded(&self) -> (usize, usize) {
        (
            self.height.div_ceil(self.window) * self.window,
            self.width.div_ceil(self.window) * self.window,
        )
    }
}

/// Inputs in [B, H, W, C] layout; `pad_k` / `pad_v` ([C]) are the key / value of a padding token
/// (HF pads before the q/k/v linears, so a padding token's key and value are the linear biases).
pub struct Inputs<'a> {
    pub q: &'a [f64],
    pub k: &'a [f64],
    pub v: &'a [f64],
    pub table: &'a [f64],
    pub pad_k: Option<&'a [f64]>,
    pub pad_v: Option<&'a [f64]>,
}

/// Gradients of every differentiable input.
pub struct Grads {
    pub dq: Vec<f64>,
    pub dk: Vec<f64>,
    pub dv: Vec<f64>,
    pub d_table: Vec<f64>,
    pub d_pad_k: Vec<f64>,
    pub d_pad_v: Vec<f64>,
}

/// Where a token of a window comes from: an input token index (b·H·W + y·W + x) or padding.
#[derive(Clone, Copy)]
enum Src {
    Token(usize),
    Pad,
}

/// For every window (b, window) the sources of its WIN² tokens and their shift-mask region ids.
fn windows(g: &Geometry) -> Vec<(Vec<Src>, Vec<usize>)> {
    let (hp, wp) = g.padded();
    let (w, s) = (g.window, g.shift);
    // padded[y][x]: the token or padding at each position of the padded map (pad bottom/right).
    let padded = |b: usize, y: usize, x: usize| {
        if y < g.height && x < g.width {
            Src::Token((b * g.height + y) * g.width + x)
        } else {
            Src::Pad
        }
    };
    // torch.roll(x, shifts=(−s, −s)): shifted[y][x] = padded[(y + s) % hp][(x + s) % wp].
    let shifted = |b: usize, y: usize, x: usize| padded(b, (y + s) % hp, (x + s) % wp);
    // img_mask regions: slices (0, −w), (−w, −s), (−s, None) on each axis, counted row-major.
    let slices =
        |n: usize| -> Vec<std::ops::Range<usize>> { vec![0..n - w, n - w..n - s, n - s..n] };
    let mut img_mask = vec![0usize; hp * wp];
    if s > 0 {
        let mut count = 0;
        for hs in slices(hp) {
            for ws in slices(wp) {
                for y in hs.clone() {
                    for x in ws.clone() {
                        img_mask[y * wp + x] = count;
                    }
                }
                count += 1;
            }
        }
    }
    let mut out = Vec::new();
    for b in 0..g.batch {
        for wy in 0..hp / w {
            for wx in 0..wp / w {
                let mut src = Vec::with_capacity(w * w);
                let mut reg = Vec::with_capacity(w * w);
                for iy in 0..w {
                    for ix in 0..w {
                        let (y, x) = (wy * w + iy, wx * w + ix);
                        src.push(shifted(b, y, x));
                        reg.push(img_mask[y * wp + x]);
                    }
                }
                out.push((src, reg));
            }
        }
    }
    out
}

/// HF's relative_position_index[i][j] for a w×w window.
pub fn relative_position_index(w: usize, i: usize, j: usize) -> usize {
    let (iy, ix, jy, jx) = (i / w, i % w, j / w, j % w);
    (iy + w - 1 - jy) * (2 * w - 1) + (ix + w - 1 - jx)
}

/// One window and head: the per-token vectors and the logits, probabilities.
struct WindowHead {
    q: Vec<Vec<f64>>,
    k: Vec<Vec<f64>>,
    v: Vec<Vec<f64>>,
    p: Vec<Vec<f64>>,
}

fn gather(x: &[f64], pad: Option<&[f64]>, src: Src, g: &Geometry, h: usize) -> Vec<f64> {
    let (c, d) = (g.channels(), g.head_dim);
    match src {
        Src::Token(t) => x[t * c + h * d..t * c + (h + 1) * d].to_vec(),
        Src::Pad => match pad {
            Some(p) => p[h * d..(h + 1) * d].to_vec(),
            None => vec![0.0; d],
        },
    }
}

fn attend(g: &Geometry, x: &Inputs, src: &[Src], reg: &[usize], h: usize) -> WindowHead {
    let n = src.len();
    // A padding token's query only produces cropped outputs; HF's is the query bias — any value works.
    let q: Vec<_> = src.iter().map(|&s| gather(x.q, None, s, g, h)).collect();
    let k: Vec<_> = src.iter().map(|&s| gather(x.k, x.pad_k, s, g, h)).collect();
    let v: Vec<_> = src.iter().map(|&s| gather(x.v, x.pad_v, s, g, h)).collect();
    let mut p = vec![vec![0.0; n]; n];
    for i in 0..n {
        let logits: Vec<f64> = (0..n)
            .map(|j| {
                let dot: f64 = q[i].iter().zip(&k[j]).map(|(a, b)| a * b).sum();
                let bias = x.table[relative_position_index(g.window, i, j) * g.heads + h];
                let mask = if reg[i] != reg[j] { -100.0 } else { 0.0 };
                dot * g.scale + bias + mask
            })
            .collect();
        let max = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
        let sum: f64 = e.iter().sum();
        for j in 0..n {
            p[i][j] = e[j] / sum;
        }
    }
    WindowHead { q, k, v, p }
}

/// Forward: the [B, H, W, C] output.
pub fn forward(g: &Geometry, x: &Inputs) -> Vec<f64> {
    let (c, d) = (g.channels(), g.head_dim);
    let mut out = vec![0.0; g.batch * g.height * g.width * c];
    for (src, reg) in windows(g) {
        for h in 0..g.heads {
            let wh = attend(g, x, &src, &reg, h);
            for (i, s) in src.iter().enumerate() {
                // Window reverse + roll back + crop: only real tokens keep their output.
                if let Src::Token(t) = *s {
                    for e in 0..d {
                        out[t * c + h * d + e] =
                            (0..src.len()).map(|j| wh.p[i][j] * wh.v[j][e]).sum();
                    }
                }
            }
        }
    }
    out
}

/// Backward of [`forward`] given the output gradient `dout` ([B, H, W, C]).
pub fn backward(g: &Geometry, x: &Inputs, dout: &[f64]) -> Grads {
    backward_terms(g, x, dout, false)
}

/// The conditioning of [`backward`]: every gradient element as the sum of the magnitudes of the
/// terms it adds up (|q|, |k|, |v|, |dout| and `dp + row` in place of `dp - row`). Rounding in any
/// order of summation stays within a few ulps of this, so a gradient that nearly cancels (a padding
/// key's, shift invariance of the softmax) is judged against it rather than against its own size.
pub fn backward_bound(g: &Geometry, x: &Inputs, dout: &[f64]) -> Grads {
    backward_terms(g, x, dout, true)
}

fn backward_terms(g: &Geometry, x: &Inputs, dout: &[f64], magnitude: bool) -> Grads {
    let abs = |v: Vec<f64>| -> Vec<f64> {
        if magnitude {
            v.into_iter().map(f64::abs).collect()
        } else {
            v
        }
    };
    let (c, d, w) = (g.channels(), g.head_dim, g.window);
    let len = g.batch * g.height * g.width * c;
    let mut gr = Grads {
        dq: vec![0.0; len],
        dk: vec![0.0; len],
        dv: vec![0.0; len],
        d_table: vec![0.0; (2 * w - 1) * (2 * w - 1) * g.heads],
        d_pad_k: vec![0.0; c],
        d_pad_v: vec![0.0; c],
    };
    for (src, reg) in windows(g) {
        let n = src.len();
        for h in 0..g.heads {
            let mut wh = attend(g, x, &src, &reg, h);
            for t in wh.q.iter_mut().chain(&mut wh.k).chain(&mut wh.v) {
                *t = abs(std::mem::take(t));
            }
            // dO of a padding token is zero: its output was cropped.
            let d_o: Vec<Vec<f64>> = src
                .iter()
                .map(|&s| match s {
                    Src::Token(t) => abs(dout[t * c + h * d..t * c + (h + 1) * d].to_vec()),
                    Src::Pad => vec![0.0; d],
                })
                .collect();
            let mut dq = vec![vec![0.0; d]; n];
            let mut dk = vec![vec![0.0; d]; n];
            let mut dv = vec![vec![0.0; d]; n];
            for i in 0..n {
                let dp: Vec<f64> = (0..n)
                    .map(|j| d_o[i].iter().zip(&wh.v[j]).map(|(a, b)| a * b).sum())
                    .collect();
                let row: f64 = (0..n).map(|j| wh.p[i][j] * dp[j]).sum();
                for j in 0..n {
                    let ds = if magnitude {
                        wh.p[i][j] * (dp[j] + row)
                    } else {
                        wh.p[i][j] * (dp[j] - row)
                    };
                    for e in 0..d {
                        dv[j][e] += wh.p[i][j] * d_o[i][e];
                        dq[i][e] += ds * g.scale * wh.k[j][e];
                        dk[j][e] += ds * g.scale * wh.q[i][e];
                    }
                    gr.d_table[relative_position_index(w, i, j) * g.heads + h] += ds;
                }
            }
            for (j, s) in src.iter().enumerate() {
                for e in 0..d {
                    let ch = h * d + e;
                    match *s {
                        Src::Token(t) => {
                            gr.dq[t * c + ch] += dq[j][e];
                            gr.dk[t * c + ch] += dk[j][e];
                            gr.dv[t * c + ch] += dv[j][e];
                        }
                        Src::Pad => {
                            gr.d_pad_k[ch] += dk[j][e];
                            gr.d_pad_v[ch] += dv[j][e];
                        }
                    }
                }
            }
        }
    }
    gr
}
