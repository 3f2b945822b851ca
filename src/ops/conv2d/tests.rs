use super::*;
use crate::testing::{self, assert_close};
use rand::Rng;

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&a| a as f64).collect()
}
fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&a| a as f32).collect()
}

fn opts(
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
    groups: usize,
) -> Conv2dOptions {
    Conv2dOptions {
        stride,
        padding,
        dilation,
        groups,
        ..Default::default()
    }
}

struct Case {
    name: &'static str,
    x: [usize; 4],
    w: [usize; 4],
    o: Conv2dOptions,
    bias: bool,
}

/// 1×1 (with and without groups, strided), 3×3 pad 1, Swin's 4×4/4 patch embedding, strides,
/// asymmetric padding and dilation, grouped and depthwise, one-element planes, a non-square
/// kernel, and channel/pixel counts that are not multiples of any block.
fn cases() -> Vec<Case> {
    let d = Conv2dOptions::default();
    vec![
        Case {
            name: "1x1",
            x: [2, 5, 3, 7],
            w: [6, 5, 1, 1],
            o: d,
            bias: true,
        },
        Case {
            name: "1x1 groups 3",
            x: [1, 6, 4, 5],
            w: [9, 2, 1, 1],
            o: d.groups(3),
            bias: false,
        },
        Case {
            name: "1x1 stride 2",
            x: [1, 3, 5, 6],
            w: [4, 3, 1, 1],
            o: d.stride(2),
            bias: true,
        },
        Case {
            name: "3x3 pad 1",
            x: [1, 7, 9, 11],
            w: [9, 7, 3, 3],
            o: d.padding(1),
            bias: false,
        },
        Case {
            name: "3x3 pad 1 wide",
            x: [2, 16, 6, 21],
            w: [20, 16, 3, 3],
            o: d.padding(1),
            bias: true,
        },
        Case {
            name: "4x4 stride 4",
            x: [2, 3, 16, 20],
            w: [10, 3, 4, 4],
            o: d.stride(4),
            bias: true,
        },
        Case {
            name: "stride/pad/dilation mix",
            x: [2, 4, 10, 9],
            w: [5, 4, 3, 3],
            o: opts([2, 1], [2, 1], [2, 3], 1),
            bias: true,
        },
        Case {
            name: "groups 2",
            x: [1, 6, 5, 5],
            w: [4, 3, 3, 3],
            o: d.padding(1).groups(2),
            bias: true,
        },
        Case {
            name: "depthwise",
            x: [2, 5, 6, 7],
            w: [5, 1, 3, 3],
            o: d.padding(1).groups(5),
            bias: true,
        },
        Case {
            name: "1x1 plane 1x1",
            x: [3, 4, 1, 1],
            w: [3, 4, 1, 1],
            o: d,
            bias: true,
        },
        Case {
            name: "3x3 on 1x1 plane",
            x: [1, 2, 1, 1],
            w: [3, 2, 3, 3],
            o: d.padding(1),
            bias: false,
        },
        Case {
            name: "1x2 kernel",
            x: [1, 3, 4, 5],
            w: [2, 3, 1, 2],
            o: d,
            bias: false,
        },
        Case {
            name: "stride 3 no pad",
            x: [1, 2, 8, 7],
            w: [3, 2, 2, 2],
            o: d.stride(3),
            bias: true,
        },
        // Rows with W % 4 == 0 reach the vec4-strip kernel: several channel blocks, a ragged
        // last one, 5x5, a 3x1 kernel, padding 4, a padded 1x1, groups, a plane of 12 (one
        // and a half pixel blocks).
        Case {
            name: "v4 3x3 pad 1",
            x: [2, 19, 5, 12],
            w: [21, 19, 3, 3],
            o: d.padding(1),
            bias: true,
        },
        Case {
            name: "v4 5x5 pad 2",
            x: [1, 3, 6, 8],
            w: [5, 3, 5, 5],
            o: d.padding(2),
            bias: false,
        },
        Case {
            name: "v4 3x1 kernel",
            x: [1, 4, 7, 4],
            w: [3, 4, 3, 1],
            o: opts([1, 1], [1, 0], [1, 1], 1),
            bias: true,
        },
        Case {
            name: "v4 pad 4",
            x: [1, 2, 3, 8],
            w: [2, 2, 3, 3],
            o: opts([1, 1], [0, 4], [1, 1], 1),
            bias: true,
        },
        Case {
            name: "v4 padded 1x1",
            x: [1, 3, 4, 8],
            w: [4, 3, 1, 1],
            o: d.padding(1),
            bias: true,
        },
        Case {
            name: "v4 groups 2",
            x: [1, 6, 4, 8],
            w: [4, 3, 3, 3],
            o: d.padding(1).groups(2),
            bias: true,
        },
        Case {
            name: "1x1 plane 12",
            x: [1, 5, 3, 4],
            w: [7, 5, 1, 1],
            o: d,
            bias: true,
        },
    ]
}

