//! One forward of the Swin-T Mask2Former (official shape, random weights) at 800x1088, batch 1,
//! with a GPU-timestamp profile by op and by scope (depth 3), peak device memory and dispatch
//! count: `cargo run --release --example profile_model [-- HEIGHT WIDTH]`.
//!
//! Running at 800x1088 also shows the whole model fits lavapipe's 128 MiB storage-binding limit
//! (a tensor that cannot be chunked fails at compile or run with the node and op named).

use std::time::Instant;

use mask2former::graph::ProfileRow;
use mask2former::Runtime;

#[path = "../benches/model/common.rs"]
mod common;

fn table(title: &str, rows: &[ProfileRow], flops: Option<&common::Flops>) {
    println!("\n{title}");
    println!(
        "{:<56} {:>6} {:>11} {:>7} {:>9}",
        "name", "count", "time", "share", "GFLOP/s"
    );
    for r in rows {
        let rate = flops
            .and_then(|f| f.dense.get(&r.name))
            .map(|f| format!("{:>9.2}", f / r.time.as_secs_f64().max(1e-12) / 1e9))
            .unwrap_or_default();
        println!(
            "{:<56} {:>6} {:>8.1} ms {:>6.1}% {rate}",
            r.name,
            r.count,
            r.time.as_secs_f64() * 1e3,
            r.share * 100.0
        );
    }
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("usage: profile_model [HEIGHT WIDTH]"))
        .collect();
    let (h, w) = match args[..] {
        [] => (800, 1088),
        [h, w] => (h, w),
        _ => panic!("usage: profile_model [HEIGHT WIDTH]"),
    };
    let rt = Runtime::new().expect("a wgpu adapter (install mesa-vulkan-drivers for lavapipe)");
    println!("adapter: {}", rt.describe());
    let cfg = common::swin_tiny_config();

    let t0 = Instant::now();
    let built = common::build(&rt, &cfg, 1, h, w);
    println!(
        "1x3x{h}x{w}: compile + weights {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    let flops = common::count_flops(&built);
    common::print_flops(&flops);
    println!("plan: {}", built.exe.plan().stats());
    println!("dispatches per forward: {}", built.exe.dispatch_count());

    // The first forward pays lavapipe's pipeline JIT; the second is the steady-state time.
    for run in ["first (JIT)", "second"] {
        let t0 = Instant::now();
        let outs = built.forward();
        let dt = t0.elapsed().as_secs_f64();
        let bad = outs.iter().flatten().filter(|v| !v.is_finite()).count();
        println!(
            "{run} forward: {dt:.2} s wall, {:.2} GFLOP/s effective; {bad} non-finite outputs",
            flops.dense_total() / dt / 1e9
        );
    }
    let mem = rt.memory();
    println!(
        "device memory: peak {:.1} MiB live, {:.1} MiB allocated now",
        common::mib(mem.peak_bytes),
        common::mib(mem.allocated_bytes)
    );

    if !rt.caps().timestamps {
        println!("adapter has no timestamp queries: no profile");
        return;
    }
    let profile = built.exe.profile().expect("profile");
    println!(
        "\nprofiled forward: {:.2} s of GPU time in {} dispatches",
        profile.total().as_secs_f64(),
        profile.entries.len()
    );
    table("by op", &profile.by_op(), Some(&flops));
    table("by scope (depth 3)", &profile.by_scope(3), None);
    table("by kernel", &profile.by_kernel(), None);

    let mut slowest: Vec<_> = profile.entries.iter().collect();
    slowest.sort_by_key(|e| std::cmp::Reverse(e.time));
    println!("\nslowest dispatches");
    for e in slowest.into_iter().take(15) {
        let ms = e.time.as_secs_f64() * 1e3;
        println!("{:<24} {:<60} {ms:>8.1} ms  {}", e.op, e.scope, e.kernel);
    }
}
