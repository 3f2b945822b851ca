use super::*;
use crate::ops::elementwise::testutil::{check_fd, poisoned, run, to32, to64};
use crate::runtime::DType;
use crate::testing::{rng, runtime, seed, uniform};

/// Copies are exact: compare bit for bit.
fn assert_same(case: &str, seed: u64, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{case}: length (seed {seed})");
    if let Some(i) = got
        .iter()
        .zip(want)
        .position(|(g, w)| g.to_bits() != w.to_bits())
    {
        panic!(
            "{case} (seed {seed}): index {i}: got {}, want {}",
            got[i], want[i]
        );
    }
}

const PERMS: &[(&[usize], &[usize])] = &[
    (&[], &[]),
    (&[7], &[0]),
    (&[2, 3, 4], &[0, 1, 2]),
    (&[2, 3, 4], &[2, 0, 1]),
    (&[2, 3, 4], &[1, 2, 0]),
    (&[2, 3, 4], &[2, 1, 0]),
    (&[1, 5, 1, 3], &[3, 1, 2, 0]),
    // Swin window partition: [B, H/w, w, W/w, w, C] -> [B, H/w, W/w, w, w, C].
    (&[2, 3, 4, 2, 4, 5], &[0, 1, 3, 2, 4, 5]),
    // [B, C, H, W] -> [B, H, W, C].
    (&[2, 5, 3, 7], &[0, 2, 3, 1]),
    // The window partition with C a multiple of 4 (`main_v4`).
    (&[2, 3, 4, 2, 4, 8], &[0, 1, 3, 2, 4, 5]),
    // Transposes in 4×4 blocks (`transpose4`): 2-D, batched, and [B, C, H, W] -> [B, H, W, C].
    (&[12, 8], &[1, 0]),
    (&[3, 8, 12], &[0, 2, 1]),
    (&[2, 4, 3, 4], &[0, 2, 3, 1]),
];

#[test]
fn permute_and_backward_match_reference() {
    let rt = runtime();
    let s = seed();
    let mut r = rng(s);
    for &(shape, perm) in PERMS {
        let n: usize = shape.iter().product();
        let x = uniform(&mut r, n, -1.0, 1.0);
        let xt = rt.upload(&x, shape).unwrap();
        let out_shape = permuted_shape(shape, perm);
        let out = poisoned(rt, &out_shape);
        run(rt, permute_into(rt, &xt, perm, &out));
        let case = format!("permute {shape:?} by {perm:?}");
        assert_same(
            &case,
            s,
            &rt.download(&out).unwrap(),
            &reference::permute(&x, shape, perm),
        );
        // u32 tensors move the same way.
        let xi: Vec<u32> = (0..n as u32).collect();
        let xit = rt.upload_u32(&xi, shape).unwrap();
        let oi = permute(rt, &xit, perm).unwrap();
        assert_eq!(
            rt.download_u32(&oi).unwrap(),
            reference::permute(&xi, shape, perm),
            "{case} u32"
        );
        // Backward: the inverse permutation; the reference adjoint checked by finite differences.
        let dx = poisoned(rt, shape);
        run(rt, permute_backward_into(rt, &out, perm, &dx));
        assert_same(
            &format!("{case} backward"),
            s,
            &rt.download(&dx).unwrap(),
            &x,
        );
        if n <= 64 {
            let dy = to64(&uniform(&mut r, n, -1.0, 1.0));
            let inv = inverse_permutation(perm);
            let g = reference::permute(&dy, &out_shape, &inv);
            let f = |v: &[f64]| reference::permute(v, shape, perm);
            check_fd(&case, &f, &to64(&x), &dy, &g, 1e-6);
        }
    }
}

/// (shape, per-axis (start, end, step)).
type SliceCase = (&'static [usize], &'static [(usize, usize, usize)]);

