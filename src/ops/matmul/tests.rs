//! Kernels against the f64 reference on fresh random inputs (seed in every failure message),
//! outputs poisoned with NaN first, for every variant, transpose combination and epilogue.

use super::reference::{self, Dims};
use super::*;
use crate::runtime::Runtime;
use crate::testing::{self, assert_close};

const VARIANTS: [Variant; 4] = [
    Variant::RegBlockLarge,
    Variant::RegBlock,
    Variant::Tiled,
    Variant::Naive,
];
const TRANS: [(bool, bool); 4] = [(false, false), (true, false), (false, true), (true, true)];

/// One problem: leading dims of A and B, M, N, K and the transposes.
#[derive(Clone, Debug)]
struct Case {
    lead_a: Vec<usize>,
    lead_b: Vec<usize>,
    m: usize,
    n: usize,
    k: usize,
    trans_a: bool,
    trans_b: bool,
}

impl Case {
    fn new(m: usize, n: usize, k: usize, (trans_a, trans_b): (bool, bool)) -> Self {
        Self {
            lead_a: vec![],
            lead_b: vec![],
            m,
            n,
            k,
            trans_a,
            trans_b,
        }
    }
    fn batched(mut self, lead_a: &[usize], lead_b: &[usize]) -> Self {
        self.lead_a = lead_a.to_vec();
        self.lead_b = lead_b.to_vec();
        self
    }
    fn dims(&self) -> Dims {
        Dims {
            batch_a: self.lead_a.iter().product(),
            batch_b: self.lead_b.iter().product(),
            m: self.m,
            n: self.n,
            k: self.k,
            trans_a: self.trans_a,
            trans_b: self.trans_b,
        }
    }
    fn a_shape(&self) -> Vec<usize> {
        let mut s = self.lead_a.clone();
        s.extend(if self.trans_a {
            [self.k, self.m]
        } else {
            [self.m, self.k]
        });
        s
    }
    fn b_shape(&self) -> Vec<usize> {
        let mut s = self.lead_b.clone();
        s.extend(if self.trans_b {
            [self.n, self.k]
        } else {
            [self.k, self.n]
        });
        s
    }
    fn c_shape(&self) -> Vec<usize> {
        let d = self.dims();
        let lead = if d.batch_a != 1 || (d.batch_b == 1 && self.lead_a.len() >= self.lead_b.len()) {
            &self.lead_a
        } else {
            &self.lead_b
        };
        let mut s = lead.clone();
        s.extend([self.m, self.n]);
        s
    }
}

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

fn numel(s: &[usize]) -> usize {
    s.iter().product()
}

fn nan_tensor(rt: &Runtime, shape: &[usize]) -> Tensor {
    let t = rt.empty(shape, DType::F32).unwrap();
    rt.fill(&t, f32::NAN).unwrap();
    t
}

/// Runs the forward on random inputs and compares C (and `pre` when asked) with the reference.
fn check_forward(rt: &Runtime, case: &Case, opts: &MatmulOptions, with_bias: bool, with_pre: bool) {
    let seed = testing::seed();
    let mut rng = testing::rng(seed);
    let (sa, sb, sc) = (case.a_shape(), case.b_shape(), case.c_shape());
    let a = testing::uniform(&mut rng, numel(&sa), -1.0, 1.0);
    let b = testing::uniform(&mut rng, numel(&sb), -1.0, 1.0);
    let bias = testing::uniform(&mut rng, case.n, -1.0, 1.0);
    let c_in = testing::uniform(&mut rng, numel(&sc), -1.0, 1.0);
    let ta = rt.upload(&a, &sa).unwrap();
    let tb = rt.upload(&b, &sb).unwrap();
    let tbias = rt.upload(&bias, &[case.n]).unwrap();
    let out = if opts.beta != 0.0 {
        rt.upload(&c_in, &sc).unwrap()
    } else {
        nan_tensor(rt, &sc)
    };
    let pre = nan_tensor(rt, &sc);
    let bias_arg = with_bias.then_some(&tbias);
    let d = if with_pre {
        matmul_with_preact_into(rt, &ta, &tb, bias_arg, &out, &pre, opts)
    } else {
        matmul_into(rt, &ta, &tb, bias_arg, &out, opts)
    }
    .unwrap();
    rt.run(&d);
    let (want, want_pre) = reference::forward(
        &case.dims(),
        &f64s(&a),
        &f64s(&b),
        with_bias.then_some(&f64s(&bias)[..]),
        Some(&f64s(&c_in)),
        opts.alpha as f64,
        opts.beta as f64,
        opts.activation,
    );
    let name = format!("{case:?} {opts:?} bias={with_bias}");
    assert_close(&name, seed, &rt.download(&out).unwrap(), &f32s(&want), 1e-5);
    if with_pre {
        let name = format!("pre-activation of {name}");
        assert_close(
            &name,
            seed,
            &rt.download(&pre).unwrap(),
            &f32s(&want_pre),
            1e-5,
        );
    }
}

