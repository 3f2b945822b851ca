//! Plain-Rust specification of masked multi-head attention in f64 (forward and backward).

/// Shapes of one call; masks are [B, mask_heads, Q, K] with mask_heads 1 (shared) or heads.
#[derive(Clone, Copy, Debug)]
pub struct Geometry {
    pub batch: usize,
    pub nq: usize,
    pub nk: usize,
    pub heads: usize,
    pub head_dim: usize,
    pub scale: f64,
}

/// q [B, Q, heads·d], k, v [B, K, heads·d]; `mask` (true = not attended) and `additive` with
/// their head counts.
pub struct Inputs<'a> {
    pub q: &'a [f64],
    pub k: &'a [f64],
    pub v: &'a [f64],
    pub mask: Option<(&'a [bool], usize)>,
    pub additive: Option<(&'a [f64], usize)>,
}

pub struct Grads {
    pub dq: Vec<f64>,
    pub dk: Vec<f64>,
    pub dv: Vec<f64>,
}

impl Geometry {
    fn c(&self) -> usize {
        self.heads * self.head_dim
    }
}

/// Softmax probabilities of row (b, h, qi) over the K keys, Mask2Former's rule included: a row
/// whose mask hides every key is not masked at all.
fn probs(g: &Geometry, x: &Inputs, b: usize, h: usize, qi: usize) -> Vec<f64> {
    let (c, d) = (g.c(), g.head_dim);
    let row_of = |heads: usize| ((b * heads + if heads > 1 { h } else { 0 }) * g.nq + qi) * g.nk;
    let masked: Vec<bool> = match x.mask {
        Some((m, mh)) => {
            let row = &m[row_of(mh)..row_of(mh) + g.nk];
            if row.iter().all(|&v| v) {
                vec![false; g.nk]
            } else {
                row.to_vec()
            }
        }
        None => vec![false; g.nk],
    };
    let qv = &x.q[(b * g.nq + qi) * c + h * d..][..d];
    let logits: Vec<f64> = (0..g.nk)
        .map(|j| {
            let kv = &x.k[(b * g.nk + j) * c + h * d..][..d];
            let dot: f64 = qv.iter().zip(kv).map(|(a, b)| a * b).sum();
            let add = x.additive.map_or(0.0, |(a, ah)| a[row_of(ah) + j]);
            dot * g.scale + add
        })
        .collect();
    let max = (0..g.nk)
        .filter(|&j| !masked[j])
        .map(|j| logits[j])
        .fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = (0..g.nk)
        .map(|j| {
            if masked[j] {
                0.0
            } else {
                (logits[j] - max).exp()
            }
        })
        .collect();
    let sum: f64 = e.iter().sum();
    e.iter().map(|v| v / sum).collect()
}

/// Forward: [B, Q, heads·d].
pub fn forward(g: &Geometry, x: &Inputs) -> Vec<f64> {
    let (c, d) = (g.c(), g.head_dim);
    let mut out = vec![0.0; g.batch * g.nq * c];
    for b in 0..g.batch {
        for h in 0..g.heads {
            for qi in 0..g.nq {
                let p = probs(g, x, b, h, qi);
                for e in 0..d {
                    out[(b * g.nq + qi) * c + h * d + e] = (0..g.nk)
                        .map(|j| p[j] * x.v[(b * g.nk + j) * c + h * d + e])
                        .sum();
                }
            }
        }
    }
    out
}

/// Backward of [`forward`] for the output gradient `dout` [B, Q, heads·d].
pub fn backward(g: &Geometry, x: &Inputs, dout: &[f64]) -> Grads {
    let (c, d) = (g.c(), g.head_dim);
    let mut gr = Grads {
        dq: vec![0.0; x.q.len()],
        dk: vec![0.0; x.k.len()],
        dv: vec![0.0; x.v.len()],
    };
    for b in 0..g.batch {
        for h in 0..g.heads {
            for qi in 0..g.nq {
                let p = probs(g, x, b, h, qi);
                let o = (b * g.nq + qi) * c + h * d;
                let d_o = &dout[o..o + d];
                let key = |j: usize| (b * g.nk + j) * c + h * d;
                let dp: Vec<f64> = (0..g.nk)
                    .map(|j| (0..d).map(|e| d_o[e] * x.v[key(j) + e]).sum())
                    .collect();
                let row: f64 = (0..g.nk).map(|j| p[j] * dp[j]).sum();
                for j in 0..g.nk {
                    let ds = p[j] * (dp[j] - row) * g.scale;
                    for (e, &g_o) in d_o.iter().enumerate() {
                        gr.dv[key(j) + e] += p[j] * g_o;
                        gr.dq[o + e] += ds * x.k[key(j) + e];
                        gr.dk[key(j) + e] += ds * x.q[o + e];
                    }
                }
            }
        }
    }
    gr
}
