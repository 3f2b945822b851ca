//! The GPU kernel `gemm` against the f64 reference: both tile forms, NN/NT/TN/TT with vec4 and
//! scalar loads, sizes off the 128/64 tile grid and off the 8-k step, the whole epilogue with
//! the residual, the chunked-binding path, split-K, K past one launch's loop budget, and the
//! residual's errors. (The shared tests in forward.rs, split_k.rs and limits.rs run it too.)

use super::*;

/// Runs `case` through `forward_into` on NaN-poisoned outputs and checks C (and the
/// pre-activation) against the reference, with every epilogue tensor; returns the labels.
fn check(rt: &Runtime, case: &Case, o: &MatmulOptions, split_ok: bool) -> Vec<String> {
    let seed = testing::seed();
    let mut rng = testing::rng(seed);
    let (sa, sb, sc) = (case.a_shape(), case.b_shape(), case.c_shape());
    let a = testing::uniform(&mut rng, numel(&sa), -1.0, 1.0);
    let b = testing::uniform(&mut rng, numel(&sb), -1.0, 1.0);
    let bias = testing::uniform(&mut rng, case.n, -1.0, 1.0);
    let c_in = testing::uniform(&mut rng, numel(&sc), -1.0, 1.0);
    let res = testing::uniform(&mut rng, numel(&sc), -1.0, 1.0);
    let (ta, tb) = (rt.upload(&a, &sa).unwrap(), rt.upload(&b, &sb).unwrap());
    let tbias = rt.upload(&bias, &[case.n]).unwrap();
    let tres = rt.upload(&res, &sc).unwrap();
    let out = if o.beta != 0.0 {
        rt.upload(&c_in, &sc).unwrap()
    } else {
        nan_tensor(rt, &sc)
    };
    let pre = nan_tensor(rt, &sc);
    let ep = Epilogue {
        bias: Some(&tbias),
        residual: Some(&tres),
        preact: Some(&pre),
    };
    let (d, _scratch) = forward_into("test", rt, &ta, &tb, &ep, &out, o, split_ok).unwrap();
    rt.run(&d);
    let (want, want_pre) = reference::forward(
        &case.dims(),
        &f64s(&a),
        &f64s(&b),
        Some(&f64s(&bias)),
        Some(&f64s(&c_in)),
        o.alpha as f64,
        o.beta as f64,
        o.activation,
    );
    let want: Vec<f64> = want.iter().zip(&res).map(|(w, &r)| w + r as f64).collect();
    let name = format!("{case:?} {o:?} split_ok={split_ok}");
    assert_close(&name, seed, &rt.download(&out).unwrap(), &f32s(&want), 1e-5);
    let got_pre = rt.download(&pre).unwrap();
    assert_close(
        &format!("pre of {name}"),
        seed,
        &got_pre,
        &f32s(&want_pre),
        1e-5,
    );
    full_labels(&d)
}

fn gemm_opts(t: (bool, bool)) -> MatmulOptions {
    MatmulOptions {
        alpha: 0.75,
        beta: 0.5,
        activation: Activation::Gelu,
        split_k: Some(1),
        ..opts(Variant::Gemm, t)
    }
}

/// Every layout on sizes off the tile grid and off the k step, both forms: 1530×1400 makes
/// 12×11 = 132 workgroups of 128×128 (the wide form), the others run the 64×64 form.
#[test]
fn gemm_every_layout_off_grid_both_forms() {
    let rt = testing::runtime();
    let mut seen = std::collections::BTreeSet::new();
    for t in TRANS {
        for (m, n, k) in [
            (1, 1, 1),
            (127, 129, 7),
            (100, 256, 257),
            (65, 3, 16),
            (1530, 1400, 13),
        ] {
            for l in check(rt, &Case::new(m, n, k, t), &gemm_opts(t), false) {
                seen.insert(l);
            }
        }
    }
    // Both forms, and each operand in both orientations with vec4 and with scalar loads.
    let has = |key: &str| seen.iter().any(|l| l.contains(key));
    for key in ["GT=128,", "GT=64,"] {
        assert!(has(key), "{key} never ran; ran {seen:?}");
    }
    for (major, vec) in [("A_KMAJOR", "A_VEC"), ("B_KMAJOR", "B_VEC")] {
        for (m, v) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
            let ran = seen
                .iter()
                .any(|l| l.contains(&format!("{major}={m},")) && l.contains(&format!("{vec}={v}")));
            assert!(ran, "{major}={m} {vec}={v} never ran; ran {seen:?}");
        }
    }
}

