#!/usr/bin/env python3
"""Build the transformers parity fixtures under tests/fixtures/parity/.

For each model spec (tiny, small) this script
  1. builds a seeded, random-weight Mask2FormerForUniversalSegmentation with a Swin backbone and saves it in the
     hub layout (config.json + model.safetensors via save_pretrained) plus preprocessor_config.json;
  2. makes deterministic synthetic input images (image_<b>.png), runs the image processor on them and records
     every intermediate tensor of one eval-mode forward pass in intermediates.safetensors (batch-first layouts,
     see tests/fixtures/parity/README.md for the key list);
  3. runs the three HF post-processors (semantic / instance / panoptic) and stores their maps in
     postprocess.safetensors and the thresholds + segment lists in postprocess.json.
For the tiny model it also records a training step (loss.safetensors + loss.json): every torch.rand draw made by
the matcher and point sampler in call order, the matching, every loss term, all gradients and the parameters after
one AdamW step.

Run:  .venv/bin/python tools/make_parity_fixtures.py   (versions pinned in tools/requirements-parity.txt)
The output is deterministic for a given torch/transformers version and thread count (torch threads are set to 1).
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import torch
import transformers
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import Mask2FormerConfig, Mask2FormerForUniversalSegmentation, SwinConfig
from transformers.models.mask2former import modeling_mask2former as m2f_mod
from transformers.models.mask2former.image_processing_pil_mask2former import Mask2FormerImageProcessorPil

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "parity"

# Post-processing: mask_threshold and overlap_mask_area_threshold keep the HF defaults. The score thresholds are
# chosen per model (choose_thresholds) because HF's 0.5 keeps nothing for random weights with few labels; the
# values used are written to postprocess.json.
MASK_THRESHOLD = 0.5
OVERLAP_THRESHOLD = 0.8


SPECS = {
    # Stage 4 (3x4 tokens) and stage 3 (6x8) are smaller than the window (7): both are padded to 7x7 and shifted.
    "tiny": dict(
        seed=1234,
        swin=dict(embed_dim=8, depths=[1, 1, 2, 1], num_heads=[1, 2, 2, 4], window_size=7, mlp_ratio=4.0),
        m2f=dict(
            feature_size=32,
            mask_feature_size=32,
            hidden_dim=32,
            encoder_feedforward_dim=64,
            dim_feedforward=64,
            encoder_layers=2,
            decoder_layers=4,
            num_attention_heads=4,
            num_queries=8,
            train_num_points=128,
        ),
        num_labels=5,
        label_ids_to_fuse=[3, 4],
        # (height, width) of the synthetic source images; the processor resizes them to 96x128.
        image_sizes=[(75, 100)],
        processor_size={"shortest_edge": 96, "longest_edge": 1333},
        detailed=True,
    ),
    # Window 12, mlp_ratio 2, batch 2 at 96x160, channel counts that are not powers of two: stage 2 (12x20) is
    # padded to 12x24, stage 3 (6x10) and stage 4 (3x5) to 12x12, all shifted by 6. Only the main intermediates are recorded (size budget).
    "small": dict(
        seed=4321,
        swin=dict(embed_dim=12, depths=[1, 1, 2, 1], num_heads=[2, 2, 4, 4], window_size=12, mlp_ratio=2.0),
        m2f=dict(
            feature_size=32,
            mask_feature_size=32,
            hidden_dim=32,
            encoder_feedforward_dim=48,
            dim_feedforward=80,
            encoder_layers=2,
            decoder_layers=5,
            num_attention_heads=8,
            num_queries=6,
            train_num_points=512,
        ),
        num_labels=7,
        label_ids_to_fuse=[5, 6],
        image_sizes=[(75, 125), (75, 125)],
        processor_size={"shortest_edge": 96, "longest_edge": 1333},
        detailed=False,
    ),
}


def build_model(spec: dict) -> Mask2FormerForUniversalSegmentation:
    swin = SwinConfig(
        **spec["swin"],
        drop_path_rate=0.0,
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )
    num_labels = spec["num_labels"]
    cfg = Mask2FormerConfig(
        backbone_config=swin,
        **spec["m2f"],
        id2label={i: f"class_{i}" for i in range(num_labels)},
        label2id={f"class_{i}": i for i in range(num_labels)},
        dropout=0.0,
    )
    torch.manual_seed(spec["seed"])
    model = Mask2FormerForUniversalSegmentation(cfg)
    randomize(model, spec["seed"])
    return model.eval()


@torch.no_grad()
def randomize(model: torch.nn.Module, seed: int) -> None:
    """Re-draw every parameter with O(1) activations in mind.

    HF's own init (std 0.02, zero biases, unit norms) makes near-constant logits and near-ties in every argmax;
    parity tests need weights whose outputs differ clearly between queries, classes and pixels.
    """
    gen = torch.Generator().manual_seed(seed)

    def normal(shape, std):
        return torch.randn(shape, generator=gen) * std

    for name, p in model.named_parameters():
        if p.ndim == 1:
            if name.endswith("weight"):  # LayerNorm / GroupNorm scale
                p.copy_(1.0 + normal(p.shape, 0.1))
            else:
                p.copy_(normal(p.shape, 0.1))
        elif "relative_position_bias_table" in name:
            p.copy_(normal(p.shape, 0.5))
        elif "level_embed" in name or "queries_" in name:
            p.copy_(normal(p.shape, 1.0))
        else:
            fan_in = p[0].numel()
            std = 1.0 / math.sqrt(fan_in)
            if "sampling_offsets" in name:
                std *= 3.0  # offsets of a few pixels: some samples land outside the map (zero padding)
            if name.startswith("class_predictor"):
                std *= 2.5  # peaky class softmax so post-processing keeps some queries
            if "transformer_module.decoder.layers" in name and ("out_proj" in name or "fc2" in name):
                std *= 0.3  # keep the residual (the query's identity) dominant, else all queries collapse
            if "mask_embedder.2." in name:
                std *= 3.0  # mask logits with |logit| of a few units: confident masks, mixed attention masks
            p.copy_(normal(p.shape, std))


def hub_names(model: torch.nn.Module, path: Path) -> dict[str, str]:
    """Map in-memory parameter names (transformers 5 renames Swin weights) to the names save_pretrained wrote.

    Matched by exact value: randomize() makes every tensor unique.
    """
    saved = {}
    with safe_open(str(path), "pt") as f:
        for k in f.keys():
            saved[k] = f.get_tensor(k)
    mapping = {}
    for name, p in model.named_parameters():
        hits = [k for k, t in saved.items() if t.shape == p.shape and torch.equal(t, p.detach())]
        if len(hits) != 1:
            raise RuntimeError(f"cannot map {name} to a saved key: {hits}")
        mapping[name] = hits[0]
    return mapping


def synthetic_image(height: int, width: int, seed: int) -> Image.Image:
    """Smooth colour gradients plus a few flat shapes: deterministic, and not constant under bilinear resize."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.zeros((height, width, 3), np.float32)
    for c in range(3):
        fy, fx, ph = rng.uniform(0.02, 0.15), rng.uniform(0.02, 0.15), rng.uniform(0, 6.28)
        img[..., c] = 127 + 90 * np.sin(fy * y + fx * x + ph)
    for _ in range(3):
        cy, cx = rng.integers(0, height), rng.integers(0, width)
        ry, rx = rng.integers(5, height // 3), rng.integers(5, width // 3)
        inside = ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 < 1
        img[inside] = rng.integers(0, 256, 3)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def f32(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to(torch.float32).contiguous().clone()


def record_forward(model, pixel_values: torch.Tensor, spec: dict) -> tuple[dict, object]:
    """One eval forward with hooks; returns (tensors, model output)."""
    rec: dict[str, torch.Tensor] = {}
    hooks = []
    backbone = model.model.pixel_level_module.encoder
    pix_dec = model.model.pixel_level_module.decoder
    tdec = model.model.transformer_module.decoder

    def on(module, fn, pre=False):
        if pre:
            hooks.append(module.register_forward_pre_hook(fn, with_kwargs=True))
        else:
            hooks.append(module.register_forward_hook(fn))

    detailed = spec["detailed"]
    # --- backbone ---
    if detailed:
        on(backbone.swin.embeddings.patch_embeddings, lambda m, i, o: rec.__setitem__("backbone.patch_embeddings", f32(o[0])))
        on(backbone.swin.embeddings, lambda m, i, o: rec.__setitem__("backbone.embeddings", f32(o[0])))
        on(backbone.swin.encoder.layers[0].blocks[0], lambda m, i, o: rec.__setitem__("backbone.stage1.block0", f32(o[0])))
        for s, stage in enumerate(backbone.swin.encoder.layers):
            # stage output before downsampling and before hidden_states_norms, [B, C, H, W]
            on(stage, lambda m, i, o, s=s: rec.__setitem__(f"backbone.hidden_states.{s}", f32(o[1])))

    def backbone_out(m, i, o):
        for s, t in enumerate(o.feature_maps):
            rec[f"backbone.features.{s}"] = f32(t)

    on(backbone, backbone_out)

    # --- pixel decoder ---
    if detailed:
        for lvl, proj in enumerate(pix_dec.input_projections):
            on(proj, lambda m, i, o, lvl=lvl: rec.__setitem__(f"pixel_decoder.input_projections.{lvl}", f32(o)))
        for li, layer in enumerate(pix_dec.encoder.layers):
            on(layer, lambda m, i, o, li=li: rec.__setitem__(f"pixel_decoder.encoder.layers.{li}", f32(o[0])))
        on(pix_dec.adapter_1, lambda m, i, o: rec.__setitem__("pixel_decoder.adapter_1", f32(o)))
        on(pix_dec.layer_1, lambda m, i, o: rec.__setitem__("pixel_decoder.layer_1", f32(o)))

    def pix_dec_out(m, i, o):
        rec["pixel_decoder.mask_features"] = f32(o.mask_features)
        for lvl, t in enumerate(o.multi_scale_features):
            rec[f"pixel_decoder.multi_scale_features.{lvl}"] = f32(t)

    on(pix_dec, pix_dec_out)

    # --- first MSDeformAttn call (pixel-decoder encoder layer 0): the core op's inputs and output ---
    orig_msda = m2f_mod.multi_scale_deformable_attention
    msda_calls = []

    def msda_spy(value, shapes, locs, weights):
        out = orig_msda(value, shapes, locs, weights)
        if detailed and not msda_calls:
            rec["msda0.value"] = f32(value)  # [B, S, heads, head_dim]
            rec["msda0.sampling_locations"] = f32(locs)  # [B, S, heads, levels, points, 2] (x, y) in [0, 1]
            rec["msda0.attention_weights"] = f32(weights)  # [B, S, heads, levels, points], softmaxed
            rec["msda0.output"] = f32(out)  # [B, S, heads*head_dim], before output_proj
            rec["msda0.spatial_shapes"] = torch.tensor(shapes, dtype=torch.int64)
        msda_calls.append(1)
        return out

    m2f_mod.multi_scale_deformable_attention = msda_spy

    # --- transformer decoder ---
    heads = model.config.num_attention_heads
    intermediate = []
    on(tdec.layernorm, lambda m, i, o: intermediate.append(f32(o.transpose(0, 1))))

    def mask_pre(li):
        def fn(m, args, kwargs):
            am = kwargs["encoder_attention_mask"]  # [B*heads, Q, HW] bool, True = blocked
            bh, q, hw = am.shape
            am = am.view(bh // heads, heads, q, hw)
            assert bool((am == am[:, :1]).all()), "attention mask differs between heads"
            rec[f"decoder.attention_mask.{li}"] = am[:, 0].to(torch.float32).contiguous()
            return None

        return fn

    for li, layer in enumerate(tdec.layers):
        on(layer, mask_pre(li), pre=True)

    try:
        with torch.no_grad():
            out = model(pixel_values=pixel_values, output_hidden_states=True, output_auxiliary_logits=True)
    finally:
        m2f_mod.multi_scale_deformable_attention = orig_msda
        for h in hooks:
            h.remove()

    rec["pixel_values"] = f32(pixel_values)
    for k, t in enumerate(intermediate):
        rec[f"decoder.intermediate.{k}"] = t  # layernormed queries of prediction k, [B, Q, C]
    for k, t in enumerate(out.transformer_decoder_hidden_states):
        rec[f"decoder.hidden_states.{k}"] = f32(t.transpose(0, 1))  # raw layer input/outputs, [B, Q, C]
    preds = list(out.auxiliary_logits) + [
        {"class_queries_logits": out.class_queries_logits, "masks_queries_logits": out.masks_queries_logits}
    ]
    # The last prediction is stored once, as class_queries_logits / masks_queries_logits.
    for k, p in enumerate(preds[:-1]):
        rec[f"predictions.{k}.class_logits"] = f32(p["class_queries_logits"])
        rec[f"predictions.{k}.mask_logits"] = f32(p["masks_queries_logits"])
    rec["class_queries_logits"] = f32(out.class_queries_logits)
    rec["masks_queries_logits"] = f32(out.masks_queries_logits)
    assert len(preds) == model.config.decoder_layers
    return rec, out


def midpoint_threshold(values: list[float], keep_fraction: float) -> float:
    """A threshold between two sorted candidate scores, far from both, so that float noise cannot flip a decision."""
    v = sorted(values, reverse=True)
    k = max(1, min(len(v) - 1, round(len(v) * keep_fraction)))
    for i in list(range(k, len(v))) + list(range(k - 1, 0, -1)):
        if v[i - 1] - v[i] > 1e-3:
            return round((v[i - 1] + v[i]) / 2, 6)
    raise RuntimeError(f"no usable gap in scores {v}")


def gap_midpoints(values: list[float]) -> list[float]:
    v = sorted(values, reverse=True)
    return [round((a + b) / 2, 6) for a, b in zip(v, v[1:]) if a - b > 1e-3]


def choose_thresholds(out, processor, target_sizes, fuse) -> dict:
    """Score thresholds that keep about half of the candidates, computed the way the HF post-processors score them."""
    cls = out.class_queries_logits.softmax(-1)
    masks = torch.nn.functional.interpolate(
        out.masks_queries_logits, size=(384, 384), mode="bilinear", align_corners=False
    )
    num_classes = cls.shape[-1] - 1
    pan, inst = [], []
    for b in range(cls.shape[0]):
        score, label = cls[b].max(-1)
        pan += [float(s) for s, l in zip(score, label) if int(l) != num_classes]
        scores, idx = cls[b, :, :-1].flatten().topk(cls.shape[1], sorted=False)
        m = masks[b][idx // num_classes]
        binary = (m > 0).float()
        mask_score = (m.sigmoid().flatten(1) * binary.flatten(1)).sum(1) / (binary.flatten(1).sum(1) + 1e-6)
        inst += [float(s) for s, nz in zip(scores * mask_score, binary.flatten(1).sum(1)) if nz > 0]
    common = {"mask_threshold": MASK_THRESHOLD, "overlap_mask_area_threshold": OVERLAP_THRESHOLD}
    return {
        "instance": {"threshold": midpoint_threshold(inst, 0.5), **common},
        "panoptic": best_panoptic(out, processor, target_sizes, fuse, pan),
    }


def best_panoptic(out, processor, target_sizes, fuse, scores) -> dict:
    """The (score threshold, overlap threshold) that yields the most panoptic segments. Random masks overlap a
    lot, and with HF's 0.8 overlap test most queries are rejected; ties keep the larger thresholds."""
    best, best_n = None, -1
    for overlap in (OVERLAP_THRESHOLD, 0.6, 0.4):
        for t in gap_midpoints(scores):
            res = processor.post_process_panoptic_segmentation(
                out, threshold=t, mask_threshold=MASK_THRESHOLD, overlap_mask_area_threshold=overlap,
                target_sizes=target_sizes, label_ids_to_fuse=set(fuse),
            )
            n = sum(len(r["segments_info"]) for r in res)
            if n > best_n:
                best, best_n = (t, overlap), n
    if best is None:
        raise RuntimeError(f"no usable gap in panoptic scores {scores}")
    return {"threshold": best[0], "mask_threshold": MASK_THRESHOLD, "overlap_mask_area_threshold": best[1]}


@torch.no_grad()
def check_semantics(model, rec: dict) -> None:
    """Recompute a few recorded tensors from others, so the keys mean what the README says they mean."""
    tdec = model.model.transformer_module.decoder
    num_preds = model.config.decoder_layers
    close = lambda a, b, what: torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5, msg=what)  # noqa: E731
    mask_features = rec["pixel_decoder.mask_features"]
    for k in range(num_preds):
        last = k == num_preds - 1
        cls = rec["class_queries_logits"] if last else rec[f"predictions.{k}.class_logits"]
        masks = rec["masks_queries_logits"] if last else rec[f"predictions.{k}.mask_logits"]
        q = rec[f"decoder.intermediate.{k}"]
        close(model.class_predictor(q), cls, f"class logits {k}")
        emb = tdec.mask_predictor.mask_embedder(q)
        close(torch.einsum("bqc,bchw->bqhw", emb, mask_features), masks, f"mask logits {k}")
        if k < num_preds - 1:
            # layer k uses the mask predicted by prediction k, at level k % 3
            used = rec[f"decoder.attention_mask.{k}"]
            h, w = rec[f"pixel_decoder.multi_scale_features.{k % 3}"].shape[-2:]
            blocked = torch.nn.functional.interpolate(masks, size=(h, w), mode="bilinear", align_corners=False)
            blocked = (blocked.sigmoid().flatten(2) < 0.5).float()
            full = blocked.sum(-1, keepdim=True) == blocked.shape[-1]
            assert torch.equal(used, blocked * (~full)), f"attention mask {k}"
    if "backbone.hidden_states.0" in rec:
        norms = model.model.pixel_level_module.encoder.hidden_states_norms
        for s in range(4):
            x = rec[f"backbone.hidden_states.{s}"]
            y = norms[f"stage{s + 1}"](x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
            close(y, rec[f"backbone.features.{s}"], f"backbone norm {s}")


def post_process(processor, out, target_sizes, spec) -> tuple[dict, dict]:
    tensors: dict[str, torch.Tensor] = {}
    post = choose_thresholds(out, processor, target_sizes, spec["label_ids_to_fuse"])
    info: dict = {"target_sizes": [list(s) for s in target_sizes], "thresholds": post, "images": []}
    sem = processor.post_process_semantic_segmentation(
        out, target_sizes=target_sizes, return_segmentation_scores=spec["detailed"]
    )
    inst = processor.post_process_instance_segmentation(out, target_sizes=target_sizes, **post["instance"])
    pan = processor.post_process_panoptic_segmentation(
        out, target_sizes=target_sizes, label_ids_to_fuse=set(spec["label_ids_to_fuse"]), **post["panoptic"]
    )
    for b in range(len(target_sizes)):
        s = sem[b]
        if spec["detailed"]:
            tensors[f"semantic.{b}.scores"] = f32(s.segmentation_scores)
            s = s.segmentation
        tensors[f"semantic.{b}"] = s.to(torch.int16).contiguous()
        tensors[f"instance.{b}"] = inst[b]["segmentation"].to(torch.int16).contiguous()
        tensors[f"panoptic.{b}"] = pan[b]["segmentation"].to(torch.int16).contiguous()
        info["images"].append(
            {"instance_segments": inst[b]["segments_info"], "panoptic_segments": pan[b]["segments_info"]}
        )
    info["label_ids_to_fuse"] = spec["label_ids_to_fuse"]
    return tensors, info


def make_targets(height: int, width: int, num_labels: int) -> tuple[list, list]:
    """Two images' worth of non-overlapping binary masks at input resolution, with their class ids."""
    y, x = np.mgrid[0:height, 0:width]
    img0 = [
        ((y < height // 2) & (x < width // 3), 1),
        (((y - 0.6 * height) / (0.2 * height)) ** 2 + ((x - 0.6 * width) / (0.25 * width)) ** 2 < 1, 3),
        ((y >= height - height // 8), 0),
    ]
    img1 = [
        ((x >= width // 2) & (y >= height // 8) & (y < 3 * height // 4), 4),
        ((x < width // 5), 2),
    ]
    masks, classes = [], []
    for objs in (img0, img1):
        masks.append(torch.tensor(np.stack([m for m, _ in objs]).astype(np.float32)))
        classes.append(torch.tensor([c for _, c in objs], dtype=torch.int64))
        assert all(c < num_labels for _, c in objs)
    return masks, classes


def record_loss(model, processor, mapping: dict[str, str], spec: dict, out_dir: Path) -> None:
    """Train-mode forward + loss + backward + one AdamW step on a 2-image batch, with every random draw recorded."""
    images = [synthetic_image(48, 72, spec["seed"] + 100 + b) for b in range(2)]
    # 48x72 -> 64x96: a smaller batch than the forward fixture keeps loss.safetensors small
    processor = Mask2FormerImageProcessorPil(size={"shortest_edge": 64, "longest_edge": 1333}, size_divisor=32)
    pixel_values = processor(images=images, return_tensors="pt")["pixel_values"]
    _, _, height, width = pixel_values.shape
    mask_labels, class_labels = make_targets(height, width, spec["num_labels"])

    rec: dict[str, torch.Tensor] = {"pixel_values": f32(pixel_values)}
    for b in range(2):
        rec[f"mask_labels.{b}"] = mask_labels[b].to(torch.uint8)  # binary; the model gets them as f32
        rec[f"class_labels.{b}"] = class_labels[b]

    draws: list[torch.Tensor] = []
    orig_rand = torch.rand

    def rand_spy(*args, **kwargs):
        t = orig_rand(*args, **kwargs)
        draws.append(t.detach().clone())
        return t

    matches: list = []
    hook = model.criterion.matcher.register_forward_hook(lambda m, i, o: matches.append(o))

    model.train()
    torch.manual_seed(spec["seed"] + 7)
    torch.rand = rand_spy
    try:
        out = model(
            pixel_values=pixel_values,
            mask_labels=mask_labels,
            class_labels=class_labels,
            output_auxiliary_logits=True,
        )
    finally:
        torch.rand = orig_rand
        hook.remove()

    loss = out.loss
    preds = list(out.auxiliary_logits) + [
        {"class_queries_logits": out.class_queries_logits, "masks_queries_logits": out.masks_queries_logits}
    ]
    for k, p in enumerate(preds):
        rec[f"predictions.{k}.class_logits"] = f32(p["class_queries_logits"])
        rec[f"predictions.{k}.mask_logits"] = f32(p["masks_queries_logits"])
    for k, t in enumerate(draws):
        rec[f"rand.{k:03d}"] = f32(t)
    # matcher calls: final prediction first, then auxiliary 0..L-2 (the criterion's order)
    for p, per_image in enumerate(matches):
        for b, (src, tgt) in enumerate(per_image):
            rec[f"match.{p}.{b}.query"] = src.to(torch.int64).contiguous()
            rec[f"match.{p}.{b}.target"] = tgt.to(torch.int64).contiguous()

    # Recompute the weighted loss terms exactly as get_loss_dict does, replaying the recorded draws.
    replay = iter(draws)
    torch.rand = lambda *a, **k: next(replay).clone()
    try:
        with torch.no_grad():
            aux = [
                {"masks_queries_logits": p["masks_queries_logits"], "class_queries_logits": p["class_queries_logits"]}
                for p in preds[:-1]
            ]
            terms = model.get_loss_dict(
                preds[-1]["masks_queries_logits"],
                preds[-1]["class_queries_logits"],
                mask_labels,
                class_labels,
                aux,
            )
    finally:
        torch.rand = orig_rand
    replay_total = float(sum(terms.values()))
    assert abs(replay_total - loss.item()) <= 1e-5 * max(1.0, abs(loss.item())), (replay_total, loss.item())

    loss.backward()
    no_grad = []
    for name, p in model.named_parameters():
        if p.grad is None:
            no_grad.append(mapping[name])
        else:
            rec[f"grad.{mapping[name]}"] = f32(p.grad)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)
    opt.step()
    for name, p in model.named_parameters():
        rec[f"param_after.{mapping[name]}"] = f32(p)
    model.eval()

    save_file(rec, str(out_dir / "loss.safetensors"))
    cfg = model.config
    info = {
        "total_loss": loss.item(),
        "terms_weighted": {k: float(v) for k, v in terms.items()},
        "weights": {"loss_cross_entropy": cfg.class_weight, "loss_mask": cfg.mask_weight, "loss_dice": cfg.dice_weight},
        "no_object_weight": cfg.no_object_weight,
        "num_masks": sum(len(c) for c in class_labels),
        "train_num_points": cfg.train_num_points,
        "oversample_ratio": cfg.oversample_ratio,
        "importance_sample_ratio": cfg.importance_sample_ratio,
        "matcher_costs": {"class": cfg.class_weight, "mask": cfg.mask_weight, "dice": cfg.dice_weight},
        "rand_shapes": [list(t.shape) for t in draws],
        "prediction_order": "match.<p>: p=0 is the final prediction (predictions.<L-1>), p=1+i is auxiliary i",
        "optimizer": {"name": "AdamW", "lr": 1e-4, "weight_decay": 0.05, "betas": [0.9, 0.999], "eps": 1e-8,
                      "param_groups": "one group, every parameter with weight decay"},
        "params_without_grad": no_grad,
    }
    (out_dir / "loss.json").write_text(json.dumps(info, indent=2) + "\n")
    print(f"  loss {loss.item():.6f} with {len(draws)} random draws, {len(no_grad)} params without grad")


def main() -> None:
    torch.set_num_threads(1)
    versions = {"torch": torch.__version__, "transformers": transformers.__version__}
    for name, spec in SPECS.items():
        out_dir = OUT / name
        if out_dir.exists():
            shutil.rmtree(out_dir)
        out_dir.mkdir(parents=True)
        model = build_model(spec)
        model.save_pretrained(str(out_dir))
        mapping = hub_names(model, out_dir / "model.safetensors")

        processor = Mask2FormerImageProcessorPil(size=spec["processor_size"], size_divisor=32)
        processor.save_pretrained(str(out_dir))
        images = [synthetic_image(h, w, spec["seed"] + b) for b, (h, w) in enumerate(spec["image_sizes"])]
        for b, img in enumerate(images):
            img.save(out_dir / f"image_{b}.png")
        pixel_values = processor(images=images, return_tensors="pt")["pixel_values"]

        rec, out = record_forward(model, pixel_values, spec)
        check_semantics(model, rec)
        save_file(rec, str(out_dir / "intermediates.safetensors"))
        post_t, post_info = post_process(processor, out, [tuple(s) for s in spec["image_sizes"]], spec)
        save_file(post_t, str(out_dir / "postprocess.safetensors"))
        (out_dir / "postprocess.json").write_text(json.dumps(post_info, indent=2) + "\n")
        meta = {
            "versions": versions,
            "seed": spec["seed"],
            "image_sizes": spec["image_sizes"],
            "pixel_values_shape": list(pixel_values.shape),
            "num_params": sum(p.numel() for p in model.parameters()),
        }
        if spec["detailed"]:
            meta["hub_names"] = mapping
        (out_dir / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        n_inst = [len(i["instance_segments"]) for i in post_info["images"]]
        n_pan = [len(i["panoptic_segments"]) for i in post_info["images"]]
        print(f"{name}: {meta['num_params']} params, input {list(pixel_values.shape)}, "
              f"{len(rec)} intermediates, instance segments {n_inst}, panoptic segments {n_pan}")
        if name == "tiny":
            record_loss(model, processor, mapping, spec, out_dir)


if __name__ == "__main__":
    main()
