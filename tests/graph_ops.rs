//! The graph's ops on the kernel library: results and gradients through the graph equal the
//! launchers called directly, and a network using every op builds, differentiates and plans.

mod graph_common;

use graph_common::{graph, TMul, TSum};
use mask2former::graph::{CompileOptions, Executable, Plan, PlanOptions};
use mask2former::ops::conv2d::{conv2d, Conv2dOptions};
use mask2former::ops::group_norm::{group_norm_backward, group_norm_train, GroupNormOptions};
use mask2former::ops::layer_norm::{layer_norm_backward, layer_norm_train, LayerNormOptions};
use mask2former::ops::resample::{bilinear, bilinear_backward, Resize};
use mask2former::ops::window_attention::{
    window_attention, WindowAttentionInputs, WindowAttentionOptions,
};
use mask2former::testing;

/// conv (constant weights) → GroupNorm+ReLU → bilinear → LayerNorm, loss Σ y·r: forward and
/// all parameter gradients against the same launchers chained by hand.
#[test]
fn norms_resample_conv_match_direct_launchers() {
    let rt = testing::runtime();
    let seed = testing::seed();
    let mut rng = testing::rng(seed);
    let (n, cin, c, h, w, groups) = (2, 3, 8, 6, 5, 4);
    let (oh, ow) = (9, 7);
    let xd = testing::uniform(&mut rng, n * cin * h * w, -1.0, 1.0);
    let kd = testing::uniform(&mut rng, c * cin * 9, -0.5, 0.5);
    let kbd = testing::uniform(&mut rng, c, -0.5, 0.5);
    let gwd = testing::uniform(&mut rng, c, 0.5, 1.5);
    let gbd = testing::uniform(&mut rng, c, -0.5, 0.5);
    let lwd = testing::uniform(&mut rng, ow, 0.5, 1.5);
    let lbd = testing::uniform(&mut rng, ow, -0.5, 0.5);
    let rd = testing::uniform(&mut rng, n * c * oh * ow, -1.0, 1.0);

    let mut g = graph();
    let x = g.input("x", &[n, cin, h, w]).unwrap();
    let r = g.input("r", &[n, c, oh, ow]).unwrap();
    let k = g.constant(&kd, &[c, cin, 3, 3]).unwrap();
    let kb = g.constant(&kbd, &[c]).unwrap();
    let gw = g.param("gn.weight", &[c]).unwrap();
    let gb = g.param("gn.bias", &[c]).unwrap();
    let lw = g.param("ln.weight", &[ow]).unwrap();
    let lb = g.param("ln.bias", &[ow]).unwrap();
    let y0 = g.conv2d(x, k, Some(kb), 1, 1).unwrap();
    let y1 = g.group_norm(y0, gw, gb, groups, 1e-5, true).unwrap();
    let y2 = g.interpolate_bilinear(y1, (oh, ow)).unwrap();
    let y3 = g.layer_norm(y2, lw, lb, 1e-5).unwrap();
    let yr = g.apply1(TMul, &[y3, r]).unwrap();
    let loss = g.apply1(TSum, &[yr]).unwrap();
    g.backward(loss).unwrap();
    let mut exe = Executable::compile(rt, &g, &[y3, loss], &CompileOptions::training()).unwrap();
    exe.plan().check_no_overlap().unwrap();
    exe.set_input("x", &xd).unwrap();
    exe.set_input("r", &rd).unwrap();
    for (name, d) in [
        ("gn.weight", &gwd),
        ("gn.bias", &gbd),
        ("ln.weight", &lwd),
        ("ln.bias", &lbd),
    ] {
        exe.set_param(name, d).unwrap();
    }
    let got = exe.run_with(&[]).unwrap();
    let grad = |name: &str| rt.download(exe.grad(name).unwrap().unwrap()).unwrap();

    // The same chain by hand.
    let up = |d: &Vec<f32>, s: &[usize]| rt.upload(d, s).unwrap();
    let y0d = conv2d(
        rt,
        &up(&xd, &[n, cin, h, w]),
        &up(&kd, &[c, cin, 3, 3]),
        Some(&up(&kbd, &[c])),
        &Conv2dOptions::default().padding(1),
    )
    .unwrap();
    let mut gopts = GroupNormOptions::new(groups);
    gopts.relu = true;
    let (gwt, gbt) = (up(&gwd, &[c]), up(&gbd, &[c]));
    let (y1d, gm, gr) = group_norm_train(rt, &y0d, &gwt, &gbt, &gopts).unwrap();
    let y2d = bilinear(rt, &y1d, Resize::To(oh, ow)).unwrap();
    let lopts = LayerNormOptions {
        eps: 1e-5,
        ..Default::default()
    };
    let lwt = up(&lwd, &[ow]);
    let (y3d, lm, lr) = layer_norm_train(rt, &y2d, &lwt, &up(&lbd, &[ow]), &lopts).unwrap();
    let rt_r = up(&rd, &[n, c, oh, ow]);
    let lgr = layer_norm_backward(rt, &rt_r, &y2d, &lwt, &lm, &lr, &lopts).unwrap();
    let dy1 = bilinear_backward(rt, &lgr.dx, (h, w), Resize::To(oh, ow)).unwrap();
    let ggr = group_norm_backward(rt, &dy1, &y0d, &gwt, &gbt, &gm, &gr, &gopts).unwrap();
    let dl = |t| rt.download(t).unwrap();

    let y3w = dl(&y3d);
    testing::assert_close("y", seed, &got[0], &y3w, 1e-6);
    let want_loss: f64 = y3w
        .iter()
        .zip(&rd)
        .map(|(a, b)| *a as f64 * *b as f64)
        .sum();
    // An f32 sum of 882 terms of either sign: its error scales with Σ|y·r|, not with the sum.
    let terms: f64 = y3w
        .iter()
        .zip(&rd)
        .map(|(a, b)| (*a * *b).abs() as f64)
        .sum();
    testing::assert_close_to_bound(
        "loss",
        seed,
        &got[1],
        &[want_loss as f32],
        &[terms as f32],
        1e-5,
    );
    testing::assert_close(
        "d ln.weight",
        seed,
        &grad("ln.weight"),
        &dl(&lgr.dweight),
        1e-6,
    );
    testing::assert_close("d ln.bias", seed, &grad("ln.bias"), &dl(&lgr.dbias), 1e-6);
    testing::assert_close(
        "d gn.weight",
        seed,
        &grad("gn.weight"),
        &dl(&ggr.dweight),
        1e-6,
    );
    testing::assert_close("d gn.bias", seed, &grad("gn.bias"), &dl(&ggr.dbias), 1e-6);
}

