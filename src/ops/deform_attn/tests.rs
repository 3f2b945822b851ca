//! Deformable attention kernels against the f64 reference, on fresh random inputs with
//! NaN-poisoned outputs.

use super::reference::{self, Dims};
use super::*;
use crate::testing::{self, assert_close};
use rand::Rng;

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}
fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

fn dims(
    n: usize,
    queries: usize,
    heads: usize,
    channels: usize,
    points: usize,
    shapes: &[(usize, usize)],
) -> Dims {
    Dims {
        n,
        queries,
        heads,
        channels,
        points,
        shapes: shapes.to_vec(),
    }
}

/// Odd and power-of-two D, a 1x1 level, P = 1, one level, more queries than one workgroup, and
/// power-of-two maps where the dyadic border coordinates below land exactly on pixel edges.
fn cases() -> Vec<Dims> {
    vec![
        dims(1, 5, 2, 4, 2, &[(6, 4), (3, 2)]),
        dims(2, 7, 3, 5, 3, &[(5, 7), (1, 1), (2, 3)]),
        dims(1, 9, 8, 32, 4, &[(8, 8), (4, 4), (2, 2)]),
        dims(3, 4, 1, 1, 1, &[(1, 1)]),
        dims(2, 70, 2, 8, 1, &[(11, 13)]),
        dims(1, 33, 8, 32, 4, &[(4, 8), (2, 4), (1, 2)]),
        // D / 4 = 10 and 16: wide threads of 5 and 8 channel groups.
        dims(3, 6, 2, 40, 2, &[(3, 5), (2, 2)]),
        dims(1, 5, 3, 64, 1, &[(4, 4)]),
    ]
}

struct Inputs {
    value: Vec<f32>,
    loc: Vec<f32>,
    attn: Vec<f32>,
}

/// Locations: mostly uniform in [-0.2, 1.2] (inside and outside the maps), and 1 in 4 from dyadic
/// values that are exact in f32 — 0, 1, pixel edges of power-of-two maps, and the region borders
/// h = −1 and h = H (e.g. −0.125 and 1.125 on a 4-wide map) — so GPU and reference agree on which
/// side of an edge a point lies.
fn inputs(rng: &mut impl Rng, d: &Dims) -> Inputs {
    const SPECIAL: [f32; 9] = [0.0, 1.0, 0.5, 0.25, -0.125, 1.125, -0.25, 1.25, 0.375];
    let slots = d.n * d.queries * d.heads * d.levels() * d.points;
    Inputs {
        value: testing::uniform(rng, d.n * d.spatial() * d.heads * d.channels, -1.0, 1.0),
        loc: (0..2 * slots)
            .map(|_| {
                if rng.random_range(0..4) == 0 {
                    SPECIAL[rng.random_range(0..SPECIAL.len())]
                } else {
                    rng.random_range(-0.2..1.2)
                }
            })
            .collect(),
        attn: testing::uniform(rng, slots, 0.0, 1.0),
    }
}

struct Dev {
    value: Tensor,
    loc: Tensor,
    attn: Tensor,
}

fn upload(rt: &Runtime, d: &Dims, x: &Inputs) -> Dev {
    let (l, p) = (d.levels(), d.points);
    Dev {
        value: rt
            .upload(&x.value, &[d.n, d.spatial(), d.heads, d.channels])
            .unwrap(),
        loc: rt
            .upload(&x.loc, &[d.n, d.queries, d.heads, l, p, 2])
            .unwrap(),
        attn: rt
            .upload(&x.attn, &[d.n, d.queries, d.heads, l, p])
            .unwrap(),
    }
}

fn check_forward(rt: &Runtime, variant: Variant, chunked: bool) {
    let seed = testing::seed();
    let mut rng = testing::rng(seed);
    for d in cases() {
        if matches!(variant, Variant::Vec4 | Variant::Vec4Wide) && !d.channels.is_multiple_of(4) {
            continue;
        }
        let x = inputs(&mut rng, &d);
        let t = upload(rt, &d, &x);
        let out = rt
            .empty(&[d.n, d.queries, d.heads * d.channels], DType::F32)
            .unwrap();
        rt.fill(&out, f32::NAN).unwrap();
        // Chunked: the largest per-item slice twice plus slack, so N > 2 splits off alignment.
        let item = (d.spatial() * d.heads * d.channels)
            .max(d.queries * d.heads * d.levels() * d.points * 2)
            .max(d.queries * d.heads * d.channels);
        let limit = if chunked {
            8 * item as u64 + 28
        } else {
            chunk::binding_limit(rt)
        };
        let ds = forward_limit(
            rt, &t.value, &d.shapes, &t.loc, &t.attn, &out, variant, limit,
        )
        .unwrap();
        assert!(!chunked || d.n < 3 || ds.len() > 1);
        // CPU adapters read the value of the vec4 kernel through texel views (CPU policy).
        let preferred = crate::ops::common::texel::preferred(rt);
        assert!(
            ds.iter().all(|x| {
                let texel = x.label().starts_with("deform_attn+texel::");
                texel == (preferred && x.label().contains("::forward_vec4"))
            }),
            "{d:?} {variant:?}"
        );
        rt.run(&ds);
        let want = reference::forward(&f64s(&x.value), &f64s(&x.loc), &f64s(&x.attn), &d);
        let case = format!("forward {variant:?} chunked={chunked} {d:?}");
        assert_close(&case, seed, &rt.download(&out).unwrap(), &f32s(&want), 1e-5);
    }
}

