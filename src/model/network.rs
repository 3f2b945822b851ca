//! The whole network as one graph: `pixel_values [B, 3, H, W]` → backbone → pixel decoder →
//! transformer decoder → every prediction. Built once per input shape.

use crate::graph::{Graph, Result, Value};
use crate::model::config::Mask2FormerConfig;
use crate::model::decoder::{transformer_decoder, Prediction};
use crate::model::pixel_decoder::{pixel_decoder, PixelDecoderOut};
use crate::model::swin::{swin_backbone, FeatureMap};
use crate::nn::Path;

/// Name of the graph input.
pub const PIXEL_VALUES: &str = "pixel_values";

/// The values of one built network, for reading outputs and intermediates.
pub struct Network {
    pub pixel_values: Value,
    pub backbone: Vec<FeatureMap>,
    pub pixel_decoder: PixelDecoderOut,
    /// All predictions; the last is the final output.
    pub predictions: Vec<Prediction>,
}

impl Network {
    pub fn last(&self) -> &Prediction {
        self.predictions
            .last()
            .expect("at least the learnable-query prediction")
    }
}

/// Adds the network to `g` for a batch of `batch` images of `height x width`.
pub fn build(
    g: &mut Graph,
    cfg: &Mask2FormerConfig,
    batch: usize,
    height: usize,
    width: usize,
) -> Result<Network> {
    let model = Path::root("model");
    let pixel_values = g.input(PIXEL_VALUES, &[batch, 3, height, width])?;
    // Modules scope their nodes by their full checkpoint prefix (`nn::Path`), so profiles group by
    // module without an outer scope here (nested full-path scopes would repeat the prefix).
    let enc = model.pp("pixel_level_module").pp("encoder");
    let backbone = swin_backbone(g, &enc, &cfg.backbone_config, pixel_values)?;
    let dec = model.pp("pixel_level_module").pp("decoder");
    let pix = pixel_decoder(g, &dec, cfg, &backbone)?;
    let predictions = transformer_decoder(g, &model, &Path::root("class_predictor"), cfg, &pix)?;
    Ok(Network {
        pixel_values,
        backbone,
        pixel_decoder: pix,
        predictions,
    })
}

/// Input size of the graph [`expected_keys`] reads the parameters off: the smallest image
/// `Mask2Former::forward` accepts, so the probe is cheap. Parameter shapes do not depend on it.
const PROBE_SIZE: usize = 32;

/// Every parameter the network for `cfg` declares, with its shape, in build order: the tensors
/// a checkpoint must hold (`Checkpoint::validate`) and the ones training saves.
///
/// Read off a graph built for a small input, so that the architecture is written down once, in
/// the modules (`swin.rs`, `pixel_decoder.rs`, `decoder.rs`), which declare every parameter
/// under its transformers key and in its checkpoint shape. The known extras a checkpoint may
/// also hold are in `checkpoint::known_extra`.
pub fn expected_keys(cfg: &Mask2FormerConfig) -> Result<Vec<(String, Vec<usize>)>> {
    let mut g = Graph::new();
    build(&mut g, cfg, 1, PROBE_SIZE, PROBE_SIZE)?;
    Ok(g.params()
        .map(|(name, v, _)| (name.to_owned(), g.shape(v).to_vec()))
        .collect())
}
