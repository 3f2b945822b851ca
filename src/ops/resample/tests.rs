//! Resampling kernels against the f64 reference, on fresh random inputs with NaN-poisoned outputs.

use super::*;
use crate::testing::{self, assert_close};
use rand::Rng;

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}
fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

/// (N, C, H, W, size): up, down, non-integer ratios, 1x1 maps, one-element dims, scale factors
/// (including one whose floor gives back the input size, which PyTorch copies).
fn resize_cases() -> Vec<(usize, usize, usize, usize, Resize)> {
    vec![
        (1, 3, 5, 7, Resize::To(10, 14)),
        (2, 3, 13, 11, Resize::To(5, 4)),
        (1, 2, 7, 9, Resize::To(17, 3)),
        (1, 1, 1, 1, Resize::To(3, 5)),
        (1, 4, 6, 5, Resize::To(1, 1)),
        (3, 1, 1, 8, Resize::To(1, 13)),
        (1, 2, 6, 10, Resize::Scale(1.7, 0.55)),
        (1, 1, 3, 4, Resize::Scale(1.2, 4.0)),
        (2, 5, 25, 34, Resize::To(100, 136)),
        (1, 1, 40, 30, Resize::To(40, 90)),
    ]
}

fn ref_scales(h: usize, w: usize, size: Resize) -> ((usize, usize), (f32, f32)) {
    size.resolve("test", h, w).unwrap()
}

/// The chunked tests bind about two planes (or items) per chunk: `Some(k)` means k of the largest
/// per-item slices plus slack below one alignment unit, so later chunks start off alignment.
fn limit_for(rt: &Runtime, chunked: bool, largest_item_elems: usize) -> u64 {
    if chunked {
        (2 * 4 * largest_item_elems as u64) + 28
    } else {
        chunk::binding_limit(rt)
    }
}

fn check_bilinear(rt: &Runtime, chunked: bool, label: &str) {
    let seed = testing::seed();
    let mut rng = testing::rng(seed);
    for (n, c, h, w, size) in resize_cases() {
        let xs = testing::uniform(&mut rng, n * c * h * w, -2.0, 2.0);
        let x = rt.upload(&xs, &[n, c, h, w]).unwrap();
        let ((oh, ow), scale) = ref_scales(h, w, size);
        let out = rt.empty(&[n, c, oh, ow], DType::F32).unwrap();
        rt.fill(&out, f32::NAN).unwrap();
        let lim = limit_for(rt, chunked, (h * w).max(oh * ow));
        let d = bilinear_into_limit(rt, &x, &out, size, lim).unwrap();
        assert!(!chunked || n * c < 3 || d.len() > 1, "{label}: not chunked");
        rt.run(&d);
        let want = reference::bilinear(&f64s(&xs), n * c, (h, w), (oh, ow), scale);
        let case = format!("{label} bilinear {:?} -> {size:?}", [n, c, h, w]);
        assert_close(&case, seed, &rt.download(&out).unwrap(), &f32s(&want), 1e-5);

        // Backward: the GPU gathers, the reference scatters.
        let gs = testing::uniform(&mut rng, n * c * oh * ow, -1.0, 1.0);
        let g = rt.upload(&gs, &[n, c, oh, ow]).unwrap();
        let gi = rt.empty(&[n, c, h, w], DType::F32).unwrap();
        rt.fill(&gi, f32::NAN).unwrap();
        rt.run(&bilinear_backward_into_limit(rt, &g, &gi, size, lim).unwrap());
        let want = reference::bilinear_backward(&f64s(&gs), n * c, (h, w), (oh, ow), scale);
        assert_close(
            &format!("{case} backward"),
            seed,
            &rt.download(&gi).unwrap(),
            &f32s(&want),
            1e-5,
        );
    }
}

#[test]
fn bilinear_matches_reference() {
    check_bilinear(testing::runtime(), false, "whole");
}

#[test]
fn bilinear_chunked_at_unaligned_offsets() {
    check_bilinear(testing::runtime(), true, "chunked");
}

#[test]
fn bilinear_known_values_match_pytorch() {
    // F.interpolate(torch.tensor([[[[1., 2.], [3., 4.]]]]), size=(4, 4), mode="bilinear",
    // align_corners=False): rows 1.0 1.25 1.75 2.0 / 1.5 1.75 2.25 2.5 / 2.5 ... / 3.0 ...
    let rt = testing::runtime();
    let x = rt.upload(&[1.0, 2.0, 3.0, 4.0], &[1, 1, 2, 2]).unwrap();
    let y = rt
        .download(&bilinear(rt, &x, Resize::To(4, 4)).unwrap())
        .unwrap();
    #[rustfmt::skip]
    let want = [1.0, 1.25, 1.75, 2.0, 1.5, 1.75, 2.25, 2.5, 2.5, 2.75, 3.25, 3.5, 3.0, 3.25, 3.75, 4.0];
    assert_eq!(y, want);
}