#[test]
fn forward_vec4_matches_reference() {
    check_forward(testing::runtime(), Variant::Vec4, false);
}

#[test]
fn forward_vec4_wide_matches_reference() {
    check_forward(testing::runtime(), Variant::Vec4Wide, false);
    check_forward(testing::runtime(), Variant::Vec4Wide, true);
}

/// The buffer forms of the vec4 kernels (on CPU adapters the CPU policy runs their texel forms).
#[test]
fn forward_vec4_buffer_form_matches_reference() {
    check_forward(testing::gpu_policy_runtime(), Variant::Vec4, false);
    check_forward(testing::gpu_policy_runtime(), Variant::Vec4Wide, true);
}

#[test]
fn forward_scalar_matches_reference() {
    check_forward(testing::runtime(), Variant::Scalar, false);
}

#[test]
fn forward_auto_chunked_portable() {
    check_forward(testing::portable_runtime(), Variant::Auto, true);
}

#[test]
fn forward_past_one_workgroup_grid() {
    // 70 000 queries x 2 heads x 32 channels = 4.48 M scalar threads, past 65 535 workgroups of 64.
    let rt = testing::runtime();
    let seed = testing::seed();
    let mut rng = testing::rng(seed);
    let d = dims(1, 70_000, 2, 32, 1, &[(3, 3)]);
    let x = inputs(&mut rng, &d);
    let t = upload(rt, &d, &x);
    let out = rt
        .empty(&[d.n, d.queries, d.heads * d.channels], DType::F32)
        .unwrap();
    rt.fill(&out, f32::NAN).unwrap();
    let ds = deform_attn_into(
        rt,
        &t.value,
        &d.shapes,
        &t.loc,
        &t.attn,
        &out,
        Variant::Scalar,
    )
    .unwrap();
    assert!(ds[0].workgroups()[1] > 1, "expected a 2-D grid");
    rt.run(&ds);
    let want = reference::forward(&f64s(&x.value), &f64s(&x.loc), &f64s(&x.attn), &d);
    assert_close(
        "forward 2-D grid",
        seed,
        &rt.download(&out).unwrap(),
        &f32s(&want),
        1e-5,
    );
}

fn check_backward(rt: &Runtime, scatter: Scatter, chunked: bool) {
    for variant in [Variant::Scalar, Variant::Vec4] {
        check_backward_variant(rt, BackwardOptions { scatter, variant }, chunked);
    }
}

fn check_backward_variant(rt: &Runtime, opts: BackwardOptions, chunked: bool) {
    let seed = testing::seed();
    let mut rng = testing::rng(seed);
    for d in cases() {
        if opts.variant == Variant::Vec4 && !d.channels.is_multiple_of(4) {
            continue;
        }
        let x = inputs(&mut rng, &d);
        let t = upload(rt, &d, &x);
        let go = testing::uniform(&mut rng, d.n * d.queries * d.heads * d.channels, -1.0, 1.0);
        let grad_out = rt
            .upload(&go, &[d.n, d.queries, d.heads * d.channels])
            .unwrap();
        let grads = Gradients {
            value: rt.empty(t.value.shape(), DType::F32).unwrap(),
            sampling_locations: rt.empty(t.loc.shape(), DType::F32).unwrap(),
            attention_weights: rt.empty(t.attn.shape(), DType::F32).unwrap(),
        };
        for g in [
            &grads.value,
            &grads.sampling_locations,
            &grads.attention_weights,
        ] {
            rt.fill(g, f32::NAN).unwrap();
        }
        let item = (d.spatial() * d.heads * d.channels)
            .max(d.queries * d.heads * d.levels() * d.points * 2)
            .max(d.queries * d.heads * d.channels);
        let limit = if chunked {
            8 * item as u64 + 28
        } else {
            chunk::binding_limit(rt)
        };
        let ds = backward_limit(
            rt, &t.value, &d.shapes, &t.loc, &t.attn, &grad_out, &grads, opts, limit,
        )
        .unwrap();
        // CPU adapters read the value of the vec4 kernel through texel views (CPU policy).
        let preferred = crate::ops::common::texel::preferred(rt);
        assert!(
            ds.iter().all(|x| {
                let texel = x.label().contains("+texel::");
                texel == (preferred && x.label().contains("::backward_vec4"))
            }),
            "{d:?} {opts:?}"
        );
        rt.run(&ds);
        let (gv, gl, ga) = reference::backward(
            &f64s(&x.value),
            &f64s(&x.loc),
            &f64s(&x.attn),
            &f64s(&go),
            &d,
        );
        let case = format!("backward {opts:?} chunked={chunked} {d:?}");
        // grad_value sums up to Lq·L·P scattered terms in an order that varies run to run; f32
        // rounding of such sums stays well inside 1e-5 relative L2.
        assert_close(
            &format!("{case} value"),
            seed,
            &rt.download(&grads.value).unwrap(),
            &f32s(&gv),
            1e-5,
        );
        assert_close(
            &format!("{case} locations"),
            seed,
            &rt.download(&grads.sampling_locations).unwrap(),
            &f32s(&gl),
            1e-5,
        );
        assert_close(
            &format!("{case} weights"),
            seed,
            &rt.download(&grads.attention_weights).unwrap(),
            &f32s(&ga),
            1e-5,
        );
    }
}

