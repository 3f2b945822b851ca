//! Panoptic, semantic and instance post-processing with the per-pixel work on the device
//! (`ops::mask_argmax`): the mask logits never come back; the host keeps what is per query
//! (class softmax, which queries are kept or selected, segment ids and merging, scores) and
//! receives one u32 per pixel plus a counter per kept query (panoptic, semantic), or one bit per
//! pixel and selected query plus its area, box and Σ sigmoid (instance). Same rules and f32
//! formulas as [`super::panoptic()`], [`super::semantic()`] and [`super::instance()`] (the
//! device's `exp` may differ from the host's in the last bit, so a pixel whose two best
//! candidates tie to within rounding may go the other way, and an instance score may differ in
//! its last bits).

use super::instance::{instance_score, selected_pairs};
use super::panoptic::{assemble, confident_queries};
use super::{class_probs, Instance, Instances, Panoptic, PostprocessConfig, Semantic};
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

/// [`super::instance()`] with the masks, areas, boxes and mask-probability sums computed on the
/// device: the same pairs in the same order, the same filters, the masks unpacked from bits.
/// Each distinct selected query is computed once (pairs of one query share its mask), in as many
/// launches as the storage-binding limit needs.
pub async fn instance_on_device(
    rt: &Runtime,
    raw: DeviceOutputs<'_>,
    cfg: &PostprocessConfig,
    is_thing: Option<&dyn Fn(u32) -> bool>,
) -> Result<Instances> {
    raw.check()?;
    let pairs = selected_pairs(raw.class_logits, raw.num_classes_with_void, cfg, is_thing);
    // Distinct queries in order of first use; `slot[q]` is q's place among them.
    let mut slot = std::collections::HashMap::new();
    let mut queries: Vec<u32> = Vec::new();
    for &(_, q, _) in &pairs {
        slot.entry(q).or_insert_with(|| {
            queries.push(q as u32);
            queries.len() - 1
        });
    }
    let (height, width) = raw.sizes.output;
    let mut masks = Vec::with_capacity(queries.len());
    if !queries.is_empty() {
        let up = Upsampling::new(rt, raw.sizes)?;
        let words = height * mask_argmax::words_per_row(width);
        for chunk in queries.chunks(mask_argmax::queries_per_launch(rt, raw.sizes.output)?) {
            let out = mask_argmax::instance(rt, raw.mask_logits, &up, chunk)?;
            let (bits, stats) = out.read(rt).await?;
            for (j, st) in stats.into_iter().enumerate() {
                let mask =
                    mask_argmax::unpack_mask(&bits[j * words..(j + 1) * words], (height, width));
                masks.push((mask, st));
            }
        }
    }
    // Pairs left per query: the last one takes the mask, the others copy it.
    let mut uses = vec![0usize; masks.len()];
    pairs.iter().for_each(|p| uses[slot[&p.1]] += 1);
    let mut instances = Vec::new();
    for (class_prob, q, c) in pairs {
        let s = slot[&q];
        uses[s] -= 1;
        let st = masks[s].1;
        let score = instance_score(class_prob, st.sigmoid_sum, st.area);
        if score < cfg.instance_score_threshold {
            continue;
        }
        let mask = if uses[s] == 0 {
            std::mem::take(&mut masks[s].0)
        } else {
            masks[s].0.clone()
        };
        instances.push(Instance {
            label_id: c as u32,
            score,
            query: q,
            mask,
            area: st.area,
            bbox: st.bbox,
        });
    }
    Ok(Instances {
        height,
        width,
        instances,
    })
}
