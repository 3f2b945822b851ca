//! Full-model forward of the Swin-T Mask2Former (official shape: embed 96, depths [2,2,6,2],
//! 100 queries, 133 labels, 6 encoder and 10 decoder layers) with random weights, batch 1, at
//! 384x384 and 800x1088: `cargo bench --bench model`.
//!
//! Prints per size the FLOP count, the plan's memory, the dispatch count and, after the timing,
//! the median forward time and effective GFLOP/s (dense FLOPs / wall time). A 1024³ matmul
//! through `ops::matmul` runs in the same process as the engine's reference rate.
//!
//! One forward takes seconds on lavapipe, so each size takes criterion's minimum of 10 samples
//! of one iteration each (flat sampling). `MODEL_BENCH_SIZES=384x384` (comma-separated
//! `HxW`) limits the sizes.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use mask2former::ops::matmul::{matmul_into, MatmulOptions};
use mask2former::runtime::{DType, Runtime};
use rand::{Rng, SeedableRng};

#[path = "model/common.rs"]
mod common;

const DEFAULT_SIZES: [(usize, usize); 2] = [(384, 384), (800, 1088)];

fn sizes() -> Vec<(usize, usize)> {
    let Ok(list) = std::env::var("MODEL_BENCH_SIZES") else {
        return DEFAULT_SIZES.to_vec();
    };
    list.split(',')
        .map(|s| {
            let (h, w) = s
                .trim()
                .split_once('x')
                .unwrap_or_else(|| panic!("MODEL_BENCH_SIZES: `{s}` is not HxW"));
            let parse = |v: &str| {
                v.parse::<usize>()
                    .unwrap_or_else(|_| panic!("MODEL_BENCH_SIZES: `{s}` is not HxW"))
            };
            (parse(h), parse(w))
        })
        .collect()
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn matmul_1024(c: &mut Criterion, rt: &Runtime) {
    const S: usize = 1024;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let data: Vec<f32> = (0..2 * S * S)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let a = rt.upload(&data[..S * S], &[S, S]).expect("upload a");
    let b = rt.upload(&data[S * S..], &[S, S]).expect("upload b");
    let out = rt.empty(&[S, S], DType::F32).expect("output");
    let dispatches =
        matmul_into(rt, &a, &b, None, &out, &MatmulOptions::default()).expect("matmul");
    rt.run(&dispatches);
    rt.sync().expect("sync");
    let flops = 2.0 * (S * S * S) as f64;
    let mut times = Vec::new();
    let mut group = c.benchmark_group("model");
    group.sample_size(10);
    group.throughput(Throughput::Elements(flops as u64));
    group.bench_function("matmul_1024", |bench| {
        bench.iter_custom(|iters| {
            let t0 = Instant::now();
            for _ in 0..iters {
                rt.run(&dispatches);
                rt.sync().expect("sync");
            }
            let dt = t0.elapsed();
            times.push(dt / iters as u32);
            dt
        })
    });
    group.finish();
    let m = median(&mut times);
    println!(
        "matmul 1024^3 (ops::matmul, Auto): median {:.1} ms, {:.2} GFLOP/s; load average {}",
        m.as_secs_f64() * 1e3,
        flops / m.as_secs_f64() / 1e9,
        load_average()
    );
}

fn model(c: &mut Criterion) {
    let rt = Runtime::new().expect("a wgpu adapter (install mesa-vulkan-drivers for lavapipe)");
    println!("adapter: {}", rt.describe());
    let cfg = common::swin_tiny_config();
    println!(
        "model: Swin-T Mask2Former from {}, {} parameters",
        common::CONFIG_PATH,
        mask2former::model::network::expected_keys(&cfg)
            .expect("the network builds")
            .iter()
            .map(|(_, s)| s.iter().product::<usize>())
            .sum::<usize>()
    );
    matmul_1024(c, &rt);
    for (h, w) in sizes() {
        let t0 = Instant::now();
        let built = common::build(&rt, &cfg, 1, h, w);
        let compile = t0.elapsed();
        let flops = common::count_flops(&built);
        println!(
            "--- 1x3x{h}x{w} (compile + weights {:.1} s)",
            compile.as_secs_f64()
        );
        common::print_flops(&flops);
        println!(
            "plan: {}; dispatches per forward: {}",
            built.exe.plan().stats(),
            built.exe.dispatch_count()
        );
        // The first run pays lavapipe's pipeline JIT; keep it out of the timing.
        let t0 = Instant::now();
        let outs = built.forward();
        println!(
            "first forward {:.2} s; peak device memory {:.1} MiB",
            t0.elapsed().as_secs_f64(),
            common::mib(rt.memory().peak_bytes)
        );
        assert!(
            outs.iter().flatten().all(|v| v.is_finite()),
            "non-finite output at {h}x{w}"
        );

        let dense = flops.dense_total();
        let mut times = Vec::new();
        let mut group = c.benchmark_group("model");
        group
            .sample_size(10)
            .sampling_mode(SamplingMode::Flat)
            .warm_up_time(Duration::from_millis(1))
            .measurement_time(Duration::from_secs(1))
            .throughput(Throughput::Elements(dense as u64));
        group.bench_function(format!("forward_{h}x{w}"), |bench| {
            bench.iter_custom(|iters| {
                let t0 = Instant::now();
                for _ in 0..iters {
                    std::hint::black_box(built.forward());
                }
                let dt = t0.elapsed();
                times.push(dt / iters as u32);
                dt
            })
        });
        group.finish();
        let m = median(&mut times);
        println!(
            "forward 1x3x{h}x{w}: median {:.2} s over {} timings, {:.2} GFLOP/s effective \
             ({:.1} dense GFLOP); load average {}",
            m.as_secs_f64(),
            times.len(),
            dense / m.as_secs_f64() / 1e9,
            dense / 1e9,
            load_average()
        );
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().without_plots();
    targets = model
}
criterion_main!(benches);
