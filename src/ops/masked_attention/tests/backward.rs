//! The reference backward against finite differences, the kernels against it, and the workspace contract.

use super::*;

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

/// Under both kernel policies: on CPU adapters the CPU policy runs the dq and dk/dv passes'
/// texel forms (k, v and q, dO from views), the GPU policy their buffer forms.
#[test]
fn backward_matches_reference() {
    for rt in [testing::runtime(), testing::gpu_policy_runtime()] {
        backward_matches_reference_on(rt);
    }
}

fn backward_matches_reference_on(rt: &Runtime) {
    let texel = crate::ops::common::texel::preferred(rt);
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
        let ds =
            masked_attention_backward_into(rt, &x, &out, &lse, &dout, &grads, &ws, &opts).unwrap();
        for form in ["+texel_dq::", "+texel_kv::"] {
            let name = format!("masked_attention_backward{form}");
            let runs = ds.iter().any(|d| d.label().starts_with(&name));
            assert_eq!(runs, texel, "{name} {c:?} {:?}", rt.kernel_policy());
        }
        rt.run(&ds);
        let d64 = Data64::new(&d);
        let want = reference::backward(&c.geometry(), &d64.inputs(c, &d), &f64s(&dout_h));
        for (name, got, want) in [
            ("dq", &grads.dq, &want.dq),
            ("dk", &grads.dk, &want.dk),
            ("dv", &grads.dv, &want.dv),
        ] {
            let policy = rt.kernel_policy();
            let case = format!("{name} {c:?} (splits {}, {policy:?})", ws.geometry.splits);
            assert_close(&case, seed, &rt.download(got).unwrap(), &f32s(want), 1e-5);
        }
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