/// A convolution over a graph input (the image under the patch embedding) needs no input
/// gradient: its backward skips dx (fewer dispatches) and the weight and bias gradients equal
/// those of the same convolution over a parameter, where dx is computed.
#[test]
fn conv_over_an_input_skips_the_input_gradient() {
    let rt = testing::runtime();
    let seed = testing::seed();
    let mut rng = testing::rng(seed);
    let (n, cin, c, h, w) = (2, 5, 8, 9, 7);
    let xd = testing::uniform(&mut rng, n * cin * h * w, -1.0, 1.0);
    let kd = testing::uniform(&mut rng, c * cin * 9, -0.5, 0.5);
    let kbd = testing::uniform(&mut rng, c, -0.5, 0.5);
    let rd = testing::uniform(&mut rng, n * c * h * w, -1.0, 1.0);
    let run = |x_is_param: bool| {
        let mut g = graph();
        let x = if x_is_param {
            g.param("x", &[n, cin, h, w]).unwrap()
        } else {
            g.input("x", &[n, cin, h, w]).unwrap()
        };
        let r = g.input("r", &[n, c, h, w]).unwrap();
        let k = g.param("k", &[c, cin, 3, 3]).unwrap();
        let kb = g.param("kb", &[c]).unwrap();
        let y = g.conv2d(x, k, Some(kb), 1, 1).unwrap();
        let yr = g.apply1(TMul, &[y, r]).unwrap();
        let loss = g.apply1(TSum, &[yr]).unwrap();
        g.backward(loss).unwrap();
        let mut exe = Executable::compile(rt, &g, &[loss], &CompileOptions::training()).unwrap();
        if x_is_param {
            exe.set_param("x", &xd).unwrap();
        } else {
            exe.set_input("x", &xd).unwrap();
        }
        exe.set_input("r", &rd).unwrap();
        exe.set_param("k", &kd).unwrap();
        exe.set_param("kb", &kbd).unwrap();
        exe.run_with(&[]).unwrap();
        let grad = |name: &str| rt.download(exe.grad(name).unwrap().unwrap()).unwrap();
        (grad("k"), grad("kb"), exe.dispatch_count())
    };
    let (k_in, kb_in, launches_in) = run(false);
    let (k_param, kb_param, launches_param) = run(true);
    assert!(
        launches_in < launches_param,
        "no dx over an input: {launches_in} launches, {launches_param} with dx"
    );
    testing::assert_close("d k", seed, &k_in, &k_param, 1e-6);
    testing::assert_close("d kb", seed, &kb_in, &kb_param, 1e-6);
}