fn opts(variant: Variant, (trans_a, trans_b): (bool, bool)) -> MatmulOptions {
    MatmulOptions {
        trans_a,
        trans_b,
        variant,
        ..Default::default()
    }
}

/// Odd sizes, one-element dims, multiples of 4 (the vec4 paths) and sizes past one workgroup tile
/// (64×128 regblock, 64×64 tiled) in both directions.
const SHAPES: [(usize, usize, usize); 8] = [
    (1, 1, 1),
    (7, 13, 5),
    (65, 33, 129),
    (36, 20, 12),
    (132, 72, 68),
    (130, 70, 3),
    (1, 68, 8),
    (260, 132, 12),
];

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

/// The entry points the launches of one forward call run (`matmul::regblock_vec`, …).
fn entries(rt: &Runtime, case: &Case, opts: &MatmulOptions) -> Vec<String> {
    let a = rt.empty(&case.a_shape(), DType::F32).unwrap();
    let b = rt.empty(&case.b_shape(), DType::F32).unwrap();
    let c = rt.empty(&case.c_shape(), DType::F32).unwrap();
    let d = matmul_into(rt, &a, &b, None, &c, opts).unwrap();
    d.iter()
        .map(|d| d.label().split('[').next().unwrap().to_string())
        .collect()
}

const LARGE: &str = "matmul::regblock_vec";
const LARGE_TA: &str = "matmul::regblock_vec_ta";

/// The 24×16 vec4-only kernel on shapes it accepts: one-element M, the narrowest N (4), K = 4,
/// sizes past its 192×128 workgroup tile in both directions and not multiples of it, batches
/// (broadcast on either side), and the whole epilogue. Every launch must really run it.
#[test]
fn large_block_shapes_batches_and_epilogue() {
    let rt = testing::runtime();
    let shapes = [
        (1, 4, 4),
        (1, 132, 8),
        (7, 4, 12),
        (193, 132, 8),
        (200, 260, 36),
        (385, 20, 4),
        (64, 516, 20),
    ];
    let leads: [(&[usize], &[usize]); 4] =
        [(&[], &[]), (&[3], &[]), (&[], &[3]), (&[2, 2], &[2, 2])];
    let o = opts(Variant::RegBlockLarge, (false, false));
    for (m, n, k) in shapes {
        for (la, lb) in leads {
            let case = Case::new(m, n, k, (false, false)).batched(la, lb);
            let e = entries(rt, &case, &o);
            assert!(e.iter().all(|x| x == LARGE), "{case:?}: {e:?}");
            check_forward(rt, &case, &o, false, false);
        }
    }
    for act in [Activation::None, Activation::Relu, Activation::Gelu] {
        for (alpha, beta) in [(1.0, 0.0), (0.5, 0.75), (-1.5, 1.0)] {
            let o = MatmulOptions {
                alpha,
                beta,
                activation: act,
                ..opts(Variant::RegBlockLarge, (false, false))
            };
            let case = Case::new(197, 136, 24, (false, false)).batched(&[2], &[]);
            assert!(entries(rt, &case, &o).iter().all(|x| x == LARGE));
            check_forward(rt, &case, &o, true, true);
            check_forward(rt, &case, &o, false, false);
        }
    }
}