const SLICES: &[SliceCase] = &[
    (&[10], &[(2, 9, 1)]),
    (&[10], &[(1, 10, 3)]),
    (&[4, 6, 5], &[(1, 3, 1), (0, 6, 2), (4, 5, 1)]),
    (&[4, 6, 5], &[(0, 4, 1), (2, 5, 1), (0, 5, 1)]),
    (&[3, 8, 8, 2], &[(0, 3, 1), (0, 8, 2), (1, 8, 2), (0, 2, 1)]),
    (&[5, 1], &[(3, 3, 1), (0, 1, 1)]),
    // Whole texels (`main_v4`): the innermost axis whole or from a multiple of 4.
    (&[4, 6, 8], &[(1, 3, 1), (0, 6, 2), (0, 8, 1)]),
    (&[4, 6, 12], &[(0, 4, 1), (2, 5, 1), (4, 12, 1)]),
];

#[test]
fn slice_and_backward_match_reference() {
    let rt = runtime();
    let s = seed();
    let mut r = rng(s);
    for &(shape, rs) in SLICES {
        let ranges: Vec<Range> = rs.iter().map(|&(a, b, c)| Range::new(a, b, c)).collect();
        let n: usize = shape.iter().product();
        let x = uniform(&mut r, n, -1.0, 1.0);
        let xt = rt.upload(&x, shape).unwrap();
        let out_shape = sliced_shape("t", shape, &ranges).unwrap();
        let out = poisoned(rt, &out_shape);
        run(rt, slice_into(rt, &xt, &ranges, &out));
        let case = format!("slice {shape:?} {rs:?}");
        if out.numel() == 0 {
            // Runtime::download of an empty tensor panics in bytemuck (a runtime issue):
            // check only that the launch is empty.
            assert!(slice_into(rt, &xt, &ranges, &out).unwrap().is_empty());
            continue;
        }
        assert_same(
            &case,
            s,
            &rt.download(&out).unwrap(),
            &reference::slice(&x, shape, &ranges),
        );

        let m: usize = out_shape.iter().product();
        let dy = uniform(&mut r, m, -1.0, 1.0);
        let dyt = rt.upload(&dy, &out_shape).unwrap();
        let dx = poisoned(rt, shape);
        run(rt, slice_backward_into(rt, &dyt, &ranges, &dx));
        let want = reference::slice_backward(&to64(&dy), shape, &ranges);
        assert_same(
            &format!("{case} backward"),
            s,
            &rt.download(&dx).unwrap(),
            &to32(&want),
        );
        let f = |v: &[f64]| reference::slice(v, shape, &ranges);
        check_fd(&case, &f, &to64(&x), &to64(&dy), &want, 1e-6);
    }
}

/// (shape, per-axis (before, after)).
type PadCase = (&'static [usize], &'static [(i64, i64)]);

const PADS: &[PadCase] = &[
    (&[5], &[(2, 3)]),
    (&[5], &[(-1, -2)]),
    (&[3, 4], &[(1, 0), (0, 2)]),
    (&[3, 4, 5], &[(0, 0), (-1, 2), (3, -2)]),
    (&[1, 2, 7, 7], &[(0, 0), (0, 0), (0, 5), (0, 5)]),
    (&[2, 2], &[(0, 0), (-2, 1)]),
    // Whole texels (`main_v4`), padded and cropped by multiples of 4.
    (&[3, 8], &[(1, 0), (4, 4)]),
    (&[2, 3, 12], &[(0, 1), (1, -1), (-4, 0)]),
];

#[test]
fn pad_and_backward_match_reference() {
    let rt = runtime();
    let s = seed();
    let mut r = rng(s);
    for &(shape, amounts) in PADS {
        let n: usize = shape.iter().product();
        let x = uniform(&mut r, n, -1.0, 1.0);
        let xt = rt.upload(&x, shape).unwrap();
        let out_shape = padded_shape("t", shape, amounts).unwrap();
        let out = poisoned(rt, &out_shape);
        run(rt, pad_into(rt, &xt, amounts, 7.5f32.to_bits(), &out));
        let case = format!("pad {shape:?} {amounts:?}");
        assert_same(
            &case,
            s,
            &rt.download(&out).unwrap(),
            &reference::pad(&x, shape, amounts, 7.5),
        );

        let m: usize = out_shape.iter().product();
        let dy = uniform(&mut r, m, -1.0, 1.0);
        let dyt = rt.upload(&dy, &out_shape).unwrap();
        let dx = poisoned(rt, shape);
        run(rt, pad_backward_into(rt, &dyt, amounts, &dx));
        let want = reference::pad_backward(&to64(&dy), shape, amounts);
        assert_same(
            &format!("{case} backward"),
            s,
            &rt.download(&dx).unwrap(),
            &to32(&want),
        );
        let f = |v: &[f64]| reference::pad(v, shape, amounts, 0.0);
        check_fd(&case, &f, &to64(&x), &to64(&dy), &want, 1e-6);
    }
}