/// The vec4 paths on the wide form, and batches broadcast on either side with both forms.
#[test]
fn gemm_vector_loads_and_batches() {
    let rt = testing::runtime();
    for t in TRANS {
        let l = check(rt, &Case::new(1536, 1408, 24, t), &gemm_opts(t), false);
        assert!(
            l[0].contains("GT=128") && l[0].contains("A_VEC=1,B_VEC=1"),
            "{l:?}"
        );
        for (la, lb) in [
            (&[3][..], &[][..]),
            (&[][..], &[2, 2][..]),
            (&[2][..], &[2][..]),
        ] {
            check(
                rt,
                &Case::new(70, 36, 20, t).batched(la, lb),
                &gemm_opts(t),
                false,
            );
        }
    }
}

/// Chunked launches (4 KiB and 64 KiB binding caps: batches, rows, columns and k split, later
/// k chunks accumulating into C), split-K (the residual added once, by the summing pass), and
/// a reduction longer than one launch's loop budget on lavapipe.
#[test]
fn gemm_chunked_split_and_long_k() {
    let rt = testing::runtime();
    for t in TRANS {
        for (case, cap) in [
            (Case::new(300, 10, 12, t), 4096),
            (Case::new(40, 130, 200, t), 4096),
            (Case::new(20, 12, 16, t).batched(&[7], &[7]), 4096),
            (Case::new(129, 200, 100, t), 65536),
        ] {
            let o = MatmulOptions {
                max_binding: Some(cap),
                ..gemm_opts(t)
            };
            let l = check(rt, &case, &o, false);
            assert!(l.len() >= 2, "{case:?} not chunked: {l:?}");
        }
        for split in [3, 8] {
            let o = MatmulOptions {
                split_k: Some(split),
                ..gemm_opts(t)
            };
            let l = check(
                rt,
                &Case::new(100, 70, 1000, t).batched(&[2], &[]),
                &o,
                true,
            );
            assert_eq!(l.last().map(|s| s.as_str()), Some(SPLIT_SUM), "{l:?}");
        }
    }
    let long = GEMM_MAX_K_PER_LAUNCH as usize * 2 + 37;
    let l = check(
        rt,
        &Case::new(5, 6, long, (true, false)),
        &gemm_opts((true, false)),
        false,
    );
    if crate::ops::policy::policy(rt).loop_budget.is_some() {
        assert_eq!(l.len(), 3, "{l:?}");
    }
}

/// Under the GPU policy `Auto` runs `gemm`: the decoder's M = 100 products take the 64×64 form
/// and are split along K (few tiles), a large product takes the 128×128 form unsplit.
#[test]
fn gemm_is_the_gpu_default_and_picks_its_form() {
    let rt = testing::gpu_policy_runtime();
    let auto = |t| MatmulOptions {
        split_k: None,
        ..gemm_opts(t)
    };
    let nt = (false, true);
    let o = MatmulOptions {
        variant: Variant::Auto,
        ..auto(nt)
    };
    let l = check(rt, &Case::new(100, 256, 2048, nt), &o, true);
    assert!(l[0].starts_with("matmul::gemm[GT=64,"), "{l:?}");
    assert_eq!(l.last().map(|s| s.as_str()), Some(SPLIT_SUM), "{l:?}");
    let l = check(rt, &Case::new(1536, 1408, 64, nt), &o, true);
    assert_eq!(l.len(), 1, "{l:?}");
    assert!(l[0].starts_with("matmul::gemm[GT=128,"), "{l:?}");
}

/// A residual of the wrong shape, or sharing C's buffer, is an error naming it.
#[test]
fn residual_errors_name_the_residual() {
    let rt = testing::runtime();
    let a = rt.full(&[4, 3], 1.0).unwrap();
    let b = rt.full(&[3, 5], 1.0).unwrap();
    let out = rt.empty(&[4, 5], DType::F32).unwrap();
    let bad = rt.full(&[5, 4], 1.0).unwrap();
    for (residual, what) in [(&bad, "residual"), (&out, "residual")] {
        let ep = Epilogue {
            residual: Some(residual),
            ..Default::default()
        };
        let err = matmul_epilogue_into(rt, &a, &b, &ep, &out, &Default::default())
            .err()
            .expect("accepted a bad residual")
            .to_string();
        assert!(err.contains(what), "{err}");
    }
}