#[test]
fn bilinear_reference_backward_is_the_adjoint() {
    // <A x, g> = <x, A^T g> for random x, g: the forward is linear in x, so this is the exact
    // finite-difference check.
    let seed = testing::seed();
    let mut rng = testing::rng(seed);
    for (n, c, h, w, size) in resize_cases() {
        let ((oh, ow), scale) = ref_scales(h, w, size);
        let x: Vec<f64> = (0..n * c * h * w)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let g: Vec<f64> = (0..n * c * oh * ow)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let ax = reference::bilinear(&x, n * c, (h, w), (oh, ow), scale);
        let atg = reference::bilinear_backward(&g, n * c, (h, w), (oh, ow), scale);
        let lhs: f64 = ax.iter().zip(&g).map(|(a, b)| a * b).sum();
        let rhs: f64 = x.iter().zip(&atg).map(|(a, b)| a * b).sum();
        assert!(
            (lhs - rhs).abs() <= 1e-12 * lhs.abs().max(1.0),
            "{size:?}: {lhs} vs {rhs} (seed {seed})"
        );
    }
}

#[test]
fn nearest_matches_reference() {
    let rt = testing::runtime();
    let seed = testing::seed();
    let mut rng = testing::rng(seed);
    let mut cases = resize_cases();
    cases.push((1, 2, 5, 6, Resize::To(10, 12))); // out == 2·in
    cases.push((1, 1, 7, 3, Resize::Scale(0.5, 3.0)));
    for chunked in [false, true] {
        for &(n, c, h, w, size) in &cases {
            let xs = testing::uniform(&mut rng, n * c * h * w, -2.0, 2.0);
            let x = rt.upload(&xs, &[n, c, h, w]).unwrap();
            let ((oh, ow), _) = ref_scales(h, w, size);
            let scale = match size {
                Resize::To(..) => (
                    reference::source_scale(h, oh, None),
                    reference::source_scale(w, ow, None),
                ),
                Resize::Scale(a, b) => (
                    reference::source_scale(h, oh, Some(a)),
                    reference::source_scale(w, ow, Some(b)),
                ),
            };
            let out = rt.empty(&[n, c, oh, ow], DType::F32).unwrap();
            rt.fill(&out, f32::NAN).unwrap();
            let lim = limit_for(rt, chunked, (h * w).max(oh * ow));
            rt.run(&nearest_into_limit(rt, &x, &out, size, lim).unwrap());
            let want = reference::nearest(&f64s(&xs), n * c, (h, w), (oh, ow), scale);
            // Nearest copies values: exact.
            assert_close(
                &format!("nearest {:?} -> {size:?} chunked {chunked}", [n, c, h, w]),
                seed,
                &rt.download(&out).unwrap(),
                &f32s(&want),
                0.0,
            );
        }
    }
}

#[test]
fn bilinear_past_the_binding_limit() {
    // Two planes whose output (2 x 4099 x 4097 f32 = 134.3 MB) is just past lavapipe's 128 MiB
    // binding; plane sizes are odd, so the second chunk starts off alignment.
    let rt = testing::runtime();
    let limit = chunk::binding_limit(rt);
    let (oh, ow) = (4099usize, 4097usize);
    let planes = (limit / (4 * (oh * ow) as u64) + 1) as usize;
    assert!((planes * oh * ow * 4) as u64 > limit);
    let seed = testing::seed();
    let mut rng = testing::rng(seed);
    let (h, w) = (5, 6);
    let xs = testing::uniform(&mut rng, planes * h * w, -1.0, 1.0);
    let x = rt.upload(&xs, &[1, planes, h, w]).unwrap();
    let out = rt.empty(&[1, planes, oh, ow], DType::F32).unwrap();
    rt.fill(&out, f32::NAN).unwrap();
    let dispatches = bilinear_into(rt, &x, &out, Resize::To(oh, ow)).unwrap();
    assert!(dispatches.len() >= 2, "expected a chunked launch");
    rt.run(&dispatches);
    let ((_, _), scale) = ref_scales(h, w, Resize::To(oh, ow));
    let want = reference::bilinear(&f64s(&xs), planes, (h, w), (oh, ow), scale);
    assert_close(
        "bilinear past 128 MiB",
        seed,
        &rt.download(&out).unwrap(),
        &f32s(&want),
        1e-5,
    );
}

