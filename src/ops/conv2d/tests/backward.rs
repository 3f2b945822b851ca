//! Backward (dx, dweight, dbias) against the f64 reference, including reductions past the CPU loop budget.

use super::*;

#[test]
fn reference_backward_matches_finite_differences() {
    let seed = testing::seed();
    let mut rng = testing::rng(seed);
    let d0 = Conv2dOptions::default();
    let small = [
        ([1usize, 2, 4, 5], [3usize, 2, 3, 3], d0.padding(1)),
        ([2, 4, 5, 4], [2, 2, 2, 3], opts([2, 1], [1, 2], [1, 2], 2)),
        (
            [1, 3, 4, 4],
            [3, 1, 3, 3],
            d0.padding(1).groups(3).stride(2),
        ),
        ([2, 2, 1, 1], [3, 2, 1, 1], d0),
    ];
    for (xs, ws, o) in small {
        let d = conv_dims(&xs, &ws, &o).unwrap();
        let x = f64s(&testing::uniform(&mut rng, xs.iter().product(), -1.0, 1.0));
        let w = f64s(&testing::uniform(&mut rng, ws.iter().product(), -1.0, 1.0));
        let b = f64s(&testing::uniform(&mut rng, ws[0], -1.0, 1.0));
        let dy = f64s(&testing::uniform(
            &mut rng,
            d.out_shape().iter().product(),
            -1.0,
            1.0,
        ));
        // L = Σ dy · out, so ∂L/∂θ is what backward returns for upstream gradient dy.
        let loss = |x: &[f64], w: &[f64], b: &[f64]| -> f64 {
            let out = reference::forward(x, w, Some(b), &d, &o);
            out.iter().zip(&dy).map(|(a, b)| a * b).sum()
        };
        let (dx, dw, db) = reference::backward(&dy, &x, &w, &d, &o);
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
            assert!(
                err < 1e-6,
                "{name} x{xs:?} w{ws:?} {o:?}: rel err {err:e} (seed {seed})"
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
            (0..w.len())
                .map(|i| fd(&w, i, &|v| loss(&x, v, &b)))
                .collect(),
        );
        check(
            "db",
            &db,
            (0..b.len())
                .map(|i| fd(&b, i, &|v| loss(&x, &w, v)))
                .collect(),
        );
    }
}

#[test]
fn backward_matches_reference_all_blocks() {
    let rt = testing::runtime();
    let seed = testing::seed();
    for c in cases() {
        for &b in BLOCKS {
            let o = Conv2dOptions {
                block: Some(b),
                ..c.o
            };
            run_backward(rt, seed, &c, o);
        }
        run_backward(rt, seed, &c, c.o);
    }
}

#[test]
fn backward_portable_runtime_and_convenience_entry() {
    let rt = testing::portable_runtime();
    let seed = testing::seed();
    for c in cases().iter().skip(3).take(4) {
        run_backward(rt, seed, c, c.o);
    }
    let x = rt.full(&[1, 2, 3, 3], 1.0).unwrap();
    let w = rt.full(&[4, 2, 3, 3], 0.5).unwrap();
    let dy = rt.full(&[1, 4, 3, 3], 1.0).unwrap();
    let o = Conv2dOptions::default().padding(1);
    let g = conv2d_backward(rt, &dy, &x, &w, true, &o).unwrap();
    assert_eq!(g.dx.shape(), &[1, 2, 3, 3]);
    assert_eq!(g.dweight.shape(), &[4, 2, 3, 3]);
    // dbias = Σ dy over the 3×3 plane.
    assert_eq!(
        rt.download(g.dbias.as_ref().unwrap()).unwrap(),
        vec![9.0; 4]
    );
    let g = conv2d_backward(rt, &dy, &x, &w, false, &o).unwrap();
    assert!(g.dbias.is_none());
}