const BLOCKS: &[[u32; 2]] = &[[16, 8], [8, 8], [4, 4], [3, 5], [1, 1]];

struct Data {
    x: Vec<f32>,
    w: Vec<f32>,
    b: Vec<f32>,
}

fn data(seed: u64, c: &Case) -> Data {
    let mut rng = testing::rng(seed);
    Data {
        x: testing::uniform(&mut rng, c.x.iter().product(), -1.0, 1.0),
        w: testing::uniform(&mut rng, c.w.iter().product(), -1.0, 1.0),
        b: testing::uniform(&mut rng, c.w[0], -1.0, 1.0),
    }
}

fn run_forward(rt: &Runtime, seed: u64, c: &Case, o: Conv2dOptions) {
    let label = format!("conv2d {} x{:?} w{:?} {o:?}", c.name, c.x, c.w);
    let d = conv_dims(&c.x, &c.w, &o).unwrap();
    let v = data(seed, c);
    let bias64 = f64s(&v.b);
    let want = reference::forward(
        &f64s(&v.x),
        &f64s(&v.w),
        c.bias.then_some(&bias64[..]),
        &d,
        &o,
    );
    let x = rt.upload(&v.x, &c.x).unwrap();
    let w = rt.upload(&v.w, &c.w).unwrap();
    let b = rt.upload(&v.b, &[c.w[0]]).unwrap();
    let out = rt.full(&d.out_shape(), f32::NAN).unwrap();
    let ws = conv2d_workspace(rt, &c.x, &c.w, &o).unwrap();
    let bias = c.bias.then_some(&b);
    rt.run(&conv2d_with_workspace_into(rt, &x, &w, bias, &out, ws.as_ref(), &o).unwrap());
    assert_close(
        &label,
        seed,
        &rt.download(&out).unwrap(),
        &f32s(&want),
        1e-5,
    );
}

#[test]
fn forward_matches_reference_all_paths_and_blocks() {
    let rt = testing::runtime();
    let seed = testing::seed();
    for c in cases() {
        let d = conv_dims(&c.x, &c.w, &c.o).unwrap();
        let mut paths = vec![Path::Auto, Path::Direct];
        if is_pointwise(&d, &c.o) {
            paths.push(Path::Pointwise);
        }
        if is_pointwise(&d, &c.o) && (d.h * d.w).is_multiple_of(4) {
            paths.push(Path::PointwiseVec4);
        }
        if is_direct_v4(&d, &c.o) {
            paths.push(Path::DirectVec4);
        }
        for path in paths {
            for &b in BLOCKS {
                let o = Conv2dOptions {
                    path,
                    block: Some(b),
                    ..c.o
                };
                run_forward(rt, seed, &c, o);
            }
        }
        // The adapter's default block.
        run_forward(rt, seed, &c, c.o);
    }
}

#[test]
fn forward_portable_runtime() {
    let rt = testing::portable_runtime();
    let seed = testing::seed();
    for c in cases().iter().take(6) {
        run_forward(rt, seed, c, c.o);
    }
}

/// More invocations than one grid dimension can launch (65535 workgroups of 64).
#[test]
fn forward_past_one_grid_dimension() {
    let rt = testing::runtime();
    let seed = testing::seed();
    let c = Case {
        name: "big plane",
        x: [1, 1, 2100, 2100],
        w: [1, 1, 1, 1],
        o: Conv2dOptions::default(),
        bias: true,
    };
    for path in [Path::Direct, Path::Pointwise] {
        let o = Conv2dOptions {
            path,
            block: Some([1, 1]),
            ..c.o
        };
        run_forward(rt, seed, &c, o);
    }
}

