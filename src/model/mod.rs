//! Mask2Former model: config, checkpoint loading (more modules join as the model is built).

pub mod checkpoint;
pub mod config;
