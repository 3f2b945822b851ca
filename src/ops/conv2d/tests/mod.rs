//! Conv2d kernels against the f64 reference on fresh random inputs: the shared cases and
//! helpers live here, the tests by concept in the submodules.

use super::*;
use crate::testing::{self, assert_close};
use rand::Rng;

mod backward;
mod errors;
mod forward;
mod gemm_path;

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
    // Over ~80 lines: one literal table of cases, a row each; a table reads better whole.
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
