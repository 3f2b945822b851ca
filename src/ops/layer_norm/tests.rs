use super::reference;
use super::*;
use crate::testing::{self, assert_close};

/// Row lengths: one element, odd, Swin's 96 and 4·96 for patch merging, one past a workgroup (257),
/// and the largest Swin row (1536) which is several workgroups long.
const CASES: &[&[usize]] = &[
    &[1, 1],
    &[3, 1],
    &[1, 7],
    &[2, 3, 5, 96],
    &[67, 384],
    &[9, 257],
    &[4, 1536],
    &[130, 5],
];

const VARIANTS: &[Variant] = &[
    Variant::RowPerThread,
    Variant::RowPerWorkgroup,
    Variant::RowTexel,
    Variant::RowPerSubgroup,
];

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&a| a as f64).collect()
}
fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&a| a as f32).collect()
}

struct Inputs {
    x: Vec<f32>,
    w: Vec<f32>,
    b: Vec<f32>,
}

fn inputs(seed: u64, shape: &[usize]) -> Inputs {
    let mut rng = testing::rng(seed);
    let cols = *shape.last().unwrap();
    let n: usize = shape.iter().product();
    // An offset of 3 makes a one-pass E[x²]−E[x]² variance visibly wrong.
    let x = testing::uniform(&mut rng, n, 2.0, 4.0);
    Inputs {
        x,
        w: testing::uniform(&mut rng, cols, 0.5, 1.5),
        b: testing::uniform(&mut rng, cols, -1.0, 1.0),
    }
}

fn run_forward(rt: &Runtime, seed: u64, shape: &[usize], variant: Variant, stats: bool) {
    let case = format!("layer_norm {shape:?} {variant:?} stats={stats}");
    let cols = *shape.last().unwrap();
    let rows = shape.iter().product::<usize>() / cols;
    let inp = inputs(seed, shape);
    let opts = LayerNormOptions { eps: 1e-5, variant };
    let (want, want_mean, want_rstd) =
        reference::forward(&f64s(&inp.x), &f64s(&inp.w), &f64s(&inp.b), cols, 1e-5);
    let x = rt.upload(&inp.x, shape).unwrap();
    let w = rt.upload(&inp.w, &[cols]).unwrap();
    let b = rt.upload(&inp.b, &[cols]).unwrap();
    let out = rt.empty(shape, DType::F32).unwrap();
    rt.fill(&out, f32::NAN).unwrap();
    if stats {
        let mean = rt.full(&[rows], f32::NAN).unwrap();
        let rstd = rt.full(&[rows], f32::NAN).unwrap();
        let d = layer_norm_into(rt, &x, &w, &b, &out, Some((&mean, &rstd)), &opts).unwrap();
        rt.run(&d);
        let m = rt.download(&mean).unwrap();
        let r = rt.download(&rstd).unwrap();
        assert_close(&format!("{case} mean"), seed, &m, &f32s(&want_mean), 1e-6);
        assert_close(&format!("{case} rstd"), seed, &r, &f32s(&want_rstd), 1e-5);
    } else {
        rt.run(&layer_norm_into(rt, &x, &w, &b, &out, None, &opts).unwrap());
    }
    let got = rt.download(&out).unwrap();
    assert_close(&case, seed, &got, &f32s(&want), 1e-5);
}

#[test]
fn forward_matches_reference_all_variants() {
    let rt = testing::runtime();
    let seed = testing::seed();
    for shape in CASES {
        for &v in VARIANTS {
            for stats in [false, true] {
                run_forward(rt, seed, shape, v, stats);
            }
        }
    }
}

#[test]
fn forward_portable_runtime_auto_variant() {
    let rt = testing::portable_runtime();
    let seed = testing::seed();
    for shape in [&[5usize, 96][..], &[3, 300]] {
        run_forward(rt, seed, shape, Variant::Auto, true);
    }
}