#[test]
fn shape_errors_are_values() {
    let rt = testing::runtime();
    let x = rt.full(&[1, 4, 5, 5], 1.0).unwrap();
    let w = rt.full(&[6, 3, 3, 3], 1.0).unwrap();
    let err = conv2d(rt, &x, &w, None, &Conv2dOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("conv2d") && err.contains("[6, 3, 3, 3]"),
        "{err}"
    );
    let w = rt.full(&[6, 2, 3, 3], 1.0).unwrap();
    let err = conv2d(rt, &x, &w, None, &Conv2dOptions::default().groups(3))
        .unwrap_err()
        .to_string();
    assert!(err.contains("groups = 3"), "{err}");
    let w = rt.full(&[6, 4, 7, 7], 1.0).unwrap();
    let err = conv2d(rt, &x, &w, None, &Conv2dOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("does not fit"), "{err}");
    let w = rt.full(&[6, 4, 3, 3], 1.0).unwrap();
    let o = Conv2dOptions {
        path: Path::Pointwise,
        ..Default::default()
    };
    let err = conv2d(rt, &x, &w, None, &o).unwrap_err().to_string();
    assert!(err.contains("Pointwise path"), "{err}");
    let b = rt.full(&[5], 1.0).unwrap();
    let err = conv2d(rt, &x, &w, Some(&b), &Conv2dOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("bias") && err.contains("[5]"), "{err}");
}

/// An output past the storage-binding limit is a clear `TooLarge` error, not a crash.
#[test]
fn output_past_binding_limit_is_too_large() {
    let rt = testing::runtime();
    let limit = rt.caps().max_storage_binding as usize;
    // 1 input channel, enough output channels that out exceeds the limit; nothing runs.
    let plane = 1024 * 1024;
    let cout = limit / (plane * 4) + 1;
    let x = rt.empty(&[1, 1, 1024, 1024], DType::F32).unwrap();
    let w = rt.full(&[cout, 1, 1, 1], 1.0).unwrap();
    let err = conv2d(rt, &x, &w, None, &Conv2dOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("conv2d") && err.contains("out"), "{err}");
}

#[test]
fn reference_backward_matches_finite_differences() {
    let seed = testing::seed();
    let mut rng = testing::rng(seed);
    let d0 = Conv2dOptions::default();
    let small = [
        ([1usize, 2, 4, 5], [3usize, 2, 3, 3], d0.padding(1)),
        ([2, 4, 5, 4], [2, 2, 2, 3], opts([2, 1], [1, 2], [1, 2], 2)),
        (
            [1, 3, 4, 4],
            [3, 1, 3, 3],
            d0.padding(1).groups(3).stride(2),
        ),
        ([2, 2, 1, 1], [3, 2, 1, 1], d0),
    ];
    for (xs, ws, o) in small {
        let d = conv_dims(&xs, &ws, &o).unwrap();
        let x = f64s(&testing::uniform(&mut rng, xs.iter().product(), -1.0, 1.0));
        let w = f64s(&testing::uniform(&mut rng, ws.iter().product(), -1.0, 1.0));
        let b = f64s(&testing::uniform(&mut rng, ws[0], -1.0, 1.0));
        let dy = f64s(&testing::uniform(
            &mut rng,
            d.out_shape().iter().product(),
            -1.0,
            1.0,
        ));
        // L = Σ dy · out, so ∂L/∂θ is what backward returns for upstream gradient dy.
        let loss = |x: &[f64], w: &[f64], b: &[f64]| -> f64 {
            let out = reference::forward(x, w, Some(b), &d, &o);
            out.iter().zip(&dy).map(|(a, b)| a * b).sum()
        };
        let (dx, dw, db) = reference::backward(&dy, &x, &w, &d, &o);
        let h = 1e-6;
        let fd = |v: &[f64], i: usize, f: &dyn Fn(&[f64]) -> f64| {
            let (mut p, mut m) = (v.to_vec(), v.to_vec());
            p[i] += h;
            m[i] -= h;
            (f(&p) - f(&m)) / (2.0 * h)
        };
        let check = |name: &str, analytic: &[f64], numeric: Vec<f64>| {
            let num: f64 = analytic
                .iter()
                .zip(&numeric)
                .map(|(a, n)| (a - n).powi(2))
                .sum();
            let den: f64 = numeric.iter().map(|n| n * n).sum();
            let err = (num / den.max(1e-20)).sqrt();
            assert!(
                err < 1e-6,
                "{name} x{xs:?} w{ws:?} {o:?}: rel err {err:e} (seed {seed})"
            );
        };
        check(
            "dx",
            &dx,
            (0..x.len())
                .map(|i| fd(&x, i, &|v| loss(v, &w, &b)))
                .collect(),
        );
        check(
            "dw",
            &dw,
            (0..w.len())
                .map(|i| fd(&w, i, &|v| loss(&x, v, &b)))
                .collect(),
        );
        check(
            "db",
            &db,
            (0..b.len())
                .map(|i| fd(&b, i, &|v| loss(&x, &w, v)))
                .collect(),
        );
    }
}

