//! Window attention kernels against the f64 reference (HF SwinLayer steps materialised).

use super::reference::{self, Geometry};
use super::*;
use rand::Rng;

use crate::testing::{self, assert_close, uniform};

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

#[test]
fn forward_matches_reference() {
    let rt = testing::runtime();
    let seed = testing::seed();
    for (n, c) in CASES.iter().enumerate() {
        let seed = seed.wrapping_add(n as u64);
        let d = c.data(seed);
        let t = upload(rt, c, &d);
        let x = t.inputs(c.pad);
        let g = geometry(rt, &x, &c.opts()).unwrap();
        let out = rt.empty(&c.shape(), DType::F32).unwrap();
        let lse = rt.empty(&g.lse_shape(), DType::F32).unwrap();
        rt.fill(&out, f32::NAN).unwrap();
        rt.fill(&lse, f32::NAN).unwrap();
        rt.run(&window_attention_into(rt, &x, &out, &lse, &c.opts()).unwrap());
        let got = rt.download(&out).unwrap();
        let d64 = as_f64(&d);
        let want = reference::forward(&c.geometry(), &reference_inputs(c, &d64));
        assert_close(&format!("forward {c:?}"), seed, &got, &f32s(&want), 1e-5);
        assert!(
            rt.download(&lse).unwrap().iter().all(|v| v.is_finite()),
            "lse has NaN: {c:?} (seed {seed})"
        );
    }
}

/// The shift mask, the padding values and the bias all matter: dropping any one changes the
/// output (guards against a reference and a kernel that both ignore a term).
#[test]
fn every_term_changes_the_output() {
    let c = Case {
        batch: 1,
        height: 4,
        width: 5,
        heads: 2,
        head_dim: 4,
        window: 7,
        shift: 3,
        pad: true,
    };
    let d = c.data(testing::seed());
    let d64 = as_f64(&d);
    let g = c.geometry();
    let full = reference::forward(&g, &reference_inputs(&c, &d64));
    let no_shift = reference::forward(&Geometry { shift: 0, ..g }, &reference_inputs(&c, &d64));
    let no_pad = reference::forward(&g, &reference_inputs(&Case { pad: false, ..c }, &d64));
    let mut zero_table = d64.clone();
    zero_table[3].iter_mut().for_each(|v| *v = 0.0);
    let no_bias = reference::forward(&g, &reference_inputs(&c, &zero_table));
    for (name, other) in [("shift", no_shift), ("pad", no_pad), ("bias", no_bias)] {
        let err = testing::rel_l2(&f32s(&other), &f32s(&full));
        assert!(err > 1e-3, "{name} makes no difference ({err})");
    }
}

#[test]
fn shape_errors_name_the_problem() {
    let rt = testing::runtime();
    let c = CASES[0];
    let d = c.data(1);
    let t = upload(rt, &c, &d);
    let x = t.inputs(true);
    let err = |o: WindowAttentionOptions, x: &WindowAttentionInputs| {
        window_attention(rt, x, &o)
            .expect_err("an error")
            .to_string()
    };
    let e = err(
        WindowAttentionOptions {
            shift: 7,
            ..c.opts()
        },
        &x,
    );
    assert!(e.contains("shift 7"), "{e}");
    let e = err(
        WindowAttentionOptions {
            heads: 3,
            ..c.opts()
        },
        &x,
    );
    assert!(e.contains("heads = 3"), "{e}");
    let e = err(
        WindowAttentionOptions {
            window: 5,
            ..c.opts()
        },
        &x,
    );
    assert!(e.contains("relative_position_bias_table"), "{e}");
    let e = err(
        WindowAttentionOptions {
            window: 17,
            ..c.opts()
        },
        &x,
    );
    assert!(e.contains("window size 17"), "{e}");
    let k2 = rt.upload(&d.k[..d.k.len() / 2], &[1, 4, 5, 4]).unwrap();
    let e = err(c.opts(), &WindowAttentionInputs { k: &k2, ..x });
    assert!(e.contains("k has shape [1, 4, 5, 4]"), "{e}");
    let e = err(c.opts(), &WindowAttentionInputs { pad_v: None, ..x });
    assert!(e.contains("pad_k and pad_v"), "{e}");
    let q6 = rt.upload(&vec![0.0; 2 * 4 * 5 * 6], &[2, 4, 5, 6]).unwrap();
    let e = err(
        WindowAttentionOptions {
            heads: 1,
            ..c.opts()
        },
        &WindowAttentionInputs {
            q: &q6,
            k: &q6,
            v: &q6,
            pad_k: None,
            pad_v: None,
            ..x
        },
    );
    assert!(e.contains("head_dim 6"), "{e}");
}