#[test]
fn concat_and_backward_match_reference() {
    let rt = runtime();
    let s = seed();
    let mut r = rng(s);
    for (shapes, axis) in [
        (vec![vec![3], vec![1], vec![4]], 0),
        (vec![vec![2, 3, 4], vec![2, 1, 4], vec![2, 5, 4]], 1),
        (vec![vec![2, 3, 4], vec![2, 3, 1]], 2),
        (vec![vec![1, 3], vec![2, 3], vec![1, 3]], 0),
        (vec![vec![2, 3, 8], vec![2, 5, 8]], 1),
    ] {
        let xs: Vec<Vec<f32>> = shapes
            .iter()
            .map(|sh| uniform(&mut r, sh.iter().product(), -1.0, 1.0))
            .collect();
        let ts: Vec<Tensor> = xs
            .iter()
            .zip(&shapes)
            .map(|(x, sh)| rt.upload(x, sh).unwrap())
            .collect();
        let refs: Vec<&Tensor> = ts.iter().collect();
        let sh: Vec<&[usize]> = shapes.iter().map(|v| v.as_slice()).collect();
        let out_shape = concat_shape("t", &sh, axis).unwrap();
        let out = poisoned(rt, &out_shape);
        run(rt, concat_into(rt, &refs, axis, &out));
        let parts: Vec<(&[f32], &[usize])> = xs
            .iter()
            .zip(&sh)
            .map(|(x, s)| (x.as_slice(), *s))
            .collect();
        let case = format!("concat {shapes:?} axis {axis}");
        assert_same(
            &case,
            s,
            &rt.download(&out).unwrap(),
            &reference::concat(&parts, axis),
        );

        // Backward: slices of dy, exactly the inputs back when dy is the output.
        let dxs: Vec<Tensor> = sh.iter().map(|s| poisoned(rt, s)).collect();
        let drefs: Vec<&Tensor> = dxs.iter().collect();
        run(rt, concat_backward_into(rt, &out, axis, &drefs));
        for (i, (dx, x)) in dxs.iter().zip(&xs).enumerate() {
            assert_same(
                &format!("{case} backward {i}"),
                s,
                &rt.download(dx).unwrap(),
                x,
            );
        }
    }
}

#[test]
fn copy_errors_name_the_op_and_shapes() {
    let rt = runtime();
    let x = rt.upload(&[1.0; 6], &[2, 3]).unwrap();
    let err = permute(rt, &x, &[0, 0]).unwrap_err().to_string();
    assert!(err.contains("permute") && err.contains("[0, 0]"), "{err}");
    let err = slice(rt, &x, &[Range::all(2), Range::new(1, 4, 1)])
        .unwrap_err()
        .to_string();
    assert!(err.contains("slice") && err.contains("axis 1"), "{err}");
    let err = pad(rt, &x, &[(0, 0), (-4, 0)], 0.0)
        .unwrap_err()
        .to_string();
    assert!(err.contains("pad"), "{err}");
    let y = rt.upload(&[1.0; 4], &[4, 1]).unwrap();
    let err = concat(rt, &[&x, &y], 0).unwrap_err().to_string();
    assert!(err.contains("concat") && err.contains("[4, 1]"), "{err}");
}

