//! The texel-view entries (`texel.rs`), tall (32×64 tiles), wide (20×128) and small (8×64): each layout on
//! shapes off its tile, batches broadcast on either side, the whole epilogue, chunked and
//! split-K launches, long K, and what `Auto` runs on a CPU adapter.

use super::*;

const LEADS: [(&[usize], &[usize]); 4] = [(&[], &[]), (&[3], &[]), (&[], &[3]), (&[2, 2], &[2, 2])];

/// The three texel variants and the entries they run per layout (nn, ta, tb).
const SIZES: [(Variant, [&str; 3]); 3] = [
    (Variant::Texel, [TEXEL_NN, TEXEL_TA, TEXEL_TB]),
    (
        Variant::TexelWide,
        [TEXEL_NN_WIDE, TEXEL_TA_WIDE, TEXEL_TB_WIDE],
    ),
    (Variant::TexelSmall, [TEXEL_NN8, TEXEL_TA8, TEXEL_TB8]),
];

/// Every layout the texel entries take, on shapes they accept; every launch must run `want`.
#[test]
fn texel_entries_shapes_batches_and_epilogue() {
    let rt = testing::runtime();
    for (variant, [nn, ta, tb]) in SIZES {
        let layouts = [
            (
                (false, false),
                nn,
                [(1, 4, 4), (33, 68, 8), (65, 132, 12), (7, 4, 36)],
            ),
            (
                (true, false),
                ta,
                [(4, 4, 1), (36, 68, 7), (68, 132, 13), (100, 8, 5)],
            ),
            (
                (false, true),
                tb,
                [(1, 1, 4), (33, 65, 8), (65, 132, 12), (100, 7, 36)],
            ),
        ];
        for (t, want, shapes) in layouts {
            let o = opts(variant, t);
            for (m, n, k) in shapes {
                for (la, lb) in LEADS {
                    let case = Case::new(m, n, k, t).batched(la, lb);
                    let (e, _) = check_forward_split(rt, &case, &o, true, false, true);
                    // The entries store whole texels of C: with N not a multiple of 4 the
                    // product runs into rows padded to one (a scratch the caller keeps, as
                    // for split-K) and is copied out.
                    let want: &[&str] = match n % 4 {
                        0 => &[want],
                        _ => &[want, "copy::main"],
                    };
                    assert_eq!(e, want, "{case:?}");
                }
            }
            for act in [Activation::None, Activation::Relu, Activation::Gelu] {
                for (alpha, beta) in [(1.0, 0.0), (0.5, 0.75), (-1.5, 1.0)] {
                    let o = MatmulOptions {
                        alpha,
                        beta,
                        activation: act,
                        ..opts(variant, t)
                    };
                    let case = Case::new(68, 72, 24, t).batched(&[2], &[]);
                    let flags = (true, true, true, false);
                    let (e, _) = check_forward_seeded(rt, &case, &o, flags, testing::seed());
                    assert!(e.iter().all(|x| x == want), "{case:?}: {e:?}");
                }
            }
        }
    }
}

/// Layouts the texel entries do not take (K, N or M not multiples of 4 where they step by 4, both
/// operands transposed) run the buffer entries, still correct.
#[test]
fn texel_falls_back_outside_its_layouts() {
    let rt = testing::runtime();
    for (case, want) in [
        (Case::new(64, 64, 66, (false, false)), "matmul::regblock"),
        (Case::new(64, 66, 64, (false, false)), "matmul::regblock"),
        (Case::new(66, 64, 64, (true, false)), "matmul::regblock"),
        (Case::new(64, 64, 64, (true, true)), "matmul::regblock"),
        (Case::new(64, 64, 66, (false, true)), "matmul::regblock"),
    ] {
        for (variant, _) in SIZES {
            let o = opts(variant, (case.trans_a, case.trans_b));
            let (e, _) = check_forward_split(rt, &case, &o, true, false, false);
            assert_eq!(e, [want], "{case:?}");
        }
    }
    // A `tb` product with N not a multiple of 4 cannot run into padded rows (see `padded_c`)
    // where it reads C (beta), or for a caller that keeps no scratch (`matmul_into`, which would
    // drop the padded rows before its dispatches run): the buffer entry.
    let case = Case::new(64, 66, 64, (false, true));
    let tb = opts(Variant::TexelSmall, (false, true));
    let o = MatmulOptions { beta: 0.5, ..tb };
    let (e, _) = check_forward_split(rt, &case, &o, true, false, true);
    assert_eq!(e, ["matmul::regblock_vec_tb"], "{case:?}");
    let (e, _) = check_forward_split(rt, &case, &tb, true, false, false);
    assert_eq!(e, ["matmul::regblock_vec_tb"], "{case:?}");
}

