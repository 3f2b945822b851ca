//! Bad shapes and outputs past the binding limit are errors naming the problem.

use super::*;

#[test]
fn shape_errors_are_values() {
    let rt = testing::runtime();
    let x = rt.full(&[1, 4, 5, 5], 1.0).unwrap();
    let w = rt.full(&[6, 3, 3, 3], 1.0).unwrap();
    let err = conv2d(rt, &x, &w, None, &Conv2dOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("conv2d") && err.contains("[6, 3, 3, 3]"),
        "{err}"
    );
    let w = rt.full(&[6, 2, 3, 3], 1.0).unwrap();
    let err = conv2d(rt, &x, &w, None, &Conv2dOptions::default().groups(3))
        .unwrap_err()
        .to_string();
    assert!(err.contains("groups = 3"), "{err}");
    let w = rt.full(&[6, 4, 7, 7], 1.0).unwrap();
    let err = conv2d(rt, &x, &w, None, &Conv2dOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("does not fit"), "{err}");
    let w = rt.full(&[6, 4, 3, 3], 1.0).unwrap();
    let o = Conv2dOptions {
        path: Path::Pointwise,
        ..Default::default()
    };
    let err = conv2d(rt, &x, &w, None, &o).unwrap_err().to_string();
    assert!(err.contains("Pointwise path"), "{err}");
    let b = rt.full(&[5], 1.0).unwrap();
    let err = conv2d(rt, &x, &w, Some(&b), &Conv2dOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("bias") && err.contains("[5]"), "{err}");
}

/// An output past the storage-binding limit is a clear `TooLarge` error, not a crash.
#[test]
fn output_past_binding_limit_is_too_large() {
    let rt = testing::runtime();
    let limit = rt.caps().max_storage_binding as usize;
    // 1 input channel, enough output channels that out exceeds the limit; nothing runs.
    let plane = 1024 * 1024;
    let cout = limit / (plane * 4) + 1;
    let x = rt.empty(&[1, 1, 1024, 1024], DType::F32).unwrap();
    let w = rt.full(&[cout, 1, 1, 1], 1.0).unwrap();
    let err = conv2d(rt, &x, &w, None, &Conv2dOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("conv2d") && err.contains("out"), "{err}");
}
