//! Mask2Former on a vendor-neutral GPU engine.
//!
//! Layers, each depending only on those above it: [`runtime`] (adapter, buffers, kernels),
//! [`ops`] (WGSL kernels with launchers and plain-Rust references), then the graph, the model,
//! data, evaluation and training.

pub mod atomic_file;
pub mod cli;
pub mod data;
pub mod error;
pub mod eval;
pub mod graph;
pub mod image_input;
pub mod model;
pub mod nn;
pub mod ops;
pub mod optim;
pub mod runtime;
pub mod segment;
#[doc(hidden)]
pub mod testing;
pub mod train;
pub mod visualize;

pub use error::{Error, Result};
pub use runtime::{DType, Runtime, RuntimeOptions, Tensor};

/// The README's code blocks are compiled as doc tests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
