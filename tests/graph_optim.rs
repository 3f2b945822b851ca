//! AdamW, gradient clipping and the optimizer attached to a training graph, against the f64
//! reference (which is checked against the PyTorch AdamW formula by hand).

mod graph_common;

use graph_common::{graph, TAdd, TMul, TScale, TSum};
use mask2former::graph::{CompileOptions, Executable, ParamKind, Trainable};
use mask2former::optim::{
    adamw_reference, clip_coefficient, global_norm_reference, AdamW, AdamWConfig, GroupConfig,
    OptimError,
};
use mask2former::runtime::ArenaLayout;
use mask2former::testing;
use mask2former::DType;
use std::sync::Arc;

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

/// Whether the optimizer should read texel views on `rt`: CPU adapters under the CPU policy.
fn texel_form_expected(rt: &mask2former::Runtime) -> bool {
    rt.info().device_type == wgpu::DeviceType::Cpu
        && mask2former::ops::policy::policy(rt).cpu_shapes()
}

/// One parameter of the multi-tensor tests: name, kind, length, trained (has a gradient).
type Spec = (String, ParamKind, usize, bool);

/// Many tensors of odd sizes in three groups (backbone 0.1× lr with decay, norms and biases
/// without decay, the rest with decay), one past a 256-thread grid of 65535 workgroups' worth
/// of chunks, and two without a gradient that the update must leave alone.
fn specs(rng: &mut impl rand::Rng) -> Vec<Spec> {
    let mut out = vec![(
        "model.pixel_level_module.encoder.x.weight".to_string(),
        ParamKind::Weight,
        70_001usize,
        true,
    )];
    for i in 0..40 {
        let n = rng.random_range(1..700usize);
        let (name, kind) = match i % 4 {
            0 => (
                format!("model.pixel_level_module.encoder.l{i}.bias"),
                ParamKind::Bias,
            ),
            1 => (format!("decoder.l{i}.norm.weight"), ParamKind::Norm),
            2 => (format!("decoder.l{i}.fc.weight"), ParamKind::Weight),
            _ => (format!("decoder.l{i}.fc.bias"), ParamKind::Bias),
        };
        out.push((name, kind, n, i % 13 != 5));
    }
    out
}

/// Several steps of the multi-tensor AdamW against the reference, over arenas laid out for the
/// adapter (one block) and with a forced 4 KiB binding limit (many blocks, the large tensor in
/// 4 KiB windows): changing lr and gradients, clipping on for some steps. The arenas' padding
/// and the untrained entries start as NaN (the moments of the trained ones at zero) and must
/// keep their values; NaN reaching a trained entry would fail the comparison.
#[test]
fn device_adamw_matches_reference_over_steps() {
    let rt = testing::runtime();
    let seed = testing::seed();
    let mut rng = testing::rng(seed);
    let specs = specs(&mut rng);
    let shapes: Vec<_> = specs.iter().map(|s| (vec![s.2], DType::F32)).collect();
    let groups = GroupConfig::mask2former();
    let layouts = [
        rt.arena_layout(&shapes).unwrap(),
        ArenaLayout::new(&shapes, 256, 4096).unwrap(),
    ];
    for (layout, max_norm) in layouts.into_iter().zip([None, Some(0.5)]) {
        let case = format!("{} blocks, clip {max_norm:?}", layout.blocks().len());
        let layout = Arc::new(layout);
        let cfg = AdamWConfig {
            max_grad_norm: max_norm,
            ..AdamWConfig::default()
        };
        let (pa, ga) = (rt.arena(layout.clone()).unwrap(), rt.arena(layout).unwrap());
        for b in pa.blocks() {
            rt.fill(b, f32::NAN).unwrap();
        }
        let mut host_p: Vec<Vec<f32>> = specs
            .iter()
            .map(|s| match s.3 {
                true => testing::uniform(&mut rng, s.2, -1.0, 1.0),
                false => vec![f32::NAN; s.2],
            })
            .collect();
        for (i, p) in host_p.iter().enumerate() {
            rt.write(pa.tensor(i), p).unwrap();
        }
        let trainables: Vec<Trainable> = (0..specs.len())
            .filter(|&i| specs[i].3)
            .map(|i| Trainable {
                name: &specs[i].0,
                kind: specs[i].1,
                param: pa.tensor(i),
                grad: ga.tensor(i),
                entry: i,
            })
            .collect();
        let (mut opt, ds) = AdamW::new(rt, &pa, &ga, &trainables, &cfg, &groups).unwrap();
        // Run under both kernel policies: the texel form on lavapipe, the buffer form on GPUs
        // and under M2F_KERNEL_POLICY=gpu.
        assert_eq!(opt.texel_views(), texel_form_expected(rt), "{case}");
        let trained = opt.states().len();
        assert_eq!(trained, trainables.len());
        let (mut host_m, mut host_v): (Vec<Vec<f32>>, Vec<Vec<f32>>) = specs
            .iter()
            .map(|s| (vec![0.0; s.2], vec![0.0; s.2]))
            .unzip();
        for step in 1..=3u64 {
            let lr = 1e-2 / step as f64;
            let host_g: Vec<Vec<f32>> = specs
                .iter()
                .map(|s| match s.3 {
                    true => testing::uniform(&mut rng, s.2, -0.02, 0.02),
                    false => vec![0.0; s.2],
                })
                .collect();
            for (i, g) in host_g.iter().enumerate() {
                rt.write(ga.tensor(i), g).unwrap();
            }
            opt.begin_step(lr);
            rt.run(&ds);
            let refs: Vec<&[f32]> = host_g.iter().map(|g| g.as_slice()).collect();
            let norm = global_norm_reference(&refs);
            let got_norm = opt.grad_norm().unwrap();
            assert!(
                (got_norm - norm).abs() <= 1e-5 * norm,
                "{case}: norm {got_norm} vs {norm} (seed {seed})"
            );
            let clip = max_norm.map_or(1.0, |c| clip_coefficient(norm, c));
            if max_norm.is_some() {
                assert!(clip < 1.0, "the test must clip: norm {norm}");
            }
            for (i, s) in specs.iter().enumerate().filter(|(_, s)| s.3) {
                let (lm, wd) = groups.group_of(&s.0, s.1);
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
            }
            let state = opt.save_state().unwrap();
            for (i, s) in specs.iter().enumerate() {
                let what = format!("{case}: {} step {step}", s.0);
                let got = rt.download(pa.tensor(i)).unwrap();
                if !s.3 {
                    assert!(got.iter().all(|x| x.is_nan()), "{what} changed");
                    continue;
                }
                testing::assert_close(&format!("{what} p"), seed, &got, &host_p[i], 1e-6);
                let mo = state.moments.iter().find(|m| m.name == s.0).unwrap();
                testing::assert_close(&format!("{what} m"), seed, &mo.exp_avg, &host_m[i], 1e-5);
                testing::assert_close(&format!("{what} v"), seed, &mo.exp_avg_sq, &host_v[i], 1e-5);
            }
        }
        // The padding of every parameter block is still NaN: the update wrote only tensors.
        let layout = pa.layout();
        for (b, block) in pa.blocks().iter().enumerate() {
            let data = rt.download(block).unwrap();
            let mut inside = vec![false; data.len()];
            for e in layout.entries().iter().filter(|e| e.block == b) {
                let at = (e.offset / 4) as usize;
                inside[at..at + e.numel()]
                    .iter_mut()
                    .for_each(|x| *x = true);
            }
            let written = (0..data.len()).find(|&k| !inside[k] && !data[k].is_nan());
            assert_eq!(written, None, "{case}: padding of block {b} written");
        }
        assert_eq!(opt.step(), 3);
    }
}

