//! Masked attention kernels against the f64 reference.

use rand::Rng;

use super::reference::{self, Geometry};
use super::*;
use crate::testing::{self, assert_close, uniform};

mod backward;
mod forward;
mod limits;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mask {
    None,
    /// Random boolean mask with this fraction masked; rows listed as fully masked too.
    Bool {
        per_head: bool,
        f32_dtype: bool,
        density: f32,
    },
    /// Every key of every row masked: behaves as no mask.
    AllMasked,
}

#[derive(Clone, Copy, Debug)]
struct Case {
    batch: usize,
    nq: usize,
    nk: usize,
    heads: usize,
    head_dim: usize,
    mask: Mask,
    additive: Option<bool>, // Some(per_head)
    splits: Option<usize>,
}

const BOOL_HEAD: Mask = Mask::Bool {
    per_head: true,
    f32_dtype: false,
    density: 0.5,
};
const BOOL_SHARED_F32: Mask = Mask::Bool {
    per_head: false,
    f32_dtype: true,
    density: 0.7,
};

const CASES: &[Case] = &[
    // K not a multiple of the register chunk or the workgroup; auto, one, several and K splits.
    Case {
        batch: 2,
        nq: 5,
        nk: 37,
        heads: 2,
        head_dim: 8,
        mask: BOOL_HEAD,
        additive: None,
        splits: None,
    },
    Case {
        batch: 2,
        nq: 5,
        nk: 37,
        heads: 2,
        head_dim: 8,
        mask: BOOL_HEAD,
        additive: None,
        splits: Some(1),
    },
    Case {
        batch: 2,
        nq: 5,
        nk: 37,
        heads: 2,
        head_dim: 8,
        mask: BOOL_HEAD,
        additive: None,
        splits: Some(3),
    },
    Case {
        batch: 1,
        nq: 3,
        nk: 37,
        heads: 2,
        head_dim: 4,
        mask: BOOL_HEAD,
        additive: None,
        splits: Some(37),
    },
    // K = 1 and Q = 1.
    Case {
        batch: 2,
        nq: 4,
        nk: 1,
        heads: 2,
        head_dim: 4,
        mask: BOOL_HEAD,
        additive: None,
        splits: None,
    },
    Case {
        batch: 1,
        nq: 1,
        nk: 9,
        heads: 1,
        head_dim: 4,
        mask: Mask::None,
        additive: None,
        splits: None,
    },
    // Plain attention (decoder self-attention shape, small).
    Case {
        batch: 2,
        nq: 10,
        nk: 10,
        heads: 3,
        head_dim: 4,
        mask: Mask::None,
        additive: None,
        splits: None,
    },
    // Shared f32 mask plus a per-head additive mask; shared additive alone.
    Case {
        batch: 1,
        nq: 6,
        nk: 70,
        heads: 2,
        head_dim: 8,
        mask: BOOL_SHARED_F32,
        additive: Some(true),
        splits: Some(2),
    },
    Case {
        batch: 2,
        nq: 3,
        nk: 20,
        heads: 2,
        head_dim: 4,
        mask: Mask::None,
        additive: Some(false),
        splits: None,
    },
    // Every row fully masked: attends everywhere.
    Case {
        batch: 1,
        nq: 4,
        nk: 50,
        heads: 2,
        head_dim: 8,
        mask: Mask::AllMasked,
        additive: None,
        splits: Some(4),
    },
    // Mask2Former head size, dense mask, many splits.
    Case {
        batch: 1,
        nq: 7,
        nk: 1000,
        heads: 8,
        head_dim: 32,
        mask: Mask::Bool {
            per_head: true,
            f32_dtype: false,
            density: 0.9,
        },
        additive: None,
        splits: None,
    },
];

struct Data {
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    mask: Vec<bool>,
    additive: Vec<f32>,
}

