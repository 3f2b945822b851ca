//! The device path of [`Segmenter::segment`]: panoptic, semantic and instance post-processing
//! with the per-pixel work on the device (`ops::mask_argmax`), and the non-finite check of mask logits
//! that stay there.

use super::{SegmentError, Segmentation, Segmenter, Task, NETWORK_HINT};
use crate::model::postprocess::{self, DeviceOutputs};
use crate::model::preprocess::Preprocessed;
use crate::model::{DeviceBatch, ModelError};
use crate::ops::mask_argmax::{count_nonfinite, Sizes};
use crate::runtime::Tensor;
use crate::Runtime;

impl Segmenter {
    /// Panoptic, semantic or instance post-processing of a batch of one with the per-pixel work
    /// on the device; `None` where the device path does not apply (see
    /// [`Segmenter::postprocess_on_device`]).
    pub(super) async fn postprocess_on_device(
        &self,
        out: &DeviceBatch,
        pre: &Preprocessed,
        task: Task,
    ) -> Result<Option<Segmentation>, SegmentError> {
        let (labels, rt) = (self.model.labels(), self.model.runtime());
        let panoptic_model = (0..labels.len() as u32).any(|l| !labels.is_thing(l));
        let (h, w) = out.mask_size;
        let logits = out
            .mask_logits
            .reshape(&[out.num_queries, h, w])
            .map_err(runtime_err)?;
        let raw = DeviceOutputs {
            class_logits: &out.class_logits,
            num_classes_with_void: out.num_classes_with_void,
            mask_logits: &logits,
            sizes: Sizes {
                mask: out.mask_size,
                input: (pre.height, pre.width),
                output: pre.original_size,
            },
        };
        let is_thing = |l: u32| labels.is_thing(l);
        let result = match task {
            Task::Panoptic => {
                postprocess::panoptic_on_device(rt, raw, &self.postprocess, &is_thing)
                    .await
                    .map(Segmentation::Panoptic)
            }
            Task::Semantic if panoptic_model => postprocess::semantic_on_device(rt, raw)
                .await
                .map(Segmentation::Semantic),
            // As on the host: a panoptic model's instance results keep thing classes only.
            Task::Instance => postprocess::instance_on_device(
                rt,
                raw,
                &self.postprocess,
                panoptic_model.then_some(&is_thing as &dyn Fn(u32) -> bool),
            )
            .await
            .map(Segmentation::Instance),
            _ => return Ok(None),
        };
        match result {
            Ok(r) => Ok(Some(r)),
            Err(crate::Error::Unsupported { .. } | crate::Error::TooLarge { .. }) => Ok(None),
            Err(e) => Err(runtime_err(e)),
        }
    }
}

pub(super) fn runtime_err(e: crate::Error) -> SegmentError {
    SegmentError::Model(ModelError::Graph(e.into()))
}

/// [`check_finite`] for the mask logits on the device: counts there, reads back the count, the
/// first index and that one value.
pub(super) async fn check_finite_on_device(
    rt: &Runtime,
    logits: &Tensor,
) -> Result<(), SegmentError> {
    let found = count_nonfinite(rt, logits).await.map_err(runtime_err)?;
    if found.count == 0 {
        return Ok(());
    }
    let bytes = rt
        .read_buffer_async(logits.buffer(), logits.offset() + 4 * found.first as u64, 4)
        .await
        .map_err(runtime_err)?;
    Err(SegmentError::NonFinite {
        what: "masks_queries_logits".into(),
        count: found.count as usize,
        first: found.first,
        value: f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
        hint: NETWORK_HINT,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_mask_logits_on_the_device_are_named_with_their_position() {
        let rt = crate::testing::cpu_policy_runtime();
        let mut x = vec![0.5f32; 3 * 40 * 41];
        let t = rt.upload(&x, &[1, 3, 40, 41]).unwrap();
        assert!(pollster::block_on(check_finite_on_device(rt, &t)).is_ok());
        x[2000] = f32::NEG_INFINITY;
        x[4000] = f32::NAN;
        let t = rt.upload(&x, &[1, 3, 40, 41]).unwrap();
        let e = pollster::block_on(check_finite_on_device(rt, &t))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(
                "masks_queries_logits contains 2 non-finite value(s) (first at flat index 2000: -inf)"
            ),
            "{e}"
        );
    }
}
