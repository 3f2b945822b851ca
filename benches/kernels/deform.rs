//! Multi-scale deformable attention at Mask2Former's pixel-decoder sizes for a 384x384 input:
//! levels 48², 24², 12² (S = Lq = 3024), M = 8 heads, D = 32, L = 3, P = 4, N = 1.
//!
//! FLOP count (criterion's elem/s column reads as FLOP/s):
//! - forward: per (q, m, l, p, d), 4 corner multiply-adds plus the attention-weight
//!   multiply-add = 10 FLOP (the corner weights, computed once per (q, m, l, p), are not counted);
//! - backward: per (q, m, l, p, d), re-sampling the value (8), the location gradients over the 4
//!   corners (2 × 8), the weight gradient (2) and the 4 scattered value gradients (4 × 2) = 34 FLOP.
//!
//! Also the other sampling op at a size that matters: the final mask-logit upsample
//! [1, 100, 200, 272] → [1, 100, 800, 1088] (348 MB output, past lavapipe's 128 MiB binding, so
//! chunked), counted as 6 FLOP per output pixel (three lerps), and its gather backward at the same
//! count per output pixel.

use criterion::{Criterion, Throughput};
use mask2former::ops::deform_attn::{self, BackwardOptions, Gradients, Scatter, Variant};
use mask2former::ops::resample::{self, Resize};
use mask2former::{DType, Runtime};
use rand::{Rng, SeedableRng};

const SHAPES: [(usize, usize); 3] = [(48, 48), (24, 24), (12, 12)];
const M: usize = 8;
const D: usize = 32;
const P: usize = 4;

pub fn benches(c: &mut Criterion) {
    let rt = match Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("deform benches skipped: {e}");
            return;
        }
    };
    deform(c, &rt);
    upsample(c, &rt);
}

fn upsample(c: &mut Criterion, rt: &Runtime) {
    let (n, q, h, w) = (1, 100, 200, 272);
    let (oh, ow) = (4 * h, 4 * w);
    let mut rng = rand::rngs::StdRng::seed_from_u64(8);
    let x: Vec<f32> = (0..n * q * h * w)
        .map(|_| rng.random_range(-5.0..5.0))
        .collect();
    let x = rt.upload(&x, &[n, q, h, w]).unwrap();
    let y = rt.empty(&[n, q, oh, ow], DType::F32).unwrap();
    let mut g = c.benchmark_group("resample");
    g.throughput(Throughput::Elements(6 * (n * q * oh * ow) as u64));
    let ds = resample::bilinear_into(rt, &x, &y, Resize::To(oh, ow)).unwrap();
    g.bench_function("bilinear_up4_mask_logits", |b| {
        b.iter(|| {
            rt.run(&ds);
            rt.sync().unwrap();
        })
    });
    let ds = resample::bilinear_backward_into(rt, &y, &x, Resize::To(oh, ow)).unwrap();
    g.bench_function("bilinear_up4_mask_logits_backward", |b| {
        b.iter(|| {
            rt.run(&ds);
            rt.sync().unwrap();
        })
    });
    g.finish();
}

fn deform(c: &mut Criterion, rt: &Runtime) {
    let s: usize = SHAPES.iter().map(|&(h, w)| h * w).sum();
    let (lq, l) = (s, SHAPES.len());
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut uniform = |n: usize, lo: f32, hi: f32| -> Vec<f32> {
        (0..n).map(|_| rng.random_range(lo..hi)).collect()
    };
    let value = rt
        .upload(&uniform(s * M * D, -1.0, 1.0), &[1, s, M, D])
        .unwrap();
    let loc = rt
        .upload(
            &uniform(lq * M * l * P * 2, -0.05, 1.05),
            &[1, lq, M, l, P, 2],
        )
        .unwrap();
    let attn = rt
        .upload(
            &uniform(lq * M * l * P, 0.0, 1.0 / (l * P) as f32),
            &[1, lq, M, l, P],
        )
        .unwrap();
    let samples = (lq * M * l * P * D) as u64;

    let mut g = c.benchmark_group("deform_attn_384");
    g.throughput(Throughput::Elements(10 * samples));
    let out = rt.empty(&[1, lq, M * D], DType::F32).unwrap();
    for (name, variant) in [
        ("forward_vec4_wide", Variant::Vec4Wide),
        ("forward_vec4", Variant::Vec4),
        ("forward_scalar", Variant::Scalar),
    ] {
        let ds =
            deform_attn::deform_attn_into(rt, &value, &SHAPES, &loc, &attn, &out, variant).unwrap();
        g.bench_function(name, |b| {
            b.iter(|| {
                rt.run(&ds);
                rt.sync().unwrap();
            })
        });
    }

    g.throughput(Throughput::Elements(34 * samples));
    let grad_out = rt
        .upload(&uniform(lq * M * D, -1.0, 1.0), &[1, lq, M * D])
        .unwrap();
    let grads = Gradients {
        value: rt.empty(value.shape(), DType::F32).unwrap(),
        sampling_locations: rt.empty(loc.shape(), DType::F32).unwrap(),
        attention_weights: rt.empty(attn.shape(), DType::F32).unwrap(),
    };
    let mut scatters = vec![("cas", Scatter::CompareExchange)];
    if rt.caps().f32_atomics {
        scatters.push(("f32_atomics", Scatter::NativeF32));
    }
    for (scatter_name, scatter) in scatters {
        for (variant_name, variant) in [("vec4", Variant::Vec4), ("scalar", Variant::Scalar)] {
            let opts = BackwardOptions { scatter, variant };
            let ds = deform_attn::deform_attn_backward_into(
                rt, &value, &SHAPES, &loc, &attn, &grad_out, &grads, opts,
            )
            .unwrap();
            g.bench_function(format!("backward_{scatter_name}_{variant_name}"), |b| {
                b.iter(|| {
                    rt.run(&ds);
                    rt.sync().unwrap();
                })
            });
        }
    }
    g.finish();
}