/// (N, C, H, W, Hg, Wg)
const GRID_CASES: &[(usize, usize, usize, usize, usize, usize)] = &[
    (1, 1, 1, 1, 3, 4),
    (2, 3, 5, 7, 4, 6),
    (3, 1, 9, 4, 1, 50),
    (1, 5, 3, 11, 7, 1),
    (2, 2, 17, 13, 20, 33),
];

/// Grid coordinates mostly inside, some outside [-1, 1], and some exactly on -1, 0, 1 and pixel
/// edges.
fn grid_values(rng: &mut impl Rng, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| match rng.random_range(0..10) {
            0 => [-1.0, 1.0, 0.0, -0.5, 0.5][rng.random_range(0..5)],
            1 => rng.random_range(-2.5..2.5),
            _ => rng.random_range(-1.1..1.1),
        })
        .collect()
}

fn check_grid_sample(rt: &Runtime, scatter: Scatter, chunked: bool, label: &str) {
    let seed = testing::seed();
    let mut rng = testing::rng(seed);
    for &(n, c, h, w, hg, wg) in GRID_CASES {
        let lim = limit_for(rt, chunked, (c * h * w).max(c * hg * wg).max(2 * hg * wg));
        let case = format!("{label} grid_sample {:?} grid {:?}", [n, c, h, w], [hg, wg]);
        let xs = testing::uniform(&mut rng, n * c * h * w, -2.0, 2.0);
        let gs = grid_values(&mut rng, n * hg * wg * 2);
        let x = rt.upload(&xs, &[n, c, h, w]).unwrap();
        let grid = rt.upload(&gs, &[n, hg, wg, 2]).unwrap();
        let out = rt.empty(&[n, c, hg, wg], DType::F32).unwrap();
        rt.fill(&out, f32::NAN).unwrap();
        let d = grid_sample_into_limit(rt, &x, &grid, &out, false, lim).unwrap();
        assert!(!chunked || n < 3 || d.len() > 1, "{label}: not chunked");
        rt.run(&d);
        let (x64, g64) = (f64s(&xs), f64s(&gs));
        let want = reference::grid_sample(&x64, &g64, n, c, (h, w));
        assert_close(&case, seed, &rt.download(&out).unwrap(), &f32s(&want), 1e-5);

        let go = testing::uniform(&mut rng, n * c * hg * wg, -1.0, 1.0);
        let grad_out = rt.upload(&go, &[n, c, hg, wg]).unwrap();
        let gx = rt.empty(&[n, c, h, w], DType::F32).unwrap();
        let gg = rt.empty(&[n, hg, wg, 2], DType::F32).unwrap();
        rt.fill(&gx, f32::NAN).unwrap();
        rt.fill(&gg, f32::NAN).unwrap();
        rt.run(
            &grid_sample_backward_into_limit(
                rt, &x, &grid, &grad_out, &gx, &gg, scatter, false, lim,
            )
            .unwrap(),
        );
        let (wx, wg_) = reference::grid_sample_backward(&x64, &g64, &f64s(&go), n, c, (h, w));
        // grad_x[i] sums go·w over the samples that touch pixel i, in a scatter order that varies
        // between runs. The bilinear weights are ≥ 0, so the same backward of |go| is the sum of
        // the terms' magnitudes: the error is bounded relative to that, not to a sum that may
        // cancel (a 1×1 image gathers every sample of mixed sign into one value).
        let go_abs: Vec<f64> = go.iter().map(|&v| (v as f64).abs()).collect();
        let (terms_x, _) = reference::grid_sample_backward(&x64, &g64, &go_abs, n, c, (h, w));
        testing::assert_close_to_bound(
            &format!("{case} grad_x"),
            seed,
            &rt.download(&gx).unwrap(),
            &f32s(&wx),
            &f32s(&terms_x),
            1e-5,
        );
        assert_close(
            &format!("{case} grad_grid"),
            seed,
            &rt.download(&gg).unwrap(),
            &f32s(&wg_),
            1e-5,
        );
    }
}

#[test]
fn grid_sample_native_atomics() {
    let rt = testing::runtime();
    if !rt.caps().f32_atomics {
        eprintln!("skipping grid_sample_native_atomics: adapter has no f32 atomics");
        return;
    }
    check_grid_sample(rt, Scatter::NativeF32, false, "native");
}

#[test]
fn grid_sample_compare_exchange() {
    check_grid_sample(testing::runtime(), Scatter::CompareExchange, false, "cas");
}

#[test]
fn grid_sample_portable_runtime_chunked() {
    let rt = testing::portable_runtime();
    assert!(Scatter::NativeF32.resolve(rt, "t").is_err());
    check_grid_sample(rt, Scatter::Auto, true, "portable chunked");
}