fn run_backward(rt: &Runtime, seed: u64, c: &Case, o: Conv2dOptions) {
    let label = format!("conv2d_backward {} x{:?} w{:?} {o:?}", c.name, c.x, c.w);
    let d = conv_dims(&c.x, &c.w, &o).unwrap();
    let v = data(seed, c);
    let mut rng = testing::rng(seed ^ 0xd1);
    let dyv = testing::uniform(&mut rng, d.out_shape().iter().product(), -1.0, 1.0);
    let (want_dx, want_dw, want_db) =
        reference::backward(&f64s(&dyv), &f64s(&v.x), &f64s(&v.w), &d, &o);
    let x = rt.upload(&v.x, &c.x).unwrap();
    let w = rt.upload(&v.w, &c.w).unwrap();
    let dy = rt.upload(&dyv, &d.out_shape()).unwrap();
    let dx = rt.full(&c.x, f32::NAN).unwrap();
    let dw = rt.full(&c.w, f32::NAN).unwrap();
    let db = rt.full(&[c.w[0]], f32::NAN).unwrap();
    let dbias = c.bias.then_some(&db);
    let ws = conv2d_backward_workspace(rt, &c.x, &c.w, &o).unwrap();
    rt.run(
        &conv2d_backward_with_workspace_into(
            rt,
            &dy,
            &x,
            &w,
            Some(&dx),
            &dw,
            dbias,
            ws.as_ref(),
            &o,
        )
        .unwrap(),
    );
    assert_close(
        &format!("{label} dx"),
        seed,
        &rt.download(&dx).unwrap(),
        &f32s(&want_dx),
        1e-5,
    );
    assert_close(
        &format!("{label} dweight"),
        seed,
        &rt.download(&dw).unwrap(),
        &f32s(&want_dw),
        1e-5,
    );
    if c.bias {
        assert_close(
            &format!("{label} dbias"),
            seed,
            &rt.download(&db).unwrap(),
            &f32s(&want_db),
            1e-5,
        );
    }
}

#[test]
fn backward_matches_reference_all_blocks() {
    let rt = testing::runtime();
    let seed = testing::seed();
    for c in cases() {
        for &b in BLOCKS {
            let o = Conv2dOptions {
                block: Some(b),
                ..c.o
            };
            run_backward(rt, seed, &c, o);
        }
        run_backward(rt, seed, &c, c.o);
    }
}

#[test]
fn backward_portable_runtime_and_convenience_entry() {
    let rt = testing::portable_runtime();
    let seed = testing::seed();
    for c in cases().iter().skip(3).take(4) {
        run_backward(rt, seed, c, c.o);
    }
    let x = rt.full(&[1, 2, 3, 3], 1.0).unwrap();
    let w = rt.full(&[4, 2, 3, 3], 0.5).unwrap();
    let dy = rt.full(&[1, 4, 3, 3], 1.0).unwrap();
    let o = Conv2dOptions::default().padding(1);
    let g = conv2d_backward(rt, &dy, &x, &w, true, &o).unwrap();
    assert_eq!(g.dx.shape(), &[1, 2, 3, 3]);
    assert_eq!(g.dweight.shape(), &[4, 2, 3, 3]);
    // dbias = Σ dy over the 3×3 plane.
    assert_eq!(
        rt.download(g.dbias.as_ref().unwrap()).unwrap(),
        vec![9.0; 4]
    );
    let g = conv2d_backward(rt, &dy, &x, &w, false, &o).unwrap();
    assert!(g.dbias.is_none());
}

