//! Masked attention kernels against the f64 reference.

use rand::Rng;

use super::reference::{self, Geometry};
use super::*;
use crate::testing::{self, assert_close, uniform};

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

#[test]
fn forward_matches_reference() {
    let rt = testing::runtime();
    let seed = testing::seed();
    for (n, c) in CASES.iter().enumerate() {
        let seed = seed.wrapping_add(n as u64);
        let d = c.data(seed);
        let t = Uploaded::new(rt, c, &d);
        let x = t.inputs();
        let ws = MaskedAttentionWorkspace::new(rt, &x, &c.opts()).unwrap();
        let out = rt.empty(&[c.batch, c.nq, c.c()], DType::F32).unwrap();
        let lse = rt.empty(&[c.batch, c.heads, c.nq], DType::F32).unwrap();
        rt.fill(&out, f32::NAN).unwrap();
        rt.fill(&lse, f32::NAN).unwrap();
        rt.run(&masked_attention_into(rt, &x, &out, &lse, &ws, &c.opts()).unwrap());
        let d64 = Data64::new(&d);
        let want = reference::forward(&c.geometry(), &d64.inputs(c, &d));
        let case = format!("forward {c:?} (splits {})", ws.geometry.splits);
        assert_close(&case, seed, &rt.download(&out).unwrap(), &f32s(&want), 1e-5);
        assert!(
            rt.download(&lse).unwrap().iter().all(|v| v.is_finite()),
            "{case}: lse"
        );
    }
}

/// A fully masked row equals the unmasked row; a partly masked one differs (the rule is live).
#[test]
fn fully_masked_rows_attend_everywhere() {
    let rt = testing::runtime();
    let c = Case {
        batch: 1,
        nq: 3,
        nk: 40,
        heads: 1,
        head_dim: 4,
        mask: BOOL_HEAD,
        additive: None,
        splits: None,
    };
    let seed = testing::seed();
    let d = c.data(seed);
    let t = Uploaded::new(rt, &c, &d);
    let (masked, _) = masked_attention(rt, &t.inputs(), &c.opts()).unwrap();
    let plain = MaskedAttentionInputs {
        mask: None,
        ..t.inputs()
    };
    let (open, _) = masked_attention(rt, &plain, &c.opts()).unwrap();
    let (m, o) = (rt.download(&masked).unwrap(), rt.download(&open).unwrap());
    // Row 0 is fully masked, row 1 random.
    assert_close("fully masked row", seed, &m[..4], &o[..4], 1e-6);
    assert!(testing::rel_l2(&m[4..8], &o[4..8]) > 1e-3, "seed {seed}");
}

#[test]
fn shape_errors_name_the_problem() {
    let rt = testing::runtime();
    let c = CASES[0];
    let d = c.data(1);
    let t = Uploaded::new(rt, &c, &d);
    let x = t.inputs();
    let err = |x: &MaskedAttentionInputs, o: MaskedAttentionOptions| {
        masked_attention(rt, x, &o)
            .expect_err("an error")
            .to_string()
    };
    let e = err(&x, MaskedAttentionOptions::new(3));
    assert!(e.contains("heads = 3"), "{e}");
    let v2 = rt.upload(&d.v[..d.v.len() / 2], &[1, 37, 16]).unwrap();
    let e = err(&MaskedAttentionInputs { v: &v2, ..x }, c.opts());
    assert!(e.contains("v has shape [1, 37, 16]"), "{e}");
    let m3 = rt.upload_u32(&vec![0; 2 * 5 * 36], &[2, 1, 5, 36]).unwrap();
    let e = err(
        &MaskedAttentionInputs {
            mask: Some(&m3),
            ..x
        },
        c.opts(),
    );
    assert!(e.contains("mask has shape [2, 1, 5, 36]"), "{e}");
    let a = rt.upload_u32(&vec![0; 2 * 5 * 37], &[2, 1, 5, 37]).unwrap();
    let e = err(
        &MaskedAttentionInputs {
            additive: Some(&a),
            ..x
        },
        c.opts(),
    );
    assert!(e.contains("additive must have dtype [F32]"), "{e}");
    let e = err(
        &x,
        MaskedAttentionOptions {
            splits: Some(0),
            ..c.opts()
        },
    );
    assert!(e.contains("splits"), "{e}");
}

fn rel64(a: &[f64], b: &[f64]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
    let den: f64 = b.iter().map(|y| y * y).sum();
    (num / den.max(1e-300)).sqrt()
}