/// The update needs one launch per binding window (of at most 32 MiB in the texel form), not
/// one per tensor.
#[test]
fn one_update_launch_per_window() {
    let rt = testing::runtime();
    let specs = specs(&mut testing::rng(1));
    let shapes: Vec<_> = specs.iter().map(|s| (vec![s.2], DType::F32)).collect();
    let adapter = rt.arena_layout(&shapes).unwrap();
    assert_eq!(adapter.windows().len(), 1);
    for layout in [adapter, ArenaLayout::new(&shapes, 256, 1 << 16).unwrap()] {
        let launches = layout.windows().len();
        let layout = Arc::new(layout);
        let (pa, ga) = (rt.arena(layout.clone()).unwrap(), rt.arena(layout).unwrap());
        let trainables: Vec<Trainable> = (0..specs.len())
            .map(|i| Trainable {
                name: &specs[i].0,
                kind: specs[i].1,
                param: pa.tensor(i),
                grad: ga.tensor(i),
                entry: i,
            })
            .collect();
        let cfg = AdamWConfig::default();
        let (opt, ds) =
            AdamW::new(rt, &pa, &ga, &trainables, &cfg, &GroupConfig::default()).unwrap();
        assert_eq!(opt.launches(), launches);
        // Gradient-norm partials per window + finish + the updates.
        assert_eq!(ds.len(), 2 * launches + 1);
    }
}

#[test]
fn bad_config_and_shapes_are_errors() {
    let rt = testing::runtime();
    let shapes = [(vec![4], DType::F32), (vec![5], DType::F32)];
    let layout = Arc::new(rt.arena_layout(&shapes).unwrap());
    let (pa, ga) = (rt.arena(layout.clone()).unwrap(), rt.arena(layout).unwrap());
    let t = |param: usize, grad: usize, entry: usize| Trainable {
        name: "w",
        kind: ParamKind::Weight,
        param: pa.tensor(param),
        grad: ga.tensor(grad),
        entry,
    };
    let new = |ts: &[Trainable], cfg: &AdamWConfig| {
        AdamW::new(rt, &pa, &ga, ts, cfg, &GroupConfig::default())
            .err()
            .unwrap()
    };
    let cfg = AdamWConfig::default();
    let err = new(&[t(0, 1, 0)], &cfg);
    assert!(matches!(err, OptimError::GradShape { .. }), "{err}");
    for bad in [[t(0, 0, 1)], [t(0, 0, 7)]] {
        let err = new(&bad, &cfg);
        assert!(
            matches!(&err, OptimError::State { name, .. } if name == "w"),
            "{err}"
        );
    }
    let err = new(&[t(1, 1, 1), t(0, 0, 0)], &cfg);
    assert!(err.to_string().contains("comes after"), "{err}");
    let other = Arc::new(ArenaLayout::new(&shapes, 256, 256).unwrap());
    let ga2 = rt.arena(other).unwrap();
    let err = AdamW::new(rt, &pa, &ga2, &[], &cfg, &GroupConfig::default())
        .err()
        .unwrap();
    assert!(err.to_string().contains("gradient arena"), "{err}");
    let cfg = AdamWConfig {
        betas: (1.0, 0.999),
        ..AdamWConfig::default()
    };
    assert!(new(&[], &cfg).to_string().contains("beta1"));
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
    // One grad-norm partial, the finish and one update for both parameters.
    assert_eq!(exe.dispatch_count(), graph_dispatches + 3);
    // b's gradient is the prediction's gradient, which w's gradient reads: w's is computed
    // outside the arena and copied in (one dispatch of the graph's).
    assert_eq!(exe.arena_copies(), 1);
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
