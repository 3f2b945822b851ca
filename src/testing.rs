//! Test support shared by the kernel tests: a shared runtime, fresh random inputs, error metrics.
//!
//! Inputs are fresh on every run (seeded from the clock) unless `M2F_TEST_SEED` is set; every
//! failure message carries the seed so a failing case can be replayed.

use std::sync::OnceLock;

use rand::{Rng, SeedableRng};

use crate::runtime::{Runtime, RuntimeOptions};

/// One runtime per test binary, shared by all tests (pipelines compile once).
pub fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        Runtime::new().expect("a wgpu adapter (install mesa-vulkan-drivers for lavapipe)")
    })
}

/// A runtime without optional features, to test the portable kernel variants.
pub fn portable_runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        Runtime::with_options(&RuntimeOptions::from_env().unwrap().portable())
            .expect("a wgpu adapter (install mesa-vulkan-drivers for lavapipe)")
    })
}

/// A runtime that runs the CPU-shaped kernels whatever `M2F_KERNEL_POLICY` says, for tests
/// that compare the two policies.
pub fn cpu_policy_runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    forced(&RT, crate::runtime::KernelPolicy::Cpu)
}

/// A runtime whose `Auto` variants take the GPU-shaped kernels on any adapter (workgroup-wide
/// rows, shared-memory tiles), so kernel tests run them on lavapipe too.
pub fn gpu_policy_runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    forced(&RT, crate::runtime::KernelPolicy::Gpu)
}

fn forced(
    cell: &'static OnceLock<Runtime>,
    kernel_policy: crate::runtime::KernelPolicy,
) -> &'static Runtime {
    cell.get_or_init(|| {
        let opts = RuntimeOptions {
            kernel_policy,
            ..RuntimeOptions::default()
        };
        Runtime::with_options(&opts)
            .expect("a wgpu adapter (install mesa-vulkan-drivers for lavapipe)")
    })
}

/// The seed for this test's random inputs: `M2F_TEST_SEED` or fresh from the clock.
pub fn seed() -> u64 {
    if let Ok(s) = std::env::var("M2F_TEST_SEED") {
        if let Ok(v) = s.parse() {
            return v;
        }
    }
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// A seeded RNG.
pub fn rng(seed: u64) -> rand::rngs::StdRng {
    rand::rngs::StdRng::seed_from_u64(seed)
}

/// `n` values uniform in `[lo, hi)`.
pub fn uniform(rng: &mut impl Rng, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(lo..hi)).collect()
}

/// Relative L2 error ‖got − want‖ / max(‖want‖, tiny). NaN anywhere in `got` gives infinity.
pub fn rel_l2(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len(), "length mismatch");
    let mut num = 0.0f64;
    let mut den = 0.0f64;
    for (&g, &w) in got.iter().zip(want) {
        if !g.is_finite() && g.to_bits() != w.to_bits() {
            return f64::INFINITY;
        }
        let d = g as f64 - w as f64;
        num += d * d;
        den += (w as f64) * (w as f64);
    }
    if num == 0.0 {
        return 0.0;
    }
    (num / den.max(1e-30)).sqrt()
}

/// Asserts `rel_l2(got, want) <= tol`; on failure names the case, the seed and the worst element.
pub fn assert_close(case: &str, seed: u64, got: &[f32], want: &[f32], tol: f64) {
    assert_eq!(
        got.len(),
        want.len(),
        "{case}: length {} vs {} (seed {seed})",
        got.len(),
        want.len()
    );
    let err = rel_l2(got, want);
    if err <= tol {
        return;
    }
    let (i, g, w) = got
        .iter()
        .zip(want)
        .enumerate()
        .map(|(i, (&g, &w))| (i, g, w))
        .max_by(|a, b| {
            let da = if a.1.is_nan() {
                f32::INFINITY
            } else {
                (a.1 - a.2).abs()
            };
            let db = if b.1.is_nan() {
                f32::INFINITY
            } else {
                (b.1 - b.2).abs()
            };
            da.total_cmp(&db)
        })
        .unwrap();
    panic!("{case}: relative L2 error {err:.3e} > {tol:.1e} (seed {seed}); worst at index {i}: got {g}, want {w}");
}

/// Asserts ‖got − want‖ ≤ tol · ‖bound‖ in L2, where `bound[i]` is the sum of the magnitudes of
/// the terms that make `want[i]` (its conditioning). For a result that cancels to near zero, f32
/// rounding of the terms is what limits the accuracy, not the result's own size; a result free of
/// cancellation has `bound ≈ |want|` and gets the same check as [`assert_close`].
pub fn assert_close_to_bound(
    case: &str,
    seed: u64,
    got: &[f32],
    want: &[f32],
    bound: &[f32],
    tol: f64,
) {
    assert_eq!(bound.len(), want.len(), "{case}: bound length");
    let norm = |x: &[f32]| x.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
    let scale = norm(bound) / norm(want).max(1e-30);
    // err ≤ tol·‖bound‖ is err/‖want‖ ≤ tol·‖bound‖/‖want‖: assert_close's check, with its report.
    assert_close(
        &format!("{case} (‖terms‖/‖result‖ = {scale:.1})"),
        seed,
        got,
        want,
        tol * scale,
    );
}
