//! Forward against the f64 reference, every term live, and Swin-T stage 1 at full size.

use super::*;

/// Under both kernel policies: on CPU adapters the CPU policy reads K and V from texel views, the
/// GPU policy from buffers.
#[test]
fn forward_matches_reference() {
    for rt in [testing::runtime(), testing::gpu_policy_runtime()] {
        forward_matches_reference_on(rt);
    }
}

fn forward_matches_reference_on(rt: &Runtime) {
    let texel = crate::ops::common::texel::preferred(rt);
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
        let ds = window_attention_into(rt, &x, &out, &lse, &c.opts()).unwrap();
        let texel_runs = ds[0].label().starts_with("window_attention+texel::");
        assert_eq!(texel_runs, texel, "{c:?} {:?}", rt.kernel_policy());
        rt.run(&ds);
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
