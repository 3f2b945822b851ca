//! AdamW, gradient clipping and the optimizer attached to a training graph, against the f64
//! reference (which is checked against the PyTorch AdamW formula by hand).

mod graph_common;

use graph_common::{graph, TAdd, TMul, TScale, TSum};
use mask2former::graph::{CompileOptions, Executable, ParamKind, Trainable};
use mask2former::optim::{
    adamw_reference, clip_coefficient, global_norm_reference, AdamW, AdamWConfig, GroupConfig,
    OptimError,
};
use mask2former::testing;

/// First step by hand: m̂ = g and v̂ = g², so p₁ = p₀(1 − lr·wd) − lr·g/(|g| + ε).
#[test]
fn reference_first_step_is_the_pytorch_formula() {
    let cfg = AdamWConfig::default();
    let (lr, wd) = (1e-3, 0.05);
    let p0 = [1.0f32, -2.0, 0.5, 0.0];
    let g = [0.1f32, -3.0, 0.0, 1e-3];
    let (mut p, mut m, mut v) = (p0, [0.0f32; 4], [0.0f32; 4]);
    adamw_reference(&mut p, &g, &mut m, &mut v, 1, lr, &cfg, wd, 1.0);
    for i in 0..4 {
        let gi = g[i] as f64;
        let want = p0[i] as f64 * (1.0 - lr * wd) - lr * gi / (gi.abs() + 1e-8);
        assert!((p[i] as f64 - want).abs() < 1e-7, "{i}: {} vs {want}", p[i]);
        assert!((m[i] as f64 - 0.1 * gi).abs() <= 1e-7 * gi.abs());
        assert!((v[i] as f64 - 0.001 * gi * gi).abs() <= 1e-7 * gi * gi);
    }
    // Second step with the same gradient: m = 0.19g, v = 0.001999g², corrections 0.19 and
    // 0.001999, so the step is again lr·g/(|g| + ε).
    let p1 = p;
    adamw_reference(&mut p, &g, &mut m, &mut v, 2, lr, &cfg, wd, 1.0);
    for i in 0..4 {
        let gi = g[i] as f64;
        let want = p1[i] as f64 * (1.0 - lr * wd) - lr * gi / (gi.abs() + 1e-8);
        assert!((p[i] as f64 - want).abs() < 1e-6, "{i}: {} vs {want}", p[i]);
    }
}

#[test]
fn clip_coefficient_matches_torch() {
    assert_eq!(clip_coefficient(0.5, 1.0), 1.0);
    let c = clip_coefficient(4.0, 0.01);
    assert!((c - 0.01 / (4.0 + 1e-6)).abs() < 1e-15);
    let n = global_norm_reference(&[&[3.0, 0.0], &[4.0]]);
    assert_eq!(n, 5.0);
}

#[test]
fn groups_follow_mask2former_rules() {
    let gc = GroupConfig::mask2former();
    let bb = "model.pixel_level_module.encoder.encoder.layers.0.blocks.0";
    assert_eq!(
        gc.group_of(
            &format!("{bb}.attention.self.query.weight"),
            ParamKind::Weight
        ),
        (0.1, 0.05)
    );
    assert_eq!(
        gc.group_of(&format!("{bb}.layernorm_before.weight"), ParamKind::Norm),
        (0.1, 0.0)
    );
    assert_eq!(
        gc.group_of(
            "model.transformer_module.decoder.layers.0.fc1.bias",
            ParamKind::Bias
        ),
        (1.0, 0.0)
    );
    assert_eq!(
        gc.group_of(
            "model.transformer_module.decoder.layers.0.fc1.weight",
            ParamKind::Weight
        ),
        (1.0, 0.05)
    );
    assert_eq!(
        gc.group_of(
            "model.transformer_module.queries_embedder.weight",
            ParamKind::Embedding
        ),
        (1.0, 0.0)
    );
}

