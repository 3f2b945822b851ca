//! Mask2Former on a vendor-neutral GPU engine.

pub mod model;
