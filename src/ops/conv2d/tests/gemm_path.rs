//! The im2col/GEMM path: forward and backward with chunking, and its chunk plan.

use super::*;

#[test]
fn gemm_forward_matches_reference_with_chunking() {
    let rt = testing::runtime();
    let seed = testing::seed();
    for c in cases().iter().filter(|c| c.o.groups == 1) {
        for cap in gemm_caps(c) {
            let o = Conv2dOptions {
                path: Path::Gemm,
                max_workspace: cap,
                ..c.o
            };
            run_forward(rt, seed, c, o);
        }
    }
}

#[test]
fn gemm_backward_matches_reference_with_chunking() {
    let rt = testing::runtime();
    let seed = testing::seed();
    for c in cases().iter().filter(|c| c.o.groups == 1) {
        for cap in gemm_caps(c) {
            let o = Conv2dOptions {
                path: Path::Gemm,
                max_workspace: cap,
                ..c.o
            };
            run_backward(rt, seed, c, o);
        }
    }
}

#[test]
fn gemm_portable_runtime() {
    let rt = testing::portable_runtime();
    let seed = testing::seed();
    for c in cases().iter().filter(|c| c.o.groups == 1).take(6) {
        let o = Conv2dOptions {
            path: Path::Gemm,
            ..c.o
        };
        run_forward(rt, seed, c, o);
        run_backward(rt, seed, c, o);
    }
}

/// The chunks cover every output row once and, for `col2im`, every input row from 0 to H
/// without gaps; rows an earlier chunk wrote are accumulated, never overwritten.
#[test]
fn gemm_plan_covers_rows() {
    for c in cases().iter().filter(|c| c.o.groups == 1) {
        let d = conv_dims(&c.x, &c.w, &c.o).unwrap();
        let k = c.w[1] * c.w[2] * c.w[3];
        for cap in [k * d.wo, k * d.wo * 3, k * d.ho * d.wo, usize::MAX] {
            let p = gemm::plan(&d, &c.o, cap);
            assert!(p.col <= cap.max(k * d.wo), "{} cap {cap}: {p:?}", c.name);
            let mut out_rows = vec![0; d.n * d.ho];
            let mut next_in = vec![0; d.n];
            for ch in &p.chunks {
                for n in ch.n0..ch.n0 + ch.nb {
                    for oy in ch.oy0..ch.oy0 + ch.rows {
                        out_rows[n * d.ho + oy] += 1;
                    }
                    if ch.nb > 1 || ch.rows == d.ho {
                        assert_eq!((ch.iy0, ch.iy1, ch.acc_below), (0, d.h, 0));
                    } else {
                        assert!(ch.iy0 <= next_in[n] && ch.acc_below == next_in[n]);
                        next_in[n] = ch.iy1;
                    }
                }
            }
            assert!(out_rows.iter().all(|&r| r == 1), "{} cap {cap}", c.name);
        }
    }
}

#[test]
fn gemm_errors_are_values() {
    let rt = testing::runtime();
    let x = rt.full(&[1, 4, 5, 5], 1.0).unwrap();
    let w = rt.full(&[6, 2, 3, 3], 1.0).unwrap();
    let out = rt.empty(&[1, 6, 3, 3], DType::F32).unwrap();
    let o = Conv2dOptions {
        path: Path::Gemm,
        ..Default::default()
    }
    .groups(2);
    let err = conv2d_into(rt, &x, &w, None, &out, &o)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("Gemm path") && err.contains("groups 2"),
        "{err}"
    );
    let implicit = Conv2dOptions {
        path: Path::Implicit,
        ..o
    };
    let err = conv2d_into(rt, &x, &w, None, &out, &implicit)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("Implicit path") && err.contains("groups 2"),
        "{err}"
    );
    // A 3×3 GEMM needs a workspace; a too-small one is refused.
    let w = rt.full(&[6, 4, 3, 3], 1.0).unwrap();
    let o = Conv2dOptions {
        path: Path::Gemm,
        ..Default::default()
    };
    let err = conv2d_into(rt, &x, &w, None, &out, &o)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("workspace"), "{err}");
    let small = Conv2dOptions {
        max_workspace: Some(4 * 36 * 3),
        ..o
    };
    let ws = conv2d_workspace(rt, x.shape(), w.shape(), &small).unwrap();
    let err = conv2d_with_workspace_into(rt, &x, &w, None, &out, ws.as_ref(), &o)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("workspace of"), "{err}");
}

/// The implicit GEMMs (the GPU path) forward and backward on every one-group case, on the CPU-
/// and GPU-policy runtimes.
#[test]
fn implicit_matches_reference() {
    let seed = testing::seed();
    for rt in [testing::runtime(), testing::gpu_policy_runtime()] {
        for c in cases().iter().filter(|c| c.o.groups == 1) {
            let o = Conv2dOptions {
                path: Path::Implicit,
                ..c.o
            };
            run_forward(rt, seed, c, o);
            run_backward(rt, seed, c, o);
        }
    }
}

/// Grids large enough for the 128-wide tile (≥ 132 workgroups of it), K a multiple of 4 (vec4
/// weight rows) and not (27 taps), channels off both tile edges, the weight gradient split-K.
#[test]
fn implicit_wide_tiles_and_split() {
    let seed = testing::seed();
    let d = Conv2dOptions::default();
    let cases = [
        Case {
            name: "3x3 pad 1, 128-wide tiles",
            x: [2, 12, 90, 97],
            w: [131, 12, 3, 3],
            o: d.padding(1),
            bias: true,
        },
        Case {
            name: "3x3 stride 2 dilation 2, 27 taps",
            x: [3, 3, 181, 190],
            w: [9, 3, 3, 3],
            o: Conv2dOptions {
                stride: [2, 1],
                dilation: [2, 2],
                padding: [1, 2],
                ..d
            },
            bias: false,
        },
    ];
    for rt in [testing::runtime(), testing::gpu_policy_runtime()] {
        for c in &cases {
            let dims = conv_dims(&c.x, &c.w, &c.o).unwrap();
            assert_eq!(implicit::tile_of(&dims), 128, "{}", c.name);
            // The weight gradient is split into several slices per image.
            let (ksplit, kslice) = implicit::dweight_split(&dims);
            assert!(
                ksplit > 1 && kslice % 8 == 0,
                "{}: {ksplit} x {kslice}",
                c.name
            );
            let o = Conv2dOptions {
                path: Path::Implicit,
                ..c.o
            };
            run_forward(rt, seed, c, o);
            run_backward(rt, seed, c, o);
        }
    }
}