/// Launches the large kernel cannot take fall back to `regblock` (and are still correct, which
/// the variant loops of the other tests check); `Auto` on a CPU adapter skips it for products
/// too small to fill a few of its workgroups.
#[test]
fn large_block_selection() {
    let rt = testing::runtime();
    let large = opts(Variant::RegBlockLarge, (false, false));
    let general = "matmul::regblock";
    for (case, o, want) in [
        (Case::new(64, 64, 64, (false, false)), &large, LARGE),
        // K not a multiple of 4, N not a multiple of 4, transposes.
        (Case::new(64, 64, 66, (false, false)), &large, general),
        (Case::new(64, 66, 64, (false, false)), &large, general),
        // A stored [K, M] with M a multiple of 4: the trans_a entry, any K.
        (
            Case::new(64, 64, 64, (true, false)),
            &opts(Variant::RegBlockLarge, (true, false)),
            LARGE_TA,
        ),
        (
            Case::new(64, 64, 67, (true, false)),
            &opts(Variant::RegBlockLarge, (true, false)),
            LARGE_TA,
        ),
        // trans_a with M or N not a multiple of 4, or with trans_b.
        (
            Case::new(66, 64, 64, (true, false)),
            &opts(Variant::RegBlockLarge, (true, false)),
            general,
        ),
        (
            Case::new(64, 66, 64, (true, false)),
            &opts(Variant::RegBlockLarge, (true, false)),
            general,
        ),
        (
            Case::new(64, 64, 64, (true, true)),
            &opts(Variant::RegBlockLarge, (true, true)),
            general,
        ),
        (
            Case::new(64, 64, 64, (false, true)),
            &opts(Variant::RegBlockLarge, (false, true)),
            general,
        ),
        // The plain variant never takes it.
        (
            Case::new(512, 512, 64, (false, false)),
            &opts(Variant::RegBlock, (false, false)),
            general,
        ),
    ] {
        assert_eq!(entries(rt, &case, o), [want], "{case:?} {o:?}");
    }
    if rt.caps().is_cpu {
        let auto = opts(Variant::Auto, (false, false));
        // 1 × 1 workgroups of 192×128: too few; 2 × 2: enough; a batch of 4 counts too.
        let small = Case::new(192, 128, 64, (false, false));
        assert_eq!(entries(rt, &small, &auto), ["matmul::regblock"]);
        let big = Case::new(193, 132, 64, (false, false));
        assert_eq!(entries(rt, &big, &auto), [LARGE]);
        let batched = Case::new(192, 128, 64, (false, false)).batched(&[4], &[4]);
        assert_eq!(entries(rt, &batched, &auto), [LARGE]);
        let auto_ta = opts(Variant::Auto, (true, false));
        let small = Case::new(192, 128, 64, (true, false));
        assert_eq!(entries(rt, &small, &auto_ta), ["matmul::regblock"]);
        let big = Case::new(196, 132, 63, (true, false));
        assert_eq!(entries(rt, &big, &auto_ta), [LARGE_TA]);
        let batched = Case::new(192, 128, 64, (true, false)).batched(&[4], &[]);
        assert_eq!(entries(rt, &batched, &auto_ta), [LARGE_TA]);
    }
}

/// The large kernel through the chunked launch paths: rows of A, the reduction (in multiples
/// of 4) and batches split at a 4 KiB binding cap, so operands are bound at offsets. (Row-major
/// B is split along K first, down to single rows, before its columns: such column chunks have
/// K = 1 and run `regblock`.)
#[test]
fn large_block_chunked() {
    let rt = testing::runtime();
    for case in [
        Case::new(300, 20, 64, (false, false)),
        Case::new(40, 36, 200, (false, false)),
        Case::new(20, 12, 16, (false, false)).batched(&[7], &[7]),
    ] {
        let o = MatmulOptions {
            activation: Activation::Gelu,
            alpha: 0.75,
            beta: 0.5,
            max_binding: Some(4096),
            ..opts(Variant::RegBlockLarge, (false, false))
        };
        let e = entries(rt, &case, &o);
        assert!(e.len() >= 2, "{case:?}: not split");
        assert!(e.iter().any(|x| x == LARGE), "{case:?}: {e:?}");
        check_forward(rt, &case, &o, true, true);
    }
}

