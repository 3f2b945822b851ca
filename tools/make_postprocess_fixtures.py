#!/usr/bin/env python3
"""Build tests/fixtures/postprocess/: reference post-processing results for tests/postprocess_parity.rs.

Pinned versions (same as tools/requirements-parity.txt): torch==2.15.0 (CPU is enough), transformers==5.24.0,
safetensors==0.8.0, numpy==2.4.6.
Install:  python3 -m venv venv && venv/bin/pip install torch==2.15.0 transformers==5.24.0 safetensors==0.8.0 \
              numpy==2.4.6 pillow==13.0.0 scipy==1.17.1
Run:      venv/bin/python tools/make_postprocess_fixtures.py

Inputs are seeded synthetic raw outputs (class logits [Q, K+1], mask logits [Q, h, w]) with a few confident
queries whose masks are blobs, so that every task gives several non-trivial segments. Two references:

* "orig": the inference of the original Mask2Former (facebookresearch/Mask2Former, mask2former/maskformer_model.py:
  `forward` (eval branch), `semantic_inference`, `panoptic_inference`, `instance_inference`, and detectron2's
  `sem_seg_postprocess`), transcribed below line for line in torch, detectron2's `Instances` replaced by a dict.
  Our code follows this reference.
* "hf": transformers' `Mask2FormerImageProcessor.post_process_{semantic,instance,panoptic}_segmentation`, called
  as is. It differs from the original; the Rust test compares against it only where the two agree (see
  tests/fixtures/postprocess/README.md and docs/POSTPROCESS.md).

Cases (K = 6 classes, things 0..2, stuff 3..5):
* `pan`: a panoptic-model image, network input 384×384 (the size transformers hard-codes), output 60×80.
  orig: panoptic, instance (thing classes only, as with panoptic_on), semantic with masks resized first.
  hf: panoptic, semantic (combine at 384×384, then resize = the original's semantic-only order).
* `big`: input 512×683, output 1024×1366 (1.4 M pixels): orig instance scores and areas, where an f32 running
  sum of mask probabilities drifts by ~1e-4 relative.
* `sem`: a semantic-only model (orig with sem_seg_postprocess_before_inference False: combine, then resize) and
  the same raw outputs with the panoptic/instance order (resize each mask, then combine); the maps differ.
* `inst384`: input = output = 384×384: hf instance (threshold 0) = orig instance without the thing filter.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import transformers
from safetensors.torch import save_file
from transformers.models.mask2former.image_processing_pil_mask2former import Mask2FormerImageProcessorPil
from transformers.models.mask2former.modeling_mask2former import Mask2FormerForUniversalSegmentationOutput

assert torch.__version__.startswith("2.15.0"), torch.__version__
assert transformers.__version__ == "5.24.0", transformers.__version__

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "postprocess"
NUM_CLASSES = 6
THINGS = [0, 1, 2]
OBJECT_MASK_THRESHOLD = 0.8  # original MODEL.MASK_FORMER.TEST.OBJECT_MASK_THRESHOLD
OVERLAP_THRESHOLD = 0.8  # original MODEL.MASK_FORMER.TEST.OVERLAP_THRESHOLD


# ---------------------------------------------------------------- original Mask2Former (transcribed)
def sem_seg_postprocess(result, img_size, output_height, output_width):
    """detectron2.modeling.postprocessing.sem_seg_postprocess."""
    result = result[:, : img_size[0], : img_size[1]].expand(1, -1, -1, -1)
    return F.interpolate(result, size=(output_height, output_width), mode="bilinear", align_corners=False)[0]


def semantic_inference(mask_cls, mask_pred):
    mask_cls = F.softmax(mask_cls, dim=-1)[..., :-1]
    mask_pred = mask_pred.sigmoid()
    return torch.einsum("qc,qhw->chw", mask_cls, mask_pred)


def panoptic_inference(mask_cls, mask_pred):
    scores, labels = F.softmax(mask_cls, dim=-1).max(-1)
    mask_pred = mask_pred.sigmoid()
    keep = labels.ne(NUM_CLASSES) & (scores > OBJECT_MASK_THRESHOLD)
    cur_scores, cur_classes, cur_masks = scores[keep], labels[keep], mask_pred[keep]
    cur_prob_masks = cur_scores.view(-1, 1, 1) * cur_masks
    h, w = cur_masks.shape[-2:]
    panoptic_seg = torch.zeros((h, w), dtype=torch.int32)
    segments_info = []
    current_segment_id = 0
    if cur_masks.shape[0] == 0:
        return panoptic_seg, segments_info
    cur_mask_ids = cur_prob_masks.argmax(0)
    stuff_memory_list = {}
    for k in range(cur_classes.shape[0]):
        pred_class = cur_classes[k].item()
        isthing = pred_class in THINGS
        mask_area = (cur_mask_ids == k).sum().item()
        original_area = (cur_masks[k] >= 0.5).sum().item()
        mask = (cur_mask_ids == k) & (cur_masks[k] >= 0.5)
        if mask_area > 0 and original_area > 0 and mask.sum().item() > 0:
            if mask_area / original_area < OVERLAP_THRESHOLD:
                continue
            if not isthing:
                if int(pred_class) in stuff_memory_list.keys():
                    panoptic_seg[mask] = stuff_memory_list[int(pred_class)]
                    continue
                else:
                    stuff_memory_list[int(pred_class)] = current_segment_id + 1
            current_segment_id += 1
            panoptic_seg[mask] = current_segment_id
            # The original records no score; the kept query's class score is what our Segment.score is.
            segments_info.append({"id": current_segment_id, "isthing": bool(isthing),
                                  "category_id": int(pred_class), "score": float(cur_scores[k])})
    return panoptic_seg, segments_info


def instance_inference(mask_cls, mask_pred, num_queries, topk, panoptic_on):
    scores = F.softmax(mask_cls, dim=-1)[:, :-1]
    labels = torch.arange(NUM_CLASSES).unsqueeze(0).repeat(num_queries, 1).flatten(0, 1)
    scores_per_image, topk_indices = scores.flatten(0, 1).topk(topk, sorted=False)
    labels_per_image = labels[topk_indices]
    topk_indices = topk_indices // NUM_CLASSES
    mask_pred = mask_pred[topk_indices]
    if panoptic_on:
        keep = torch.zeros_like(scores_per_image).bool()
        for i, lab in enumerate(labels_per_image):
            keep[i] = lab in THINGS
        scores_per_image, labels_per_image = scores_per_image[keep], labels_per_image[keep]
        mask_pred, topk_indices = mask_pred[keep], topk_indices[keep]
    pred_masks = (mask_pred > 0).float()
    mask_scores = (mask_pred.sigmoid().flatten(1) * pred_masks.flatten(1)).sum(1) / (
        pred_masks.flatten(1).sum(1) + 1e-6)
    # The original keeps no query index; it is recorded here so that the test can pair instances.
    return {"scores": scores_per_image * mask_scores, "labels": labels_per_image, "queries": topk_indices,
            "masks": pred_masks > 0}


def original(mask_cls, mask_pred, input_size, output_size, before_inference):
    """The eval branch of MaskFormer.forward for one image (no padding: image size = padded tensor size)."""
    mask_pred = F.interpolate(mask_pred[None], size=input_size, mode="bilinear", align_corners=False)[0]
    if before_inference:
        mask_pred = sem_seg_postprocess(mask_pred, input_size, *output_size)
    return mask_pred


# ---------------------------------------------------------------- synthetic raw outputs
def synth(seed, q, mask_hw):
    """Confident queries: class logits one-hot ×7 (softmax ≈ 0.99) on a chosen class, masks = blobs."""
    g = torch.Generator().manual_seed(seed)
    cls = torch.randn(q, NUM_CLASSES + 1, generator=g)
    # classes of the confident queries; 3 twice (two stuff regions of one class to merge, the later one last
    # among the kept queries, see README: transformers' fuse bookkeeping); the rest stay unconfident.
    picks = [0, 1, 2, 4, 1, 5, 0, NUM_CLASSES, 3, 2, 3]
    for i, c in enumerate(picks[:q]):
        cls[i, c] += 7.0
    h, w = mask_hw
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    masks = torch.empty(q, h, w)
    # Blob centres on a jittered 3×4 grid so that most segments survive the overlap test; query 6 sits inside
    # query 0 (same class, lower score) so that it loses most of its pixels and is dropped by that test.
    for i in range(q):
        cell = 0 if i == 6 else i
        cy = (cell // 4 + 0.5) / 3 + (torch.rand((), generator=g) - 0.5) * 0.1
        cx = (cell % 4 + 0.5) / 4 + (torch.rand((), generator=g) - 0.5) * 0.1
        ry, rx = torch.rand(2, generator=g) * 0.06 + (0.08 if i == 6 else 0.12)
        d2 = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2
        masks[i] = 5.0 * (1.0 - d2) + 0.7 * torch.randn(h, w, generator=g)
    return cls, masks


def hf_outputs(cls, masks):
    return Mask2FormerForUniversalSegmentationOutput(class_queries_logits=cls[None], masks_queries_logits=masks[None])


def packbits(mask_bool):
    return torch.from_numpy(np.packbits(mask_bool.numpy().astype(np.uint8).reshape(mask_bool.shape[0], -1), axis=1))


def main():
    torch.set_num_threads(1)
    OUT.mkdir(parents=True, exist_ok=True)
    tensors, info = {}, {"versions": {"torch": torch.__version__, "transformers": transformers.__version__},
                         "num_classes": NUM_CLASSES, "things": THINGS,
                         "object_mask_threshold": OBJECT_MASK_THRESHOLD, "overlap_threshold": OVERLAP_THRESHOLD}
    proc = Mask2FormerImageProcessorPil()

    # ---- pan: panoptic model, output smaller than the input, different aspect
    q, mask_hw, inp, outsz = 11, (16, 16), (384, 384), (60, 80)
    cls, masks = synth(1, q, mask_hw)
    tensors["pan.class_logits"], tensors["pan.mask_logits"] = cls, masks
    full = original(cls, masks, inp, outsz, before_inference=True)
    pan_ids, pan_segs = panoptic_inference(cls, full)
    inst = instance_inference(cls, full, q, topk=q, panoptic_on=True)
    sem_first = semantic_inference(cls, full).argmax(0)
    at_input = original(cls, masks, inp, outsz, before_inference=False)
    sem_combine = sem_seg_postprocess(semantic_inference(cls, at_input), inp, *outsz).argmax(0)
    tensors["pan.orig.panoptic"] = pan_ids.to(torch.uint8)
    tensors["pan.orig.semantic_resize_first"] = sem_first.to(torch.uint8)
    tensors["pan.orig.semantic_combine_first"] = sem_combine.to(torch.uint8)
    tensors["pan.orig.instance.scores"] = inst["scores"].contiguous()
    tensors["pan.orig.instance.labels"] = inst["labels"].to(torch.int32)
    tensors["pan.orig.instance.queries"] = inst["queries"].to(torch.int32)
    tensors["pan.orig.instance.masks"] = packbits(inst["masks"])
    out = hf_outputs(cls, masks)
    hf_pan = proc.post_process_panoptic_segmentation(
        out, threshold=OBJECT_MASK_THRESHOLD, mask_threshold=0.5, overlap_mask_area_threshold=OVERLAP_THRESHOLD,
        label_ids_to_fuse={3, 4, 5}, target_sizes=[outsz])[0]
    hf_sem = proc.post_process_semantic_segmentation(out, target_sizes=[outsz])[0]
    tensors["pan.hf.panoptic"] = hf_pan["segmentation"].to(torch.uint8)  # 0 = no segment (5.24 starts from zeros)
    tensors["pan.hf.semantic"] = hf_sem.to(torch.uint8)
    info["pan"] = {"queries": q, "mask_size": mask_hw, "input_size": inp, "output_size": outsz,
                   "orig_panoptic_segments": pan_segs, "hf_panoptic_segments": hf_pan["segments_info"]}
    agree = (hf_sem == sem_combine).float().mean().item()
    print(f"pan: {len(pan_segs)} orig segments, {len(hf_pan['segments_info'])} hf, {len(inst['labels'])} "
          f"instances; hf semantic = orig combine-first on {agree:.5f}; orig resize-first vs combine-first "
          f"{(sem_first == sem_combine).float().mean().item():.5f}")
    hf_map = hf_pan["segmentation"]
    print(f"pan: hf panoptic map = orig on {(hf_map.clamp(min=0) == pan_ids).float().mean().item():.5f}")

    # ---- big: large output, instance scores (f32 vs f64 sums)
    q, mask_hw, inp, outsz = 8, (16, 21), (512, 683), (1024, 1366)
    cls, masks = synth(2, q, mask_hw)
    tensors["big.class_logits"], tensors["big.mask_logits"] = cls, masks
    full = original(cls, masks, inp, outsz, before_inference=True)
    inst = instance_inference(cls, full, q, topk=q * NUM_CLASSES, panoptic_on=False)
    tensors["big.orig.instance.scores"] = inst["scores"].contiguous()
    tensors["big.orig.instance.labels"] = inst["labels"].to(torch.int32)
    tensors["big.orig.instance.queries"] = inst["queries"].to(torch.int32)
    tensors["big.orig.instance.areas"] = inst["masks"].flatten(1).sum(1).to(torch.int64)
    info["big"] = {"queries": q, "mask_size": mask_hw, "input_size": inp, "output_size": outsz}
    print(f"big: areas {tensors['big.orig.instance.areas'][:q].tolist()}")

    # ---- sem: semantic-only model; mask logits at the input size with sharp detail, output larger, so that
    # combining before or after the resize gives different maps (both orders recorded)
    q, mask_hw, inp, outsz = 5, (16, 20), (16, 20), (44, 57)
    g = torch.Generator().manual_seed(4)
    cls, masks = torch.randn(q, NUM_CLASSES + 1, generator=g) * 2.0, torch.randn(q, *mask_hw, generator=g) * 3.0
    tensors["sem.class_logits"], tensors["sem.mask_logits"] = cls, masks
    full = original(cls, masks, inp, outsz, before_inference=True)
    at_input = original(cls, masks, inp, outsz, before_inference=False)
    first = semantic_inference(cls, full).argmax(0)
    combine = sem_seg_postprocess(semantic_inference(cls, at_input), inp, *outsz).argmax(0)
    tensors["sem.orig.semantic_resize_first"] = first.to(torch.uint8)
    tensors["sem.orig.semantic_combine_first"] = combine.to(torch.uint8)
    info["sem"] = {"queries": q, "mask_size": mask_hw, "input_size": inp, "output_size": outsz}
    print(f"sem: resize-first = combine-first on {(first == combine).float().mean().item():.4f}")

    # ---- inst384: transformers instance at its own 384×384 size (= the original's when input = output)
    q, mask_hw, inp, outsz = 10, (12, 12), (384, 384), (384, 384)
    cls, masks = synth(3, q, mask_hw)
    tensors["inst384.class_logits"], tensors["inst384.mask_logits"] = cls, masks
    hf_inst = proc.post_process_instance_segmentation(
        hf_outputs(cls, masks), threshold=0.0, return_binary_maps=True)[0]
    segs = hf_inst["segments_info"]
    tensors["inst384.hf.scores"] = torch.tensor([s["score"] for s in segs], dtype=torch.float32)
    tensors["inst384.hf.labels"] = torch.tensor([s["label_id"] for s in segs], dtype=torch.int32)
    tensors["inst384.hf.areas"] = hf_inst["segmentation"].flatten(1).sum(1).to(torch.int64)
    full = original(cls, masks, inp, outsz, before_inference=True)
    ref = instance_inference(cls, full, q, topk=q, panoptic_on=False)
    nonempty = ref["masks"].flatten(1).any(1)
    assert sorted(zip(tensors["inst384.hf.labels"].tolist(), tensors["inst384.hf.areas"].tolist())) == sorted(
        zip(ref["labels"][nonempty].tolist(), ref["masks"][nonempty].flatten(1).sum(1).tolist()))
    info["inst384"] = {"queries": q, "mask_size": mask_hw, "input_size": inp, "output_size": outsz}
    print(f"inst384: {len(segs)} hf instances")

    save_file(tensors, str(OUT / "postprocess.safetensors"))
    (OUT / "postprocess.json").write_text(json.dumps(info, indent=1) + "\n")
    print(f"wrote {OUT} ({sum(t.numel() * t.element_size() for t in tensors.values())} bytes of tensors)")


if __name__ == "__main__":
    main()