/// The reference backward against central differences of the reference forward (loss Σ out·g).
#[test]
fn reference_backward_matches_finite_differences() {
    let seed = testing::seed();
    let cases = [
        Case {
            batch: 2,
            nq: 3,
            nk: 7,
            heads: 2,
            head_dim: 4,
            mask: BOOL_HEAD,
            additive: Some(true),
            splits: None,
        },
        Case {
            batch: 1,
            nq: 4,
            nk: 5,
            heads: 1,
            head_dim: 4,
            mask: Mask::AllMasked,
            additive: None,
            splits: None,
        },
        Case {
            batch: 1,
            nq: 2,
            nk: 1,
            heads: 1,
            head_dim: 4,
            mask: Mask::None,
            additive: Some(false),
            splits: None,
        },
    ];
    for (n, c) in cases.iter().enumerate() {
        let seed = seed.wrapping_add(n as u64);
        let d = c.data(seed);
        let mut x = Data64::new(&d);
        let g = c.geometry();
        let mut r = testing::rng(seed ^ 0x5eed);
        let dout = f64s(&uniform(&mut r, d.q.len(), -1.0, 1.0));
        let gr = reference::backward(&g, &x.inputs(c, &d), &dout);
        let eps = 1e-6;
        for input in 0..3 {
            let analytic = [&gr.dq, &gr.dk, &gr.dv][input];
            let len = analytic.len();
            let mut fd = Vec::new();
            let mut an = Vec::new();
            for _ in 0..len.min(40) {
                let e = r.random_range(0..len);
                let at = |x: &mut Data64, val: f64| {
                    [&mut x.q, &mut x.k, &mut x.v][input][e] = val;
                };
                let keep = [&x.q, &x.k, &x.v][input][e];
                let loss = |x: &Data64| -> f64 {
                    let out = reference::forward(&g, &x.inputs(c, &d));
                    out.iter().zip(&dout).map(|(o, g)| o * g).sum()
                };
                at(&mut x, keep + eps);
                let up = loss(&x);
                at(&mut x, keep - eps);
                let down = loss(&x);
                at(&mut x, keep);
                fd.push((up - down) / (2.0 * eps));
                an.push(analytic[e]);
            }
            let err = rel64(&an, &fd);
            assert!(
                err < 1e-6,
                "{c:?} input {input}: rel err {err:.2e} (seed {seed})"
            );
        }
    }
}

#[test]
fn backward_matches_reference() {
    let rt = testing::runtime();
    let seed = testing::seed();
    for (n, c) in CASES.iter().enumerate() {
        let seed = seed.wrapping_add(n as u64);
        let d = c.data(seed);
        let t = Uploaded::new(rt, c, &d);
        let x = t.inputs();
        let opts = c.opts();
        let (out, lse) = masked_attention(rt, &x, &opts).unwrap();
        let mut r = testing::rng(seed ^ 0xd0);
        let dout_h = uniform(&mut r, d.q.len(), -1.0, 1.0);
        let dout = rt.upload(&dout_h, x.q.shape()).unwrap();
        let ws = MaskedAttentionWorkspace::new(rt, &x, &opts).unwrap();
        let grads = MaskedAttentionGrads::new(rt, &x).unwrap();
        for o in [&grads.dq, &grads.dk, &grads.dv] {
            rt.fill(o, f32::NAN).unwrap();
        }
        rt.run(
            &masked_attention_backward_into(rt, &x, &out, &lse, &dout, &grads, &ws, &opts).unwrap(),
        );
        let d64 = Data64::new(&d);
        let want = reference::backward(&c.geometry(), &d64.inputs(c, &d), &f64s(&dout_h));
        for (name, got, want) in [
            ("dq", &grads.dq, &want.dq),
            ("dk", &grads.dk, &want.dk),
            ("dv", &grads.dv, &want.dv),
        ] {
            let case = format!("{name} {c:?} (splits {})", ws.geometry.splits);
            assert_close(&case, seed, &rt.download(got).unwrap(), &f32s(want), 1e-5);
        }
    }
}

/// The kernels use no optional feature: the same results on a runtime with none enabled.
#[test]
fn portable_runtime_forward_and_backward() {
    let rt = testing::portable_runtime();
    let seed = testing::seed();
    let c = CASES[7];
    let d = c.data(seed);
    let t = Uploaded::new(rt, &c, &d);
    let x = t.inputs();
    let (out, lse) = masked_attention(rt, &x, &c.opts()).unwrap();
    let d64 = Data64::new(&d);
    let want = reference::forward(&c.geometry(), &d64.inputs(&c, &d));
    assert_close(
        "portable forward",
        seed,
        &rt.download(&out).unwrap(),
        &f32s(&want),
        1e-5,
    );
    let dout_h = uniform(&mut testing::rng(seed ^ 1), d.q.len(), -1.0, 1.0);
    let dout = rt.upload(&dout_h, x.q.shape()).unwrap();
    let gr = masked_attention_backward(rt, &x, &out, &lse, &dout, &c.opts()).unwrap();
    let want = reference::backward(&c.geometry(), &d64.inputs(&c, &d), &f64s(&dout_h));
    let got = rt.download(&gr.dk).unwrap();
    assert_close("portable dk", seed, &got, &f32s(&want.dk), 1e-5);
}

