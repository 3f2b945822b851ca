//! Binding-limit chunking, errors as values, and the ad-hoc tuning probe.

use super::*;

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
            // The residual is added once, by the last k chunk, to the chunk it belongs to.
            check_forward_seeded(rt, case, &o, (true, true, true, false), testing::seed());
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
        "gemm" => Variant::Gemm,
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
