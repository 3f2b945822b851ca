#!/usr/bin/env python3
"""CPU reference timings of transformers' Mask2Former at the official Swin-T shape (random weights).

Times, with torch threads = 2 (the size of this project's machines), the median over several runs of
  - an eval forward (no grad) at 384x384 and at 800x1088, batch 1;
  - one training step at 384x384, batch 1: forward with labels + loss + backward + AdamW step.
The model is `facebook/mask2former-swin-tiny-coco-panoptic`'s architecture (Swin-T, 133 labels, 100 queries,
9 masked-attention layers, 12544 loss points), built from its config with random weights: no download.

Run:  .venv/bin/python tools/torch_bench.py [--runs N] [--json out.json]
      [--config assets/demo-config.json --forward-sizes 128x128 --train-size 128 --batch 2 --num-points 1024]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import torch
import transformers
from transformers import Mask2FormerConfig, Mask2FormerForUniversalSegmentation, SwinConfig


def swin_tiny_config() -> Mask2FormerConfig:
    swin = SwinConfig(
        embed_dim=96,
        depths=[2, 2, 6, 2],
        num_heads=[3, 6, 12, 24],
        window_size=7,
        drop_path_rate=0.3,
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )
    return Mask2FormerConfig(
        backbone_config=swin,
        id2label={i: f"class_{i}" for i in range(133)},
        label2id={f"class_{i}": i for i in range(133)},
    )


def timed(fn, runs: int, warmup: int = 1) -> tuple[list[float], list[float]]:
    """Wall-clock and process CPU seconds per run. On a shared machine the wall time mostly measures the other
    tenants; CPU seconds / threads approximates the wall time the run would take on an idle machine."""
    for _ in range(warmup):
        fn()
    wall, cpu = [], []
    for _ in range(runs):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return wall, cpu


def report(results: dict, name: str, wall: list[float], cpu: list[float]) -> None:
    results[f"{name}_s"] = statistics.median(wall)
    results[f"{name}_all_s"] = wall
    results[f"{name}_cpu_s"] = statistics.median(cpu)
    print(f"{name}: wall median {statistics.median(wall):.3f} s {[round(v, 3) for v in wall]}, "
          f"CPU median {statistics.median(cpu):.3f} s ({len(wall)} runs)")


def targets(height: int, width: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Four non-overlapping rectangles as ground truth for one image."""
    masks = torch.zeros(4, height, width)
    masks[0, : height // 2, : width // 2] = 1
    masks[1, : height // 2, width // 2 :] = 1
    masks[2, height // 2 :, : width // 3] = 1
    masks[3, height // 2 :, width // 3 :] = 1
    return [masks], [torch.tensor([0, 17, 56, 120])]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", type=str, default=None)
    parser.add_argument("--config", type=str, default=None,
                        help="a Mask2Former config.json (default: the Swin-T official shape)")
    parser.add_argument("--forward-sizes", type=str, default="384x384,800x1088",
                        help="comma-separated HxW for the eval forward ('' for none)")
    parser.add_argument("--train-size", type=int, default=384, help="square training crop")
    parser.add_argument("--batch", type=int, default=1, help="training batch size")
    parser.add_argument("--num-points", type=int, default=None, help="override train_num_points")
    args = parser.parse_args()

    torch.set_num_threads(2)
    torch.manual_seed(0)
    cfg = Mask2FormerConfig.from_json_file(args.config) if args.config else swin_tiny_config()
    if args.num_points:
        cfg.train_num_points = args.num_points
    model = Mask2FormerForUniversalSegmentation(cfg)
    n_params = sum(p.numel() for p in model.parameters())
    results: dict = {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "params": n_params,
        "runs": args.runs,
    }
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    results["load_average_1m"] = load
    print(f"{args.config or 'Swin-T'} Mask2Former, {n_params / 1e6:.2f}M parameters, torch threads {torch.get_num_threads()}, "
          f"load average {load:.1f} on {os.cpu_count()} CPUs")

    model.eval()
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.forward_sizes.split(",") if s]
    for h, w in sizes:
        x = torch.randn(1, 3, h, w)

        def forward():
            with torch.no_grad():
                model(pixel_values=x)

        runs = args.runs if h * w <= 384 * 384 else max(3, args.runs // 2)
        report(results, f"forward_{h}x{w}", *timed(forward, runs))

    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.05)
    t = args.train_size
    x = torch.randn(args.batch, 3, t, t)
    mask_labels, class_labels = targets(t, t)
    class_labels = [c % cfg.num_labels for c in class_labels]
    mask_labels, class_labels = mask_labels * args.batch, class_labels * args.batch

    def train_step():
        opt.zero_grad(set_to_none=True)
        out = model(pixel_values=x, mask_labels=mask_labels, class_labels=class_labels)
        out.loss.backward()
        opt.step()

    report(results, f"train_step_{t}x{t}_batch{args.batch}", *timed(train_step, args.runs))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
