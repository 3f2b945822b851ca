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

/// Quick throughput report for the pixel decoder's convolutions (not an assertion):
/// `cargo test --release --lib ops::conv2d::tests::timing -- --ignored --nocapture`.
/// `M2F_CONV_BLOCK=c,p` overrides the register block.
#[test]
#[ignore]
fn timing_fpn_convs() {
    // Over ~80 lines: an ignored timing report over a table of the FPN's convolutions.
    let rt = testing::runtime();
    let block = std::env::var("M2F_CONV_BLOCK").ok().map(|s| {
        let v: Vec<u32> = s.split(',').map(|t| t.parse().unwrap()).collect();
        [v[0], v[1]]
    });
    // `M2F_CONV_PATH=direct` forces the general kernel for comparison.
    // `M2F_CONV_PATH=gemm` forces the im2col + GEMM path (Auto takes it where it applies),
    // `M2F_CONV_PATH=implicit` the implicit GEMM (Auto's choice under the GPU policy).
    let path = match std::env::var("M2F_CONV_PATH").as_deref() {
        Ok("direct") => Path::Direct,
        Ok("gemm") => Path::Gemm,
        Ok("implicit") => Path::Implicit,
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
