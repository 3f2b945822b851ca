#!/usr/bin/env python3
"""A Swin-T-shaped Mask2Former checkpoint written by transformers itself, run on a real photo.

Builds `facebook/mask2former-swin-tiny-coco-panoptic`'s architecture with random weights (no download; the
hub's weights are not reachable from this project's machines), saves it with `save_pretrained` (the exact hub
layout: `config.json`, `model.safetensors` including the extra buffers transformers writes, and
`preprocessor_config.json`), pre-processes the photo with `Mask2FormerImageProcessor`, and records the
`pixel_values` and the model's `class_queries_logits` / `masks_queries_logits` so that

    segment --model OUT/checkpoint --pixel-values OUT/pixel_values.safetensors --dump-raw OUT/ours.safetensors
    python tools/swin_tiny_photo.py --compare OUT

checks the full-size model on a real image end to end against transformers.

Run:  .venv/bin/python tools/swin_tiny_photo.py PHOTO OUT   (see requirements-parity.txt for versions)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def make(photo: Path, out: Path, seed: int) -> None:
    import torch
    from PIL import Image
    from safetensors.torch import save_file
    from transformers import Mask2FormerForUniversalSegmentation, Mask2FormerImageProcessor

    sys.path.insert(0, str(Path(__file__).parent))
    from torch_bench import swin_tiny_config

    torch.manual_seed(seed)
    torch.set_num_threads(2)
    model = Mask2FormerForUniversalSegmentation(swin_tiny_config()).eval()
    ckpt = out / "checkpoint"
    model.save_pretrained(ckpt, safe_serialization=True)
    proc = Mask2FormerImageProcessor()  # the hub's settings: shortest edge 800, longest 1333, divisor 32
    proc.save_pretrained(ckpt)

    image = Image.open(photo).convert("RGB")
    inputs = proc(images=image, return_tensors="pt")
    pv = inputs["pixel_values"].contiguous()
    save_file({"pixel_values": pv}, str(out / "pixel_values.safetensors"))
    t0 = time.perf_counter()
    with torch.no_grad():
        o = model(pixel_values=pv, pixel_mask=inputs["pixel_mask"])
    seconds = time.perf_counter() - t0
    save_file(
        {
            "class_queries_logits": o.class_queries_logits.contiguous(),
            "masks_queries_logits": o.masks_queries_logits.contiguous(),
        },
        str(out / "transformers.safetensors"),
    )
    meta = {"photo": str(photo), "image_size": list(image.size[::-1]), "pixel_values": list(pv.shape),
            "torch_forward_s": seconds, "torch_threads": torch.get_num_threads(), "seed": seed}
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    print(json.dumps(meta))


def compare(out: Path) -> None:
    from safetensors.numpy import load_file

    ref = load_file(str(out / "transformers.safetensors"))
    ours = load_file(str(out / "ours.safetensors"))
    for k in ("class_queries_logits", "masks_queries_logits"):
        a, b = ours[k].astype(np.float64), ref[k].astype(np.float64)
        if a.shape != b.shape:
            raise SystemExit(f"{k}: shape {a.shape} vs transformers {b.shape}")
        rel = np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30)
        print(f"{k} {list(a.shape)}: relative L2 error {rel:.2e}, max abs diff {np.abs(a - b).max():.2e}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("photo", nargs="?", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--compare", action="store_true", help="compare OUT/ours.safetensors with transformers")
    a = ap.parse_args()
    if a.compare:
        compare(a.out)
    else:
        a.out.mkdir(parents=True, exist_ok=True)
        make(a.photo, a.out, a.seed)
