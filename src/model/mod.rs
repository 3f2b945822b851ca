//! Mask2Former: configuration, checkpoints, the network, pre- and post-processing.

pub mod checkpoint;
pub mod config;
pub mod embed;
pub mod labels;
pub mod postprocess;
pub mod preprocess;

pub use labels::LabelInfo;
