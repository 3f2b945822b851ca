//! Mask2Former on a vendor-neutral GPU engine.
//!
//! Layers, each depending only on those above it: [`runtime`] (adapter, buffers, kernels),
//! [`ops`] (WGSL kernels with launchers and plain-Rust references), then the graph, the model,
//! data, evaluation and training.
//!
//! Built for `wasm32` (the browser, `web/`), the crate keeps the inference path: runtime, ops,
//! graph, model, pre/post-processing and drawing, with `async` forms of everything that waits
//! for the device. Training, evaluation, the CLIs and Hub downloads are native only.

// In a browser wgpu's handles are neither `Send` nor `Sync` (one thread), so the runtime's
// shared `Arc`s are too there; natively they are both.
#![cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))]

#[cfg(not(target_arch = "wasm32"))]
pub mod atomic_file;
#[cfg(not(target_arch = "wasm32"))]
pub mod cli;
pub mod data;
pub mod dtype;
pub mod error;
#[cfg(not(target_arch = "wasm32"))]
pub mod eval;
pub mod graph;
#[cfg(not(target_arch = "wasm32"))]
pub mod hub;
pub mod image_input;
pub mod model;
pub mod nn;
pub mod ops;
#[cfg(not(target_arch = "wasm32"))]
pub mod optim;
pub mod runtime;
pub mod segment;
#[doc(hidden)]
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;
#[cfg(not(target_arch = "wasm32"))]
pub mod train;
pub mod visualize;

pub use error::{Error, Result};
pub use runtime::{DType, Runtime, RuntimeOptions, Tensor};

/// The README's code blocks are compiled as doc tests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