/// Chunked launches (4 KiB binding cap: operands bound at offsets, the view holds only the
/// bound range), split-K (slices side by side, then `splitk_sum`) and a reduction longer than
/// one launch may run on llvmpipe.
#[test]
fn texel_chunked_split_and_long_k() {
    let rt = testing::runtime();
    for (variant, [nn, ..]) in SIZES {
        for t in [(false, false), (true, false), (false, true)] {
            for case in [Case::new(300, 20, 64, t), Case::new(40, 36, 200, t)] {
                let o = MatmulOptions {
                    activation: Activation::Gelu,
                    alpha: 0.75,
                    beta: 0.5,
                    max_binding: Some(4096),
                    ..opts(variant, t)
                };
                let (e, _) = check_forward_split(rt, &case, &o, true, true, false);
                assert!(e.len() >= 2, "{case:?}: not split: {e:?}");
                assert!(
                    e.iter().any(|x| x.starts_with("matmul_texel")),
                    "{case:?}: {e:?}"
                );
            }
            let o = MatmulOptions {
                split_k: Some(4),
                ..opts(variant, t)
            };
            let case = Case::new(36, 64, 1024, t);
            let (e, _) = check_forward_split(rt, &case, &o, true, false, true);
            assert!(
                e.first().is_some_and(|x| x.starts_with("matmul_texel")),
                "{e:?}"
            );
            assert_eq!(e.last().map(String::as_str), Some(SPLIT_SUM), "{e:?}");
        }
        // Past MAX_K_PER_LAUNCH: accumulating launches (C read back with beta 1).
        let k = MAX_K_PER_LAUNCH as usize + 8;
        let case = Case::new(4, 8, k, (false, false));
        let o = MatmulOptions {
            split_k: Some(1),
            ..opts(variant, (false, false))
        };
        let (e, _) = check_forward_split(rt, &case, &o, true, false, false);
        assert!(e.len() >= 2 && e.iter().all(|x| x == nn), "{e:?}");
    }
}

/// On a CPU adapter `Auto` runs the large texel entries for products in their layouts from
/// `LARGE_MIN_FLOPS` up (fewer workgroups than the 24×16 entries need are fine), the tile with
/// the least padded work (wide unless tall pads clearly less), and the small ones below; under
/// the GPU policy it never does.
#[test]
fn auto_picks_texel_on_cpu_adapters() {
    let rt = testing::runtime();
    let cpu = rt.info().device_type == wgpu::DeviceType::Cpu;
    let on_cpu = crate::ops::policy::policy(rt).cpu_shapes() && cpu;
    for (t, tall, wide, small_entry) in [
        ((false, false), TEXEL_NN, TEXEL_NN_WIDE, TEXEL_NN8),
        ((true, false), TEXEL_TA, TEXEL_TA_WIDE, TEXEL_TA8),
        ((false, true), TEXEL_TB, TEXEL_TB_WIDE, TEXEL_TB8),
    ] {
        let o = opts(Variant::Auto, t);
        // Each over 2^27 FLOPs. 100 rows: 5 wide row tiles against 4 tall ones of 32 (128 rows);
        // 288 columns: 5 tall column tiles (320) against 3 wide ones (384), 20% more work.
        for (m, n, k, want) in [(100, 128, 5248, wide), (192, 288, 1216, tall)] {
            let big = Case::new(m, n, k, t);
            let e = entries(rt, &big, &o);
            assert_eq!(e.iter().all(|x| x == want), on_cpu, "{big:?}: {e:?}");
        }
        // Under 2^27 FLOPs: the 8-row entries (a fast JIT for small models).
        let small = Case::new(8, 8, 8, t);
        let e = entries(rt, &small, &o);
        assert_eq!(
            e.iter().all(|x| x == small_entry),
            on_cpu,
            "{small:?}: {e:?}"
        );
    }
    let gpu = testing::gpu_policy_runtime();
    let e = entries(
        gpu,
        &Case::new(196, 132, 64, (false, false)),
        &opts(Variant::Auto, (false, false)),
    );
    assert!(e.iter().all(|x| !x.starts_with("matmul_texel")), "{e:?}");
}

/// A runtime opened with `compile_for_speed` (what `train` opens) runs products from 2^20 FLOPs
/// on the large texel tiles, where the default runtime keeps the 8-row ones up to 2^27.
#[test]
fn compile_for_speed_takes_large_tiles_for_small_products() {
    let rt = testing::runtime();
    let fast = Runtime::with_options(&crate::runtime::RuntimeOptions {
        compile_for_speed: true,
        ..crate::runtime::RuntimeOptions::from_env().unwrap()
    })
    .unwrap();
    let on_cpu = crate::ops::policy::policy(rt).cpu_shapes() && rt.caps().is_cpu;
    // 2·64·128·128 = 2^21 FLOPs; 2·16·16·16 = 2^13.
    for (t, small, large) in [
        ((false, false), TEXEL_NN8, [TEXEL_NN, TEXEL_NN_WIDE]),
        ((true, false), TEXEL_TA8, [TEXEL_TA, TEXEL_TA_WIDE]),
        ((false, true), TEXEL_TB8, [TEXEL_TB, TEXEL_TB_WIDE]),
    ] {
        let o = opts(Variant::Auto, t);
        let mid = Case::new(64, 128, 128, t);
        let (e, _) = check_forward_split(&fast, &mid, &o, true, false, false);
        let on_large = e.iter().all(|x| large.contains(&x.as_str()));
        assert_eq!(on_large, on_cpu, "{mid:?}: {e:?}");
        let e = entries(rt, &mid, &o);
        assert_eq!(e.iter().all(|x| x == small), on_cpu, "{mid:?}: {e:?}");
        let tiny = Case::new(16, 16, 16, t);
        let e = entries(&fast, &tiny, &o);
        assert_eq!(e.iter().all(|x| x == small), on_cpu, "{tiny:?}: {e:?}");
    }
}