#[test]
fn window_attention_matches_direct_launcher() {
    let rt = testing::runtime();
    let seed = testing::seed();
    let mut rng = testing::rng(seed);
    let (b, h, w, c, heads, win, shift) = (1, 9, 7, 16, 2, 4, 2);
    let n = b * h * w * c;
    let (qd, kd, vd) = (
        testing::uniform(&mut rng, n, -1.0, 1.0),
        testing::uniform(&mut rng, n, -1.0, 1.0),
        testing::uniform(&mut rng, n, -1.0, 1.0),
    );
    let tn = (2 * win - 1) * (2 * win - 1) * heads;
    let td = testing::uniform(&mut rng, tn, -1.0, 1.0);
    let mut g = graph();
    let q = g.input("q", &[b, h, w, c]).unwrap();
    let k = g.input("k", &[b, h, w, c]).unwrap();
    let v = g.input("v", &[b, h, w, c]).unwrap();
    let t = g
        .param("table", &[(2 * win - 1) * (2 * win - 1), heads])
        .unwrap();
    let y = g.window_attention(q, k, v, t, heads, win, shift).unwrap();
    let mut exe = Executable::compile(rt, &g, &[y], &CompileOptions::inference()).unwrap();
    exe.set_param("table", &td).unwrap();
    let got = exe
        .run_with(&[
            ("q", (&qd).into()),
            ("k", (&kd).into()),
            ("v", (&vd).into()),
        ])
        .unwrap();
    let s = [b, h, w, c];
    let (qt, kt, vt) = (
        rt.upload(&qd, &s).unwrap(),
        rt.upload(&kd, &s).unwrap(),
        rt.upload(&vd, &s).unwrap(),
    );
    let tt = rt.upload(&td, &[tn / heads, heads]).unwrap();
    let x = WindowAttentionInputs {
        q: &qt,
        k: &kt,
        v: &vt,
        table: &tt,
        pad_k: None,
        pad_v: None,
    };
    let opts = WindowAttentionOptions {
        heads,
        window: win,
        shift,
        scale: None,
    };
    let (want, _) = window_attention(rt, &x, &opts).unwrap();
    testing::assert_close(
        "window attention",
        seed,
        &got[0],
        &rt.download(&want).unwrap(),
        1e-6,
    );
}