/// Several steps of the device AdamW against the reference: two groups (backbone at 0.1× lr
/// with decay, a norm without), a tensor past one workgroup grid, changing lr and gradients,
/// clipping on for some steps.
#[test]
fn device_adamw_matches_reference_over_steps() {
    let rt = testing::runtime();
    let seed = testing::seed();
    let mut rng = testing::rng(seed);
    let specs = [
        (
            "model.pixel_level_module.encoder.x.weight",
            ParamKind::Weight,
            70_001usize,
        ),
        ("decoder.norm.weight", ParamKind::Norm, 33),
        ("decoder.fc.weight", ParamKind::Weight, 1000),
    ];
    let groups = GroupConfig::mask2former();
    for max_norm in [None, Some(0.5)] {
        let cfg = AdamWConfig {
            max_grad_norm: max_norm,
            ..AdamWConfig::default()
        };
        let mut host_p: Vec<Vec<f32>> = specs
            .iter()
            .map(|s| testing::uniform(&mut rng, s.2, -1.0, 1.0))
            .collect();
        let mut host_m: Vec<Vec<f32>> = specs.iter().map(|s| vec![0.0; s.2]).collect();
        let mut host_v = host_m.clone();
        let params: Vec<_> = host_p
            .iter()
            .map(|p| rt.upload(p, &[p.len()]).unwrap())
            .collect();
        let grads: Vec<_> = specs
            .iter()
            .map(|s| rt.full(&[s.2], 0.0).unwrap())
            .collect();
        let trainables: Vec<Trainable> = specs
            .iter()
            .zip(params.iter().zip(&grads))
            .map(|(s, (p, g))| Trainable {
                name: s.0,
                kind: s.1,
                param: p,
                grad: g,
            })
            .collect();
        let (mut opt, ds) = AdamW::new(rt, &trainables, &cfg, &groups).unwrap();
        for step in 1..=4u64 {
            let lr = 1e-2 / step as f64;
            let host_g: Vec<Vec<f32>> = specs
                .iter()
                .map(|s| testing::uniform(&mut rng, s.2, -0.02, 0.02))
                .collect();
            for (g, h) in grads.iter().zip(&host_g) {
                rt.queue()
                    .write_buffer(g.buffer(), 0, bytemuck::cast_slice(h));
            }
            opt.begin_step(lr);
            rt.run(&ds);
            let refs: Vec<&[f32]> = host_g.iter().map(|g| g.as_slice()).collect();
            let norm = global_norm_reference(&refs);
            let got_norm = opt.grad_norm().unwrap();
            assert!(
                (got_norm - norm).abs() <= 1e-5 * norm,
                "norm {got_norm} vs {norm} (seed {seed})"
            );
            let clip = max_norm.map_or(1.0, |c| clip_coefficient(norm, c));
            if max_norm.is_some() {
                assert!(clip < 1.0, "the test must clip: norm {norm}");
            }
            for (i, s) in specs.iter().enumerate() {
                let (lm, wd) = groups.group_of(s.0, s.1);
                adamw_reference(
                    &mut host_p[i],
                    &host_g[i],
                    &mut host_m[i],
                    &mut host_v[i],
                    step,
                    lr * lm,
                    &cfg,
                    wd,
                    clip,
                );
                let case = format!("{} step {step} clip {max_norm:?}", s.0);
                let st = opt.state(s.0).unwrap();
                testing::assert_close(
                    &format!("{case} p"),
                    seed,
                    &rt.download(&params[i]).unwrap(),
                    &host_p[i],
                    1e-6,
                );
                testing::assert_close(
                    &format!("{case} m"),
                    seed,
                    &rt.download(&st.m).unwrap(),
                    &host_m[i],
                    1e-5,
                );
                testing::assert_close(
                    &format!("{case} v"),
                    seed,
                    &rt.download(&st.v).unwrap(),
                    &host_v[i],
                    1e-5,
                );
            }
        }
        assert_eq!(opt.step(), 4);
    }
}

#[test]
fn bad_config_and_shapes_are_errors() {
    let rt = testing::runtime();
    let p = rt.full(&[4], 0.0).unwrap();
    let g = rt.full(&[5], 0.0).unwrap();
    let t = Trainable {
        name: "w",
        kind: ParamKind::Weight,
        param: &p,
        grad: &g,
    };
    let err = AdamW::new(rt, &[t], &AdamWConfig::default(), &GroupConfig::default())
        .err()
        .unwrap();
    assert!(matches!(err, OptimError::GradShape { .. }), "{err}");
    let cfg = AdamWConfig {
        betas: (1.0, 0.999),
        ..AdamWConfig::default()
    };
    let err = AdamW::new(rt, &[], &cfg, &GroupConfig::default())
        .err()
        .unwrap();
    assert!(err.to_string().contains("beta1"), "{err}");
}

/// Least squares w·x ≈ y trained through the graph with the optimizer appended: each step is
/// one submit; the loss must fall below 1e-3 of its start.
#[test]
fn optimizer_attached_to_a_graph_trains() {
    let rt = testing::runtime();
    let n = 64;
    let mut g = graph();
    let x = g.input("x", &[n]).unwrap();
    let y = g.input("y", &[n]).unwrap();
    let w = g.param("w", &[n]).unwrap();
    let b = g.param("b", &[n]).unwrap();
    let wx = g.apply1(TMul, &[w, x]).unwrap();
    let pred = g.apply1(TAdd, &[wx, b]).unwrap();
    let neg_y = g.apply1(TScale(-1.0), &[y]).unwrap();
    let d = g.apply1(TAdd, &[pred, neg_y]).unwrap();
    let d2 = g.apply1(TMul, &[d, d]).unwrap();
    let loss = g.apply1(TSum, &[d2]).unwrap();
    g.backward(loss).unwrap();
    let mut exe = Executable::compile(rt, &g, &[loss], &CompileOptions::training()).unwrap();
    let graph_dispatches = exe.dispatch_count();
    let cfg = AdamWConfig {
        max_grad_norm: Some(100.0),
        ..AdamWConfig::default()
    };
    let mut opt = AdamW::attach(&mut exe, &cfg, &GroupConfig::default()).unwrap();
    // grad-norm partials (one per gradient) + finish + one update per parameter.
    assert_eq!(exe.dispatch_count(), graph_dispatches + 2 + 1 + 2);
    let xs: Vec<f32> = (0..n).map(|i| 0.5 + (i % 7) as f32 * 0.25).collect();
    let ys: Vec<f32> = xs.iter().map(|x| 1.5 * x - 0.25).collect();
    exe.set_input("x", &xs).unwrap();
    exe.set_input("y", &ys).unwrap();
    exe.set_param("w", &vec![0.0; n]).unwrap();
    exe.set_param("b", &vec![0.0; n]).unwrap();
    exe.run_graph().unwrap();
    let first = exe.read(loss).unwrap()[0];
    let mut last = first;
    for step in 0..300 {
        opt.begin_step(0.05);
        exe.run().unwrap();
        if step % 50 == 49 {
            last = exe.read(loss).unwrap()[0];
        }
    }
    assert!(last < 1e-3 * first, "loss {first} -> {last}");
}
