//! Mask2Former: configuration, checkpoints, the network, pre- and post-processing.

pub mod checkpoint;
pub mod config;
pub mod criterion;
pub mod decoder;
pub mod embed;
pub mod labels;
pub mod mask2former;
pub mod network;
pub mod pixel_decoder;
pub mod postprocess;
pub mod preprocess;
pub mod swin;

pub use labels::LabelInfo;
pub use mask2former::{DeviceBatch, Mask2Former, ModelError, ModelFiles, RawBatch};