/// ‖a − b‖ / ‖b‖ in f64.
fn rel64(a: &[f64], b: &[f64]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
    let den: f64 = b.iter().map(|y| y * y).sum();
    (num / den.max(1e-300)).sqrt()
}

/// The reference backward against central differences of the reference forward, for the loss
/// Σ out·g with random g, on a sample of entries of every input.
#[test]
fn reference_backward_matches_finite_differences() {
    let seed = testing::seed();
    let cases = [
        Case {
            batch: 1,
            height: 4,
            width: 5,
            heads: 2,
            head_dim: 4,
            window: 7,
            shift: 3,
            pad: true,
        },
        Case {
            batch: 2,
            height: 9,
            width: 11,
            heads: 1,
            head_dim: 4,
            window: 7,
            shift: 3,
            pad: true,
        },
        Case {
            batch: 1,
            height: 5,
            width: 3,
            heads: 1,
            head_dim: 4,
            window: 4,
            shift: 0,
            pad: false,
        },
    ];
    for (n, c) in cases.iter().enumerate() {
        let seed = seed.wrapping_add(n as u64);
        let d = c.data(seed);
        let mut x = as_f64(&d);
        let g = c.geometry();
        let mut r = testing::rng(seed ^ 0x5eed);
        let dout = f64s(&uniform(&mut r, d.q.len(), -1.0, 1.0));
        let gr = reference::backward(&g, &reference_inputs(c, &x), &dout);
        let analytic = [
            &gr.dq,
            &gr.dk,
            &gr.dv,
            &gr.d_table,
            &gr.d_pad_k,
            &gr.d_pad_v,
        ];
        let loss = |x: &[Vec<f64>; 6]| -> f64 {
            let out = reference::forward(&g, &reference_inputs(c, x));
            out.iter().zip(&dout).map(|(o, g)| o * g).sum()
        };
        let eps = 1e-6;
        for input in 0..6 {
            if input >= 4 && !c.pad {
                continue;
            }
            let len = x[input].len();
            let picks: Vec<usize> = (0..len.min(40)).map(|_| r.random_range(0..len)).collect();
            let mut fd = Vec::new();
            let mut an = Vec::new();
            for &e in &picks {
                let keep = x[input][e];
                x[input][e] = keep + eps;
                let up = loss(&x);
                x[input][e] = keep - eps;
                let down = loss(&x);
                x[input][e] = keep;
                fd.push((up - down) / (2.0 * eps));
                an.push(analytic[input][e]);
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
        let t = upload(rt, c, &d);
        let x = t.inputs(c.pad);
        let opts = c.opts();
        let (out, lse) = window_attention(rt, &x, &opts).unwrap();
        let mut r = testing::rng(seed ^ 0xd0);
        let dout_h = uniform(&mut r, d.q.len(), -1.0, 1.0);
        let dout = rt.upload(&dout_h, &c.shape()).unwrap();
        let grads = WindowAttentionGrads::new(rt, &x, &opts).unwrap();
        let ws = WindowAttentionWorkspace::new(rt, &x, &opts).unwrap();
        let mut outs = vec![&grads.dq, &grads.dk, &grads.dv, &grads.d_table];
        if let Some((k, v)) = &grads.d_pad {
            outs.push(k);
            outs.push(v);
        }
        for o in &outs {
            rt.fill(o, f32::NAN).unwrap();
        }
        rt.run(
            &window_attention_backward_into(rt, &x, &out, &lse, &dout, &grads, &ws, &opts).unwrap(),
        );
        let d64 = as_f64(&d);
        let inputs = reference_inputs(c, &d64);
        let want = reference::backward(&c.geometry(), &inputs, &f64s(&dout_h));
        let bound = reference::backward_bound(&c.geometry(), &inputs, &f64s(&dout_h));
        let pairs = [
            (&want.dq, &bound.dq),
            (&want.dk, &bound.dk),
            (&want.dv, &bound.dv),
            (&want.d_table, &bound.d_table),
            (&want.d_pad_k, &bound.d_pad_k),
            (&want.d_pad_v, &bound.d_pad_v),
        ];
        let names = ["dq", "dk", "dv", "d_table", "d_pad_k", "d_pad_v"];
        for (i, o) in outs.iter().enumerate() {
            let got = rt.download(o).unwrap();
            let (want, bound) = pairs[i];
            // A map that is an exact multiple of the window has no padding: zero gradient.
            if i >= 4 && want.iter().all(|&v| v == 0.0) {
                assert!(got.iter().all(|&v| v == 0.0), "{}: {c:?}", names[i]);
                continue;
            }
            // Every gradient sums ds = p·(dp − row) terms, which cancel by the softmax's shift
            // invariance: nearly so for d_pad_k (all padding keys of a window) and for dq of a
            // window with one real token among 48 identical padding keys. The error is bounded
            // by the terms' magnitudes, not by the small result: measured up to 1.9e-7·‖terms‖
            // (dv of a 1×1 map, no cancellation) over 132 cases, so 2e-6 (~32 ulps) has room.
            testing::assert_close_to_bound(
                &format!("{} {c:?}", names[i]),
                seed,
                &got,
                &f32s(want),
                &f32s(bound),
                2e-6,
            );
        }
    }
}

/// The kernels use no optional feature: the same results on a runtime with none enabled.
#[test]
fn portable_runtime_forward_and_backward() {
    let rt = testing::portable_runtime();
    let seed = testing::seed();
    let c = CASES[3];
    let d = c.data(seed);
    let t = upload(rt, &c, &d);
    let x = t.inputs(c.pad);
    let (out, lse) = window_attention(rt, &x, &c.opts()).unwrap();
    let d64 = as_f64(&d);
    let want = reference::forward(&c.geometry(), &reference_inputs(&c, &d64));
    assert_close(
        "portable forward",
        seed,
        &rt.download(&out).unwrap(),
        &f32s(&want),
        1e-5,
    );
    let dout_h = uniform(&mut testing::rng(seed ^ 1), d.q.len(), -1.0, 1.0);
    let dout = rt.upload(&dout_h, &c.shape()).unwrap();
    let gr = window_attention_backward(rt, &x, &out, &lse, &dout, &c.opts()).unwrap();
    let want = reference::backward(&c.geometry(), &reference_inputs(&c, &d64), &f64s(&dout_h));
    let got = rt.download(&gr.d_table).unwrap();
    assert_close("portable d_table", seed, &got, &f32s(&want.d_table), 1e-5);
}

/// Swin-T stage 1 at 384×384 (96×96 tokens, C = 96, 3 heads, window 7, shift 3): the full
/// model shape against the reference. Slow on CPU adapters: run with
/// `cargo test --lib window_attention -- --ignored`.
#[test]
#[ignore]
fn swin_t_stage1_full_size() {
    let rt = testing::runtime();
    let seed = testing::seed();
    let c = Case {
        batch: 1,
        height: 96,
        width: 96,
        heads: 3,
        head_dim: 32,
        window: 7,
        shift: 3,
        pad: true,
    };
    let d = c.data(seed);
    let t = upload(rt, &c, &d);
    let x = t.inputs(c.pad);
    let (out, lse) = window_attention(rt, &x, &c.opts()).unwrap();
    let d64 = as_f64(&d);
    let want = reference::forward(&c.geometry(), &reference_inputs(&c, &d64));
    assert_close(
        "full-size forward",
        seed,
        &rt.download(&out).unwrap(),
        &f32s(&want),
        1e-5,
    );
    let dout_h = uniform(&mut testing::rng(seed ^ 1), d.q.len(), -1.0, 1.0);
    let dout = rt.upload(&dout_h, &c.shape()).unwrap();
    let gr = window_attention_backward(rt, &x, &out, &lse, &dout, &c.opts()).unwrap();
    let want = reference::backward(&c.geometry(), &reference_inputs(&c, &d64), &f64s(&dout_h));
    let (dpk, dpv) = gr.d_pad.as_ref().unwrap();
    for (name, got, want) in [
        ("dq", &gr.dq, &want.dq),
        ("dk", &gr.dk, &want.dk),
        ("dv", &gr.dv, &want.dv),
        ("d_table", &gr.d_table, &want.d_table),
        ("d_pad_k", dpk, &want.d_pad_k),
        ("d_pad_v", dpv, &want.d_pad_v),
    ] {
        assert_close(name, seed, &rt.download(got).unwrap(), &f32s(want), 1e-5);
    }
}

#[test]
fn backward_workspace_must_match_the_call() {
    let rt = testing::runtime();
    let c = CASES[0];
    let d = c.data(3);
    let t = upload(rt, &c, &d);
    let x = t.inputs(c.pad);
    let (out, lse) = window_attention(rt, &x, &c.opts()).unwrap();
    let grads = WindowAttentionGrads::new(rt, &x, &c.opts()).unwrap();
    let ws = WindowAttentionWorkspace::new(
        rt,
        &x,
        &WindowAttentionOptions {
            shift: 0,
            ..c.opts()
        },
    )
    .unwrap();
    let e = window_attention_backward_into(rt, &x, &out, &lse, &out, &grads, &ws, &c.opts())
        .err()
        .map(|e| e.to_string());
    assert!(
        e.as_deref().is_some_and(|e| e.contains("workspace")),
        "{e:?}"
    );
}