/// The 24×16 `trans_a` kernel (A stored [K, M]) on shapes it accepts: the narrowest M and N
/// (4), K = 1 and K not a multiple of 4, sizes past its 192×128 tile in both directions and not
/// multiples of it, batches broadcast on either side, and the whole epilogue.
#[test]
fn large_block_trans_a_shapes_batches_and_epilogue() {
    let rt = testing::runtime();
    let t = (true, false);
    let shapes = [
        (4, 4, 1),
        (4, 132, 3),
        (8, 4, 5),
        (196, 132, 7),
        (200, 260, 36),
        (388, 20, 1),
        (64, 516, 21),
    ];
    let leads: [(&[usize], &[usize]); 4] =
        [(&[], &[]), (&[3], &[]), (&[], &[3]), (&[2, 2], &[2, 2])];
    let o = opts(Variant::RegBlockLarge, t);
    for (m, n, k) in shapes {
        for (la, lb) in leads {
            let case = Case::new(m, n, k, t).batched(la, lb);
            let e = entries(rt, &case, &o);
            assert!(e.iter().all(|x| x == LARGE_TA), "{case:?}: {e:?}");
            check_forward(rt, &case, &o, false, false);
        }
    }
    for act in [Activation::None, Activation::Relu, Activation::Gelu] {
        for (alpha, beta) in [(1.0, 0.0), (0.5, 0.75), (-1.5, 1.0)] {
            let o = MatmulOptions {
                alpha,
                beta,
                activation: act,
                ..opts(Variant::RegBlockLarge, t)
            };
            let case = Case::new(196, 136, 23, t).batched(&[2], &[]);
            assert!(entries(rt, &case, &o).iter().all(|x| x == LARGE_TA));
            check_forward(rt, &case, &o, true, true);
            check_forward(rt, &case, &o, false, false);
        }
    }
}

