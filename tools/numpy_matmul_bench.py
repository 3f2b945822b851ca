#!/usr/bin/env python3
"""CPU BLAS ceiling for docs/PERFORMANCE.md: numpy f32 `a @ b` at the sizes of the matmul bench.

Threads are whatever numpy's BLAS is configured with (set OPENBLAS_NUM_THREADS / OMP_NUM_THREADS
to change it). Prints the median and best GFLOP/s over `--reps` runs after one warm-up run.
Usage: python3 tools/numpy_matmul_bench.py [--sizes 512 1024 2048] [--reps 7]
"""
import argparse
import os
import time

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048])
    ap.add_argument("--reps", type=int, default=7)
    args = ap.parse_args()
    threads = {k: os.environ[k] for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS") if k in os.environ}
    print(f"numpy {np.__version__}, threads env {threads or 'unset'}, cpus {os.cpu_count()}")
    try:
        from threadpoolctl import threadpool_info  # optional: names the BLAS and its thread count

        for info in threadpool_info():
            print(f"  {info.get('internal_api')} {info.get('version')} threads={info.get('num_threads')}")
    except ImportError:
        pass
    rng = np.random.default_rng(7)
    for s in args.sizes:
        a = rng.uniform(-1, 1, (s, s)).astype(np.float32)
        b = rng.uniform(-1, 1, (s, s)).astype(np.float32)
        a @ b  # warm-up
        times = []
        for _ in range(args.reps):
            t0 = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - t0)
        flop = 2.0 * s**3
        times.sort()
        med = times[len(times) // 2]
        print(f"{s}^3: median {med * 1e3:.2f} ms = {flop / med / 1e9:.1f} GFLOP/s, best {flop / times[0] / 1e9:.1f} GFLOP/s")


if __name__ == "__main__":
    main()
