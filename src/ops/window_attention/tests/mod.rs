//! Window attention kernels against the f64 reference (HF SwinLayer steps materialised).

use super::reference::{self, Geometry};
use super::*;
use rand::Rng;

use crate::testing::{self, assert_close, uniform};

mod backward;
mod forward;
mod limits;

/// One test case: map size, heads, head_dim, window, shift, padding tokens given or zero.
#[derive(Clone, Copy, Debug)]
struct Case {
    batch: usize,
    height: usize,
    width: usize,
    heads: usize,
    head_dim: usize,
    window: usize,
    shift: usize,
    pad: bool,
}

const CASES: &[Case] = &[
    // Smaller than the window: padded to 7x7 and still shifted (always_partition=True).
    Case {
        batch: 2,
        height: 4,
        width: 5,
        heads: 1,
        head_dim: 4,
        window: 7,
        shift: 3,
        pad: true,
    },
    Case {
        batch: 1,
        height: 4,
        width: 5,
        heads: 3,
        head_dim: 8,
        window: 7,
        shift: 3,
        pad: false,
    },
    // Not a multiple of the window, shift off and on.
    Case {
        batch: 2,
        height: 9,
        width: 11,
        heads: 3,
        head_dim: 4,
        window: 7,
        shift: 0,
        pad: true,
    },
    Case {
        batch: 2,
        height: 9,
        width: 11,
        heads: 3,
        head_dim: 8,
        window: 7,
        shift: 3,
        pad: true,
    },
    Case {
        batch: 1,
        height: 9,
        width: 11,
        heads: 1,
        head_dim: 4,
        window: 7,
        shift: 3,
        pad: false,
    },
    // Exact multiple: no padding tokens at all.
    Case {
        batch: 1,
        height: 7,
        width: 14,
        heads: 1,
        head_dim: 4,
        window: 7,
        shift: 3,
        pad: true,
    },
    // One-element map.
    Case {
        batch: 1,
        height: 1,
        width: 1,
        heads: 1,
        head_dim: 4,
        window: 7,
        shift: 3,
        pad: true,
    },
    // The demo model's stage 3 at 128 px: 8x8 padded to 14x14, a window of one real token.
    Case {
        batch: 2,
        height: 8,
        width: 8,
        heads: 4,
        head_dim: 32,
        window: 7,
        shift: 0,
        pad: true,
    },
    Case {
        batch: 2,
        height: 8,
        width: 8,
        heads: 4,
        head_dim: 32,
        window: 7,
        shift: 3,
        pad: true,
    },
    // Swin head size and the Swin-L window.
    Case {
        batch: 1,
        height: 8,
        width: 6,
        heads: 2,
        head_dim: 32,
        window: 7,
        shift: 3,
        pad: true,
    },
    Case {
        batch: 1,
        height: 5,
        width: 13,
        heads: 2,
        head_dim: 8,
        window: 12,
        shift: 6,
        pad: true,
    },
];

struct Data {
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    table: Vec<f32>,
    pad_k: Vec<f32>,
    pad_v: Vec<f32>,
}

impl Case {
    fn geometry(&self) -> Geometry {
        Geometry {
            batch: self.batch,
            height: self.height,
            width: self.width,
            heads: self.heads,
            head_dim: self.head_dim,
            window: self.window,
            shift: self.shift,
            scale: 1.0 / (self.head_dim as f64).sqrt(),
        }
    }
    fn shape(&self) -> [usize; 4] {
        [
            self.batch,
            self.height,
            self.width,
            self.heads * self.head_dim,
        ]
    }
    fn opts(&self) -> WindowAttentionOptions {
        WindowAttentionOptions {
            heads: self.heads,
            window: self.window,
            shift: self.shift,
            scale: None,
        }
    }
    fn data(&self, seed: u64) -> Data {
        let mut r = testing::rng(seed);
        let n: usize = self.shape().iter().product();
        let c = self.heads * self.head_dim;
        let t = (2 * self.window - 1).pow(2) * self.heads;
        // Logits of order a few units, so the softmax is neither flat nor one-hot.
        Data {
            q: uniform(&mut r, n, -1.5, 1.5),
            k: uniform(&mut r, n, -1.5, 1.5),
            v: uniform(&mut r, n, -1.0, 1.0),
            table: uniform(&mut r, t, -1.0, 1.0),
            pad_k: uniform(&mut r, c, -1.5, 1.5),
            pad_v: uniform(&mut r, c, -1.0, 1.0),
        }
    }
}

fn f64s(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| v as f64).collect()
}

fn f32s(x: &[f64]) -> Vec<f32> {
    x.iter().map(|&v| v as f32).collect()
}

struct Uploaded {
    q: Tensor,
    k: Tensor,
    v: Tensor,
    table: Tensor,
    pad_k: Tensor,
    pad_v: Tensor,
}

fn upload(rt: &Runtime, c: &Case, d: &Data) -> Uploaded {
    let s = c.shape();
    let ch = s[3];
    Uploaded {
        q: rt.upload(&d.q, &s).unwrap(),
        k: rt.upload(&d.k, &s).unwrap(),
        v: rt.upload(&d.v, &s).unwrap(),
        table: rt
            .upload(&d.table, &[(2 * c.window - 1).pow(2), c.heads])
            .unwrap(),
        pad_k: rt.upload(&d.pad_k, &[ch]).unwrap(),
        pad_v: rt.upload(&d.pad_v, &[ch]).unwrap(),
    }
}

impl Uploaded {
    fn inputs(&self, pad: bool) -> WindowAttentionInputs<'_> {
        WindowAttentionInputs {
            q: &self.q,
            k: &self.k,
            v: &self.v,
            table: &self.table,
            pad_k: pad.then_some(&self.pad_k),
            pad_v: pad.then_some(&self.pad_v),
        }
    }
}

fn reference_inputs<'a>(c: &Case, d: &'a [Vec<f64>; 6]) -> reference::Inputs<'a> {
    reference::Inputs {
        q: &d[0],
        k: &d[1],
        v: &d[2],
        table: &d[3],
        pad_k: c.pad.then_some(&d[4][..]),
        pad_v: c.pad.then_some(&d[5][..]),
    }
}

fn as_f64(d: &Data) -> [Vec<f64>; 6] {
    [
        f64s(&d.q),
        f64s(&d.k),
        f64s(&d.v),
        f64s(&d.table),
        f64s(&d.pad_k),
        f64s(&d.pad_v),
    ]
}

/// ‖a − b‖ / ‖b‖ in f64.
fn rel64(a: &[f64], b: &[f64]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
    let den: f64 = b.iter().map(|y| y * y).sum();
    (num / den.max(1e-300)).sqrt()
}