/// The `trans_a` kernel through the chunked launch paths (4 KiB binding cap: k chunks of odd
/// length, rows, batches), and a reduction longer than one llvmpipe invocation may loop over
/// (`CPU_LOOP_ITERATIONS`), which CPU adapters split into accumulating launches.
#[test]
fn large_block_trans_a_chunked_and_long_k() {
    let rt = testing::runtime();
    let t = (true, false);
    for case in [
        Case::new(300, 20, 64, t),
        Case::new(40, 36, 200, t),
        Case::new(20, 12, 16, t).batched(&[7], &[7]),
    ] {
        let o = MatmulOptions {
            activation: Activation::Gelu,
            alpha: 0.75,
            beta: 0.5,
            max_binding: Some(4096),
            ..opts(Variant::RegBlockLarge, t)
        };
        let e = entries(rt, &case, &o);
        assert!(e.len() >= 2, "{case:?}: not split");
        assert!(e.iter().any(|x| x == LARGE_TA), "{case:?}: {e:?}");
        check_forward(rt, &case, &o, true, true);
    }
    let case = Case::new(8, 4, 70001, t);
    let o = MatmulOptions {
        activation: Activation::Relu,
        beta: 0.5,
        ..opts(Variant::RegBlockLarge, t)
    };
    let e = entries(rt, &case, &o);
    if rt.caps().is_cpu {
        assert_eq!(e, [LARGE_TA, LARGE_TA]);
    }
    check_forward(rt, &case, &o, true, true);
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
fn fused_epilogue_bias_activation_alpha_beta_preact() {
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

/// With the binding limit capped at 4 KiB, small problems split over batches, rows, columns
/// and the reduction; K-splits must still add the bias once and apply the activation once.
#[test]
fn chunked_launches_match_reference() {
    let rt = testing::runtime();
    let cases = [
        // C and A large: rows split.
        Case::new(300, 10, 12, (false, false)),
        // A transposed: split along K (rows of the stored A).
        Case::new(40, 8, 200, (true, false)),
        // B large and row-major: split along K.
        Case::new(6, 30, 100, (false, false)),
        // B transposed and large: split along N.
        Case::new(5, 120, 40, (false, true)),
        // C rows wider than the limit: split along N.
        Case::new(3, 1500, 2, (true, true)),
        // Batches.
        Case::new(20, 12, 16, (false, false)).batched(&[7], &[7]),
        Case::new(20, 12, 16, (true, true)).batched(&[1], &[5]),
    ];
    for variant in VARIANTS {
        for case in &cases {
            let o = MatmulOptions {
                activation: Activation::Gelu,
                alpha: 0.75,
                beta: 0.5,
                max_binding: Some(4096),
                ..opts(variant, (case.trans_a, case.trans_b))
            };
            check_forward(rt, case, &o, true, true);
        }
    }
}

/// Every chunked case really is split (the previous test would pass without chunking too).
#[test]
fn chunk_planner_splits_and_respects_limit() {
    let rt = testing::runtime();
    let a = rt.empty(&[40, 200], DType::F32).unwrap();
    let b = rt.empty(&[200, 8], DType::F32).unwrap();
    let c = rt.empty(&[40, 8], DType::F32).unwrap();
    let o = MatmulOptions {
        trans_a: true,
        variant: Variant::RegBlock,
        max_binding: Some(4096),
        ..Default::default()
    };
    let a_t = a.reshape(&[200, 40]).unwrap();
    let d = matmul_into(rt, &a_t, &b, None, &c, &o).unwrap();
    assert!(d.len() >= 2, "{} launches", d.len());
    let o = MatmulOptions {
        max_binding: None,
        ..o
    };
    assert_eq!(matmul_into(rt, &a_t, &b, None, &c, &o).unwrap().len(), 1);
}

#[test]
fn errors_name_the_op_and_shapes() {
    let rt = testing::runtime();
    let a = rt.empty(&[2, 3, 4], DType::F32).unwrap();
    let b = rt.empty(&[5, 6], DType::F32).unwrap();
    let err = matmul(rt, &a, &b, None, &Default::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("matmul") && err.contains("[2, 3, 4]") && err.contains("[5, 6]"),
        "{err}"
    );

    let b = rt.empty(&[3, 4, 6], DType::F32).unwrap();
    let err = matmul(rt, &a, &b, None, &Default::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("batch") && err.contains("[3, 4, 6]"), "{err}");

    let b = rt.empty(&[4, 6], DType::F32).unwrap();
    let bias = rt.empty(&[5], DType::F32).unwrap();
    let err = matmul(rt, &a, &b, Some(&bias), &Default::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("bias") && err.contains("[5]") && err.contains("[6]"),
        "{err}"
    );

    let out = rt.empty(&[3, 6], DType::F32).unwrap();
    let err = matmul_into(rt, &a, &b, None, &out, &Default::default())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("[3, 6]") && err.contains("[2, 3, 6]"), "{err}");

    let u = rt.upload_u32(&[0; 12], &[3, 4]).unwrap();
    let err = matmul(rt, &u, &b, None, &Default::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("U32"), "{err}");

    let sq = rt.empty(&[4, 4], DType::F32).unwrap();
    let err = matmul_into(rt, &sq, &sq, None, &sq, &Default::default())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("output") && err.contains("A"), "{err}");

    let o = MatmulOptions {
        beta: 1.0,
        ..Default::default()
    };
    assert!(matmul(rt, &a, &b, None, &o).is_err());
}