#[test]
fn backward_native_atomics() {
    let rt = testing::runtime();
    if !rt.caps().f32_atomics {
        eprintln!("skipping backward_native_atomics: adapter has no f32 atomics");
        return;
    }
    check_backward(rt, Scatter::NativeF32, false);
}

#[test]
fn backward_compare_exchange() {
    check_backward(testing::runtime(), Scatter::CompareExchange, false);
}

/// The buffer form of the vec4 backward (on CPU adapters the CPU policy runs its texel form).
#[test]
fn backward_buffer_form_matches_reference() {
    let opts = BackwardOptions {
        scatter: Scatter::CompareExchange,
        variant: Variant::Vec4,
    };
    check_backward_variant(testing::gpu_policy_runtime(), opts, false);
}

#[test]
fn backward_portable_runtime_chunked() {
    check_backward(testing::portable_runtime(), Scatter::Auto, true);
}

#[test]
fn reference_backward_matches_finite_differences() {
    // Bilinear sampling is piecewise linear in the locations, with kinks on pixel edges and jumps at
    // the region border. Continuous random locations hit a kink within the 1e-6 step with
    // probability ~1e-5 per coordinate, so central differences match to rounding (~1e-9); the
    // tolerance 1e-6·(1 + |g|) leaves room for that and nothing else.
    let seed = testing::seed();
    let mut rng = testing::rng(seed);
    for d in [
        dims(1, 2, 2, 2, 2, &[(6, 4), (3, 2)]),
        dims(2, 3, 1, 3, 1, &[(1, 1), (4, 5)]),
        dims(1, 2, 2, 5, 3, &[(3, 3)]),
    ] {
        let slots = d.n * d.queries * d.heads * d.levels() * d.points;
        let value: Vec<f64> = (0..d.n * d.spatial() * d.heads * d.channels)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let loc: Vec<f64> = (0..2 * slots)
            .map(|_| rng.random_range(-0.3..1.3))
            .collect();
        let attn: Vec<f64> = (0..slots).map(|_| rng.random_range(0.0..1.0)).collect();
        let go: Vec<f64> = (0..d.n * d.queries * d.heads * d.channels)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let loss = |v: &[f64], l: &[f64], a: &[f64]| -> f64 {
            reference::forward(v, l, a, &d)
                .iter()
                .zip(&go)
                .map(|(x, g)| x * g)
                .sum()
        };
        let (gv, gl, ga) = reference::backward(&value, &loc, &attn, &go, &d);
        let eps = 1e-6;
        let fd = |which: usize, i: usize| -> f64 {
            let mut args = [value.clone(), loc.clone(), attn.clone()];
            args[which][i] += eps;
            let up = loss(&args[0], &args[1], &args[2]);
            args[which][i] -= 2.0 * eps;
            let down = loss(&args[0], &args[1], &args[2]);
            (up - down) / (2.0 * eps)
        };
        for (which, grad, name) in [
            (0, &gv, "value"),
            (1, &gl, "locations"),
            (2, &ga, "weights"),
        ] {
            for (i, &g) in grad.iter().enumerate() {
                let f = fd(which, i);
                assert!(
                    (f - g).abs() <= 1e-6 * (1.0 + g.abs()),
                    "{name}[{i}] {d:?}: finite difference {f} vs {g} (seed {seed})"
                );
            }
        }
    }
}

