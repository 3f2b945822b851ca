//! GEMM throughput through `ops::matmul` (`Variant::Auto`, the adapter's own choice) at the
//! Swin-T Mask2Former's product shapes at 800×1216 and at 4096³, for `tools/gpu_check.sh`:
//! `cargo run --release --example gemm_shapes [-- --quick]` (`--quick`: 1024³ instead of 4096³
//! and 1/16 of the rows, for CPU adapters). Prints one line per shape: M, N, K, layout, median time, GFLOP/s.

use std::time::Instant;

use mask2former::ops::matmul::{matmul_into, MatmulOptions};
use mask2former::runtime::{DType, Runtime};

/// (name, M, N, K, trans_b): `nn.Linear` products run x·Wᵀ (B stored [N, K]).
const SHAPES: [(&str, usize, usize, usize, bool); 9] = [
    ("stage1 qkv (200x304 tokens, C 96)", 60800, 288, 96, true),
    ("stage1 mlp fc1", 60800, 384, 96, true),
    ("stage1 mlp fc2", 60800, 96, 384, true),
    (
        "stage3 mlp fc1 (50x76 tokens, C 384)",
        3800,
        1536,
        384,
        true,
    ),
    ("stage4 mlp fc2 (25x38 tokens, C 768)", 950, 768, 3072, true),
    (
        "pixel decoder ffn (3 levels, 1/8..1/32)",
        19950,
        1024,
        256,
        true,
    ),
    ("decoder ffn (100 queries)", 100, 2048, 256, true),
    ("mask product (100 x 200x304)", 100, 60800, 256, false),
    ("square", 4096, 4096, 4096, false),
];

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let rt = Runtime::new().expect("a wgpu adapter");
    println!("gemm on {}", rt.describe());
    for (name, m, n, k, tb) in SHAPES {
        let (m, n, k) = match (quick, name) {
            (true, "square") => (1024, 1024, 1024),
            // Rows cut to 1/16 (at least 100): a CPU adapter takes seconds per full product.
            (true, _) => ((m / 16).max(100), n, k),
            _ => (m, n, k),
        };
        let a = rt.full(&[m, k], 0.5).expect("a");
        let b_shape = if tb { [n, k] } else { [k, n] };
        let b = rt.full(&b_shape, 0.25).expect("b");
        let c = rt.empty(&[m, n], DType::F32).expect("c");
        let opts = MatmulOptions {
            trans_b: tb,
            ..Default::default()
        };
        let d = matmul_into(&rt, &a, &b, None, &c, &opts).expect("matmul");
        rt.run(&d);
        rt.sync().expect("sync");
        let mut times = Vec::new();
        for _ in 0..5 {
            let t0 = Instant::now();
            rt.run(&d);
            rt.sync().expect("sync");
            times.push(t0.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        let t = times[times.len() / 2];
        let kernels: Vec<&str> = d.iter().map(|x| x.label()).collect();
        println!(
            "{name:<42} {m:>6}x{n:<6}x{k:<5} {} {:>9.3} ms {:>8.1} GFLOP/s  {}",
            if tb { "A·Bᵀ" } else { "A·B " },
            t * 1e3,
            2.0 * (m * n * k) as f64 / t / 1e9,
            kernels.join(" + ")
        );
    }
}
