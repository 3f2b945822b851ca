//! Where a cold start goes: loads a model (default the bundled demo model), segments one image
//! twice with per-dispatch GPU timestamps, and prints per pipeline its creation time and its
//! first-run minus second-run time, which on lavapipe is the LLVM JIT of that pipeline (llvmpipe
//! compiles a compute pipeline's machine code in its first dispatch, or loads it from Mesa's
//! shader cache).
//!
//! `cargo run --release --example cold_start [-- MODEL_DIR IMAGE]`; measure cold with an empty
//! cache: `MESA_SHADER_CACHE_DIR=$(mktemp -d)` (or `MESA_SHADER_CACHE_DISABLE=true`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use mask2former::graph::Profile;
use mask2former::model::mask2former::Mask2Former;
use mask2former::model::preprocess::{preprocess, PreprocessConfig};
use mask2former::Runtime;

/// Summed GPU time per pipeline label.
fn per_kernel(p: &Profile) -> BTreeMap<String, Duration> {
    let mut m = BTreeMap::new();
    for e in &p.entries {
        *m.entry(e.kernel.clone()).or_default() += e.time;
    }
    m
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() -> anyhow::Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .map_or_else(|| root.join("assets/demo-model"), PathBuf::from);
    let image = args
        .next()
        .map_or_else(|| root.join("assets/demo.png"), PathBuf::from);

    let t0 = Instant::now();
    let rt = Runtime::new()?;
    println!(
        "adapter: {} ({:.2} s)",
        rt.describe(),
        t0.elapsed().as_secs_f64()
    );
    let mut model = Mask2Former::load(&rt, &dir)?;
    let pre = preprocess(
        &image::open(&image)?,
        &PreprocessConfig::for_model_dir(&dir).map_err(anyhow::Error::msg)?,
    );
    let (h, w) = (pre.height, pre.width);
    let t1 = Instant::now();
    let cold = model.profile(&pre.pixel_values, 1, h, w)?;
    let first = t1.elapsed();
    let t2 = Instant::now();
    let warm = model.profile(&pre.pixel_values, 1, h, w)?;
    let second = t2.elapsed();
    println!(
        "1x3x{h}x{w}: first run {:.2} s (graph compile, pipelines, weights, JIT), second {:.2} s; \
         total since start {:.2} s",
        first.as_secs_f64(),
        second.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );

    let compiles = rt.pipeline_compiles();
    let (cold, warm) = (per_kernel(&cold), per_kernel(&warm));
    let mut rows: Vec<(String, Duration, Duration, Duration)> = compiles
        .iter()
        .map(|c| {
            let run = warm.get(&c.label).copied().unwrap_or_default();
            let jit = cold
                .get(&c.label)
                .map_or(Duration::ZERO, |c| c.saturating_sub(run));
            (c.label.clone(), c.time, jit, run)
        })
        .collect();
    rows.sort_by_key(|r| std::cmp::Reverse(r.1 + r.2));
    let create: Duration = rows.iter().map(|r| r.1).sum();
    let jit: Duration = rows.iter().map(|r| r.2).sum();
    println!(
        "{} pipelines: creation {:.0} ms, first-dispatch JIT {:.0} ms",
        rows.len(),
        ms(create),
        ms(jit)
    );
    println!(
        "{:>10} {:>10} {:>10}  pipeline",
        "create ms", "JIT ms", "warm ms"
    );
    for (label, c, j, r) in rows {
        println!("{:>10.1} {:>10.1} {:>10.1}  {label}", ms(c), ms(j), ms(r));
    }
    Ok(())
}
