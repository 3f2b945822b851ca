//! Mask2Former: configuration, checkpoints, the network, pre- and post-processing.

pub mod postprocess;
pub mod preprocess;
