//! Split-K: partial products over slices of K and the summing pass, for every kernel, against
//! the f64 reference; split and unsplit compared; the policy's choices on both kinds of shapes.

use super::*;
use crate::runtime::{KernelPolicy, RuntimeOptions};

/// A runtime whose `Auto` variants take the given policy's shapes (the loop budget stays the
/// adapter's).
fn forced(kernel_policy: KernelPolicy) -> Runtime {
    Runtime::with_options(&RuntimeOptions {
        kernel_policy,
        ..RuntimeOptions::default()
    })
    .unwrap()
}

/// Every variant and transpose combination with a forced split: K off the slice grid, sizes off
/// every tile grid, batches broadcast on either side, and the whole epilogue (bias, alpha,
/// beta·C, pre-activation, GELU, residual) applied once, in the summing pass.
#[test]
fn split_k_every_variant_and_layout() {
    let rt = testing::runtime();
    let shapes = [(1, 1, 37), (7, 13, 101), (65, 36, 260), (36, 20, 1001)];
    for variant in VARIANTS {
        for t in TRANS {
            for (m, n, k) in shapes {
                for (slices, la, lb) in [(3, &[][..], &[][..]), (7, &[2][..], &[][..])] {
                    let case = Case::new(m, n, k, t).batched(la, lb);
                    let o = MatmulOptions {
                        split_k: Some(slices),
                        ..opts(variant, t)
                    };
                    let (e, _) = check_forward_split(rt, &case, &o, false, false, true);
                    assert_eq!(e.last().map(|s| s.as_str()), Some(SPLIT_SUM), "{case:?}");
                }
            }
            let o = MatmulOptions {
                split_k: Some(4),
                alpha: -0.5,
                beta: 0.75,
                activation: Activation::Gelu,
                ..opts(variant, t)
            };
            let case = Case::new(66, 20, 300, t).batched(&[], &[2]);
            let flags = (true, true, true, true);
            let (e, _) = check_forward_seeded(rt, &case, &o, flags, testing::seed());
            assert_eq!(e.iter().filter(|x| *x == SPLIT_SUM).count(), 1, "{e:?}");
        }
    }
}

/// The same inputs split and unsplit agree (to rounding: the slices are summed in another
/// order), and a split through chunked launches (16 KiB binding cap) still matches the reference:
/// each chunk gets its own partials and summing pass, later k chunks accumulating into C.
#[test]
fn split_k_on_and_off_agree_and_chunk() {
    let rt = testing::runtime();
    for t in TRANS {
        let case = Case::new(40, 44, 2000, t);
        let o = |split| MatmulOptions {
            split_k: Some(split),
            activation: Activation::Relu,
            ..opts(Variant::RegBlockLarge, t)
        };
        let seed = testing::seed();
        let run =
            |split| check_forward_seeded(rt, &case, &o(split), (true, false, false, true), seed);
        let (e_off, off) = run(1);
        let (e_on, on) = run(8);
        assert!(!e_off.iter().any(|x| x == SPLIT_SUM), "{e_off:?}");
        assert!(e_on.iter().any(|x| x == SPLIT_SUM), "{e_on:?}");
        assert_close("split vs unsplit", seed, &on, &off, 1e-5);
        let chunked = MatmulOptions {
            max_binding: Some(16384),
            beta: 0.5,
            ..o(4)
        };
        let case = Case::new(4, 8, 2000, t);
        let (e, _) = check_forward_split(rt, &case, &chunked, true, true, true);
        assert!(e.iter().filter(|x| *x == SPLIT_SUM).count() >= 2, "{e:?}");
    }
}

/// `Auto` splits a weight-gradient-shaped product (few output tiles, long K) under both policies
/// and leaves products with enough tiles or a short K alone; on CPU adapters a split reduction
/// longer than one invocation's loop budget is chunked and still correct.
#[test]
fn split_k_policy_choices() {
    for (policy, entry) in [
        (KernelPolicy::Cpu, LARGE_TA),
        (KernelPolicy::Gpu, "matmul::gemm"),
    ] {
        let rt = &forced(policy);
        // CPU adapters run the texel form of the 24×16 entry: 96×96 pads to about as much work
        // in 20×128 tiles as in 32×64 ones, so the wide tile.
        let cpu_device = rt.info().device_type == wgpu::DeviceType::Cpu;
        let entry = match entry {
            LARGE_TA if cpu_device => TEXEL_TA_WIDE,
            e => e,
        };
        let auto = opts(Variant::Auto, (true, false));
        let grad = Case::new(96, 96, 8192, (true, false));
        let (e, _) = check_forward_split(rt, &grad, &auto, true, false, true);
        assert_eq!(e, [entry, SPLIT_SUM], "{policy:?}");
        // Short reduction: nothing to split. Many tiles: enough workgroups already.
        // (under split.rs's shortest slice on both: 256 k on CPUs, 64 on GPUs).
        let short = Case::new(96, 96, 100, (true, false));
        let (e, _) = check_forward_split(rt, &short, &auto, false, false, true);
        assert!(!e.iter().any(|x| x == SPLIT_SUM), "{policy:?} {e:?}");
        let wide = Case::new(2048, 2048, 2048, (true, false));
        let e = plan_of(rt, &wide, &auto);
        assert_eq!(e, 0, "{policy:?}");
        // Empty outputs plan no split (and launch nothing).
        for empty in [
            Case::new(0, 96, 8192, (true, false)),
            Case::new(96, 0, 8192, (true, false)),
        ] {
            assert_eq!(plan_of(rt, &empty, &auto), 0, "{policy:?} {empty:?}");
        }
    }
    let rt = testing::runtime();
    if crate::ops::policy::policy(rt).loop_budget.is_some() {
        let case = Case::new(32, 32, 70001, (true, false));
        let o = MatmulOptions {
            beta: 0.5,
            activation: Activation::Relu,
            ..opts(Variant::Auto, (true, false))
        };
        let (e, _) = check_forward_split(rt, &case, &o, true, true, true);
        assert!(e.iter().any(|x| x == SPLIT_SUM), "{e:?}");
    }
}