#[test]
fn grid_sample_reference_backward_matches_finite_differences() {
    // The sample is piecewise bilinear in the grid: random continuous coordinates land on a pixel
    // edge (a kink) with probability ~0, and a 1e-6 step stays inside one piece.
    let seed = testing::seed();
    let mut rng = testing::rng(seed);
    let (n, c, h, w, pts) = (2, 3, 4, 5, 6);
    let x: Vec<f64> = (0..n * c * h * w)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let grid: Vec<f64> = (0..n * pts * 2)
        .map(|_| rng.random_range(-1.2..1.2))
        .collect();
    let go: Vec<f64> = (0..n * c * pts)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let loss = |x: &[f64], g: &[f64]| -> f64 {
        let y = reference::grid_sample(x, g, n, c, (h, w));
        y.iter().zip(&go).map(|(a, b)| a * b).sum()
    };
    let (gx, gg) = reference::grid_sample_backward(&x, &grid, &go, n, c, (h, w));
    let eps = 1e-6;
    for i in 0..x.len() {
        let (mut a, mut b) = (x.clone(), x.clone());
        a[i] += eps;
        b[i] -= eps;
        let fd = (loss(&a, &grid) - loss(&b, &grid)) / (2.0 * eps);
        assert!(
            (fd - gx[i]).abs() < 1e-6,
            "x[{i}]: fd {fd} vs {} (seed {seed})",
            gx[i]
        );
    }
    for i in 0..grid.len() {
        let (mut a, mut b) = (grid.clone(), grid.clone());
        a[i] += eps;
        b[i] -= eps;
        let fd = (loss(&x, &a) - loss(&x, &b)) / (2.0 * eps);
        assert!(
            (fd - gg[i]).abs() < 1e-6,
            "grid[{i}]: fd {fd} vs {} (seed {seed})",
            gg[i]
        );
    }
}

#[test]
fn shape_errors_name_the_op() {
    let rt = testing::runtime();
    let x = rt.upload(&[0.0; 12], &[1, 1, 3, 4]).unwrap();
    let bad = rt.empty(&[1, 1, 5, 5], DType::F32).unwrap();
    let e = bilinear_into(rt, &x, &bad, Resize::To(6, 8))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("resample::bilinear") && e.contains("[1, 1, 6, 8]"),
        "{e}"
    );
    let e = bilinear(rt, &x, Resize::Scale(-1.0, 2.0))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("scale"), "{e}");
    let e = bilinear(rt, &x, Resize::To(0, 3))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("empty"), "{e}");
    let g = rt.upload(&[0.0; 6], &[1, 3, 2, 1]).unwrap();
    let e = grid_sample(rt, &x, &g).err().unwrap().to_string();
    assert!(e.contains("grid_sample") && e.contains("grid"), "{e}");
    let u = rt.upload_u32(&[0; 12], &[1, 1, 3, 4]).unwrap();
    assert!(nearest(rt, &u, Resize::To(2, 2)).is_err());
}

#[test]
fn more_planes_than_one_grid_dimension() {
    // 70 001 planes: past 65 535 workgroups along z, so the launch splits into several chunks.
    let rt = testing::runtime();
    let seed = testing::seed();
    let mut rng = testing::rng(seed);
    let planes = 70_001;
    let xs = testing::uniform(&mut rng, planes * 2, -1.0, 1.0);
    let x = rt.upload(&xs, &[1, planes, 1, 2]).unwrap();
    let out = rt.empty(&[1, planes, 3, 3], DType::F32).unwrap();
    rt.fill(&out, f32::NAN).unwrap();
    let ds = bilinear_into(rt, &x, &out, Resize::To(3, 3)).unwrap();
    assert!(ds.len() > 1);
    rt.run(&ds);
    let (_, scale) = ref_scales(1, 2, Resize::To(3, 3));
    let want = reference::bilinear(&f64s(&xs), planes, (1, 2), (3, 3), scale);
    assert_close(
        "70 001 planes",
        seed,
        &rt.download(&out).unwrap(),
        &f32s(&want),
        1e-5,
    );
}

