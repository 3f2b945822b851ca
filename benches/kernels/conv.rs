//! The pixel decoder's convolutions and Swin's patch embedding, forward and backward (dx and
//! dweight), through the launchers the graph uses (`*_with_workspace_into`):
//! - the FPN output 3×3 256→256 (padding 1) and a 1×1 256→256, at 1/8 of an 800×1088 input;
//! - the 4×4 / stride 4 patch embedding 3→96 at 384×384.
//!
//! Throughput is the forward's FLOPs (twice that for the backward's two products), so criterion's
//! elem/s column reads as FLOP/s. `M2F_CONV_PATH=direct|gemm|implicit` forces a path (`Auto`
//! otherwise); the 3×3 takes seconds a run on lavapipe.

use criterion::{BenchmarkId, Criterion, Throughput};
use mask2former::ops::conv2d::{
    conv2d_backward_with_workspace_into, conv2d_backward_workspace, conv2d_with_workspace_into,
    conv2d_workspace, conv_dims, Conv2dOptions, Path,
};
use mask2former::runtime::{DType, Runtime};

pub fn benches(c: &mut Criterion) {
    let rt = match Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("conv benches skipped: {e}");
            return;
        }
    };
    let path = match std::env::var("M2F_CONV_PATH").as_deref() {
        Ok("direct") => Path::Direct,
        Ok("gemm") => Path::Gemm,
        Ok("implicit") => Path::Implicit,
        _ => Path::Auto,
    };
    let o = Conv2dOptions {
        path,
        ..Default::default()
    };
    let setups = [
        (
            "fpn_3x3_256",
            [1, 256, 100, 136],
            [256, 256, 3, 3],
            o.padding(1),
        ),
        ("fpn_1x1_256", [1, 256, 100, 136], [256, 256, 1, 1], o),
        (
            "patch_embed_4x4",
            [1, 3, 384, 384],
            [96, 3, 4, 4],
            o.stride(4),
        ),
    ];
    let mut group = c.benchmark_group("conv2d");
    for (name, xs, ws, o) in setups {
        let d = conv_dims(&xs, &ws, &o).unwrap();
        let x = rt.full(&xs, 0.5).unwrap();
        let w = rt.full(&ws, 0.01).unwrap();
        let out = rt.empty(&d.out_shape(), DType::F32).unwrap();
        let dx = rt.empty(&xs, DType::F32).unwrap();
        let dw = rt.empty(&ws, DType::F32).unwrap();
        let work = conv2d_workspace(&rt, &xs, &ws, &o).unwrap();
        let fwd = conv2d_with_workspace_into(&rt, &x, &w, None, &out, work.as_ref(), &o).unwrap();
        let work_b = conv2d_backward_workspace(&rt, &xs, &ws, &o).unwrap();
        let bwd = conv2d_backward_with_workspace_into(
            &rt,
            &out,
            &x,
            &w,
            Some(&dx),
            &dw,
            None,
            work_b.as_ref(),
            &o,
        )
        .unwrap();
        let flops = d.flops(o.groups) as u64;
        for (label, ds, f) in [("forward", &fwd, flops), ("backward", &bwd, 2 * flops)] {
            group.throughput(Throughput::Elements(f));
            group.bench_function(BenchmarkId::new(name, label), |b| {
                b.iter(|| {
                    rt.run(ds);
                    rt.sync().unwrap();
                })
            });
        }
    }
    group.finish();
}