impl Case {
    fn c(&self) -> usize {
        self.heads * self.head_dim
    }
    fn mask_heads(&self) -> usize {
        match self.mask {
            Mask::Bool {
                per_head: false, ..
            } => 1,
            _ => self.heads,
        }
    }
    fn add_heads(&self) -> usize {
        if self.additive == Some(true) {
            self.heads
        } else {
            1
        }
    }
    fn opts(&self) -> MaskedAttentionOptions {
        MaskedAttentionOptions {
            heads: self.heads,
            scale: None,
            splits: self.splits,
        }
    }
    fn geometry(&self) -> Geometry {
        Geometry {
            batch: self.batch,
            nq: self.nq,
            nk: self.nk,
            heads: self.heads,
            head_dim: self.head_dim,
            scale: 1.0 / (self.head_dim as f64).sqrt(),
        }
    }
    fn data(&self, seed: u64) -> Data {
        let mut r = testing::rng(seed);
        let mrows = self.batch * self.mask_heads() * self.nq;
        let mut mask = vec![false; mrows * self.nk];
        match self.mask {
            Mask::Bool { density, .. } => {
                for v in mask.iter_mut() {
                    *v = r.random::<f32>() < density;
                }
                // A fully masked row and a fully open row, wherever the shape allows.
                mask[..self.nk].iter_mut().for_each(|v| *v = true);
                if mrows > 2 {
                    mask[2 * self.nk..3 * self.nk]
                        .iter_mut()
                        .for_each(|v| *v = false);
                }
            }
            Mask::AllMasked => mask.iter_mut().for_each(|v| *v = true),
            Mask::None => {}
        }
        Data {
            q: uniform(&mut r, self.batch * self.nq * self.c(), -2.0, 2.0),
            k: uniform(&mut r, self.batch * self.nk * self.c(), -2.0, 2.0),
            v: uniform(&mut r, self.batch * self.nk * self.c(), -1.0, 1.0),
            mask,
            additive: uniform(
                &mut r,
                self.batch * self.add_heads() * self.nq * self.nk,
                -3.0,
                1.0,
            ),
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
    mask: Option<Tensor>,
    additive: Option<Tensor>,
}

impl Uploaded {
    fn new(rt: &Runtime, c: &Case, d: &Data) -> Self {
        let mshape = [c.batch, c.mask_heads(), c.nq, c.nk];
        let mask = match c.mask {
            Mask::None => None,
            Mask::Bool {
                f32_dtype: true, ..
            } => {
                let m: Vec<f32> = d.mask.iter().map(|&b| b as u32 as f32).collect();
                Some(rt.upload(&m, &mshape).unwrap())
            }
            _ => {
                let m: Vec<u32> = d.mask.iter().map(|&b| b as u32).collect();
                Some(rt.upload_u32(&m, &mshape).unwrap())
            }
        };
        Self {
            q: rt.upload(&d.q, &[c.batch, c.nq, c.c()]).unwrap(),
            k: rt.upload(&d.k, &[c.batch, c.nk, c.c()]).unwrap(),
            v: rt.upload(&d.v, &[c.batch, c.nk, c.c()]).unwrap(),
            mask,
            additive: c.additive.map(|_| {
                rt.upload(&d.additive, &[c.batch, c.add_heads(), c.nq, c.nk])
                    .unwrap()
            }),
        }
    }
    fn inputs(&self) -> MaskedAttentionInputs<'_> {
        MaskedAttentionInputs {
            q: &self.q,
            k: &self.k,
            v: &self.v,
            mask: self.mask.as_ref(),
            additive: self.additive.as_ref(),
        }
    }
}

struct Data64 {
    q: Vec<f64>,
    k: Vec<f64>,
    v: Vec<f64>,
    additive: Vec<f64>,
}

impl Data64 {
    fn new(d: &Data) -> Self {
        Self {
            q: f64s(&d.q),
            k: f64s(&d.k),
            v: f64s(&d.v),
            additive: f64s(&d.additive),
        }
    }
    fn inputs<'a>(&'a self, c: &Case, d: &'a Data) -> reference::Inputs<'a> {
        reference::Inputs {
            q: &self.q,
            k: &self.k,
            v: &self.v,
            mask: (c.mask != Mask::None).then(|| (&d.mask[..], c.mask_heads())),
            additive: c.additive.map(|_| (&self.additive[..], c.add_heads())),
        }
    }
}

fn rel64(a: &[f64], b: &[f64]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
    let den: f64 = b.iter().map(|y| y * y).sum();
    (num / den.max(1e-300)).sqrt()
}
