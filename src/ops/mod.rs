//! The kernel library: one family per module, each a WGSL file in `shaders/` with its Rust
//! launcher, a plain-Rust reference (the specification) and tests against that reference.
//!
//! Conventions every family follows:
//! - `src/ops/<family>/mod.rs` says what the op computes and its shapes, and holds the launchers:
//!   `<op>_into(rt, inputs.., out, opts) -> Result<Vec<Dispatch>>` validates shapes, dtypes and
//!   binding limits, then builds the dispatches without running them (the graph executor records
//!   them once per plan); `<op>(rt, inputs.., opts) -> Result<Tensor>` allocates, runs, returns.
//!   Backward launchers are `<op>_backward_into` / `<op>_backward` and say whether they
//!   accumulate or overwrite.
//! - `reference.rs` is the plain-Rust specification in f64 (forward and backward), so gradient
//!   tests can take finite differences of it.
//! - `tests.rs` compares the kernels with the reference on fresh random inputs, with outputs
//!   poisoned with NaN first, odd shapes, one-element dims and sizes past one workgroup grid.
//! - Kernel variants are chosen from `Runtime::caps()` (f32 atomics, …) and from
//!   [`policy::policy`] (CPU- or GPU-shaped kernels, the adapter's loop budget), the one place
//!   that reads the adapter kind; every variant is tested.

pub(crate) mod common;
pub mod conv2d;
pub mod copy;
pub mod criterion;
pub mod deform_attn;
pub mod elementwise;
pub mod group_norm;
pub mod layer_norm;
pub mod mask_argmax;
pub mod masked_attention;
pub mod matmul;
pub mod policy;
pub mod reduce;
pub mod resample;
pub mod softmax;
pub mod window_attention;

/// Shader sources assembled at run time rather than read from `shaders/` (the native-f32-atomic
/// variants of the scatter-add backward kernels), so that `tests/shaders.rs` validates them too:
/// lavapipe has no f32 atomics, so no test on it ever compiles them.
pub fn generated_shaders() -> Vec<crate::runtime::Shader> {
    vec![
        deform_attn::backward_shader(true),
        resample::grid_backward_shader(true),
    ]
}