#[test]
fn grid_sample_known_values_match_pytorch() {
    // F.grid_sample on [[1, 2], [3, 4]] with align_corners=False and zeros padding: the centre
    // (0, 0) averages all four pixels (2.5); the corner (-1, -1) is the outer corner of pixel
    // (0, 0), a quarter of it (0.25); (0.5, -0.5) is the centre of pixel (0, 1) (2.0); (2, 0) is
    // outside (0).
    let rt = testing::runtime();
    let x = rt.upload(&[1.0, 2.0, 3.0, 4.0], &[1, 1, 2, 2]).unwrap();
    let g = rt
        .upload(&[0.0, 0.0, -1.0, -1.0, 0.5, -0.5, 2.0, 0.0], &[1, 1, 4, 2])
        .unwrap();
    let y = rt.download(&grid_sample(rt, &x, &g).unwrap()).unwrap();
    assert_eq!(y, [2.5, 0.25, 2.0, 0.0]);
}

#[test]
fn grid_sample_past_one_workgroup_grid() {
    // 4.3 M points: past 65 535 workgroups of 64 threads, so the launch uses a 2-D grid.
    let rt = testing::runtime();
    let seed = testing::seed();
    let mut rng = testing::rng(seed);
    let (h, w, pts) = (3, 4, 4_300_000);
    let xs = testing::uniform(&mut rng, h * w, -1.0, 1.0);
    let gs = grid_values(&mut rng, pts * 2);
    let x = rt.upload(&xs, &[1, 1, h, w]).unwrap();
    let grid = rt.upload(&gs, &[1, 1, pts, 2]).unwrap();
    let out = rt.empty(&[1, 1, 1, pts], DType::F32).unwrap();
    rt.fill(&out, f32::NAN).unwrap();
    let ds = grid_sample_into(rt, &x, &grid, &out).unwrap();
    assert!(ds[0].workgroups()[1] > 1, "expected a 2-D grid");
    rt.run(&ds);
    let want = reference::grid_sample(&f64s(&xs), &f64s(&gs), 1, 1, (h, w));
    assert_close(
        "grid_sample 2-D grid",
        seed,
        &rt.download(&out).unwrap(),
        &f32s(&want),
        1e-5,
    );
}

#[test]
fn point_sample_matches_grid_sample_of_2c_minus_1() {
    let rt = testing::runtime();
    let seed = testing::seed();
    let mut rng = testing::rng(seed);
    for &(n, c, h, w, pts) in &[
        (2usize, 3usize, 5usize, 7usize, 40usize),
        (1, 1, 1, 1, 3),
        (3, 2, 8, 4, 1),
    ] {
        let case = format!("point_sample {:?} points {pts}", [n, c, h, w]);
        let xs = testing::uniform(&mut rng, n * c * h * w, -2.0, 2.0);
        // [0, 1] coordinates and a margin outside, plus exact 0, 0.5 and 1.
        let cs: Vec<f32> = grid_values(&mut rng, n * pts * 2)
            .iter()
            .map(|g| (g + 1.0) / 2.0)
            .collect();
        let grid: Vec<f64> = cs.iter().map(|&v| 2.0 * v as f64 - 1.0).collect();
        let x = rt.upload(&xs, &[n, c, h, w]).unwrap();
        let coords = rt.upload(&cs, &[n, pts, 2]).unwrap();
        let out = rt.empty(&[n, c, pts], DType::F32).unwrap();
        rt.fill(&out, f32::NAN).unwrap();
        rt.run(&point_sample_into(rt, &x, &coords, &out).unwrap());
        let want = reference::grid_sample(&f64s(&xs), &grid, n, c, (h, w));
        assert_close(&case, seed, &rt.download(&out).unwrap(), &f32s(&want), 1e-5);

        let go = testing::uniform(&mut rng, n * c * pts, -1.0, 1.0);
        let grad_out = rt.upload(&go, &[n, c, pts]).unwrap();
        let (gx, gc) = point_sample_backward(rt, &x, &coords, &grad_out, Scatter::Auto).unwrap();
        let (wx, wg) = reference::grid_sample_backward(&f64s(&xs), &grid, &f64s(&go), n, c, (h, w));
        // d(grid)/d(coords) = 2.
        let wc: Vec<f64> = wg.iter().map(|g| 2.0 * g).collect();
        assert_close(
            &format!("{case} grad_x"),
            seed,
            &rt.download(&gx).unwrap(),
            &f32s(&wx),
            1e-5,
        );
        assert_close(
            &format!("{case} grad_coords"),
            seed,
            &rt.download(&gc).unwrap(),
            &f32s(&wc),
            1e-5,
        );
    }
    let x = rt.upload(&[0.0; 4], &[1, 1, 2, 2]).unwrap();
    let bad = rt.upload(&[0.0; 6], &[1, 3, 2]).unwrap();
    let out = rt.empty(&[1, 2, 3], DType::F32).unwrap();
    let e = point_sample_into(rt, &x, &bad, &out)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("point_sample") && e.contains("[1, 2, 3]"), "{e}");
}
