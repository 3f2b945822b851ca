//! The 24×16 `regblock_vec` kernels (plain and `trans_a`): shapes, selection, chunking, long K.

use super::*;

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
    // Over ~80 lines: a table of launches and the entry each must run.
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
        // B stored [N, K] with K a multiple of 4: the trans_b entry, any M and N; other K fall back.
        (
            Case::new(64, 64, 64, (false, true)),
            &opts(Variant::RegBlockLarge, (false, true)),
            LARGE_TB,
        ),
        (
            Case::new(65, 63, 64, (false, true)),
            &opts(Variant::RegBlockLarge, (false, true)),
            LARGE_TB,
        ),
        (
            Case::new(64, 64, 66, (false, true)),
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
    // Where `Auto` prefers the texel entries (CPU adapters), `texel::auto_picks_texel_on_cpu_adapters`
    // checks what it runs; elsewhere under the CPU policy it picks among the buffer entries.
    let texel_preferred = rt.info().device_type == wgpu::DeviceType::Cpu;
    if crate::ops::policy::policy(rt).cpu_shapes() && !texel_preferred {
        let auto = opts(Variant::Auto, (false, false));
        // 1 × 1 workgroups of 192×128: too few; 2 × 2: enough; a batch of 4 counts too; and
        // only past LARGE_MIN_FLOPS (K sized to cross it: 2·193·132·2640 > 2^27).
        let small = Case::new(192, 128, 64, (false, false));
        assert_eq!(entries(rt, &small, &auto), ["matmul::regblock"]);
        let big = Case::new(193, 132, 2640, (false, false));
        assert_eq!(entries(rt, &big, &auto), [LARGE]);
        let cheap = Case::new(400, 264, 64, (false, false));
        const { assert!(2 * 400 * 264 * 64 < crate::ops::matmul::LARGE_MIN_FLOPS) };
        assert_eq!(entries(rt, &cheap, &auto), ["matmul::regblock"]);
        let batched = Case::new(192, 128, 688, (false, false)).batched(&[4], &[4]);
        assert_eq!(entries(rt, &batched, &auto), [LARGE]);
        let auto_ta = opts(Variant::Auto, (true, false));
        let small = Case::new(192, 128, 64, (true, false));
        assert_eq!(entries(rt, &small, &auto_ta), ["matmul::regblock"]);
        let big = Case::new(196, 132, 2643, (true, false));
        assert_eq!(entries(rt, &big, &auto_ta), [LARGE_TA]);
        let cheap = Case::new(400, 264, 63, (true, false));
        assert_eq!(entries(rt, &cheap, &auto_ta), ["matmul::regblock"]);
        let batched = Case::new(192, 128, 688, (true, false)).batched(&[4], &[]);
        assert_eq!(entries(rt, &batched, &auto_ta), [LARGE_TA]);
        let auto_tb = opts(Variant::Auto, (false, true));
        let small = Case::new(192, 128, 64, (false, true));
        assert_eq!(entries(rt, &small, &auto_tb), ["matmul::regblock"]);
        let big = Case::new(193, 129, 1352, (false, true)).batched(&[2], &[2]);
        assert_eq!(entries(rt, &big, &auto_tb), [LARGE_TB]);
    }
}

/// The 24×16 `trans_b` kernel (B stored [N, K]) on shapes it accepts: one-element M and N, K = 4,
/// sizes past its 192×128 tile in both directions and not multiples of it (nor of 4), batches
/// broadcast on either side, the whole epilogue, and chunked launches (4 KiB binding cap).
#[test]
fn large_block_trans_b_shapes_batches_epilogue_and_chunks() {
    let rt = testing::runtime();
    let t = (false, true);
    let shapes = [
        (1, 1, 4),
        (1, 131, 8),
        (7, 5, 12),
        (193, 133, 8),
        (200, 259, 36),
        (385, 21, 4),
    ];
    let leads: [(&[usize], &[usize]); 4] =
        [(&[], &[]), (&[3], &[]), (&[], &[3]), (&[2, 2], &[2, 2])];
    let o = opts(Variant::RegBlockLarge, t);
    for (m, n, k) in shapes {
        for (la, lb) in leads {
            let case = Case::new(m, n, k, t).batched(la, lb);
            let e = entries(rt, &case, &o);
            assert!(e.iter().all(|x| x == LARGE_TB), "{case:?}: {e:?}");
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
            let case = Case::new(197, 135, 24, t).batched(&[2], &[]);
            assert!(entries(rt, &case, &o).iter().all(|x| x == LARGE_TB));
            check_forward(rt, &case, &o, true, true);
            check_forward(rt, &case, &o, false, false);
        }
    }
    for case in [Case::new(300, 20, 64, t), Case::new(40, 36, 200, t)] {
        let o = MatmulOptions {
            activation: Activation::Gelu,
            alpha: 0.75,
            beta: 0.5,
            max_binding: Some(4096),
            ..opts(Variant::RegBlockLarge, t)
        };
        let e = entries(rt, &case, &o);
        assert!(e.len() >= 2, "{case:?}: not split");
        assert!(e.iter().any(|x| x == LARGE_TB), "{case:?}: {e:?}");
        check_forward(rt, &case, &o, true, true);
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
    if crate::ops::policy::policy(rt).loop_budget.is_some() {
        assert_eq!(e, [LARGE_TA, LARGE_TA]);
    }
    check_forward(rt, &case, &o, true, true);
}