/// More rows than one dispatch dimension holds workgroups (65535) in the one-row-per-workgroup
/// variant, so the 2-D grid is exercised.
#[test]
fn forward_rows_past_one_grid_dimension() {
    let rt = testing::runtime();
    let seed = testing::seed();
    run_forward(rt, seed, &[70_000, 3], Variant::RowPerWorkgroup, true);
    run_forward(rt, seed, &[70_000, 3], Variant::RowPerThread, false);
    run_forward(rt, seed, &[70_000, 4], Variant::RowTexel, true);
    run_forward(rt, seed, &[70_000, 4], Variant::RowPerSubgroup, true);
    run_backward(rt, seed, &[70_000, 4], Variant::RowTexel);
}

/// On a CPU adapter under the CPU policy, `Auto` runs the texel entries for rows of a multiple
/// of 4 and the buffer ones otherwise; under the GPU policy never, and the forward runs one
/// subgroup per row where the adapter has subgroups of one size.
#[test]
fn texel_entries_where_the_rows_allow() {
    let labels = |rt: &Runtime, cols: usize| {
        let t = |shape: &[usize]| rt.full(shape, 1.0).unwrap();
        let (x, dy, y, dx) = (t(&[5, cols]), t(&[5, cols]), t(&[5, cols]), t(&[5, cols]));
        let (w, b, dw, db) = (t(&[cols]), t(&[cols]), t(&[cols]), t(&[cols]));
        let (m, r) = (t(&[5]), t(&[5]));
        let ws = t(&[layer_norm_backward_workspace_len(&[5, cols])]);
        let opts = LayerNormOptions::default();
        let fwd = layer_norm_into(rt, &x, &w, &b, &y, Some((&m, &r)), &opts).unwrap();
        let bwd =
            layer_norm_backward_into(rt, &dy, &x, &w, &m, &r, &dx, &dw, &db, &ws, &opts).unwrap();
        (fwd.iter().chain(&bwd))
            .map(|d| d.label().to_string())
            .collect::<Vec<_>>()
    };
    let rt = testing::cpu_policy_runtime();
    let cpu = rt.info().device_type == wgpu::DeviceType::Cpu;
    let l = labels(rt, 96);
    assert_eq!(l[0] == "layer_norm_texel::rows_texel_stats", cpu, "{l:?}");
    // dx and the parameter partials in one launch, then their sum (4 columns an invocation).
    let want = [
        "layer_norm_texel::backward_texel",
        "layer_norm_backward::param_reduce_v4",
    ];
    assert_eq!(l[1..] == want, cpu, "{l:?}");
    let l = labels(rt, 98);
    assert!(
        l.iter().all(|e| !e.starts_with("layer_norm_texel")),
        "{l:?}"
    );
    let gpu = testing::gpu_policy_runtime();
    let l = labels(gpu, 96);
    assert!(
        l.iter().all(|e| !e.starts_with("layer_norm_texel")),
        "{l:?}"
    );
    let (lo, hi) = gpu.caps().subgroup_size;
    let one_size = gpu.caps().subgroups && lo == hi;
    assert_eq!(
        l[0].starts_with("layer_norm_subgroup::rows_subgroup_stats"),
        one_size,
        "{l:?}"
    );
    assert!(labels(gpu, 98)[0].starts_with("layer_norm::rows_wg"));
}

