//! Timing of one checkpoint on one preprocessed input, for `tools/bench_side_by_side.py`: the
//! first run (graph compile, weights upload, pipeline JIT), then `--runs` forwards alone and
//! `--runs` end-to-end runs (forward + panoptic post-processing at the input size, as
//! transformers' `post_process_panoptic_segmentation` with `target_sizes` = the input size),
//! and the peak memory: process peak RSS (`VmHWM`; on a CPU adapter it includes device memory)
//! and the engine's peak of live device tensors.
//!
//! `cargo run --release --example bench_model -- --model DIR --pixel-values FILE [--runs N]`
//! prints one JSON object on the last line of stdout.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use mask2former::model::checkpoint::read_tensor;
use mask2former::model::preprocess::Preprocessed;
use mask2former::segment::{Segmenter, Task};
use mask2former::Runtime;

struct Args {
    model: PathBuf,
    pixel_values: PathBuf,
    runs: usize,
}

fn args() -> anyhow::Result<Args> {
    let mut a = std::env::args().skip(1);
    let (mut model, mut pixel_values, mut runs) = (None, None, 3);
    while let Some(flag) = a.next() {
        let mut value = || a.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--model" => model = Some(PathBuf::from(value()?)),
            "--pixel-values" => pixel_values = Some(PathBuf::from(value()?)),
            "--runs" => {
                let v = value()?;
                runs = v
                    .parse()
                    .ok()
                    .filter(|&r| r >= 1)
                    .with_context(|| format!("--runs {v}: must be a whole number ≥ 1"))?;
            }
            other => bail!("unknown flag {other} (--model DIR --pixel-values FILE [--runs N])"),
        }
    }
    Ok(Args {
        model: model.context("--model DIR is required")?,
        pixel_values: pixel_values.context("--pixel-values FILE is required")?,
        runs,
    })
}

/// Peak resident set size of this process in bytes (Linux; `None` elsewhere).
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let args = args()?;
    let rt = Runtime::new().context("opening a GPU adapter")?;
    println!("adapter: {}", rt.describe());
    let mut seg = Segmenter::load(&rt, &args.model)
        .with_context(|| format!("--model {}", args.model.display()))?;
    let t = read_tensor(&args.pixel_values, "pixel_values")
        .with_context(|| format!("--pixel-values {}", args.pixel_values.display()))?;
    let [1, 3, h, w] = t.shape[..] else {
        bail!(
            "--pixel-values {}: `pixel_values` must be [1, 3, H, W], found {:?}",
            args.pixel_values.display(),
            t.shape
        );
    };
    let pre = Preprocessed {
        pixel_values: t.data.clone(),
        height: h,
        width: w,
        original_size: (h, w),
    };

    let t0 = Instant::now();
    let raw = seg.forward(&pre.pixel_values, 1, h, w)?;
    let first = t0.elapsed().as_secs_f64();
    let segments = match seg.postprocess(&raw, 0, &pre, Task::Panoptic) {
        mask2former::segment::Segmentation::Panoptic(p) => p.segments.len(),
        _ => unreachable!("panoptic task"),
    };
    let (mut forward, mut end_to_end) = (Vec::new(), Vec::new());
    for _ in 0..args.runs {
        let t0 = Instant::now();
        seg.forward(&pre.pixel_values, 1, h, w)?;
        forward.push(t0.elapsed().as_secs_f64());
    }
    for _ in 0..args.runs {
        let t0 = Instant::now();
        let raw = seg.forward(&pre.pixel_values, 1, h, w)?;
        std::hint::black_box(seg.postprocess(&raw, 0, &pre, Task::Panoptic));
        end_to_end.push(t0.elapsed().as_secs_f64());
    }
    let json = serde_json::json!({
        "adapter": rt.info().name,
        "backend": format!("{:?}", rt.info().backend),
        "size": [h, w],
        "first_run_s": first,
        "forward_s": median(forward.clone()),
        "forward_all_s": forward,
        "end_to_end_s": median(end_to_end.clone()),
        "end_to_end_all_s": end_to_end,
        "segments": segments,
        "peak_rss_bytes": peak_rss(),
        "peak_device_bytes": rt.memory().peak_bytes,
    });
    println!("{json}");
    Ok(())
}