/// A small network over every op the model uses builds, differentiates (each backward rule's
/// gradient has its input's shape, checked by `backward`) and plans without overlap. Whether it
/// runs depends on which kernel families are merged; this checks the graph side only.
#[test]
fn every_op_builds_differentiates_and_plans() {
    let mut g = mask2former::graph::Graph::new();
    let (b, c, h, w, heads) = (1, 8, 8, 8, 2);
    let x = g.input("pixel_values", &[b, 3, h, w]).unwrap();
    let cw = g.param("conv.weight", &[c, 3, 3, 3]).unwrap();
    let cb = g.param("conv.bias", &[c]).unwrap();
    let y = g.conv2d(x, cw, Some(cb), 1, 1).unwrap();
    let gw = g.param("gn.weight", &[c]).unwrap();
    let gb = g.param("gn.bias", &[c]).unwrap();
    let y = g.group_norm(y, gw, gb, 4, 1e-5, true).unwrap();
    let y = g.pad(y, &[(0, 0), (0, 0), (0, 1), (0, 1)]).unwrap();
    let y = g.slice(y, 2, 0, h).unwrap();
    let y = g.slice(y, 3, 0, w).unwrap();
    let t = g.permute(y, &[0, 2, 3, 1]).unwrap(); // [B, H, W, C]
    let lw = g.param("ln.weight", &[c]).unwrap();
    let lb = g.param("ln.bias", &[c]).unwrap();
    let t = g.layer_norm(t, lw, lb, 1e-5).unwrap();
    let qw = g.param("q.weight", &[c, c]).unwrap();
    let qb = g.param("q.bias", &[c]).unwrap();
    let q = g.linear(t, qw, Some(qb)).unwrap();
    let table = g
        .param("relative_position_bias_table", &[49, heads])
        .unwrap();
    let a = g.window_attention(q, t, t, table, heads, 4, 2).unwrap();
    let a = g.gelu(a).unwrap();
    let tokens = g.reshape(a, &[b, h * w, c]).unwrap();
    // Deformable attention over two levels (8×8 and 4×4 from a resize).
    let small = g.interpolate_bilinear(y, (4, 4)).unwrap();
    let small = g.reshape(small, &[b, c, 16]).unwrap();
    let small = g.permute(small, &[0, 2, 1]).unwrap();
    let value = g.concat(&[tokens, small], 1).unwrap();
    let value = g.reshape(value, &[b, 80, heads, c / heads]).unwrap();
    let ow = g.param("offsets.weight", &[heads * 2 * 2 * 2, c]).unwrap();
    let off = g.linear(tokens, ow, None).unwrap();
    let off = g.reshape(off, &[b, h * w, heads, 2, 2, 2]).unwrap();
    let refs = g.constant(&[0.5; 2], &[1, 1, 1, 1, 1, 2]).unwrap();
    let loc = g.add(off, refs).unwrap();
    let aw = g.param("attn.weight", &[heads * 4, c]).unwrap();
    let att = g.linear(tokens, aw, None).unwrap();
    let att = g.reshape(att, &[b, h * w, heads, 4]).unwrap();
    let att = g.softmax(att).unwrap();
    let att = g.reshape(att, &[b, h * w, heads, 2, 2]).unwrap();
    let enc = g.deform_attn(value, loc, att, &[(8, 8), (4, 4)]).unwrap();
    // Masked attention of 3 queries over the encoded tokens, mask from a detached prediction.
    let qf = g.param("queries_features.weight", &[1, 3, c]).unwrap();
    let zeros = g.constant(&vec![0.0; 3 * c], &[b, 3, c]).unwrap();
    let queries = g.add(zeros, qf).unwrap();
    let enc_t = g.permute(enc, &[0, 2, 1]).unwrap();
    let logits = g.matmul(queries, enc_t).unwrap(); // [B, 3, HW]
    let mask = g.less_than_zero(logits).unwrap();
    let out = g
        .masked_attention(queries, enc, enc, Some(mask), heads)
        .unwrap();
    let out = g.relu(out).unwrap();
    let loss = g.mean(out).unwrap();
    let loss2 = g.sub(loss, loss).unwrap();
    let total = g.add(loss, loss2).unwrap();
    g.backward(total).unwrap();
    let params: Vec<&str> = g.params().map(|p| p.0).collect();
    for (name, v, _) in g.params() {
        let grad = g
            .grad(v)
            .unwrap_or_else(|| panic!("no gradient for {name}"));
        assert_eq!(g.shape(grad), g.shape(v), "{name}");
    }
    assert_eq!(g.grads().len(), params.len());
    let mut outs = vec![total];
    outs.extend(g.grads().iter().map(|p| p.1));
    let plan = Plan::new(&g, &outs, PlanOptions::default()).unwrap();
    plan.check_no_overlap().unwrap();
    let s = plan.stats();
    assert!(s.planned_bytes < s.unshared_bytes, "{s}");
}