#[test]
fn reference_backward_matches_finite_differences() {
    let seed = testing::seed();
    let mut rng = testing::rng(seed);
    for &(rows, cols) in &[(1usize, 1usize), (3, 5), (2, 8), (4, 3)] {
        let x = f64s(&testing::uniform(&mut rng, rows * cols, -2.0, 2.0));
        let w = f64s(&testing::uniform(&mut rng, cols, 0.5, 1.5));
        let b = f64s(&testing::uniform(&mut rng, cols, -1.0, 1.0));
        let dy = f64s(&testing::uniform(&mut rng, rows * cols, -1.0, 1.0));
        let eps = 1e-5;
        // L = Σ dy · y, so ∂L/∂θ is what backward returns for upstream gradient dy.
        let loss = |x: &[f64], w: &[f64], b: &[f64]| -> f64 {
            let (y, _, _) = reference::forward(x, w, b, cols, eps);
            y.iter().zip(&dy).map(|(a, b)| a * b).sum()
        };
        let (dx, dw, db) = reference::backward(&dy, &x, &w, cols, eps);
        let h = 1e-6;
        let fd = |v: &[f64], i: usize, f: &dyn Fn(&[f64]) -> f64| {
            let (mut p, mut m) = (v.to_vec(), v.to_vec());
            p[i] += h;
            m[i] -= h;
            (f(&p) - f(&m)) / (2.0 * h)
        };
        let check = |name: &str, analytic: &[f64], numeric: Vec<f64>| {
            let num: f64 = analytic
                .iter()
                .zip(&numeric)
                .map(|(a, n)| (a - n).powi(2))
                .sum();
            let den: f64 = numeric.iter().map(|n| n * n).sum();
            let err = (num / den.max(1e-20)).sqrt();
            // cols = 1 gives dx ≡ 0 exactly; the absolute error then stays at FD noise.
            assert!(
                err < 1e-6 || num.sqrt() < 1e-8,
                "{name} rows={rows} cols={cols}: rel err {err:e} (seed {seed})"
            );
        };
        check(
            "dx",
            &dx,
            (0..x.len())
                .map(|i| fd(&x, i, &|v| loss(v, &w, &b)))
                .collect(),
        );
        check(
            "dw",
            &dw,
            (0..cols).map(|i| fd(&w, i, &|v| loss(&x, v, &b))).collect(),
        );
        check(
            "db",
            &db,
            (0..cols).map(|i| fd(&b, i, &|v| loss(&x, &w, v))).collect(),
        );
    }
}

fn run_backward(rt: &Runtime, seed: u64, shape: &[usize], variant: Variant) {
    let case = format!("layer_norm_backward {shape:?} {variant:?}");
    let cols = *shape.last().unwrap();
    let inp = inputs(seed, shape);
    let mut rng = testing::rng(seed ^ 0x5eed);
    let dyv = testing::uniform(&mut rng, inp.x.len(), -1.0, 1.0);
    let opts = LayerNormOptions { eps: 1e-5, variant };
    let (want_dx, want_dw, want_db) =
        reference::backward(&f64s(&dyv), &f64s(&inp.x), &f64s(&inp.w), cols, 1e-5);
    let x = rt.upload(&inp.x, shape).unwrap();
    let w = rt.upload(&inp.w, &[cols]).unwrap();
    let b = rt.upload(&inp.b, &[cols]).unwrap();
    let dy = rt.upload(&dyv, shape).unwrap();
    let (_, mean, rstd) = layer_norm_train(rt, &x, &w, &b, &opts).unwrap();
    let dx = rt.full(shape, f32::NAN).unwrap();
    let dw = rt.full(&[cols], f32::NAN).unwrap();
    let db = rt.full(&[cols], f32::NAN).unwrap();
    let ws = rt
        .full(&[layer_norm_backward_workspace_len(shape)], f32::NAN)
        .unwrap();
    let d =
        layer_norm_backward_into(rt, &dy, &x, &w, &mean, &rstd, &dx, &dw, &db, &ws, &opts).unwrap();
    rt.run(&d);
    // dx is a difference of O(1) terms that nearly cancel row by row, so f32 rounding in the
    // statistics is amplified; 1e-5 still holds for these row lengths.
    assert_close(
        &format!("{case} dx"),
        seed,
        &rt.download(&dx).unwrap(),
        &f32s(&want_dx),
        1e-5,
    );
    assert_close(
        &format!("{case} dweight"),
        seed,
        &rt.download(&dw).unwrap(),
        &f32s(&want_dw),
        1e-5,
    );
    assert_close(
        &format!("{case} dbias"),
        seed,
        &rt.download(&db).unwrap(),
        &f32s(&want_db),
        1e-5,
    );
}

