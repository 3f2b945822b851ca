//! Graph building, differentiation and planning without running anything: shape errors,
//! parameter kinds, the no-overlap invariant and memory savings of the planner.

mod graph_common;

use graph_common::{graph, TAdd, TBroadcast, TMul, TScale, TSum};
use mask2former::graph::{GraphError, ParamKind, Plan, PlanOptions, Storage};
use rand::Rng;

#[test]
fn shape_errors_name_the_node_op_and_shapes() {
    let mut g = graph();
    let a = g.input("a", &[2, 3]).unwrap();
    let b = g.input("b", &[3, 2]).unwrap();
    g.push_scope("model.block.0");
    let err = g.apply1(TAdd, &[a, b]).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, GraphError::Shape { .. }), "{msg}");
    assert!(
        msg.contains("model.block.0.t_add") && msg.contains("[2, 3]") && msg.contains("[3, 2]"),
        "{msg}"
    );
    let err = g.reshape(a, &[4, 2]).unwrap_err().to_string();
    assert!(err.contains("reshape") && err.contains("[4, 2]"), "{err}");
    assert!(matches!(
        g.input("a", &[1]),
        Err(GraphError::DuplicateName(_))
    ));
    let err = g.constant(&[1.0, 2.0], &[3]).unwrap_err().to_string();
    assert!(err.contains('2') && err.contains('3'), "{err}");
    let s = g.apply1(TAdd, &[a, a]).unwrap();
    let err = g.backward(s).unwrap_err();
    assert!(matches!(err, GraphError::LossNotScalar { .. }), "{err}");
}

#[test]
fn parameter_kinds_follow_checkpoint_names() {
    use ParamKind::*;
    for (name, kind) in [
        ("model.pixel_level_module.encoder.embeddings.patch_embeddings.projection.weight", Weight),
        ("model.pixel_level_module.encoder.embeddings.patch_embeddings.projection.bias", Bias),
        ("model.pixel_level_module.encoder.encoder.layers.0.blocks.0.layernorm_before.weight", Norm),
        ("model.pixel_level_module.encoder.encoder.layers.0.blocks.0.attention.self.relative_position_bias_table", PositionTable),
        ("model.transformer_module.decoder.layers.0.self_attn_layer_norm.bias", Norm),
        ("model.transformer_module.queries_embedder.weight", Embedding),
        ("model.transformer_module.queries_features.weight", Embedding),
        ("model.transformer_module.level_embed.weight", Embedding),
        ("model.pixel_level_module.decoder.level_embed", Embedding),
        ("model.transformer_module.decoder.layers.0.fc1.weight", Weight),
        ("class_predictor.bias", Bias),
        ("model.transformer_module.decoder.mask_predictor.mask_embedder.0.0.weight", Weight),
    ] {
        assert_eq!(ParamKind::from_name(name), kind, "{name}");
    }
    let mut g = graph();
    g.param_of_kind("input_projections.0.1.weight", &[4], Norm)
        .unwrap();
    assert_eq!(g.params().next().unwrap().2, Norm);
}

/// A chain of n scales: values die right after their reader, so with reuse two buffers (or
/// one, in place) serve the whole chain.
#[test]
fn chain_reuses_buffers_and_reports_peak() {
    let mut g = graph();
    let x = g.param("x", &[1000]).unwrap();
    let mut v = g.apply1(TMul, &[x, x]).unwrap();
    for i in 0..20 {
        v = g.apply1(TScale(1.0 + i as f32), &[v]).unwrap();
    }
    let shared = Plan::new(&g, &[v], PlanOptions::default()).unwrap();
    let no_inplace = Plan::new(
        &g,
        &[v],
        PlanOptions {
            reuse: true,
            inplace: false,
        },
    )
    .unwrap();
    let unshared = Plan::new(
        &g,
        &[v],
        PlanOptions {
            reuse: false,
            inplace: false,
        },
    )
    .unwrap();
    for p in [&shared, &no_inplace, &unshared] {
        p.check_no_overlap().unwrap();
    }
    let (s, n, u) = (shared.stats(), no_inplace.stats(), unshared.stats());
    assert_eq!(u.planned_bytes, 21 * 4000, "{u}");
    assert_eq!(u.unshared_bytes, u.planned_bytes);
    assert_eq!(n.planned_bytes, 2 * 4000, "{n}");
    assert_eq!(s.planned_bytes, 4000, "{s}");
    assert_eq!(s.inplace, 20);
    assert_eq!(s.live_peak_bytes, 4000);
    assert_eq!(s.leaf_bytes, 4000);
}

/// Larger random graphs (not run): the assignment never puts two live values in one buffer,
/// never needs more than one buffer per value, and never less than the live peak.
#[test]
fn random_plans_never_overlap() {
    let seed = mask2former::testing::seed();
    let mut rng = mask2former::testing::rng(seed);
    for case in 0..50 {
        let sizes = [1usize, 3, 64, 100, 1000];
        let mut g = graph();
        let mut pool: Vec<Vec<_>> = sizes
            .iter()
            .enumerate()
            .map(|(k, &n)| vec![g.param(&format!("p{k}"), &[n]).unwrap()])
            .collect();
        for _ in 0..rng.random_range(5..120) {
            let k = rng.random_range(0..sizes.len());
            let a = pool[k][rng.random_range(0..pool[k].len())];
            let b = pool[k][rng.random_range(0..pool[k].len())];
            let v = match rng.random_range(0..5) {
                0 => g.apply1(TAdd, &[a, b]).unwrap(),
                1 => g.apply1(TMul, &[a, b]).unwrap(),
                2 => g.apply1(TScale(2.0), &[a]).unwrap(),
                3 => {
                    let s = g.apply1(TSum, &[a]).unwrap();
                    let k2 = rng.random_range(0..sizes.len());
                    let v = g.apply1(TBroadcast(vec![sizes[k2]]), &[s]).unwrap();
                    pool[k2].push(v);
                    continue;
                }
                _ => g
                    .reshape(a, &[sizes[k], 1])
                    .and_then(|r| g.reshape(r, &[sizes[k]]))
                    .unwrap(),
            };
            pool[k].push(v);
        }
        let last = *pool[4].last().unwrap();
        let loss = g.apply1(TSum, &[last]).unwrap();
        g.backward(loss).unwrap();
        let mut outs = vec![loss];
        outs.extend(g.grads().iter().map(|(_, d)| *d));
        for k in 0..sizes.len() {
            if rng.random_bool(0.5) {
                outs.push(pool[k][rng.random_range(0..pool[k].len())]);
            }
        }
        for opts in [
            PlanOptions::default(),
            PlanOptions {
                reuse: true,
                inplace: false,
            },
            PlanOptions {
                reuse: false,
                inplace: false,
            },
        ] {
            let plan = Plan::new(&g, &outs, opts).unwrap();
            plan.check_no_overlap()
                .unwrap_or_else(|e| panic!("case {case} {opts:?} (seed {seed}): {e}"));
            let s = plan.stats();
            assert!(s.planned_bytes <= s.unshared_bytes, "case {case}: {s}");
            assert!(s.planned_bytes >= s.live_peak_bytes, "case {case}: {s}");
            for &v in &outs {
                assert_ne!(plan.storage(v), Storage::Dead);
            }
        }
    }
}
