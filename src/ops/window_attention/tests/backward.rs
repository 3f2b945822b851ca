//! The reference backward against finite differences, the kernels against it, and the workspace contract.

use super::*;

/// The reference backward against central differences of the reference forward, for the loss
/// Σ out·g with random g, on a sample of entries of every input.
#[test]
fn reference_backward_matches_finite_differences() {
    // Over ~80 lines: the finite-difference check of every gradient over one set of cases.
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

/// Under both kernel policies; the GPU policy sums the table and padding gradients in two passes
/// where they are long.
#[test]
fn backward_matches_reference() {
    let seed = testing::seed();
    for rt in [testing::runtime(), testing::gpu_policy_runtime()] {
        for (n, c) in CASES.iter().enumerate() {
            check_backward(rt, c, seed.wrapping_add(n as u64));
        }
    }
}

/// 50 windows and 650 padding rows: both sums take two passes under either policy (the table
/// only under the GPU one: 2 heads × 2401 outputs fill lavapipe's launch alone).
#[test]
fn two_pass_table_and_padding_sums() {
    let c = Case {
        batch: 2,
        height: 30,
        width: 30,
        heads: 2,
        head_dim: 4,
        window: 7,
        shift: 3,
        pad: true,
    };
    let seed = testing::seed();
    for (rt, table) in [
        (testing::cpu_policy_runtime(), false),
        (testing::gpu_policy_runtime(), true),
    ] {
        let d = c.data(seed);
        let t = upload(rt, &c, &d);
        let ws = WindowAttentionWorkspace::new(rt, &t.inputs(true), &c.opts()).unwrap();
        assert_eq!(ws.table_part.is_some(), table, "{:?}", rt.kernel_policy());
        assert!(ws.pad_part.is_some(), "{:?}", rt.kernel_policy());
        check_backward(rt, &c, seed);
    }
}

fn check_backward(rt: &Runtime, c: &Case, seed: u64) {
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
    let ds = window_attention_backward_into(rt, &x, &out, &lse, &dout, &grads, &ws, &opts).unwrap();
    // The CPU policy on a CPU adapter runs both passes' texel forms, the GPU policy the buffer ones.
    let texel = crate::ops::common::texel::preferred(rt);
    for (d, form) in ds.iter().zip(["+texel_q::", "+texel_k::"]) {
        let runs = d
            .label()
            .starts_with(&format!("window_attention_backward{form}"));
        assert_eq!(runs, texel, "{} {c:?} {:?}", d.label(), rt.kernel_policy());
    }
    rt.run(&ds);
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
            &format!("{} {c:?} ({:?})", names[i], rt.kernel_policy()),
            seed,
            &got,
            &f32s(want),
            &f32s(bound),
            2e-6,
        );
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
