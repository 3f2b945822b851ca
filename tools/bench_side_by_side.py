#!/usr/bin/env python3
"""Ours and transformers side by side, same machine, same weights, same inputs; writes docs/BENCHMARKS.md.

Pinned (the versions the committed table was made with): torch==2.15.0, transformers==5.24.0,
safetensors==0.8.0, numpy==2.4.6 (venv: /work/wt/venv-post here).

What it does:
  1. Builds transformers' Mask2FormerForUniversalSegmentation from a config (default
     assets/swin-tiny-config.json: Swin-T, 100 queries) with seeded random weights and saves it with
     `save_pretrained` (model.safetensors + config.json) into a temporary folder: both sides load that file.
  2. Per size (default 384x512 and 800x1216) writes one seeded random `pixel_values` [1, 3, H, W] to a
     safetensors file: both sides read it.
  3. Ours: `target/release/examples/bench_model --model DIR --pixel-values FILE --runs N` in a fresh process
     per size (build it first: `cargo build --release --example bench_model`).
     transformers: this script re-run as a child (`--torch-child`) in a fresh process per size.
     Each side: one untimed first run, then the median of N forwards alone (no grad) and of N end-to-end runs
     (forward + panoptic post-processing at the input size: `post_process_panoptic_segmentation` with
     `target_sizes` = the input size; ours: `Segmenter::postprocess`, same thresholds), and peak memory:
     the process's peak RSS (getrusage); ours also the engine's peak of live device tensors; on CUDA,
     PyTorch's `torch.cuda.max_memory_allocated`.
  4. Writes the markdown table (adapter, CPU, date, commit, versions, load average) to docs/BENCHMARKS.md
     atomically (temporary file + rename), and the raw numbers to docs/benchmarks.json.

On a machine with CUDA, PyTorch runs on CUDA (`--torch-device auto`, the default; `cpu` forces the CPU) and
ours on whichever adapter wgpu picks (M2F_BACKEND / M2F_ADAPTER choose). On CPU, PyTorch uses
`--torch-threads` threads (default: all CPUs, as lavapipe does).

Run:  /work/wt/venv-post/bin/python tools/bench_side_by_side.py [--runs 3] [--sizes 384x512,800x1216]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def parse_sizes(text: str) -> list[tuple[int, int]]:
    sizes = []
    for item in text.split(","):
        h, sep, w = item.strip().partition("x")
        if not sep or not h.isdigit() or not w.isdigit() or int(h) < 32 or int(w) < 32:
            sys.exit(f"--sizes: `{item}` is not HxW with H, W >= 32")
        sizes.append((int(h), int(w)))
    return sizes


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return out.stdout.strip() + (" (uncommitted changes)" if dirty else "")
    except OSError:
        return "unknown"


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def make_inputs(config: Path, sizes, folder: Path, seed: int) -> None:
    import torch
    from safetensors.torch import save_file
    from transformers import Mask2FormerConfig, Mask2FormerForUniversalSegmentation

    torch.manual_seed(seed)
    cfg = Mask2FormerConfig.from_json_file(str(config))
    model = Mask2FormerForUniversalSegmentation(cfg).eval()
    model.save_pretrained(folder / "model", safe_serialization=True)
    for h, w in sizes:
        x = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(seed + h * 10007 + w))
        save_file({"pixel_values": x.contiguous()}, str(folder / f"pixel_values_{h}x{w}.safetensors"))


def torch_child(args) -> None:
    """One size in this process: prints a JSON line."""
    import torch
    from safetensors.torch import load_file
    from transformers import Mask2FormerForUniversalSegmentation, Mask2FormerImageProcessor

    device = args.torch_device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        torch.set_num_threads(args.torch_threads)
    model = Mask2FormerForUniversalSegmentation.from_pretrained(args.torch_child).eval().to(device)
    processor = Mask2FormerImageProcessor()
    x = load_file(args.pixel_values)["pixel_values"].to(device)
    h, w = x.shape[2], x.shape[3]

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    def forward():
        with torch.no_grad():
            out = model(pixel_values=x)
        sync()
        return out

    def end_to_end():
        out = forward()
        result = processor.post_process_panoptic_segmentation(out, target_sizes=[(h, w)])
        sync()
        return result

    def timed(fn):
        times = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return times

    t0 = time.perf_counter()
    segments = len(end_to_end()[0]["segments_info"])
    first = time.perf_counter() - t0
    fwd, e2e = timed(forward), timed(end_to_end)
    result = {
        "device": device if device == "cpu" else torch.cuda.get_device_name(),
        "threads": torch.get_num_threads(),
        "size": [h, w],
        "first_run_s": first,
        "forward_s": statistics.median(fwd),
        "forward_all_s": fwd,
        "end_to_end_s": statistics.median(e2e),
        "end_to_end_all_s": e2e,
        "segments": segments,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "peak_device_bytes": torch.cuda.max_memory_allocated() if device == "cuda" else None,
    }
    print(json.dumps(result))


def last_json(stdout: str, what: str) -> dict:
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    sys.exit(f"{what}: no JSON result in its output:\n{stdout[-2000:]}")


def run(cmd: list[str], what: str) -> dict:
    print(f"  {what}: {' '.join(cmd)}", flush=True)
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"{what} failed (exit {p.returncode}):\n{p.stderr[-4000:]}\n{p.stdout[-2000:]}")
    return last_json(p.stdout, what)


def mib(v) -> str:
    return "–" if v is None else f"{v / 2**20:.0f} MiB"


def table(meta: dict, rows: list[dict]) -> str:
    lines = [
        "# Benchmarks: this crate and transformers side by side",
        "",
        "Written by `tools/bench_side_by_side.py` (do not edit by hand; rerun it). Same machine, same weights",
        "(one `model.safetensors` from `save_pretrained` of a seeded random model, loaded by both), same",
        "`pixel_values`; each side in a fresh process per size, one untimed first run, then the median of",
        f"{meta['runs']} runs. *Forward*: the network alone. *End to end*: forward + panoptic post-processing at the",
        "input size. Peak memory: process peak RSS (on a CPU adapter ours includes the device buffers, which live",
        "in host memory); *device*: the engine's peak of live tensors (ours), `torch.cuda.max_memory_allocated`",
        "(PyTorch on CUDA). Ratio: ours / PyTorch time (lower is better for us).",
        "",
        f"- date: {meta['date']}; commit: {meta['commit']}",
        f"- CPU: {meta['cpu']} ({meta['cpus']} logical CPUs), load average at start {meta['load']}",
        f"- ours: {meta['adapter']}",
        f"- PyTorch: torch {meta['torch']}, transformers {meta['transformers']}, on {meta['torch_device']}"
        f" ({meta['torch_threads']} threads)",
        f"- model: {meta['config']} ({meta['params'] / 1e6:.1f} M parameters)",
        "",
        "| input | mode | ours | PyTorch | ratio | ours peak RSS (device) | PyTorch peak RSS (device) | first run ours / PyTorch |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        o, t = r["ours"], r["torch"]
        (h, w) = o["size"]
        for mode, key in (("forward", "forward_s"), ("end to end", "end_to_end_s")):
            lines.append(
                f"| {h}×{w} | {mode} | {o[key]:.3f} s | {t[key]:.3f} s | {o[key] / t[key]:.2f}× | "
                f"{mib(o['peak_rss_bytes'])} ({mib(o['peak_device_bytes'])}) | "
                f"{mib(t['peak_rss_bytes'])} ({mib(t['peak_device_bytes'])}) | "
                f"{o['first_run_s']:.1f} s / {t['first_run_s']:.1f} s |")
    lines.append("")
    return "\n".join(lines)


def write_results(args, rows: list[dict], load: float, params: int) -> None:
    import torch
    import transformers

    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": git_commit(),
        "cpu": cpu_name(),
        "cpus": os.cpu_count(),
        "load": f"{load:.1f}",
        "adapter": f"{rows[0]['ours']['adapter']} ({rows[0]['ours']['backend']})",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "torch_device": rows[0]["torch"]["device"],
        "torch_threads": rows[0]["torch"]["threads"],
        "config": os.path.relpath(args.config, ROOT),
        "params": params,
        "runs": args.runs,
    }
    out = Path(args.out)
    write_atomic(out, table(meta, rows))
    write_atomic(out.with_name("benchmarks.json"), json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default=str(ROOT / "assets/swin-tiny-config.json"))
    p.add_argument("--sizes", default="384x512,800x1216")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--torch-device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--torch-threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--ours", default=str(ROOT / "target/release/examples/bench_model"),
                   help="the bench_model binary (cargo build --release --example bench_model)")
    p.add_argument("--out", default=str(ROOT / "docs/BENCHMARKS.md"))
    p.add_argument("--torch-child", help=argparse.SUPPRESS)
    p.add_argument("--pixel-values", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.runs < 1:
        sys.exit("--runs: must be at least 1")
    if args.torch_child:
        return torch_child(args)

    import torch
    import transformers

    sizes = parse_sizes(args.sizes)
    if not Path(args.ours).is_file():
        sys.exit(f"--ours {args.ours}: not found; build it with `cargo build --release --example bench_model`")
    if not Path(args.config).is_file():
        sys.exit(f"--config {args.config}: not found")
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="m2f-bench-") as tmp:
        folder = Path(tmp)
        print(f"weights and inputs in {folder}", flush=True)
        make_inputs(Path(args.config), sizes, folder, args.seed)
        model_dir = folder / "model"
        params = sum(t.numel() for t in __import__("safetensors.torch", fromlist=["load_file"])
                     .load_file(str(model_dir / "model.safetensors")).values())
        rows = []
        for h, w in sizes:
            pv = str(folder / f"pixel_values_{h}x{w}.safetensors")
            print(f"{h}x{w}:", flush=True)
            ours = run([args.ours, "--model", str(model_dir), "--pixel-values", pv, "--runs", str(args.runs)],
                       "ours")
            theirs = run([sys.executable, __file__, "--torch-child", str(model_dir), "--pixel-values", pv,
                          "--runs", str(args.runs), "--torch-device", args.torch_device,
                          "--torch-threads", str(args.torch_threads)], "transformers")
            print(f"  forward {ours['forward_s']:.3f} s vs {theirs['forward_s']:.3f} s, end to end "
                  f"{ours['end_to_end_s']:.3f} s vs {theirs['end_to_end_s']:.3f} s", flush=True)
            rows.append({"ours": ours, "torch": theirs})
            # Written after every size, so an interrupted run keeps the sizes it finished.
            write_results(args, rows, load, params)
    print(f"wrote {args.out} and {Path(args.out).with_name('benchmarks.json')}")


if __name__ == "__main__":
    main()