/// A linear layer large enough for the CPU path that multiplies by a transposed copy of the
/// weight: output and gradients (x, weight, bias) against an f64 computation of x·Wᵀ + b.
#[test]
fn linear_matches_f64_on_every_path() {
    let rt = testing::runtime();
    let seed = testing::seed();
    let mut rng = testing::rng(seed);
    for &(m, k, n) in &[(200usize, 64usize, 36usize), (7, 12, 8), (300, 30, 20)] {
        let xd = testing::uniform(&mut rng, m * k, -1.0, 1.0);
        let wd = testing::uniform(&mut rng, n * k, -1.0, 1.0);
        let bd = testing::uniform(&mut rng, n, -1.0, 1.0);
        let rd = testing::uniform(&mut rng, m * n, -1.0, 1.0);
        let mut g = graph();
        let x = g.param("x", &[m, k]).unwrap();
        let w = g.param("w", &[n, k]).unwrap();
        let b = g.param("b", &[n]).unwrap();
        let r = g.input("r", &[m, n]).unwrap();
        let y = g.linear(x, w, Some(b)).unwrap();
        let yr = g.apply1(TMul, &[y, r]).unwrap();
        let loss = g.apply1(TSum, &[yr]).unwrap();
        g.backward(loss).unwrap();
        let mut exe = Executable::compile(rt, &g, &[y], &CompileOptions::training()).unwrap();
        for (name, d) in [("x", &xd), ("w", &wd), ("b", &bd)] {
            exe.set_param(name, d).unwrap();
        }
        let got = exe.run_with(&[("r", rd.as_slice().into())]).unwrap();
        let grad = |name: &str| rt.download(exe.grad(name).unwrap().unwrap()).unwrap();
        let (mut want, mut dx, mut dw, mut db) = (
            vec![0f32; m * n],
            vec![0f32; m * k],
            vec![0f32; n * k],
            vec![0f32; n],
        );
        for i in 0..m {
            for j in 0..n {
                let dot: f64 = (0..k)
                    .map(|t| xd[i * k + t] as f64 * wd[j * k + t] as f64)
                    .sum();
                want[i * n + j] = (dot + bd[j] as f64) as f32;
            }
        }
        for i in 0..m {
            for t in 0..k {
                dx[i * k + t] = (0..n)
                    .map(|j| rd[i * n + j] as f64 * wd[j * k + t] as f64)
                    .sum::<f64>() as f32;
            }
        }
        for j in 0..n {
            for t in 0..k {
                dw[j * k + t] = (0..m)
                    .map(|i| rd[i * n + j] as f64 * xd[i * k + t] as f64)
                    .sum::<f64>() as f32;
            }
            db[j] = (0..m).map(|i| rd[i * n + j] as f64).sum::<f64>() as f32;
        }
        let case = format!("linear {m}x{k} -> {n}");
        testing::assert_close(&format!("{case} y"), seed, &got[0], &want, 1e-5);
        testing::assert_close(&format!("{case} dx"), seed, &grad("x"), &dx, 1e-5);
        testing::assert_close(&format!("{case} dw"), seed, &grad("w"), &dw, 1e-5);
        testing::assert_close(&format!("{case} db"), seed, &grad("b"), &db, 1e-5);
    }
}

/// The builder checks an op's input count (`Op::arity`) before its shape rule: a wrong count is
/// a shape error naming the op and both counts, and nothing is added to the graph.
#[test]
fn wrong_input_count_is_a_shape_error_naming_the_op() {
    use mask2former::graph::{ops::LayerNorm, Graph, GraphError};
    let mut g = Graph::new();
    let x = g.input("x", &[2, 4]).unwrap();
    let w = g.param("ln.weight", &[4]).unwrap();
    let nodes = g.nodes().len();
    let err = g
        .apply(std::sync::Arc::new(LayerNorm { eps: 1e-5 }), &[x, w])
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, GraphError::Shape { .. }), "{msg}");
    assert!(
        msg.contains("layer_norm") && msg.contains("takes 3 inputs, got 2"),
        "{msg}"
    );
    assert_eq!(g.nodes().len(), nodes);
}
