//! `matmul_row_sums_into`: the product and Σ_k op(A)[m, k] against the f64 reference on fresh
//! inputs (both outputs poisoned with NaN), folded into the texel `ta` entries on CPU adapters
//! and reduced after the product everywhere else.

use super::*;

/// Runs the product with row sums and checks both outputs; returns the dispatches' labels
/// (with their constants, e.g. `[ROW_SUMS=1]`).
fn check_row_sums(rt: &Runtime, case: &Case, opts: &MatmulOptions, with_bias: bool) -> Vec<String> {
    let seed = testing::seed();
    let mut rng = testing::rng(seed);
    let (sa, sb, sc) = (case.a_shape(), case.b_shape(), case.c_shape());
    let a = testing::uniform(&mut rng, numel(&sa), -1.0, 1.0);
    let b = testing::uniform(&mut rng, numel(&sb), -1.0, 1.0);
    let bias = testing::uniform(&mut rng, case.n, -1.0, 1.0);
    let (ta, tb) = (rt.upload(&a, &sa).unwrap(), rt.upload(&b, &sb).unwrap());
    let tbias = rt.upload(&bias, &[case.n]).unwrap();
    let out = nan_tensor(rt, &sc);
    let rows = nan_tensor(rt, &[case.m]);
    let ep = Epilogue {
        bias: with_bias.then_some(&tbias),
        ..Default::default()
    };
    let (d, _keep) = matmul_row_sums_into(rt, &ta, &tb, &ep, &out, opts, &rows).unwrap();
    rt.run(&d);
    let bias64 = with_bias.then(|| f64s(&bias));
    let product = |a: &[f64], b: &[f64], bias: Option<&[f64]>| {
        let none = Activation::None;
        reference::forward(&case.dims(), a, b, bias, None, 1.0, 0.0, none).0
    };
    let want = product(&f64s(&a), &f64s(&b), bias64.as_deref());
    let abs = |v: &[f32]| v.iter().map(|x| x.abs() as f64).collect::<Vec<_>>();
    let bound = product(&abs(&a), &abs(&b), with_bias.then(|| abs(&bias)).as_deref());
    let name = format!("{case:?} {opts:?} bias={with_bias}");
    let got = rt.download(&out).unwrap();
    assert_close_to_bound(&name, seed, &got, &f32s(&want), &f32s(&bound), 1e-5);
    let (mut want_rows, mut bound_rows) = (vec![0.0; case.m], vec![0.0; case.m]);
    for m in 0..case.m {
        for k in 0..case.k {
            let v = if case.trans_a {
                a[k * case.m + m]
            } else {
                a[m * case.k + k]
            } as f64;
            want_rows[m] += v;
            bound_rows[m] += v.abs();
        }
    }
    let got_rows = rt.download(&rows).unwrap();
    let name = format!("row sums of {name}");
    assert_close_to_bound(
        &name,
        seed,
        &got_rows,
        &f32s(&want_rows),
        &f32s(&bound_rows),
        1e-5,
    );
    full_labels(&d)
}

/// The texel `ta` entries write the sums from the product's own launch: one dispatch, on
/// shapes off every tile, with and without a bias, K long enough to cross many k-steps.
#[test]
fn texel_ta_entries_fold_row_sums() {
    let rt = testing::runtime();
    if !crate::ops::matmul::texel::preferred(rt) {
        return;
    }
    for (variant, entry) in [
        (Variant::Texel, TEXEL_TA),
        (Variant::TexelWide, TEXEL_TA_WIDE),
        (Variant::TexelSmall, TEXEL_TA8),
    ] {
        for (m, n, k) in [(4, 4, 1), (36, 68, 7), (68, 132, 13), (100, 8, 300)] {
            for with_bias in [false, true] {
                let case = Case::new(m, n, k, (true, false));
                let o = opts(variant, (true, false));
                let e = check_row_sums(rt, &case, &o, with_bias);
                let want = format!("{entry}[ROW_SUMS=1]");
                assert_eq!(e, [want], "{case:?}");
            }
        }
    }
    // What the graph builds for a linear layer's weight gradient, under `Auto`.
    let case = Case::new(64, 96, 512, (true, false));
    let e = check_row_sums(rt, &case, &opts(Variant::Auto, (true, false)), false);
    assert!(e.len() == 1 && e[0].ends_with("[ROW_SUMS=1]"), "{e:?}");
}

/// Products whose kernel cannot fold the sums (other layouts and kernels, split-K, chunked
/// launches, the GPU policy) reduce op(A) after the product, with the same results.
#[test]
fn row_sums_reduced_where_not_folded() {
    let rt = testing::runtime();
    let split = MatmulOptions {
        split_k: Some(4),
        ..opts(Variant::TexelSmall, (true, false))
    };
    let chunked = MatmulOptions {
        max_binding: Some(4096),
        ..opts(Variant::TexelSmall, (true, false))
    };
    let cases = [
        (
            Case::new(36, 68, 20, (false, false)),
            opts(Variant::Texel, (false, false)),
        ),
        (
            Case::new(36, 68, 20, (false, true)),
            opts(Variant::TexelSmall, (false, true)),
        ),
        (
            Case::new(36, 68, 20, (true, false)),
            opts(Variant::RegBlock, (true, false)),
        ),
        (
            Case::new(37, 5, 3, (true, true)),
            opts(Variant::Auto, (true, true)),
        ),
        (Case::new(36, 64, 1024, (true, false)), split),
        (Case::new(40, 36, 200, (true, false)), chunked),
    ];
    for (case, o) in &cases {
        let e = check_row_sums(rt, case, o, true);
        assert!(e.len() >= 2, "{case:?}: {e:?}");
        assert!(e.iter().all(|x| !x.contains("ROW_SUMS")), "{case:?}: {e:?}");
    }
    let gpu = testing::gpu_policy_runtime();
    for variant in [Variant::Auto, Variant::Gemm, Variant::Tiled] {
        let case = Case::new(64, 96, 300, (true, false));
        let e = check_row_sums(gpu, &case, &opts(variant, (true, false)), true);
        assert!(e.iter().all(|x| !x.contains("ROW_SUMS")), "{e:?}");
    }
}

/// Batched products, a wrong row-sum shape and a row-sum tensor overlapping the output are
/// refused with an error naming them.
#[test]
fn row_sums_refuses_what_it_cannot_write() {
    let rt = testing::runtime();
    let a3 = rt.empty(&[2, 8, 4], DType::F32).unwrap();
    let a = rt.empty(&[8, 4], DType::F32).unwrap();
    let b = rt.empty(&[8, 12], DType::F32).unwrap();
    let out = rt.empty(&[4, 12], DType::F32).unwrap();
    let out3 = rt.empty(&[2, 4, 12], DType::F32).unwrap();
    let rows = rt.empty(&[4], DType::F32).unwrap();
    let o = opts(Variant::Auto, (true, false));
    let ep = Epilogue::default();
    let err = |r: Result<(Vec<Dispatch>, Vec<Tensor>)>| r.err().expect("an error").to_string();
    let e = err(matmul_row_sums_into(rt, &a3, &b, &ep, &out3, &o, &rows));
    assert!(e.contains("2-D"), "{e}");
    let wrong = rt.empty(&[12], DType::F32).unwrap();
    let e = err(matmul_row_sums_into(rt, &a, &b, &ep, &out, &o, &wrong));
    assert!(e.contains("row sums"), "{e}");
    let inside = out.reshape(&[48]).unwrap();
    let e = err(matmul_row_sums_into(rt, &a, &b, &ep, &out, &o, &inside));
    assert!(e.contains("row sums"), "{e}");
}
