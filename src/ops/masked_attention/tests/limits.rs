//! Errors, the portable runtime, and key splits past the CPU loop budget.

use super::*;

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
