//! One training step of the toy network (conv, window attention, deformable attention, masked
//! attention; forward, backward, gradient clipping and AdamW in one submit):
//! `cargo bench --bench train_step`. Prints the plan, the dispatch count per step and, where the
//! adapter has timestamps, the per-op GPU profile.

use criterion::{criterion_group, criterion_main, Criterion};
use mask2former::graph::{CompileOptions, Executable};
use mask2former::optim::{AdamW, AdamWConfig, GroupConfig};
use mask2former::Runtime;

#[path = "../tests/graph_toy/mod.rs"]
mod graph_toy;

fn train_step(c: &mut Criterion) {
    let rt = Runtime::new().expect("a wgpu adapter");
    let mut toy = graph_toy::toy(7);
    toy.g.backward(toy.loss).expect("backward");
    let mut exe = Executable::compile(&rt, &toy.g, &[toy.loss], &CompileOptions::training())
        .expect("compile");
    for (name, data) in &toy.params {
        exe.set_param(name, data).expect("param");
    }
    for (name, data) in &toy.inputs {
        exe.set_input(name, data).expect("input");
    }
    let graph_dispatches = exe.dispatch_count();
    let cfg = AdamWConfig {
        max_grad_norm: Some(1.0),
        ..AdamWConfig::default()
    };
    let mut opt = AdamW::attach(&mut exe, &cfg, &GroupConfig::mask2former()).expect("optimizer");
    println!("adapter: {}", rt.describe());
    println!("plan: {}", exe.plan().stats());
    println!(
        "dispatches per step: {} ({} graph + {} optimizer), one submit",
        exe.dispatch_count(),
        graph_dispatches,
        exe.dispatch_count() - graph_dispatches
    );
    // Warm up first: lavapipe compiles each pipeline on its first dispatch.
    for _ in 0..3 {
        opt.begin_step(1e-3);
        exe.run().expect("run");
    }
    rt.sync().expect("sync");
    if rt.caps().timestamps {
        opt.begin_step(1e-3);
        println!("{}", exe.profile().expect("profile"));
    }
    c.bench_function("toy_train_step", |b| {
        b.iter(|| {
            opt.begin_step(1e-3);
            exe.run().expect("run");
            rt.sync().expect("sync");
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).warm_up_time(std::time::Duration::from_secs(1));
    targets = train_step
}
criterion_main!(benches);