/// The direct kernels' weight gradient (grouped convolutions take them) over more output pixels
/// than one llvmpipe invocation may loop over (`CPU_LOOP_ITERATIONS`): 260² = 67600 per image.
/// The CPU path splits the reduction into launches over row ranges that add up.
#[test]
fn direct_weight_gradient_past_the_cpu_loop_budget() {
    let rt = testing::runtime();
    let seed = testing::seed();
    let (xs, ws) = ([1usize, 4, 260, 260], [4usize, 2, 3, 3]);
    let o = Conv2dOptions::default().padding(1).groups(2);
    let d = conv_dims(&xs, &ws, &o).unwrap();
    let mut rng = testing::rng(seed);
    let xv = testing::uniform(&mut rng, xs.iter().product(), -1.0, 1.0);
    let wv = testing::uniform(&mut rng, ws.iter().product(), -1.0, 1.0);
    let dyv = testing::uniform(&mut rng, d.out_shape().iter().product(), -1.0, 1.0);
    let (_, want_dw, _) = reference::backward(&f64s(&dyv), &f64s(&xv), &f64s(&wv), &d, &o);
    let x = rt.upload(&xv, &xs).unwrap();
    let w = rt.upload(&wv, &ws).unwrap();
    let dy = rt.upload(&dyv, &d.out_shape()).unwrap();
    let dw = rt.full(&ws, f32::NAN).unwrap();
    rt.run(&conv2d_backward_into(rt, &dy, &x, &w, None, &dw, None, &o).unwrap());
    assert_close(
        "conv2d_backward direct dweight past the loop budget",
        seed,
        &rt.download(&dw).unwrap(),
        &f32s(&want_dw),
        1e-5,
    );
}

/// Bias gradients summed over more pixels than one llvmpipe invocation may loop over
/// (`CPU_LOOP_ITERATIONS`): Swin's patch embedding at a 1024² crop, batch 2, sums 2·256² pixels
/// per channel. db_sum stopped early there; the CPU path now sums in launches under the budget.
/// dy holds multiples of 1/64 so the sums are exact in f32 in any order. (dweight reduces over
/// the same pixels in the GEMM path, the matmul kernels' own loops; checked by their tests.)
#[test]
fn bias_gradient_past_the_cpu_loop_budget() {
    let rt = testing::runtime();
    let seed = testing::seed();
    let (xs, ws) = ([2usize, 4, 180, 184], [4usize, 4, 1, 1]);
    let o = Conv2dOptions::default();
    let d = conv_dims(&xs, &ws, &o).unwrap();
    let mut rng = testing::rng(seed);
    let xv = testing::uniform(&mut rng, xs.iter().product(), -1.0, 1.0);
    let wv = testing::uniform(&mut rng, ws.iter().product(), -1.0, 1.0);
    let dyv: Vec<f32> = (0..d.out_shape().iter().product::<usize>())
        .map(|_| rng.random_range(-64i32..=64) as f32 / 64.0)
        .collect();
    let (_, _, want_db) = reference::backward(&f64s(&dyv), &f64s(&xv), &f64s(&wv), &d, &o);
    let x = rt.upload(&xv, &xs).unwrap();
    let w = rt.upload(&wv, &ws).unwrap();
    let dy = rt.upload(&dyv, &d.out_shape()).unwrap();
    let dw = rt.full(&ws, f32::NAN).unwrap();
    let db = rt.full(&[ws[0]], f32::NAN).unwrap();
    let wsp = conv2d_backward_workspace(rt, &xs, &ws, &o).unwrap();
    rt.run(
        &conv2d_backward_with_workspace_into(
            rt,
            &dy,
            &x,
            &w,
            None,
            &dw,
            Some(&db),
            wsp.as_ref(),
            &o,
        )
        .unwrap(),
    );
    assert_close(
        "conv2d_backward dbias past the loop budget",
        seed,
        &rt.download(&db).unwrap(),
        &f32s(&want_db),
        1e-5,
    );
}

/// Column-matrix caps (bytes) that force one chunk, chunks of two images (a ragged last one
/// for N = 3), chunks of one image, chunks of a few output rows and chunks of one row.
fn gemm_caps(c: &Case) -> Vec<Option<usize>> {
    let d = conv_dims(&c.x, &c.w, &c.o).unwrap();
    let row = c.w[1] * c.w[2] * c.w[3] * d.wo * 4;
    vec![
        None,
        Some(row * d.ho * 2),
        Some(row * d.ho),
        Some(row * 2 + 4),
        Some(row),
    ]
}

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