/// Mask2Former's largest cross-attention (800×1088 input, 1/8 level: K = 100·136): long
/// key loops in f32 still within tolerance. Slow on CPU adapters (tens of seconds): run with
/// `cargo test --lib masked_attention -- --ignored`.
#[test]
#[ignore]
fn full_size_cross_attention() {
    let rt = testing::runtime();
    let seed = testing::seed();
    let c = Case {
        batch: 1,
        nq: 100,
        nk: 13600,
        heads: 8,
        head_dim: 32,
        mask: Mask::Bool {
            per_head: true,
            f32_dtype: false,
            density: 0.6,
        },
        additive: None,
        splits: None,
    };
    let d = c.data(seed);
    let t = Uploaded::new(rt, &c, &d);
    let x = t.inputs();
    let (out, lse) = masked_attention(rt, &x, &c.opts()).unwrap();
    let d64 = Data64::new(&d);
    let want = reference::forward(&c.geometry(), &d64.inputs(&c, &d));
    assert_close(
        "full-size forward",
        seed,
        &rt.download(&out).unwrap(),
        &f32s(&want),
        1e-5,
    );
    let dout_h = uniform(&mut testing::rng(seed ^ 1), d.q.len(), -1.0, 1.0);
    let dout = rt.upload(&dout_h, x.q.shape()).unwrap();
    let gr = masked_attention_backward(rt, &x, &out, &lse, &dout, &c.opts()).unwrap();
    let want = reference::backward(&c.geometry(), &d64.inputs(&c, &d), &f64s(&dout_h));
    for (name, got, want) in [
        ("dq", &gr.dq, &want.dq),
        ("dk", &gr.dk, &want.dk),
        ("dv", &gr.dv, &want.dv),
    ] {
        assert_close(name, seed, &rt.download(got).unwrap(), &f32s(want), 1e-5);
    }
}

#[test]
fn workspace_must_match_the_call() {
    let rt = testing::runtime();
    let c = CASES[0];
    let d = c.data(3);
    let t = Uploaded::new(rt, &c, &d);
    let x = t.inputs();
    let ws = MaskedAttentionWorkspace::new(
        rt,
        &x,
        &MaskedAttentionOptions {
            splits: Some(2),
            ..c.opts()
        },
    )
    .unwrap();
    let out = rt.empty(&[c.batch, c.nq, c.c()], DType::F32).unwrap();
    let lse = rt.empty(&[c.batch, c.heads, c.nq], DType::F32).unwrap();
    let opts = MaskedAttentionOptions {
        splits: Some(3),
        ..c.opts()
    };
    let e = masked_attention_into(rt, &x, &out, &lse, &ws, &opts)
        .err()
        .map(|e| e.to_string());
    assert!(
        e.as_deref().is_some_and(|e| e.contains("workspace")),
        "{e:?}"
    );
}

/// Key splits longer than one llvmpipe invocation may loop over (`CPU_LOOP_ITERATIONS`, 65535
/// iterations in all): one split asked for over 70000 keys. lavapipe unrolls the channel and
/// key-block loops, so the forward loops nk/8 times but the dq backward nk times per thread,
/// and fails here without the cap. On CPU adapters the launcher raises the splits until each
/// stays under the budget even without unrolling (2·D4 + 5 iterations per key).
#[test]
fn key_splits_past_the_cpu_loop_budget() {
    let rt = testing::runtime();
    let seed = testing::seed();
    let c = Case {
        batch: 1,
        nq: 2,
        nk: 70_000,
        heads: 1,
        head_dim: 4,
        mask: Mask::None,
        additive: None,
        splits: Some(1),
    };
    let d = c.data(seed);
    let t = Uploaded::new(rt, &c, &d);
    let x = t.inputs();
    let ws = MaskedAttentionWorkspace::new(rt, &x, &c.opts()).unwrap();
    let out = rt.full(&[c.batch, c.nq, c.c()], f32::NAN).unwrap();
    let lse = rt.full(&[c.batch, c.heads, c.nq], f32::NAN).unwrap();
    rt.run(&masked_attention_into(rt, &x, &out, &lse, &ws, &c.opts()).unwrap());
    let d64 = Data64::new(&d);
    let want = reference::forward(&c.geometry(), &d64.inputs(&c, &d));
    let case = format!("forward (splits {})", ws.geometry.splits);
    assert_close(&case, seed, &rt.download(&out).unwrap(), &f32s(&want), 1e-5);
    let dout_h = uniform(&mut testing::rng(seed ^ 1), d.q.len(), -1.0, 1.0);
    let dout = rt.upload(&dout_h, x.q.shape()).unwrap();
    let grads = MaskedAttentionGrads::new(rt, &x).unwrap();
    for o in [&grads.dq, &grads.dk, &grads.dv] {
        rt.fill(o, f32::NAN).unwrap();
    }
    rt.run(
        &masked_attention_backward_into(rt, &x, &out, &lse, &dout, &grads, &ws, &c.opts()).unwrap(),
    );
    let want = reference::backward(&c.geometry(), &d64.inputs(&c, &d), &f64s(&dout_h));
    for (name, got, want) in [
        ("dq", &grads.dq, &want.dq),
        ("dk", &grads.dk, &want.dk),
        ("dv", &grads.dv, &want.dv),
    ] {
        assert_close(name, seed, &rt.download(got).unwrap(), &f32s(want), 1e-5);
    }
}
