//! The GPU GEMM (`Variant::Gemm`, the GPU policy's default) against the former GPU kernel
//! (`Tiled`) at the model's product shapes (Swin-T Mask2Former at 800×1216, batch 1; one
//! weight gradient) and at 4096³ in the three layouts. Runs where `Auto` resolves to `Gemm`:
//! on GPUs, or with `M2F_KERNEL_POLICY=gpu` (then set `M2F_BENCH_GEMM_SMALL=1` on a CPU adapter to
//! skip the shapes over 20 GFLOP, which take minutes there). Both run through
//! `matmul_scratch_into`, as the graph does, so split-K applies where the policy splits.

use criterion::{BenchmarkId, Criterion, Throughput};
use mask2former::ops::matmul::{matmul_scratch_into, MatmulOptions, Variant};
use mask2former::runtime::{DType, Runtime};
use rand::{Rng, SeedableRng};

/// (name, M, N, K, trans_a, trans_b): an `nn.Linear` is NT (weights stored [out, in]), a weight
/// gradient TN.
const SHAPES: [(&str, usize, usize, usize, bool, bool); 12] = [
    ("swin_s1_fc1", 60800, 384, 96, false, true),
    ("swin_s4_fc2", 950, 768, 3072, false, true),
    ("pixdec_fc1", 19950, 1024, 256, false, true),
    ("pixdec_fc2", 19950, 256, 1024, false, true),
    ("fpn_conv3x3", 256, 14288, 2304, false, false),
    ("mask_einsum", 100, 60800, 256, false, false),
    ("dec_fc2", 100, 256, 2048, false, true),
    ("dec_q", 100, 256, 256, false, true),
    ("dw_swin_s1_qkv", 96, 96, 131072, true, false),
    ("nn_4096", 4096, 4096, 4096, false, false),
    ("nt_4096", 4096, 4096, 4096, false, true),
    ("tn_4096", 4096, 4096, 4096, true, false),
];

pub fn benches(c: &mut Criterion) {
    let rt = Runtime::new().expect("a wgpu adapter (install mesa-vulkan-drivers for lavapipe)");
    if Variant::Auto.resolve(&rt) != Variant::Gemm {
        eprintln!("gemm bench skipped: the CPU policy (set M2F_KERNEL_POLICY=gpu to run it)");
        return;
    }
    let small_only = std::env::var_os("M2F_BENCH_GEMM_SMALL").is_some();
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut group = c.benchmark_group("gemm");
    for (name, m, n, k, ta, tb) in SHAPES {
        let flop = 2 * (m * n * k) as u64;
        if small_only && flop > 20_000_000_000 {
            continue;
        }
        let mut upload = |rows: usize, cols: usize| {
            let data: Vec<f32> = (0..rows * cols)
                .map(|_| rng.random_range(-1.0..1.0))
                .collect();
            rt.upload(&data, &[rows, cols]).unwrap()
        };
        let a = if ta { upload(k, m) } else { upload(m, k) };
        let b = if tb { upload(n, k) } else { upload(k, n) };
        let out = rt.empty(&[m, n], DType::F32).unwrap();
        for variant in [Variant::Auto, Variant::Tiled] {
            let opts = MatmulOptions {
                trans_a: ta,
                trans_b: tb,
                variant,
                ..Default::default()
            };
            let (dispatches, _scratch) =
                matmul_scratch_into(&rt, &a, &b, None, &out, &opts).unwrap();
            // The first run pays the pipelines' compilation; keep it out of the timing.
            rt.run(&dispatches);
            rt.sync().unwrap();
            let label = if variant == Variant::Auto {
                "Gemm"
            } else {
                "Tiled"
            };
            group.throughput(Throughput::Elements(flop));
            group.bench_with_input(BenchmarkId::new(label, name), &name, |bench, _| {
                bench.iter(|| {
                    rt.run(&dispatches);
                    rt.sync().unwrap();
                })
            });
        }
    }
    group.finish();
}