#[test]
fn backward_matches_reference_all_variants() {
    let rt = testing::runtime();
    let seed = testing::seed();
    let mut cases = CASES.to_vec();
    // More rows than one partial-sum chunk times the chunk count, with a ragged last chunk.
    cases.push(&[1500, 7]);
    for shape in cases {
        for &v in VARIANTS {
            run_backward(rt, seed, shape, v);
        }
    }
    let grads = {
        let shape = [6usize, 10];
        let inp = inputs(seed, &shape);
        let x = rt.upload(&inp.x, &shape).unwrap();
        let w = rt.upload(&inp.w, &[10]).unwrap();
        let b = rt.upload(&inp.b, &[10]).unwrap();
        let (_, m, r) = layer_norm_train(rt, &x, &w, &b, &Default::default()).unwrap();
        layer_norm_backward(rt, &x, &x, &w, &m, &r, &Default::default()).unwrap()
    };
    assert_eq!(grads.dx.shape(), &[6, 10]);
    assert_eq!(grads.dweight.shape(), &[10]);
}

#[test]
fn backward_portable_runtime() {
    let rt = testing::portable_runtime();
    run_backward(rt, testing::seed(), &[11, 100], Variant::Auto);
}

#[test]
fn errors_name_the_op_and_shapes() {
    let rt = testing::runtime();
    let x = rt.full(&[4, 6], 1.0).unwrap();
    let w = rt.full(&[5], 1.0).unwrap();
    let b = rt.full(&[6], 1.0).unwrap();
    let err = layer_norm(rt, &x, &w, &b, &Default::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("layer_norm") && err.contains("weight") && err.contains("[5]"),
        "{err}"
    );
    let s = rt.full(&[], 1.0).unwrap();
    let err = layer_norm(rt, &s, &b, &b, &Default::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("scalar"), "{err}");
    let u = rt.upload_u32(&[1; 6], &[6]).unwrap();
    let err = layer_norm(rt, &u, &b, &b, &Default::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("U32"), "{err}");
    let ws = rt.full(&[1], 0.0).unwrap();
    let m = rt.full(&[4], 0.0).unwrap();
    let err = match layer_norm_backward_into(
        rt,
        &x,
        &x,
        &b,
        &m,
        &m,
        &x,
        &b,
        &b,
        &ws,
        &Default::default(),
    ) {
        Ok(_) => panic!("a too-small workspace was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("workspace"), "{err}");
}

/// Quick timing at a Swin stage-1 size, 96×96 tokens × 192 (a report, not an assertion):
/// `cargo test --lib ops::layer_norm::tests::timing -- --ignored --nocapture`.
#[test]
#[ignore]
fn timing_swin_layer_norm() {
    let rt = testing::runtime();
    let shape = [9216usize, 192];
    let x = rt.full(&shape, 0.5).unwrap();
    let w = rt.full(&[192], 1.0).unwrap();
    let out = rt.empty(&shape, DType::F32).unwrap();
    let (m, r) = (
        rt.empty(&[9216], DType::F32).unwrap(),
        rt.empty(&[9216], DType::F32).unwrap(),
    );
    let (dw, db) = (
        rt.empty(&[192], DType::F32).unwrap(),
        rt.empty(&[192], DType::F32).unwrap(),
    );
    let ws = rt
        .empty(&[layer_norm_backward_workspace_len(&shape)], DType::F32)
        .unwrap();
    for &v in VARIANTS {
        let o = LayerNormOptions {
            eps: 1e-5,
            variant: v,
        };
        let fwd = layer_norm_into(rt, &x, &w, &w, &out, Some((&m, &r)), &o).unwrap();
        let bwd =
            layer_norm_backward_into(rt, &x, &x, &w, &m, &r, &out, &dw, &db, &ws, &o).unwrap();
        for (label, ds) in [("forward", &fwd), ("backward", &bwd)] {
            rt.run(ds);
            rt.sync().unwrap();
            let t = std::time::Instant::now();
            rt.run(ds);
            rt.sync().unwrap();
            println!(
                "layer_norm {shape:?} {v:?} {label}: {:.2} ms",
                t.elapsed().as_secs_f64() * 1e3
            );
        }
    }
}
