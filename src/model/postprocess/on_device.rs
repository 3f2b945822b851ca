//! Panoptic and semantic post-processing with the per-pixel work on the device
//! (`ops::mask_argmax`): the mask logits never come back; the host keeps what is per query
//! (class softmax, which queries are kept, segment ids and merging) and receives one u32 per
//! pixel plus a counter per kept query. Same rules and f32 formulas as [`super::panoptic()`] and
//! [`super::semantic()`] (the device's `exp` may differ from the host's in the last bit, so a
//! pixel whose two best candidates tie to within rounding may go the other way).

use super::panoptic::{assemble, confident_queries};
use super::{class_probs, Panoptic, PostprocessConfig, Semantic};
use crate::error::Result;
use crate::ops::mask_argmax::{self, Sizes, Upsampling};
use crate::runtime::{Runtime, Tensor};

/// One image's raw outputs with the mask logits on the device.
#[derive(Clone, Copy)]
pub struct DeviceOutputs<'a> {
    /// `[Q, K+1]` class logits.
    pub class_logits: &'a [f32],
    /// K + 1 (classes plus "no object").
    pub num_classes_with_void: usize,
    /// `[Q, h, w]` mask logits.
    pub mask_logits: &'a Tensor,
    /// Mask, network input and original (output) sizes.
    pub sizes: Sizes,
}

impl DeviceOutputs<'_> {
    fn check(&self) -> Result<usize> {
        let q = self.mask_logits.shape().first().copied().unwrap_or(0);
        if self.num_classes_with_void < 2
            || self.class_logits.len() != q * self.num_classes_with_void
        {
            return Err(crate::shape_err!(
                "postprocess::on_device",
                "class logits of {} values for {q} queries and {} classes with void",
                self.class_logits.len(),
                self.num_classes_with_void
            ));
        }
        Ok(q)
    }
}

/// [`super::panoptic()`] with the owners and areas computed on the device.
pub async fn panoptic_on_device(
    rt: &Runtime,
    raw: DeviceOutputs<'_>,
    cfg: &PostprocessConfig,
    is_thing: &dyn Fn(u32) -> bool,
) -> Result<Panoptic> {
    raw.check()?;
    let kept = confident_queries(raw.class_logits, raw.num_classes_with_void, cfg);
    let (oh, ow) = raw.sizes.output;
    if kept.is_empty() {
        return Ok(assemble(&kept, &[], &[], cfg, is_thing, (oh, ow)));
    }
    let up = Upsampling::new(rt, raw.sizes)?;
    let pairs: Vec<(u32, f32)> = kept.iter().map(|k| (k.query as u32, k.score)).collect();
    let (owners, area) = mask_argmax::panoptic(rt, raw.mask_logits, &up, &pairs)?;
    let owners = rt.download_u32_async(&owners).await?;
    let area: Vec<u64> = rt
        .download_u32_async(&area)
        .await?
        .into_iter()
        .map(u64::from)
        .collect();
    Ok(assemble(&kept, &owners, &area, cfg, is_thing, (oh, ow)))
}

/// [`super::semantic()`] with `semantic_resize_masks_first = true` (masks upsampled to the
/// original size before the queries are combined), the labels computed on the device.
pub async fn semantic_on_device(rt: &Runtime, raw: DeviceOutputs<'_>) -> Result<Semantic> {
    raw.check()?;
    let k = raw.num_classes_with_void - 1;
    let probs: Vec<Vec<f32>> = class_probs(raw.class_logits, raw.num_classes_with_void)
        .into_iter()
        .map(|mut p| {
            p.truncate(k);
            p
        })
        .collect();
    let up = Upsampling::new(rt, raw.sizes)?;
    let labels = mask_argmax::semantic(rt, raw.mask_logits, &up, &probs)?;
    let (height, width) = raw.sizes.output;
    Ok(Semantic {
        height,
        width,
        labels: rt.download_u32_async(&labels).await?,
    })
}
