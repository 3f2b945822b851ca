//! Host vs device post-processing time (panoptic, semantic, instance) for the demo model on
//! `assets/demo.png` and for random logits (100 queries, 20 confident, 133 classes) at an
//! 800×1216 network input and image, as docs/PERFORMANCE.md reports them.
//!
//! ```text
//! cargo run --release --example postprocess_bench -- [REPS] [panoptic]
//! ```
//! (`panoptic` skips the semantic timings, which take minutes at 800×1216 on lavapipe.)
//! Host: read the mask logits back, then `postprocess::{panoptic, semantic, instance}` (one CPU
//! thread). Device: the finiteness check and `postprocess::{panoptic,semantic,instance}_on_device`
//! (owner / label map, mask bits and counters read back). Instance results keep thing classes
//! only, as for a panoptic model. The network is not timed; the medians of REPS runs are printed.

use std::time::{Duration, Instant};

use mask2former::model::postprocess::{self, DeviceOutputs, PostprocessConfig, RawOutputs};
use mask2former::model::preprocess::{preprocess, PreprocessConfig};
use mask2former::model::Mask2Former;
use mask2former::ops::mask_argmax::{count_nonfinite, Sizes};
use mask2former::runtime::Tensor;
use mask2former::Runtime;
use rand::{Rng, SeedableRng};

fn median(mut f: impl FnMut(), reps: usize) -> Duration {
    let mut t: Vec<Duration> = (0..reps)
        .map(|_| {
            let t0 = Instant::now();
            f();
            t0.elapsed()
        })
        .collect();
    t.sort();
    t.get(reps / 2).copied().unwrap_or_default()
}

struct Case<'a> {
    name: &'a str,
    class: &'a [f32],
    c: usize,
    logits: &'a Tensor,
    sizes: Sizes,
}

fn bench(rt: &Runtime, case: &Case, reps: usize) {
    let q = case.logits.shape()[0];
    let cfg = PostprocessConfig::default();
    let is_thing = |l: u32| l < 80;
    let dev = DeviceOutputs {
        class_logits: case.class,
        num_classes_with_void: case.c,
        mask_logits: case.logits,
        sizes: case.sizes,
    };
    let read = median(|| drop(rt.download(case.logits).unwrap()), reps);
    let masks = rt.download(case.logits).unwrap();
    let raw = RawOutputs {
        class_logits: case.class,
        mask_logits: &masks,
        num_queries: q,
        num_classes_with_void: case.c,
        mask_size: case.sizes.mask,
        input_size: case.sizes.input,
        output_size: case.sizes.output,
    };
    let host_p = median(|| drop(postprocess::panoptic(&raw, &cfg, &is_thing)), reps);
    let semantic = std::env::args().nth(2).as_deref() != Some("panoptic");
    let reps_s = if semantic { reps } else { 0 };
    let host_s = median(|| drop(postprocess::semantic(&raw, &cfg)), reps_s);
    let check = median(
        || {
            pollster::block_on(count_nonfinite(rt, case.logits)).unwrap();
        },
        reps,
    );
    let dev_p = median(
        || {
            drop(
                pollster::block_on(postprocess::panoptic_on_device(rt, dev, &cfg, &is_thing))
                    .unwrap(),
            )
        },
        reps,
    );
    let dev_s = median(
        || drop(pollster::block_on(postprocess::semantic_on_device(rt, dev)).unwrap()),
        reps_s,
    );
    let thing: &dyn Fn(u32) -> bool = &is_thing;
    let host_i = median(
        || drop(postprocess::instance(&raw, &cfg, Some(thing))),
        reps,
    );
    let dev_i = median(
        || {
            drop(
                pollster::block_on(postprocess::instance_on_device(rt, dev, &cfg, Some(thing)))
                    .unwrap(),
            )
        },
        reps,
    );
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{}: logits [{q}, {}, {}] → {:?}\n  read back {:.1} ms; host panoptic {:.1} ms, semantic {:.1} ms, instance {:.1} ms\n  device check {:.1} ms; panoptic {:.1} ms, semantic {:.1} ms, instance {:.1} ms",
        case.name,
        case.sizes.mask.0,
        case.sizes.mask.1,
        case.sizes.output,
        ms(read),
        ms(host_p),
        ms(host_s),
        ms(host_i),
        ms(check),
        ms(dev_p),
        ms(dev_s),
        ms(dev_i)
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let reps: usize = std::env::args().nth(1).map_or(Ok(3), |s| s.parse())?;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let rt = Runtime::new()?;
    println!("{}", rt.describe());

    let dir = root.join("assets/demo-model");
    let mut model = Mask2Former::load(&rt, &dir)?;
    let pcfg = PreprocessConfig::for_model_dir(&dir)?;
    let pre = preprocess(&image::open(root.join("assets/demo.png"))?, &pcfg);
    let out = pollster::block_on(model.forward_on_device_async(
        &pre.pixel_values,
        1,
        pre.height,
        pre.width,
    ))?;
    let (h, w) = out.mask_size;
    let logits = out.mask_logits.reshape(&[out.num_queries, h, w])?;
    bench(
        &rt,
        &Case {
            name: "demo model, assets/demo.png",
            class: &out.class_logits,
            c: out.num_classes_with_void,
            logits: &logits,
            sizes: Sizes {
                mask: out.mask_size,
                input: (pre.height, pre.width),
                output: pre.original_size,
            },
        },
        reps,
    );

    let (q, k) = (100, 133);
    let sizes = Sizes {
        mask: (200, 304),
        input: (800, 1216),
        output: (800, 1216),
    };
    let mut g = rand::rngs::StdRng::seed_from_u64(7);
    let mut class: Vec<f32> = (0..q * (k + 1))
        .map(|_| g.random_range(-2.0..2.0))
        .collect();
    for j in 0..20 {
        class[j * (k + 1) + g.random_range(0..k)] = 9.0;
    }
    let masks: Vec<f32> = (0..q * 200 * 304)
        .map(|_| g.random_range(-8.0..8.0))
        .collect();
    let logits = rt.upload(&masks, &[q, 200, 304])?;
    bench(
        &rt,
        &Case {
            name: "random logits, 20 of 100 queries kept",
            class: &class,
            c: k + 1,
            logits: &logits,
            sizes,
        },
        reps,
    );
    Ok(())
}
