//! Forward products against the f64 reference: every variant, transpose, shape and epilogue.

use super::*;

#[test]
fn forward_every_variant_transpose_and_shape() {
    let rt = testing::runtime();
    for variant in VARIANTS {
        for t in TRANS {
            for (m, n, k) in SHAPES {
                check_forward(rt, &Case::new(m, n, k, t), &opts(variant, t), false, false);
            }
        }
    }
}

/// The shapes above really reach every regblock load mode, not just the scalar fallback.
#[test]
fn vector_load_modes_are_chosen_where_layout_allows() {
    let rt = testing::runtime();
    let mut seen = std::collections::BTreeSet::new();
    for t in TRANS {
        for (m, n, k) in SHAPES {
            let case = Case::new(m, n, k, t);
            let s = resolve(
                "test",
                &rt.empty(&case.a_shape(), DType::F32).unwrap(),
                &rt.empty(&case.b_shape(), DType::F32).unwrap(),
                &opts(Variant::RegBlock, t),
            )
            .unwrap();
            let (va, vb) = (s.view_a(t.0), s.view_b(t.1));
            let p = Params {
                a_rs: stride(va.rs, s.m),
                a_cs: stride(va.cs, s.k),
                b_rs: stride(vb.rs, s.k),
                b_cs: stride(vb.cs, s.n),
                ..bytemuck::Zeroable::zeroed()
            };
            let e = Extent {
                b: 1,
                m: s.m,
                n: s.n,
                k: s.k,
            };
            seen.insert(vector_modes(&p, e));
        }
    }
    for modes in [(1, 1), (2, 1), (1, 2), (2, 2), (0, 0)] {
        assert!(
            seen.contains(&modes),
            "mode {modes:?} untested; seen {seen:?}"
        );
    }
}

#[test]
fn batch_broadcast_both_sides() {
    let rt = testing::runtime();
    let leads: [(&[usize], &[usize]); 5] = [
        (&[3], &[]),
        (&[], &[3]),
        (&[2, 3], &[2, 3]),
        (&[1], &[2, 2]),
        (&[2, 1], &[1]),
    ];
    for variant in VARIANTS {
        for t in TRANS {
            for (la, lb) in leads {
                let case = Case::new(9, 12, 8, t).batched(la, lb);
                check_forward(rt, &case, &opts(variant, t), false, false);
            }
        }
    }
}

#[test]
fn fused_epilogue_bias_activation_alpha_beta_preact_residual() {
    let rt = testing::runtime();
    for variant in VARIANTS {
        for (i, act) in [Activation::None, Activation::Relu, Activation::Gelu]
            .into_iter()
            .enumerate()
        {
            let t = TRANS[i % 4];
            for (alpha, beta) in [(1.0, 0.0), (0.5, 0.75), (-1.5, 1.0)] {
                let o = MatmulOptions {
                    alpha,
                    beta,
                    activation: act,
                    ..opts(variant, t)
                };
                let case = Case::new(37, 21, 19, t).batched(&[2], &[]);
                check_forward(rt, &case, &o, true, true);
                check_forward(rt, &case, &o, false, false);
                // The residual, added after the activation (bias, pre-activation too).
                check_forward_seeded(rt, &case, &o, (true, true, true, false), testing::seed());
            }
        }
    }
}

/// GELU over [-8, 8] against the f64 erf: the WGSL erf's absolute error stays near 1.5e-7.
#[test]
fn gelu_matches_exact_erf_form() {
    let rt = testing::runtime();
    let n = 4001;
    let x: Vec<f32> = (0..n)
        .map(|i| -8.0 + 16.0 * i as f32 / (n - 1) as f32)
        .collect();
    let a = rt.upload(&x, &[n, 1]).unwrap();
    let b = rt.upload(&[1.0], &[1, 1]).unwrap();
    for variant in VARIANTS {
        let o = MatmulOptions {
            activation: Activation::Gelu,
            variant,
            ..Default::default()
        };
        let got = rt.download(&matmul(rt, &a, &b, None, &o).unwrap()).unwrap();
        let mut worst = 0.0f64;
        for (&g, &xi) in got.iter().zip(&x) {
            let want = reference::activation(Activation::Gelu, xi as f64);
            // 0.5·x·erf error (≤ 1.5e-7) plus f32 rounding of the result.
            let err = (g as f64 - want).abs() / (1.0 + want.abs());
            worst = worst.max(err);
        }
        assert!(worst < 6e-7, "{variant:?}: GELU error {worst:.2e}");
    }
}

#[test]
fn reference_erf_matches_known_values() {
    // erf values from Abramowitz & Stegun table 7.1 / high-precision tables.
    for (x, want) in [
        (0.0, 0.0),
        (0.1, 0.112_462_916_018_284_9),
        (0.5, 0.520_499_877_813_046_5),
        (1.0, 0.842_700_792_949_714_9),
        (2.0, 0.995_322_265_018_952_7),
        (2.9, 0.999_958_902_121_900_5),
        (3.0, 0.999_977_909_503_001_4),
        (4.0, 0.999_999_984_582_742_1),
        (-1.5, -0.966_105_146_475_310_7),
    ] {
        let got = reference::erf(x);
        assert!((got - want).abs() < 1e-14, "erf({x}) = {got}, want {want}");
    }
}

#[test]
fn empty_and_zero_k() {
    let rt = testing::runtime();
    // K = 0: C = act(bias).
    let a = rt.empty(&[3, 0], DType::F32).unwrap();
    let b = rt.empty(&[0, 5], DType::F32).unwrap();
    let bias = [0.5, -1.0, 2.0, 0.0, -0.25];
    let tbias = rt.upload(&bias, &[5]).unwrap();
    for variant in VARIANTS {
        let o = MatmulOptions {
            activation: Activation::Relu,
            variant,
            ..Default::default()
        };
        let c = matmul(rt, &a, &b, Some(&tbias), &o).unwrap();
        let want: Vec<f32> = (0..3).flat_map(|_| bias.map(|v: f32| v.max(0.0))).collect();
        assert_eq!(rt.download(&c).unwrap(), want, "{variant:?}");
    }
    // M = 0 launches nothing.
    let a = rt.empty(&[0, 4], DType::F32).unwrap();
    let b = rt.empty(&[4, 5], DType::F32).unwrap();
    let out = rt.empty(&[0, 5], DType::F32).unwrap();
    assert!(matmul_into(rt, &a, &b, None, &out, &Default::default())
        .unwrap()
        .is_empty());
}
