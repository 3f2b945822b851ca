//! Errors naming the problem and the portable runtime.

use super::*;

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
