//! Mask2Former on a vendor-neutral GPU engine.

pub mod data;
pub mod eval;