/// A permute of a tensor just past the 128 MiB binding limit: chunks start mid-row and the
/// transposed reads span most of x.
#[test]
fn permute_past_binding_limit() {
    let rt = runtime();
    let m = (rt.caps().max_storage_binding / 4) as usize / 3 + 1000;
    // u32 values: every element distinct, so any misplaced element shows.
    let x: Vec<u32> = (0..3 * m as u32).collect();
    let xt = rt.upload_u32(&x, &[3, m]).unwrap();
    let out = rt.upload_u32(&vec![u32::MAX; 3 * m], &[m, 3]).unwrap();
    run(rt, permute_into(rt, &xt, &[1, 0], &out));
    let got = rt.download_u32(&out).unwrap();
    let bad = (0..3 * m).find(|&i| got[i] != x[(i % 3) * m + i / 3]);
    assert_eq!(bad, None, "first wrong element");
}

/// Copies that move whole, aligned texels run `main_v4`, the others `main`; both give the
/// reference results (the cases above), and the vec4 entry also past the binding limit.
#[test]
fn texel_copies_take_the_vec4_entry() {
    let rt = runtime();
    let entries =
        |d: Vec<Dispatch>| -> Vec<String> { d.iter().map(|x| x.label().into()).collect() };
    let x = rt.upload(&[0.5; 2 * 6 * 8], &[2, 6, 8]).unwrap();
    let perm = |p: &[usize]| {
        let out = rt.empty(&permuted_shape(x.shape(), p), DType::F32).unwrap();
        entries(permute_into(rt, &x, p, &out).unwrap())
    };
    assert_eq!(perm(&[1, 0, 2]), ["copy::main_v4"]);
    assert_eq!(perm(&[0, 2, 1]), ["copy::main"]);
    let x8 = rt.upload(&[0.5; 2 * 8 * 12], &[2, 8, 12]).unwrap();
    let out = rt.empty(&[2, 12, 8], DType::F32).unwrap();
    let d = permute_into(rt, &x8, &[0, 2, 1], &out).unwrap();
    assert_eq!(entries(d), ["transpose::transpose4"]);
    let sl = |r: [Range; 3]| {
        let out = rt
            .empty(&sliced_shape("t", x.shape(), &r).unwrap(), DType::F32)
            .unwrap();
        entries(slice_into(rt, &x, &r, &out).unwrap())
    };
    let all = |d| Range::all(d);
    assert_eq!(
        sl([all(2), Range::new(1, 5, 2), Range::new(4, 8, 1)]),
        ["copy::main_v4"]
    );
    assert_eq!(sl([all(2), all(6), Range::new(2, 6, 1)]), ["copy::main"]);
    assert_eq!(sl([all(2), all(6), Range::new(0, 8, 2)]), ["copy::main"]);
    let pd = |a: [(i64, i64); 3]| {
        let out = rt
            .empty(&padded_shape("t", x.shape(), &a).unwrap(), DType::F32)
            .unwrap();
        entries(pad_into(rt, &x, &a, 0, &out).unwrap())
    };
    assert_eq!(pd([(0, 0), (1, 1), (4, -4)]), ["copy::main_v4"]);
    assert_eq!(pd([(0, 0), (0, 0), (2, 2)]), ["copy::main"]);
    // Past the 128 MiB binding limit: chunked launches, rows of 4 words.
    let m = (rt.caps().max_storage_binding / 16) as usize / 2 + 1000;
    let big: Vec<u32> = (0..8 * m as u32).collect();
    let bt = rt.upload_u32(&big, &[2, m, 4]).unwrap();
    let out = rt.upload_u32(&vec![u32::MAX; 8 * m], &[m, 2, 4]).unwrap();
    let d = permute_into(rt, &bt, &[1, 0, 2], &out).unwrap();
    assert!(
        d.len() >= 2 && d.iter().all(|x| x.label() == "copy::main_v4"),
        "{:?}",
        entries(d)
    );
    run(rt, permute_into(rt, &bt, &[1, 0, 2], &out));
    let got = rt.download_u32(&out).unwrap();
    let want = |i: usize| big[((i / 4) % 2) * 4 * m + (i / 8) * 4 + i % 4];
    let bad = (0..8 * m).find(|&i| got[i] != want(i));
    assert_eq!(bad, None, "first wrong element");
}