#[test]
fn operands_past_the_binding_limit() {
    let rt = testing::runtime();
    let words = (rt.caps().max_storage_binding / 4) as usize;
    let seed = testing::seed();
    let mut rng = testing::rng(seed);
    let long = words / 1024 + 16; // K such that a [1024, K] matrix is just past the limit
    let cases = [
        Case::new(1024, 8, long, (false, false)),
        Case::new(8, 1024, long, (false, false)),
        Case::new(8, 1024, long, (false, true)),
        Case::new(words / 8192 + 4, 8192, 1, (false, false)),
    ];
    for case in cases {
        let (sa, sb, sc) = (case.a_shape(), case.b_shape(), case.c_shape());
        let a = testing::uniform(&mut rng, numel(&sa), -1.0, 1.0);
        let b = testing::uniform(&mut rng, numel(&sb), -1.0, 1.0);
        let ta = rt.upload(&a, &sa).unwrap();
        let tb = rt.upload(&b, &sb).unwrap();
        let out = nan_tensor(rt, &sc);
        let o = opts(Variant::Auto, (case.trans_a, case.trans_b));
        let d = matmul_into(rt, &ta, &tb, None, &out, &o).unwrap();
        assert!(d.len() >= 2, "{case:?}: not split");
        rt.run(&d);
        let got = rt.download(&out).unwrap();
        let (n, k) = (case.n, case.k);
        let total = case.m * n;
        let mut idx: Vec<usize> = (0..total).step_by(13).collect();
        idx.extend(0..total.min(200));
        idx.extend(total.saturating_sub(200)..total);
        let (mut want, mut sampled) = (Vec::new(), Vec::new());
        for &i in &idx {
            let (r, c) = (i / n, i % n);
            let dot: f64 = (0..k)
                .map(|j| {
                    let bv = if case.trans_b {
                        b[c * k + j]
                    } else {
                        b[j * n + c]
                    };
                    a[r * k + j] as f64 * bv as f64
                })
                .sum();
            want.push(dot as f32);
            sampled.push(got[i]);
        }
        // A sum of K ≈ 33k f32 products drifts by about sqrt(K)·2^-24 ≈ 1e-5 relative.
        assert_close(&format!("{case:?}"), seed, &sampled, &want, 5e-5);
    }
}

/// Ad-hoc timing for tuning: `M2F_PROBE="m n k variant ta tb" cargo test --release --lib probe -- --ignored --nocapture`.
#[test]
#[ignore]
fn probe() {
    let rt = testing::runtime();
    let spec = std::env::var("M2F_PROBE").unwrap_or("1024 1024 1024 regblock 0 0".into());
    let f: Vec<&str> = spec.split_whitespace().collect();
    let (m, n, k): (usize, usize, usize) = (
        f[0].parse().unwrap(),
        f[1].parse().unwrap(),
        f[2].parse().unwrap(),
    );
    let variant = match f[3] {
        "regblock" => Variant::RegBlock,
        "large" => Variant::RegBlockLarge,
        "auto" => Variant::Auto,
        "tiled" => Variant::Tiled,
        _ => Variant::Naive,
    };
    let t = (f[4] == "1", f[5] == "1");
    let case = Case::new(m, n, k, t);
    let ta = rt.full(&case.a_shape(), 0.5).unwrap();
    let tb = rt.full(&case.b_shape(), 0.25).unwrap();
    let out = rt.empty(&case.c_shape(), DType::F32).unwrap();
    let o = opts(variant, t);
    // CPU time of the whole process (all lavapipe threads) from /proc, in seconds: on a shared
    // machine it is a steadier measure than wall time. clean-equivalent = FLOP / (cpu / cores).
    let cpu = || -> f64 {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let f: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
            + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
        ticks / 100.0
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let flop = 2.0 * (m * n * k) as f64;
    let d = matmul_into(rt, &ta, &tb, None, &out, &o).unwrap();
    rt.run(&d);
    rt.sync().unwrap();
    for _ in 0..3 {
        let reps = 3;
        let (t0, c0) = (std::time::Instant::now(), cpu());
        for _ in 0..reps {
            rt.run(&d);
            rt.sync().unwrap();
        }
        let wall = t0.elapsed().as_secs_f64() / reps as f64;
        let cpu_s = (cpu() - c0) / reps as f64;
        eprintln!(
            "{spec}: {} launches, wall {wall:.3} s = {:.2} GFLOP/s; cpu {cpu_s:.3} s -> clean-equivalent {:.2} GFLOP/s",
            d.len(),
            flop / wall / 1e9,
            flop / (cpu_s / cores) / 1e9
        );
    }
}
