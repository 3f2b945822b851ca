//! Forward convolutions against the f64 reference: every path and register block.

use super::*;

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