/// Elements of split-K scratch `Auto` plans for `case` (0: no split), without running it.
fn plan_of(rt: &Runtime, case: &Case, opts: &MatmulOptions) -> usize {
    let a = rt.empty(&case.a_shape(), DType::F32).unwrap();
    let b = rt.empty(&case.b_shape(), DType::F32).unwrap();
    let c = rt.empty(&case.c_shape(), DType::F32).unwrap();
    let (_, scratch) =
        forward_into("test", rt, &a, &b, &Epilogue::default(), &c, opts, true).unwrap();
    scratch.map_or(0, |t| t.numel())
}

/// Times (wall, median of 5 after a warm-up run) the training step's slow product shapes with
/// split-K off and on, and `trans_b` products on the 8×16 fallback and the 24×16 entry:
/// `cargo test --release --lib timing_matmul_split -- --ignored --nocapture` (docs/PERFORMANCE.md).
#[test]
#[ignore]
fn timing_matmul_split_k_and_trans_b() {
    let rt = testing::runtime();
    let time = |case: &Case, o: &MatmulOptions| -> (f64, Vec<String>) {
        let a = rt
            .upload(&vec![0.5; numel(&case.a_shape())], &case.a_shape())
            .unwrap();
        let b = rt
            .upload(&vec![0.25; numel(&case.b_shape())], &case.b_shape())
            .unwrap();
        let c = rt.empty(&case.c_shape(), DType::F32).unwrap();
        let (d, _s) =
            forward_into("timing", rt, &a, &b, &Epilogue::default(), &c, o, true).unwrap();
        rt.run(&d);
        rt.sync().unwrap();
        let mut ts: Vec<f64> = (0..5)
            .map(|_| {
                let t = std::time::Instant::now();
                rt.run(&d);
                rt.sync().unwrap();
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        ts.sort_by(f64::total_cmp);
        (ts[2], labels(&d))
    };
    let ta = (true, false);
    let tb = (false, true);
    // Weight gradients (Aᵀ·B, K = pixels): demo config, Swin-T 384² stage 1, pixel decoder; the
    // mask einsum's gradient (A·Bᵀ, K = H·W at 1/4 of 384², batch 2).
    let split_cases = [
        Case::new(64, 64, 672, ta),
        Case::new(32, 128, 2048, ta),
        Case::new(96, 384, 9216, ta),
        Case::new(256, 256, 3024, ta),
        Case::new(100, 256, 9216, tb).batched(&[2], &[2]),
    ];
    for case in &split_cases {
        let flop = 2.0 * (numel(&case.c_shape()) * case.k) as f64;
        for split in [Some(1), None] {
            let o = MatmulOptions {
                split_k: split,
                ..opts(Variant::Auto, (case.trans_a, case.trans_b))
            };
            let (ms, e) = time(case, &o);
            eprintln!(
                "{:?}×{}×{}×{} ta={} tb={} split={split:?}: {ms:.2} ms, {:.1} GFLOP/s {e:?}",
                case.lead_a,
                case.m,
                case.n,
                case.k,
                case.trans_a,
                case.trans_b,
                flop / ms / 1e6
            );
        }
    }
    for case in [
        Case::new(512, 512, 512, tb),
        Case::new(16, 64, 1024, tb).batched(&[16], &[16]),
    ] {
        let flop = 2.0 * (numel(&case.c_shape()) * case.k) as f64;
        for variant in [Variant::RegBlock, Variant::RegBlockLarge] {
            let o = MatmulOptions {
                split_k: Some(1),
                ..opts(variant, tb)
            };
            let (ms, e) = time(&case, &o);
            eprintln!(
                "{:?}×{}×{}×{} trans_b {variant:?}: {ms:.2} ms, {:.1} GFLOP/s {e:?}",
                case.lead_a,
                case.m,
                case.n,
                case.k,
                flop / ms / 1e6
            );
        }
    }
}