#[test]
fn errors_name_the_op_and_shapes() {
    let rt = testing::runtime();
    let d = dims(1, 2, 2, 4, 1, &[(2, 2)]);
    let mut rng = testing::rng(1);
    let t = upload(rt, &d, &inputs(&mut rng, &d));
    let e = deform_attn(rt, &t.value, &[(2, 3)], &t.loc, &t.attn)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("deform_attn") && e.contains("(2, 3)"), "{e}");
    let e = deform_attn(rt, &t.value, &[(2, 2), (1, 1)], &t.loc, &t.attn)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("levels"), "{e}");
    let e = deform_attn(rt, &t.value, &[(2, 2)], &t.loc, &t.value)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("attention_weights"), "{e}");
    // One batch item past the binding limit (here 64 bytes) is an error naming the tensor.
    let out = rt.empty(&[1, 2, 8], DType::F32).unwrap();
    let e = forward_limit(
        rt,
        &t.value,
        &[(2, 2)],
        &t.loc,
        &t.attn,
        &out,
        Variant::Auto,
        64,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        e.contains("deform_attn") && e.contains("value") && e.contains("64"),
        "{e}"
    );
    let d5 = dims(1, 2, 2, 5, 1, &[(2, 2)]);
    let t5 = upload(rt, &d5, &inputs(&mut rng, &d5));
    let out = rt.empty(&[1, 2, 10], DType::F32).unwrap();
    let e = deform_attn_into(
        rt,
        &t5.value,
        &[(2, 2)],
        &t5.loc,
        &t5.attn,
        &out,
        Variant::Vec4,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("Vec4") && e.contains("D = 5"), "{e}");
    let p = testing::portable_runtime();
    let tp = upload(p, &d, &inputs(&mut rng, &d));
    let go = p.empty(&[1, 2, 8], DType::F32).unwrap();
    let e = deform_attn_backward(
        p,
        &tp.value,
        &[(2, 2)],
        &tp.loc,
        &tp.attn,
        &go,
        BackwardOptions {
            scatter: Scatter::NativeF32,
            variant: Variant::Auto,
        },
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("atomics"), "{e}");
}

#[test]
fn reference_matches_the_grid_sample_formulation() {
    // PyTorch's fallback `ms_deform_attn_core_pytorch`: per level, grid_sample(value_l, 2·loc − 1,
    // bilinear, zeros, align_corners=False), weighted by the attention and summed over (l, p).
    // The CUDA kernel's region test only skips points whose four corners all read zero, so the two
    // agree everywhere; this ties the reference to the resample family's grid_sample reference.
    let seed = testing::seed();
    let mut rng = testing::rng(seed);
    for d in cases() {
        let x = inputs(&mut rng, &d);
        let (value, loc, attn) = (f64s(&x.value), f64s(&x.loc), f64s(&x.attn));
        let got = reference::forward(&value, &loc, &attn, &d);
        let (s_, m_, c_, l_, p_) = (d.spatial(), d.heads, d.channels, d.levels(), d.points);
        let mut want = vec![0.0; got.len()];
        let mut start = 0;
        for (l, &(h, w)) in d.shapes.iter().enumerate() {
            for n in 0..d.n {
                for m in 0..m_ {
                    // value_l as [1, D, H, W] and this head's points as a [1, Lq·P, 2] grid.
                    let mut img = vec![0.0; c_ * h * w];
                    for s in 0..h * w {
                        for c in 0..c_ {
                            img[c * h * w + s] = value[((n * s_ + start + s) * m_ + m) * c_ + c];
                        }
                    }
                    let mut grid = Vec::with_capacity(d.queries * p_ * 2);
                    for q in 0..d.queries {
                        for k in 0..p_ {
                            let slot = ((((n * d.queries + q) * m_ + m) * l_ + l) * p_) + k;
                            grid.push(2.0 * loc[2 * slot] - 1.0);
                            grid.push(2.0 * loc[2 * slot + 1] - 1.0);
                        }
                    }
                    let sampled =
                        crate::ops::resample::reference::grid_sample(&img, &grid, 1, c_, (h, w));
                    for q in 0..d.queries {
                        for k in 0..p_ {
                            let slot = ((((n * d.queries + q) * m_ + m) * l_ + l) * p_) + k;
                            for c in 0..c_ {
                                want[((n * d.queries + q) * m_ + m) * c_ + c] +=
                                    attn[slot] * sampled[c * d.queries * p_ + q * p_ + k];
                            }
                        }
                    }
                }
            }
            start += h * w;
        }
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() < 1e-12,
                "{d:?} [{i}]: {g} vs {w} (seed {seed})"
            );
        }
    }
}