/// The direct kernels' weight gradient (grouped convolutions take them) over more output pixels
/// than one llvmpipe invocation may loop over (`CPU_LOOP_ITERATIONS`): 260² = 67600 per image.
/// The CPU path splits the reduction into launches over row ranges that add up.
#[test]
fn direct_weight_gradient_past_the_cpu_loop_budget() {
    let rt = testing::runtime();
    let seed = testing::seed();
    let (xs, ws) = ([1usize, 4, 260, 260], [4usize, 2, 3, 3]);
    let o = Conv2dOptions::default().padding(1).groups(2);
    let d = conv_dims(&xs, &ws, &o).unwrap();
    let mut rng = testing::rng(seed);
    let xv = testing::uniform(&mut rng, xs.iter().product(), -1.0, 1.0);
    let wv = testing::uniform(&mut rng, ws.iter().product(), -1.0, 1.0);
    let dyv = testing::uniform(&mut rng, d.out_shape().iter().product(), -1.0, 1.0);
    let (_, want_dw, _) = reference::backward(&f64s(&dyv), &f64s(&xv), &f64s(&wv), &d, &o);
    let x = rt.upload(&xv, &xs).unwrap();
    let w = rt.upload(&wv, &ws).unwrap();
    let dy = rt.upload(&dyv, &d.out_shape()).unwrap();
    let dw = rt.full(&ws, f32::NAN).unwrap();
    rt.run(&conv2d_backward_into(rt, &dy, &x, &w, None, &dw, None, &o).unwrap());
    assert_close(
        "conv2d_backward direct dweight past the loop budget",
        seed,
        &rt.download(&dw).unwrap(),
        &f32s(&want_dw),
        1e-5,
    );
}

/// Bias gradients summed over more pixels than one llvmpipe invocation may loop over
/// (`CPU_LOOP_ITERATIONS`): Swin's patch embedding at a 1024² crop, batch 2, sums 2·256² pixels
/// per channel. db_sum stopped early there; the CPU path now sums in launches under the budget.
/// dy holds multiples of 1/64 so the sums are exact in f32 in any order. (dweight reduces over
/// the same pixels in the GEMM path, the matmul kernels' own loops; checked by their tests.)
#[test]
fn bias_gradient_past_the_cpu_loop_budget() {
    let rt = testing::runtime();
    let seed = testing::seed();
    let (xs, ws) = ([2usize, 4, 180, 184], [4usize, 4, 1, 1]);
    let o = Conv2dOptions::default();
    let d = conv_dims(&xs, &ws, &o).unwrap();
    let mut rng = testing::rng(seed);
    let xv = testing::uniform(&mut rng, xs.iter().product(), -1.0, 1.0);
    let wv = testing::uniform(&mut rng, ws.iter().product(), -1.0, 1.0);
    let dyv: Vec<f32> = (0..d.out_shape().iter().product::<usize>())
        .map(|_| rng.random_range(-64i32..=64) as f32 / 64.0)
        .collect();
    let (_, _, want_db) = reference::backward(&f64s(&dyv), &f64s(&xv), &f64s(&wv), &d, &o);
    let x = rt.upload(&xv, &xs).unwrap();
    let w = rt.upload(&wv, &ws).unwrap();
    let dy = rt.upload(&dyv, &d.out_shape()).unwrap();
    let dw = rt.full(&ws, f32::NAN).unwrap();
    let db = rt.full(&[ws[0]], f32::NAN).unwrap();
    let wsp = conv2d_backward_workspace(rt, &xs, &ws, &o).unwrap();
    rt.run(
        &conv2d_backward_with_workspace_into(
            rt,
            &dy,
            &x,
            &w,
            None,
            &dw,
            Some(&db),
            wsp.as_ref(),
            &o,
        )
        .unwrap(),
    );
    assert_close(
        "conv2d_backward dbias past the loop budget",
        seed,
        &rt.download(&db).unwrap(),
        &f32s(&want_db),
        1e-5,
    );
}
