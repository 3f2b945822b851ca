//! Matmul throughput (f32, square M = N = K) per kernel variant on the benchmark's adapter.
//! The variant the adapter picks (`Variant::Auto`) runs at 512, 1024 and 2048; on CPU adapters
//! (`RegBlockLarge`) the general `RegBlock` kernel runs at 1024 and the GPU kernel `Gemm` at
//! 512 for comparison, on GPUs `RegBlockLarge` at 512. Throughput is 2·M·N·K, so `thrpt` reads in FLOP/s.
//! Each iteration submits the recorded dispatches and waits for the device (`rt.sync()`).

use criterion::{BenchmarkId, Criterion, Throughput};
use mask2former::ops::matmul::{matmul_into, MatmulOptions, Variant};
use mask2former::runtime::{DType, Runtime};
use rand::{Rng, SeedableRng};

pub fn benches(c: &mut Criterion) {
    let rt = Runtime::new().expect("a wgpu adapter (install mesa-vulkan-drivers for lavapipe)");
    eprintln!("matmul bench on {}", rt.describe());
    let auto = Variant::Auto.resolve(&rt);
    let mut cases = vec![(auto, 512), (auto, 1024), (auto, 2048)];
    if auto == Variant::RegBlockLarge {
        // The general CPU kernel in the same minutes, and the GPU kernel.
        cases.extend([(Variant::RegBlock, 1024), (Variant::Gemm, 512)]);
    } else {
        cases.push((Variant::RegBlockLarge, 512));
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut group = c.benchmark_group("matmul");
    for (variant, s) in cases {
        let data: Vec<f32> = (0..2 * s * s)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let a = rt.upload(&data[..s * s], &[s, s]).unwrap();
        let b = rt.upload(&data[s * s..], &[s, s]).unwrap();
        let out = rt.empty(&[s, s], DType::F32).unwrap();
        // The adapter's own choice runs as `Auto` (its launch heuristics included).
        let opts = MatmulOptions {
            variant: if variant == auto {
                Variant::Auto
            } else {
                variant
            },
            ..Default::default()
        };
        let dispatches = matmul_into(&rt, &a, &b, None, &out, &opts).unwrap();
        // First run compiles nothing new but pays the JIT of the pipeline; keep it out of timing.
        rt.run(&dispatches);
        rt.sync().unwrap();
        group.throughput(Throughput::Elements(2 * (s * s * s) as u64));
        group.bench_with_input(
            BenchmarkId::new(format!("{variant:?}"), s),
            &s,
            |bench, _| {
                bench.iter(|| {
                    rt.run(&dispatches);
                    rt.sync().unwrap();
                })
            },
        );
    }
    group.finish();
}