/// Quick throughput report for the pixel decoder's convolutions (not an assertion):
/// `cargo test --release --lib ops::conv2d::tests::timing -- --ignored --nocapture`.
/// `M2F_CONV_BLOCK=c,p` overrides the register block.
#[test]
#[ignore]
fn timing_fpn_convs() {
    let rt = testing::runtime();
    let block = std::env::var("M2F_CONV_BLOCK").ok().map(|s| {
        let v: Vec<u32> = s.split(',').map(|t| t.parse().unwrap()).collect();
        [v[0], v[1]]
    });
    // `M2F_CONV_PATH=direct` forces the general kernel for comparison.
    // `M2F_CONV_PATH=gemm` forces the im2col + GEMM path (Auto takes it where it applies).
    let path = match std::env::var("M2F_CONV_PATH").as_deref() {
        Ok("direct") => Path::Direct,
        Ok("gemm") => Path::Gemm,
        _ => Path::Auto,
    };
    let d0 = Conv2dOptions {
        block,
        path,
        ..Default::default()
    };
    let setups = [
        (
            "3x3 256->256 pad 1 @ 1x256x100x136",
            [1, 256, 100, 136],
            [256, 256, 3, 3],
            d0.padding(1),
        ),
        (
            "1x1 256->256 @ 1x256x100x136",
            [1, 256, 100, 136],
            [256, 256, 1, 1],
            d0,
        ),
        (
            "4x4/4 3->96 @ 1x3x384x384",
            [1, 3, 384, 384],
            [96, 3, 4, 4],
            d0.stride(4),
        ),
    ];
    // `M2F_CONV_CASE=i` times only setup i (the machine is shared; keep runs short).
    let only: Option<usize> = std::env::var("M2F_CONV_CASE")
        .ok()
        .and_then(|v| v.parse().ok());
    for (i, (name, xs, ws, o)) in setups.into_iter().enumerate() {
        if only.is_some_and(|k| k != i) {
            continue;
        }
        let d = conv_dims(&xs, &ws, &o).unwrap();
        let x = rt.full(&xs, 0.5).unwrap();
        let w = rt.full(&ws, 0.01).unwrap();
        let out = rt.empty(&d.out_shape(), DType::F32).unwrap();
        let dx = rt.empty(&xs, DType::F32).unwrap();
        let dw = rt.empty(&ws, DType::F32).unwrap();
        let work = conv2d_workspace(rt, &xs, &ws, &o).unwrap();
        let fwd = conv2d_with_workspace_into(rt, &x, &w, None, &out, work.as_ref(), &o).unwrap();
        let wsb = conv2d_backward_workspace(rt, &xs, w.shape(), &o).unwrap();
        let bwd = conv2d_backward_with_workspace_into(
            rt,
            &out,
            &x,
            &w,
            Some(&dx),
            &dw,
            None,
            wsb.as_ref(),
            &o,
        )
        .unwrap();
        let flops = d.flops(o.groups);
        let fwd_only = std::env::var("M2F_CONV_FWD_ONLY").is_ok();
        for (label, ds) in [("forward", &fwd), ("backward dx+dw", &bwd)] {
            if fwd_only && label != "forward" {
                continue;
            }
            rt.run(ds); // warm-up: JIT and first-touch
            rt.sync().unwrap();
            let mut best = f64::INFINITY;
            for _ in 0..1 {
                let t = std::time::Instant::now();
                rt.run(ds);
                rt.sync().unwrap();
                best = best.min(t.elapsed().as_secs_f64());
            }
            // `M2F_CONV_PROFILE=1`: the time of every dispatch (im2col, GEMM, col2im, ...).
            if std::env::var("M2F_CONV_PROFILE").is_ok() {
                if let Ok(times) = rt.run_timed(ds) {
                    for (dsp, t) in ds.iter().zip(times) {
                        println!(
                            "  {} {:?}: {:.1} ms",
                            dsp.label(),
                            dsp.workgroups(),
                            t.as_secs_f64() * 1e3
                        );
                    }
                }
            }
            let f = if label == "forward" {
                flops
            } else {
                2.0 * flops
            };
            println!(
                "{name} {label}: {:.1} ms, {:.2} GFLOP/s (path {:?}, block {:?}, {})",
                best * 1e3,
                f / best / 1e9,
                o.path,
                o.block,
                rt.describe()
            );
        }
    }
}
